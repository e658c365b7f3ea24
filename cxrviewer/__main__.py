import sys

from cxrviewer.cli import main

sys.exit(main())
