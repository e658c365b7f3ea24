"""cxrviewer: offline chest X-ray viewer, batch scorer and fine-tuning tool.

The core (everything outside ``cxrviewer.gui``) imports no Qt, and nothing imports
TensorFlow at package import time, so the CLI and the window start fast.
"""

__version__ = "0.1.0"

NOT_FOR_DIAGNOSIS = "Not for diagnostic use."
