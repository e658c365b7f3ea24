"""A stand-in for the shipped model, for frozen-app checks before a trained model exists.

    python packaging/standin_model.py OUT_DIR   ->  OUT_DIR/standin-densenet121.keras (+ card)

A randomly initialised DenseNet121 with the 14 ChestX-ray14 outputs, built and saved by
the real code (``build_classifier``, ``save_model``), so the frozen app loads, predicts
and runs Grad-CAM through exactly the layers the shipped model has. Its numbers mean
nothing; the card says so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxrviewer import NOT_FOR_DIAGNOSIS  # noqa: E402
from cxrviewer.findings import CXR14_LABELS  # noqa: E402
from cxrviewer.model.card import ModelCard, Preprocess  # noqa: E402

NAME = "standin-densenet121"
INPUT_SIZE = 224


def make_standin(out_dir: Path) -> Path:
    from cxrviewer.model.build import build_classifier, default_gradcam_layer
    from cxrviewer.model.loading import save_model

    labels = list(CXR14_LABELS)
    card = ModelCard(
        name=NAME,
        task="multilabel",
        labels=labels,
        input_size=INPUT_SIZE,
        input_channels=3,
        preprocess=Preprocess(resize="area", crop="none", clahe=False, mean=0.5, std=0.25),
        gradcam_layer=default_gradcam_layer("densenet121"),
        thresholds={lab: 0.5 for lab in labels},
        threshold_rule="fixed 0.5 (untrained stand-in)",
        training={"data": "none: randomly initialised stand-in for packaging checks", "patients": 0,
                  "images": 0, "epochs": 0},
        metrics={"validation_auroc": {lab: None for lab in labels}},
        intended_use=f"Packaging checks only; its outputs are random. {NOT_FOR_DIAGNOSIS}",
        architecture={"backbone": "densenet121", "input_size": INPUT_SIZE, "channels": 3},
    )
    model = build_classifier(len(labels), backbone="densenet121", input_size=INPUT_SIZE, name=NAME.replace("-", "_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_model(model, card, out_dir / f"{NAME}.keras")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(make_standin(Path(sys.argv[1])))
