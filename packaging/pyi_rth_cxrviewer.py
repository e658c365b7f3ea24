# PyInstaller runtime hook: runs in the frozen app before cxrviewer is imported.
# TensorFlow's C++ start-up messages mean nothing to a clinic user; the report PNGs
# (matplotlib) render off screen, and only the Agg backend is bundled.
# The bundle root (sys._MEIPASS) is found by cxrviewer.resources.
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
