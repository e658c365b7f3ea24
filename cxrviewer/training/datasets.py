"""Training datasets: which films, with which labels, from which patients and sources.

A ``Dataset`` is the record the rest of training works on: image paths, a label matrix
(NaN = this source does not say, masked out of the loss), patient IDs (for the split),
label names, the task and where each image came from. It is built from

* a labels CSV joined with an image folder (``from_csv``): the NIH ``Data_Entry_2017``
  layout as distributed, a findings column, or one column per label (read by
  ``cxrviewer.labels``). CSV rows whose film is not in the folder are counted as missing
  and skipped, never fatal: the full NIH CSV has 112,120 rows and a local extract a few
  hundred films, so the folder is indexed once and only films present are kept;
* a folder per class (``from_class_folders``, the Kermany layout ``train/NORMAL``,
  ``train/PNEUMONIA``): multi-class, or mapped onto multi-label findings
  (PNEUMONIA -> Pneumonia) with every other finding unknown;
* several of those combined (``combine``): the union of their labels, NaN where a
  source does not label a class.

Nothing here decodes images; films that turn out unreadable when the pipeline decodes
them are dropped with ``Dataset.without`` and reported.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrviewer.findings import NO_FINDING
from cxrviewer.training.split import SPLITS, normalise_split_name

TASKS = ("multilabel", "multiclass")


class DatasetError(ValueError):
    """A source cannot be used at all (no folder, no labels, nothing matched)."""


@dataclass
class DatasetReport:
    """What was left out and why; counts plus a few file names, no patient IDs."""

    notes: list[str] = field(default_factory=list)
    missing: int = 0  # label rows whose film is not in the folder
    unlabelled: list[str] = field(default_factory=list)  # films without a label row (relative paths)
    unreadable: list[str] = field(default_factory=list)  # "file: reason" from the decoder
    duplicates: int = 0

    def merged(self, other: "DatasetReport") -> "DatasetReport":
        return DatasetReport(self.notes + other.notes, self.missing + other.missing,
                             self.unlabelled + other.unlabelled, self.unreadable + other.unreadable,
                             self.duplicates + other.duplicates)

    def copy(self) -> "DatasetReport":
        return self.merged(DatasetReport())

    def lines(self) -> list[str]:
        out = list(self.notes)
        if self.unlabelled:
            out.append(f"{len(self.unlabelled)} film(s) have no label row and were skipped, e.g. "
                       + ", ".join(self.unlabelled[:3]))
        if self.unreadable:
            out.append(f"{len(self.unreadable)} film(s) could not be read and were skipped: "
                       + "; ".join(self.unreadable[:3]) + (" ..." if len(self.unreadable) > 3 else ""))
        if self.duplicates:
            out.append(f"{self.duplicates} duplicate film(s) (same patient and file name in two sources) dropped")
        return out


@dataclass
class Dataset:
    paths: list[Path]
    labels: np.ndarray  # float32 (n, k): 1, 0 or NaN (unknown -> masked out of the loss)
    patients: list[str]
    label_names: list[str]
    task: str = "multilabel"
    sources: list[str] = field(default_factory=list)  # source name per image
    splits: list[str | None] = field(default_factory=list)  # user-given split per image, None if none
    report: DatasetReport = field(default_factory=DatasetReport)

    def __post_init__(self):
        n = len(self.paths)
        self.labels = np.asarray(self.labels, dtype=np.float32).reshape(n, len(self.label_names))
        if not self.sources:
            self.sources = [""] * n
        if not self.splits:
            self.splits = [None] * n
        if not (len(self.patients) == len(self.sources) == len(self.splits) == n):
            raise ValueError("paths, patients, sources and splits must have one entry per image")
        if self.task not in TASKS:
            raise DatasetError(f"task must be one of {', '.join(TASKS)}, got '{self.task}'")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def name(self) -> str:
        return " + ".join(dict.fromkeys(s for s in self.sources if s)) or "dataset"

    @property
    def has_user_split(self) -> bool:
        return any(s is not None for s in self.splits)

    def subset(self, index) -> "Dataset":
        """The images at ``index`` (indices or bool mask), in that order."""
        idx = np.arange(len(self))[index] if np.asarray(index).dtype == bool else np.asarray(index, dtype=np.int64)
        return Dataset([self.paths[i] for i in idx], self.labels[idx], [self.patients[i] for i in idx],
                       list(self.label_names), self.task, [self.sources[i] for i in idx],
                       [self.splits[i] for i in idx], self.report.copy())

    def without(self, drop: Mapping[int, str]) -> "Dataset":
        """This dataset minus the images ``drop`` maps (index -> "file: reason"), reported."""
        keep = np.ones(len(self), dtype=bool)
        keep[list(drop)] = False
        out = self.subset(keep)
        out.report.unreadable += [drop[i] for i in sorted(drop)]
        return out

    def limit(self, max_images: int, seed: int = 0) -> "Dataset":
        """A random sample of at most ``max_images`` films (kept in path order), noted in the report."""
        if max_images <= 0 or len(self) <= max_images:
            return self
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(self), size=max_images, replace=False))
        out = self.subset(idx)
        out.report.notes.append(f"{self.name}: sampled {max_images} of {len(self)} films (seed {seed})")
        return out

    def summary(self) -> dict:
        """Counts for previews, logs and the model card (no patient IDs)."""
        per_source = {}
        for src in dict.fromkeys(self.sources):
            idx = [i for i, s in enumerate(self.sources) if s == src]
            per_source[src or "dataset"] = {"images": len(idx), "patients": len({self.patients[i] for i in idx})}
        known = ~np.isnan(self.labels)
        pos = np.sum(known & (np.nan_to_num(self.labels) >= 0.5), axis=0)
        return {
            "images": len(self),
            "patients": len(set(self.patients)),
            "task": self.task,
            "sources": per_source,
            "labels": {lab: {"positive": int(p), "negative": int(k - p), "unknown": int(len(self) - k)}
                       for lab, p, k in zip(self.label_names, pos, np.sum(known, axis=0))},
        }


# ---- folder indexing -------------------------------------------------------------------
def index_films(root: Path) -> list[str]:
    """Every film under ``root`` as a '/'-separated relative path, listed once, sorted."""
    from cxrviewer.io import list_films

    root = Path(root)
    return [Path(os.path.relpath(p, root)).as_posix() for p in list_films(root)]


def _check_folder(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{what} folder not found: {path}")
    return path


def _apply_namespace(ids: Iterable[str], namespace: str | None) -> list[str]:
    return [f"{namespace}:{p}" if namespace and p else p for p in ids]


def _multiclass_rows(matrix: np.ndarray, labels: list[str], report: DatasetReport, source: str) -> np.ndarray:
    """Rows with exactly one positive stay one-hot; others become unknown (NaN) and are noted.

    A row with no positive is the "No Finding" class when that is one of the classes.
    """
    y = np.nan_to_num(matrix, nan=0.0)
    if NO_FINDING in labels:
        j = labels.index(NO_FINDING)
        others = np.delete(y, j, axis=1)
        known_row = ~np.all(np.isnan(np.delete(matrix, j, axis=1)), axis=1)
        y[:, j] = np.where(known_row & (others.sum(axis=1) == 0), 1.0, y[:, j])
    ones = (y >= 0.5).sum(axis=1)
    out = np.where((ones == 1)[:, None], (y >= 0.5).astype(np.float32), np.nan)
    bad = int(np.sum(ones != 1))
    if bad:
        report.notes.append(f"{source}: {bad} film(s) have no single class among {', '.join(labels)} "
                            "and are left out of the loss (multi-class needs exactly one)")
    return out


# ---- CSV + image folder ------------------------------------------------------------------
def _read_split_column(csv_path: Path, column: str, image_column: str | None) -> dict[str, str]:
    """image key -> split value from the labels CSV (the label reader keeps only labels)."""
    from cxrviewer.labels import IMAGE_COLUMNS

    raw = csv_path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows = csv.reader(io.StringIO(raw.decode("utf-8-sig", errors="replace")))
    header = [h.strip() for h in next(rows)]
    norm = [re.sub(r"[^0-9a-z]", "", h.lower()) for h in header]
    if column not in header:
        raise DatasetError(f"{csv_path.name}: no split column '{column}' (columns: {', '.join(header)})")
    if image_column:
        img = header.index(image_column) if image_column in header else -1
    else:
        img = next((norm.index(c) for c in IMAGE_COLUMNS if c in norm), -1)
    if img < 0:
        raise DatasetError(f"{csv_path.name}: cannot tell which column names the images")
    sc = header.index(column)
    return {r[img].strip().replace("\\", "/"): r[sc] for r in rows if len(r) > max(img, sc)}


def from_csv(
    csv_path: str | Path,
    image_dir: str | Path,
    labels: Sequence[str] | None = None,
    *,
    name: str | None = None,
    task: str = "multilabel",
    image_column: str | None = None,
    patient_column: str | None = None,
    findings_column: str | None = None,
    split_column: str | None = None,
    patient_namespace: str | None = None,
    label_map: dict[str, str] | None = None,
) -> Dataset:
    """Films in ``image_dir`` (searched recursively) labelled by the rows of ``csv_path``.

    Rows are matched to films by relative path, then file name, then stem (as
    ``cxrviewer.labels`` does for evaluation). Films without a row and rows without a film
    are reported and skipped. Without a patient column every film counts as its own
    patient, which a split cannot protect against leakage: the report says so.
    """
    from cxrviewer.labels import read_label_table

    csv_path = Path(csv_path)
    image_dir = _check_folder(Path(image_dir), "image")
    name = name or image_dir.name
    table = read_label_table(csv_path, labels, image_column=image_column, patient_column=patient_column,
                             findings_column=findings_column, label_map=label_map)
    report = DatasetReport(notes=[f"{name}: {w}" for w in table.warnings])
    films = index_films(image_dir)
    rows = table.match_indices(films)
    found = rows >= 0
    report.unlabelled = [f for f, ok in zip(films, found) if not ok]
    report.missing = len(table) - len(set(rows[found].tolist()))
    if report.missing:
        report.notes.append(f"{name}: {report.missing:,} of {len(table):,} label rows have no film in "
                            f"{image_dir.name}/ (skipped; {int(found.sum()):,} films used)")
    if not found.any():
        raise DatasetError(f"{csv_path.name}: none of the {len(films)} films in {image_dir} has a label row")
    films = [f for f, ok in zip(films, found) if ok]
    rows = rows[found]
    matrix = table.matrix[rows].astype(np.float32)
    label_names = list(table.labels)
    if task == "multiclass":
        matrix = _multiclass_rows(matrix, label_names, report, name)
    if table.patients is not None:
        patients = [table.patients[i] for i in rows]
        if any(not p for p in patients):
            report.notes.append(f"{name}: some rows have an empty patient id; those films count as their own patients")
            patients = [p or f"film:{f}" for p, f in zip(patients, films)]
    else:
        report.notes.append(f"{name}: no patient column; each film counts as its own patient, so a "
                            "patient-level split cannot rule out leakage")
        patients = [f"film:{f}" for f in films]
    splits: list[str | None] = [None] * len(films)
    if split_column:
        by_key = _read_split_column(csv_path, split_column, image_column)
        splits = [normalise_split_name(by_key.get(table.keys[i], "")) for i in rows]
    return Dataset([image_dir / f for f in films], matrix, _apply_namespace(patients, patient_namespace),
                   label_names, task, [name] * len(films), splits, report)


# ---- folder per class ------------------------------------------------------------------
def _class_folders(root: Path) -> list[tuple[str | None, str, Path]]:
    """(split, class, folder) for root/CLASS/ or root/SPLIT/CLASS/ layouts."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise DatasetError(f"{root}: no class folders inside")

    def split_name(p):
        try:
            return normalise_split_name(p.name)
        except ValueError:
            return None

    if all(split_name(p) in SPLITS for p in subdirs):
        out = []
        for sp in subdirs:
            for cls in sorted(p for p in sp.iterdir() if p.is_dir() and not p.name.startswith(".")):
                out.append((split_name(sp), cls.name, cls))
        return out
    return [(None, p.name, p) for p in subdirs]


def from_class_folders(
    root: str | Path,
    *,
    name: str | None = None,
    label_map: Mapping[str, str | Sequence[str]] | None = None,
    labels: Sequence[str] | None = None,
    patient_regex: str | None = None,
    patient_namespace: str | None = None,
) -> Dataset:
    """Films sorted into one folder per class, optionally under train/val/test folders.

    Without ``label_map``: a multi-class dataset, one class per folder name (sorted).
    With ``label_map`` (folder -> label or labels, '' for none, e.g. {"PNEUMONIA":
    "Pneumonia", "NORMAL": ""}): a multi-label dataset over ``labels`` (default: the
    mapped labels). A film is positive for its folder's labels, negative for the other
    mapped labels, and unknown (NaN) for every other label, which the loss then ignores.
    A folder the map does not name is negative for every mapped label.

    ``patient_regex``: a regular expression whose first group (or whole match) in the
    file name is the patient ID, e.g. ``^(person\\d+|(?:NORMAL2-)?IM-\\d+)`` for Kermany;
    without it every film is its own patient (noted in the report).
    """
    root = _check_folder(Path(root), "class")
    name = name or root.name
    report = DatasetReport()
    folders = _class_folders(root)
    classes = sorted({c for _, c, _ in folders})
    pattern = re.compile(patient_regex) if patient_regex else None
    paths, cls_of, splits, patients = [], [], [], []
    unmatched = 0
    for split, cls, folder in folders:
        for rel in index_films(folder):
            path = folder / rel
            paths.append(path)
            cls_of.append(cls)
            splits.append(split)
            if pattern is not None:
                m = pattern.search(path.name)
                if m:
                    patients.append(m.group(1) if m.groups() else m.group(0))
                    continue
                unmatched += 1
            patients.append(f"film:{cls}/{path.name}")
    if not paths:
        raise DatasetError(f"{root}: no films in the class folders")
    if pattern is None:
        report.notes.append(f"{name}: no patient pattern; each film counts as its own patient")
    elif unmatched:
        report.notes.append(f"{name}: {unmatched} file name(s) do not match the patient pattern; "
                            "each counts as its own patient")

    if label_map is None:
        if labels is not None and sorted(labels) != classes:
            missing = sorted(set(classes) - set(labels))
            raise DatasetError(f"{name}: class folders {', '.join(missing)} are not among the labels "
                               f"{', '.join(labels)}; give a label map to map folders to labels")
        label_names = list(labels) if labels is not None else classes
        y = np.zeros((len(paths), len(label_names)), dtype=np.float32)
        for i, c in enumerate(cls_of):
            y[i, label_names.index(c)] = 1.0
        task = "multiclass"
    else:
        mapping = {k: ([v] if isinstance(v, str) else list(v)) for k, v in label_map.items()}
        mapping = {k: [x for x in v if x] for k, v in mapping.items()}
        unknown_folders = sorted(set(mapping) - set(classes))
        if unknown_folders:
            raise DatasetError(f"{name}: label map names folders that do not exist: {', '.join(unknown_folders)} "
                               f"(folders: {', '.join(classes)})")
        mapped = list(dict.fromkeys(x for v in mapping.values() for x in v))
        if not mapped:
            raise DatasetError(f"{name}: the label map maps no folder to a label")
        label_names = list(labels) if labels is not None else mapped
        absent = [x for x in mapped if x not in label_names]
        if absent:
            raise DatasetError(f"{name}: mapped label(s) {', '.join(absent)} are not in the label set")
        y = np.full((len(paths), len(label_names)), np.nan, dtype=np.float32)
        cols = [label_names.index(x) for x in mapped]
        for i, c in enumerate(cls_of):
            y[i, cols] = 0.0
            for lab in mapping.get(c, []):
                y[i, label_names.index(lab)] = 1.0
        task = "multilabel"
        for c in classes:
            report.notes.append(f"{name}: {c} -> " + (", ".join(mapping.get(c, [])) or "negative for "
                                + ", ".join(mapped)))
    return Dataset(paths, y, _apply_namespace(patients, patient_namespace), label_names, task,
                   [name] * len(paths), splits, report)


# ---- combining -------------------------------------------------------------------------
def combine(datasets: Sequence[Dataset], labels: Sequence[str] | None = None,
            drop_duplicates: bool = True) -> Dataset:
    """One dataset from several: union of label names (or ``labels``), NaN where unlabelled.

    A film with the same patient ID and file name in two sources (e.g. the same NIH film
    at 1024 px and as a 64 px thumbnail) is kept once, from the first source listed.
    """
    datasets = [d for d in datasets if len(d)]
    if not datasets:
        raise DatasetError("no films in any source")
    tasks = {d.task for d in datasets}
    if len(tasks) > 1:
        raise DatasetError("cannot combine multi-label and multi-class sources; map class folders "
                           "to findings (label map) to use them in a multi-label model")
    task = tasks.pop()
    names = list(labels) if labels is not None else list(dict.fromkeys(x for d in datasets for x in d.label_names))
    if task == "multiclass" and any(sorted(d.label_names) != sorted(names) for d in datasets):
        raise DatasetError("multi-class sources must have the same classes")
    blocks, paths, patients, sources, splits = [], [], [], [], []
    report = DatasetReport()
    for d in datasets:
        y = np.full((len(d), len(names)), np.nan, dtype=np.float32)
        for j, lab in enumerate(d.label_names):
            if lab in names:
                y[:, names.index(lab)] = d.labels[:, j]
        dropped = [lab for lab in d.label_names if lab not in names]
        if dropped:
            report.notes.append(f"{d.name}: labels not in the label set ignored: {', '.join(dropped)}")
        blocks.append(y)
        paths += d.paths
        patients += d.patients
        sources += d.sources
        splits += d.splits
        report = report.merged(d.report)
    out = Dataset(paths, np.concatenate(blocks), patients, names, task, sources, splits, report)
    if drop_duplicates:
        seen: set[tuple[str, str]] = set()
        keep = np.ones(len(out), dtype=bool)
        for i, (p, path) in enumerate(zip(out.patients, out.paths)):
            key = (p, path.name)
            if key in seen:
                keep[i] = False
            seen.add(key)
        if not keep.all():
            out = out.subset(keep)
            out.report.duplicates += int((~keep).sum())
    return out
