"""Importing the model core must not import TensorFlow (the window and CLI start fast)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_model_modules_import_without_tensorflow():
    code = (
        "import sys\n"
        "import cxrviewer.model, cxrviewer.model.build, cxrviewer.model.device, cxrviewer.model.gradcam\n"
        "import cxrviewer.model.legacy_h5, cxrviewer.model.loading, cxrviewer.model.pipeline\n"
        "import cxrviewer.model.predictor\n"
        "from cxrviewer.model import Predictor, Prediction, ModelLoadError, load_model\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
