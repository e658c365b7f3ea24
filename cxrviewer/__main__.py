import multiprocessing
import sys

if __name__ == "__main__":
    # The training wizard runs TensorFlow in a child process ("spawn"). The child imports
    # this module again under another name, so the CLI only runs when it is the program;
    # a frozen build starts the child through this same executable (freeze_support).
    multiprocessing.freeze_support()
    from cxrviewer.cli import main

    sys.exit(main())
