"""The model card: the JSON that travels beside every ``.keras`` file, and its validation.

A card says what the model's outputs mean (labels, task), how to feed it (input size,
channels, preprocessing with the training set's statistics), where Grad-CAM looks, where
each finding is called (thresholds and how they were chosen), what it was trained on, how
well it did, and what it is for. The app refuses a model whose card is missing or
inconsistent, because probabilities from a mis-fed model look just as confident.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from cxrviewer.fsutil import write_json_atomic

CARD_FORMAT = 1
TASKS = ("multilabel", "multiclass")
RESIZE_METHODS = ("area", "linear")
CROP_MODES = ("none", "center")


class ModelCardError(ValueError):
    """The card is missing, unreadable or inconsistent; the message says which field."""


def card_path_for(model_path: str | Path) -> Path:
    """``models/x.keras`` -> ``models/x.card.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".card.json")


@dataclass
class Preprocess:
    """How a film's 0..1 display pixels become the model's input tensor.

    mean/std are measured on the training set (in 0..1 pixel units, before channel copy)
    and stored here so validation, test and inference inputs are normalised the same way.
    A list gives one value per input channel (e.g. ImageNet statistics).
    """

    resize: str = "area"
    crop: str = "none"  # "center": central square crop before resize (torchxrayvision)
    clahe: bool = False
    mean: float | list[float] = 0.5
    std: float | list[float] = 0.25

    def to_dict(self) -> dict:
        return {"resize": self.resize, "crop": self.crop, "clahe": self.clahe,
                "mean": self.mean, "std": self.std}


@dataclass
class ModelCard:
    name: str
    task: str
    labels: list[str]
    input_size: int
    input_channels: int
    preprocess: Preprocess
    gradcam_layer: str
    thresholds: dict[str, float]
    threshold_rule: str
    training: dict
    metrics: dict
    intended_use: str
    # Outputs the network has but that were never trained for these weights (e.g. some
    # torchxrayvision heads): kept for the tensor layout, never shown as findings.
    untrained_labels: list[str] = field(default_factory=list)
    architecture: dict = field(default_factory=dict)  # {"backbone": "densenet121", ...}
    source: dict = field(default_factory=dict)  # e.g. imported checkpoint name + sha256
    format: int = CARD_FORMAT

    # ---- derived -------------------------------------------------------------------
    @property
    def active_labels(self) -> list[str]:
        """Labels shown as findings, in output order."""
        hidden = set(self.untrained_labels)
        return [lab for lab in self.labels if lab not in hidden]

    @property
    def validation_auroc(self) -> dict:
        return dict(self.metrics.get("validation_auroc", {}))

    # ---- (de)serialisation ---------------------------------------------------------
    def to_dict(self) -> dict:
        d = {
            "format": self.format,
            "name": self.name,
            "task": self.task,
            "labels": list(self.labels),
            "untrained_labels": list(self.untrained_labels),
            "input": {"size": self.input_size, "channels": self.input_channels},
            "preprocess": self.preprocess.to_dict(),
            "architecture": copy.deepcopy(self.architecture),
            "gradcam_layer": self.gradcam_layer,
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "threshold_rule": self.threshold_rule,
            "training": copy.deepcopy(self.training),
            "metrics": copy.deepcopy(self.metrics),
            "intended_use": self.intended_use,
        }
        if self.source:
            d["source"] = copy.deepcopy(self.source)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "model card") -> "ModelCard":
        def need(obj, key, kind, ctx):
            if not isinstance(obj, dict) or key not in obj:
                raise ModelCardError(f"{where}: missing field '{ctx}{key}'")
            val = obj[key]
            if kind is float and isinstance(val, int) and not isinstance(val, bool):
                val = float(val)
            if not isinstance(val, kind) or (kind is int and isinstance(val, bool)):
                raise ModelCardError(f"{where}: field '{ctx}{key}' should be {kind.__name__}, got {type(val).__name__}")
            return val

        if not isinstance(d, dict):
            raise ModelCardError(f"{where}: not a JSON object")
        fmt = need(d, "format", int, "")
        if fmt != CARD_FORMAT:
            raise ModelCardError(f"{where}: card format {fmt} is not supported (this app reads format {CARD_FORMAT})")
        inp = need(d, "input", dict, "")
        pre = need(d, "preprocess", dict, "")
        pre_kwargs = {
            "resize": need(pre, "resize", str, "preprocess."),
            "crop": pre.get("crop", "none"),
            "clahe": need(pre, "clahe", bool, "preprocess."),
            "mean": pre.get("mean"),
            "std": pre.get("std"),
        }
        for key in ("mean", "std"):
            if key not in pre:
                raise ModelCardError(f"{where}: missing field 'preprocess.{key}' (training-set statistics)")
        card = cls(
            name=need(d, "name", str, ""),
            task=need(d, "task", str, ""),
            labels=list(need(d, "labels", list, "")),
            input_size=need(inp, "size", int, "input."),
            input_channels=need(inp, "channels", int, "input."),
            preprocess=Preprocess(**pre_kwargs),
            gradcam_layer=need(d, "gradcam_layer", str, ""),
            thresholds=dict(need(d, "thresholds", dict, "")),
            threshold_rule=need(d, "threshold_rule", str, ""),
            training=dict(need(d, "training", dict, "")),
            metrics=dict(need(d, "metrics", dict, "")),
            intended_use=need(d, "intended_use", str, ""),
            untrained_labels=list(d.get("untrained_labels", [])),
            architecture=dict(d.get("architecture", {})),
            source=dict(d.get("source", {})),
            format=fmt,
        )
        card.validate(where)
        return card

    def validate(self, where: str = "model card") -> None:
        """Raise ModelCardError naming the first inconsistent field."""

        def bad(msg):
            raise ModelCardError(f"{where}: {msg}")

        if not self.name.strip():
            bad("'name' is empty")
        if self.task not in TASKS:
            bad(f"'task' must be one of {', '.join(TASKS)}, got '{self.task}'")
        if not self.labels or not all(isinstance(x, str) and x.strip() for x in self.labels):
            bad("'labels' must be a non-empty list of names")
        if len(set(self.labels)) != len(self.labels):
            bad("'labels' has duplicates")
        if self.task == "multiclass" and len(self.labels) < 2:
            bad("a multiclass model needs at least two labels")
        unknown = [x for x in self.untrained_labels if x not in self.labels]
        if unknown:
            bad(f"'untrained_labels' names labels the model does not have: {', '.join(unknown)}")
        if not self.active_labels:
            bad("every label is marked untrained; nothing to show")
        if not 16 <= self.input_size <= 2048:
            bad(f"'input.size' {self.input_size} is outside 16..2048")
        if self.input_channels not in (1, 3):
            bad(f"'input.channels' must be 1 or 3, got {self.input_channels}")
        p = self.preprocess
        if p.resize not in RESIZE_METHODS:
            bad(f"'preprocess.resize' must be one of {', '.join(RESIZE_METHODS)}")
        if p.crop not in CROP_MODES:
            bad(f"'preprocess.crop' must be one of {', '.join(CROP_MODES)}")
        for key in ("mean", "std"):
            val = getattr(p, key)
            vals = val if isinstance(val, list) else [val]
            if isinstance(val, list) and len(val) not in (1, self.input_channels):
                bad(f"'preprocess.{key}' has {len(val)} values for {self.input_channels} channels")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
                bad(f"'preprocess.{key}' must be a finite number or a list of them")
            if key == "std" and any(v <= 0 for v in vals):
                bad("'preprocess.std' must be positive")
        if not self.gradcam_layer.strip():
            bad("'gradcam_layer' is empty")
        missing = [x for x in self.active_labels if x not in self.thresholds]
        if missing:
            bad(f"'thresholds' lacks {', '.join(missing)}")
        for lab, thr in self.thresholds.items():
            if lab not in self.labels:
                bad(f"'thresholds' names unknown label '{lab}'")
            if not isinstance(thr, (int, float)) or isinstance(thr, bool) or not 0.0 <= thr <= 1.0:
                bad(f"threshold for '{lab}' must be a number in 0..1")
        if not self.threshold_rule.strip():
            bad("'threshold_rule' is empty: say how the thresholds were chosen")
        auroc = self.metrics.get("validation_auroc", None)
        if not isinstance(auroc, dict):
            bad("'metrics.validation_auroc' is missing (use null for a class that was not estimable)")
        for lab, val in auroc.items():
            if lab not in self.labels:
                bad(f"'metrics.validation_auroc' names unknown label '{lab}'")
            if val is not None and not (isinstance(val, (int, float)) and 0.0 <= val <= 1.0):
                bad(f"'metrics.validation_auroc.{lab}' must be in 0..1 or null")
        if not self.intended_use.strip():
            bad("'intended_use' is empty")

    # ---- files ---------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelCardError(f"{path.name}: model card not found (expected beside the model file)") from None
        except OSError as exc:
            raise ModelCardError(f"{path.name}: cannot read model card ({exc.strerror or exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"{path.name}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        return cls.from_dict(data, where=path.name)

    def save(self, path: str | Path) -> None:
        """Validate, then write atomically (temp file + rename)."""
        self.validate(Path(path).name)
        write_json_atomic(path, self.to_dict())
