"""Training recipes: a TOML file with [data], [split], [model], [train] and [output].

Relative paths in a recipe are resolved against the recipe file's own folder, so a recipe
means the same thing whatever folder it is run from; data paths are resolved against
``data.root`` (itself relative to the recipe), which the CXR_DATA environment variable
overrides (the same variable the tests use). Unknown keys are errors: a misspelt
``finetune_epoch`` must not silently train with the default.

Example (see ``training/*.toml`` for complete recipes)::

    [data]
    root = "../../shared/data"
    labels = "cxr14"                   # or a list of names
    task = "multilabel"

    [[data.sources]]
    name = "nih-png1024"
    csv = "nih/Data_Entry_2017_v2020.csv.gz"
    images = "nih/png1024"

    [[data.sources]]
    name = "kermany"
    folders = "kermany-pneumonia"       # a folder per class
    label_map = { PNEUMONIA = "Pneumonia", NORMAL = "" }
    patient_regex = '^(person\\d+|(?:NORMAL2-)?IM-\\d+)'
    max_images = 1200

    [split]                             # or method = "given" to use the sources' own splits
    fractions = [0.7, 0.15, 0.15]
    seed = 42
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from cxrviewer.findings import CXR14_LABELS

LABEL_SETS = {"cxr14": list(CXR14_LABELS)}


class RecipeError(ValueError):
    """The recipe cannot be used; the message names the file and the key."""


@dataclass
class SourceSpec:
    name: str = ""
    csv: str = ""  # labels CSV (with `images`)
    images: str = ""  # image folder for the CSV rows
    folders: str = ""  # a folder per class (instead of csv + images)
    labels: list[str] | None = None  # labels this source provides (default: the recipe's)
    label_map: dict[str, str | list[str]] | None = None
    patient_regex: str = ""
    patient_namespace: str = ""
    image_column: str = ""
    patient_column: str = ""
    findings_column: str = ""
    split_column: str = ""
    max_images: int = 0  # random sample of at most this many films (0: all)
    seed: int = 0

    @property
    def kind(self) -> str:
        return "folders" if self.folders else "csv"


@dataclass
class DataSpec:
    root: str = "."
    labels: list[str] = field(default_factory=lambda: list(CXR14_LABELS))
    task: str = "multilabel"
    sources: list[SourceSpec] = field(default_factory=list)


@dataclass
class SplitSpec:
    method: str = "patients"  # "patients" or "given" (sources' split column / folders)
    fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    seed: int = 42
    stratify: bool = True


@dataclass
class ModelSpec:
    name: str = "model"
    backbone: str = "densenet121"
    input_size: int = 224
    channels: int = 3
    start: str = "scratch"  # "scratch" or a .keras model (its card beside it)
    resize: str = "area"
    crop: str = "none"
    clahe: bool = False
    stats_images: int = 512  # training films sampled for mean/std


@dataclass
class TrainSpec:
    batch_size: int = 16
    head_epochs: int = 0
    head_lr: float = 1e-3
    finetune_epochs: int = 10
    finetune_lr: float = 1e-4
    patience: int = 3
    min_delta: float = 1e-3
    freeze_batchnorm: str | bool = "auto"
    augment: bool = True
    rotation_deg: float = 7.0
    shift: float = 0.05
    zoom: float = 0.10
    brightness: float = 0.10
    contrast: float = 0.10
    horizontal_flip: bool = False
    mixed_precision: bool = False
    max_steps_per_epoch: int = 0
    max_minutes: float = 0.0  # wall-clock budget for the whole run (0: none)
    seed: int = 0
    workers: int = 0  # decode threads (0: automatic)


@dataclass
class OutputSpec:
    run_dir: str = "runs/model"
    model: str = ""  # also publish the model + card here (e.g. ../models/x.keras)
    overwrite: bool = False
    bootstrap: int = 1000


@dataclass
class Recipe:
    path: Path
    data: DataSpec
    split: SplitSpec
    model: ModelSpec
    train: TrainSpec
    output: OutputSpec
    text: str = ""

    # ---- resolved paths --------------------------------------------------------------
    @property
    def base(self) -> Path:
        return self.path.parent

    @property
    def data_root(self) -> Path:
        env = os.environ.get("CXR_DATA")
        return Path(env) if env else (self.base / self.data.root).resolve()

    def data_path(self, rel: str) -> Path:
        p = Path(os.path.expanduser(rel))
        return p if p.is_absolute() else self.data_root / p

    def local_path(self, rel: str) -> Path:
        p = Path(os.path.expanduser(rel))
        return p if p.is_absolute() else (self.base / p).resolve()

    @property
    def run_dir(self) -> Path:
        return self.local_path(self.output.run_dir)

    @property
    def publish_path(self) -> Path | None:
        return self.local_path(self.output.model) if self.output.model else None

    @property
    def start_model(self) -> Path | None:
        return None if self.model.start == "scratch" else self.local_path(self.model.start)

    def to_dict(self) -> dict:
        return {"data": asdict(self.data), "split": asdict(self.split), "model": asdict(self.model),
                "train": asdict(self.train), "output": asdict(self.output)}


def _build(cls, table, where: str):
    if not isinstance(table, dict):
        raise RecipeError(f"{where} must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    obj = cls()
    for key, value in table.items():
        default = getattr(obj, key)
        if isinstance(default, bool) and not isinstance(value, bool) and key != "freeze_batchnorm":
            raise RecipeError(f"{where}.{key} must be true or false")
        if isinstance(default, int) and not isinstance(default, bool) and (
                not isinstance(value, int) or isinstance(value, bool)):
            raise RecipeError(f"{where}.{key} must be a whole number")
        if isinstance(default, float) and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise RecipeError(f"{where}.{key} must be a number")
        if isinstance(default, str) and key != "freeze_batchnorm" and not isinstance(value, str):
            raise RecipeError(f"{where}.{key} must be text")
        setattr(obj, key, float(value) if isinstance(default, float) else value)
    return obj


def parse_recipe(text: str, path: str | Path = "recipe.toml") -> Recipe:
    path = Path(path).resolve()
    where = path.name
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{where}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - {"data", "split", "model", "train", "output"})
    if unknown:
        raise RecipeError(f"{where}: unknown section(s) {', '.join(unknown)}")
    data_table = dict(doc.get("data", {}))
    sources = data_table.pop("sources", [])
    labels = data_table.get("labels")
    if isinstance(labels, str):
        if labels.lower() not in LABEL_SETS:
            raise RecipeError(f"{where}: data.labels '{labels}' is not a known label set "
                              f"({', '.join(LABEL_SETS)}); give a list of names")
        data_table["labels"] = LABEL_SETS[labels.lower()]
    elif labels is not None and not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise RecipeError(f"{where}: data.labels must be a label set name or a list of names")
    data_labels = data_table.pop("labels", None)
    data = _build(DataSpec, data_table, f"{where}: [data]")
    if data_labels is not None:
        data.labels = list(data_labels)
    if data.task not in ("multilabel", "multiclass"):
        raise RecipeError(f"{where}: data.task must be multilabel or multiclass")
    if not isinstance(sources, list) or not sources:
        raise RecipeError(f"{where}: no [[data.sources]]; name at least one labelled image source")
    for i, table in enumerate(sources):
        src = _build(SourceSpec, table, f"{where}: data.sources[{i}]")
        src.name = src.name or f"source{i + 1}"
        if bool(src.folders) == bool(src.csv or src.images):
            raise RecipeError(f"{where}: data.sources[{i}] ({src.name}) needs either csv + images or folders")
        if src.csv and not src.images:
            raise RecipeError(f"{where}: data.sources[{i}] ({src.name}) has csv but no images folder")
        data.sources.append(src)
    names = [s.name for s in data.sources]
    if len(set(names)) != len(names):
        raise RecipeError(f"{where}: two sources share a name")

    split = _build(SplitSpec, doc.get("split", {}), f"{where}: [split]")
    if split.method not in ("patients", "given"):
        raise RecipeError(f"{where}: split.method must be 'patients' or 'given'")
    if len(split.fractions) != 3 or abs(sum(split.fractions) - 1.0) > 1e-6:
        raise RecipeError(f"{where}: split.fractions needs three numbers adding up to 1 (train, validation, test)")
    model = _build(ModelSpec, doc.get("model", {}), f"{where}: [model]")
    train = _build(TrainSpec, doc.get("train", {}), f"{where}: [train]")
    output = _build(OutputSpec, doc.get("output", {}), f"{where}: [output]")
    for key in ("batch_size",):
        if getattr(train, key) < 1:
            raise RecipeError(f"{where}: train.{key} must be at least 1")
    if train.head_epochs < 0 or train.finetune_epochs < 0 or train.head_epochs + train.finetune_epochs == 0:
        raise RecipeError(f"{where}: train.head_epochs + train.finetune_epochs must be at least 1")
    if train.freeze_batchnorm not in ("auto", True, False):
        raise RecipeError(f"{where}: train.freeze_batchnorm must be \"auto\", true or false")
    if not 16 <= model.input_size <= 2048 or model.channels not in (1, 3):
        raise RecipeError(f"{where}: model.input_size must be 16..2048 and model.channels 1 or 3")
    return Recipe(path, data, split, model, train, output, text)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe not found") from None
    except OSError as exc:
        raise RecipeError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    return parse_recipe(text, path)
