"""What the wizard's pages chose, written as a training recipe (no Qt).

The wizard never trains by itself: its choices become the TOML text of an ordinary
recipe, parsed by ``cxrviewer.training.recipe.parse_recipe`` and run by
``cxrviewer.training.run.run_training``, exactly what ``cxrviewer train`` does with a
file. Every path in the text is absolute, so the ``recipe.toml`` that the run writes into
its folder runs the same experiment again from the command line
(``cxrviewer train RUN/recipe.toml --out RUN --resume``) and lets the wizard resume it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from cxrviewer.training.recipe import Recipe, parse_recipe

CSV, FOLDERS = "csv", "folders"
SCRATCH = "scratch"

# Sensible starting points per backbone on a CPU machine: input size and batch size.
BACKBONE_DEFAULTS = {
    "densenet121": {"input_size": 224, "batch_size": 16},
    "resnet50v2": {"input_size": 224, "batch_size": 16},
    "efficientnetb0": {"input_size": 224, "batch_size": 16},
    "tiny": {"input_size": 64, "batch_size": 16},
}


def default_run_dir(name: str, root: Path | None = None) -> Path:
    """``~/cxrviewer-runs/<name>-<YYYYmmdd-HHMMSS>``: a new folder per run."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return (root or Path.home() / "cxrviewer-runs") / f"{safe_name(name)}-{stamp}"


def safe_name(name: str) -> str:
    """A model name usable as a file name (the card keeps the name as typed)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.") or "model"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("recipe numbers must be finite")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string: same escapes as JSON for what we write
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} into a recipe")


def _table(name: str, values: dict) -> str:
    lines = [f"[{name}]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines)


@dataclass
class WizardPlan:
    """Everything the pages choose. Defaults are what a new wizard shows."""

    # -- data
    source_kind: str = CSV
    csv_path: str = ""
    images_dir: str = ""
    folders_dir: str = ""
    image_column: str = ""  # "" = detected by the label reader
    patient_column: str = ""  # "" = detected (or none: each film its own patient)
    split_column: str = ""
    patient_regex: str = ""  # folders: the patient ID in file names
    label_map: dict[str, str] = field(default_factory=dict)  # folders, multi-label: folder -> label ("" = none)
    labels: list[str] = field(default_factory=list)
    task: str = "multilabel"
    films_as_patients: bool = False  # the user accepted "each film is its own patient"
    # -- split
    split_method: str = "patients"  # or "given" (CSV split column / split folders)
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 42
    # -- model
    name: str = "clinic-model"
    backbone: str = "densenet121"
    input_size: int = 224
    channels: int = 3
    start: str = SCRATCH  # or a .keras path (its card beside it)
    # -- training
    batch_size: int = 16
    head_epochs: int = 0
    head_lr: float = 1e-3
    finetune_epochs: int = 10
    finetune_lr: float = 1e-3
    patience: int = 3
    augment: bool = True
    max_steps_per_epoch: int = 0  # 0: whole epochs (benchmarks and smoke runs shorten it)
    bootstrap: int = 1000
    run_dir: str = ""

    @property
    def from_scratch(self) -> bool:
        return self.start == SCRATCH

    @property
    def total_epochs(self) -> int:
        return int(self.head_epochs) + int(self.finetune_epochs)

    def source_table(self) -> dict:
        if self.source_kind == FOLDERS:
            src = {"name": Path(self.folders_dir).name or "folders", "folders": self.folders_dir}
            if self.task == "multilabel":
                src["label_map"] = dict(self.label_map)
            if self.patient_regex:
                src["patient_regex"] = self.patient_regex
            return src
        src = {"name": Path(self.images_dir).name or "images", "csv": self.csv_path, "images": self.images_dir}
        for key in ("image_column", "patient_column", "split_column"):
            if getattr(self, key):
                src[key] = getattr(self, key)
        return src

    def to_toml(self) -> str:
        """The recipe text (absolute paths; the run folder writes it as recipe.toml)."""
        if not self.labels:
            raise ValueError("no labels chosen")
        parts = [
            "# Written by the cxrviewer training wizard. Run it again with\n"
            "#   cxrviewer train recipe.toml --out <run folder> --resume",
            _table("data", {"root": "/", "labels": list(self.labels), "task": self.task}),
            _table("data.sources", self.source_table()).replace("[data.sources]", "[[data.sources]]"),
            _table("split", {"method": self.split_method, "fractions": [float(f) for f in self.fractions],
                             "seed": int(self.seed)}),
            _table("model", {"name": self.name, "backbone": self.backbone, "input_size": int(self.input_size),
                             "channels": int(self.channels), "start": self.start}),
            _table("train", {"batch_size": int(self.batch_size), "head_epochs": int(self.head_epochs),
                             "head_lr": float(self.head_lr), "finetune_epochs": int(self.finetune_epochs),
                             "finetune_lr": float(self.finetune_lr), "patience": int(self.patience),
                             "augment": bool(self.augment),
                             "max_steps_per_epoch": int(self.max_steps_per_epoch)}),
            _table("output", {"run_dir": self.run_dir or str(default_run_dir(self.name)),
                              "bootstrap": int(self.bootstrap)}),
        ]
        return "\n\n".join(parts) + "\n"

    def to_recipe(self) -> Recipe:
        """The recipe object ``run_training`` takes (raises RecipeError on a bad choice)."""
        run_dir = Path(self.run_dir) if self.run_dir else default_run_dir(self.name)
        return parse_recipe(self.to_toml(), run_dir / "recipe.toml")
