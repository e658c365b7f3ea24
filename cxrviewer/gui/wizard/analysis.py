"""The wizard's background work before training, on the training pipeline's own code (no Qt).

Every function here runs on a worker thread and calls the pipeline rather than
re-implementing it: ``run.build_dataset`` for the preview, ``io.load_film`` (the loader the
pipeline decodes with) for the readability check, ``run.make_split`` for the split and
its leakage check, ``weights`` for the class-frequency chart, and ``fit.measure_step_seconds``
on a real ``make_dataset`` batch stream for the time estimate. What comes back is plain
data the pages draw; ``problems`` turns bad data into explanations with ways forward.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrviewer.gui.wizard.plan import CSV, WizardPlan
from cxrviewer.training.datasets import Dataset, DatasetError, from_class_folders
from cxrviewer.training.recipe import RecipeError
from cxrviewer.training.split import SPLITS, LeakageError, Split, SplitError, normalise_split_name
from cxrviewer.training.weights import (
    binary_class_weights,
    class_frequencies,
    multiclass_class_weights,
)

FILM_PATIENT_PREFIX = "film:"  # datasets.py's patient id for a film without one
NORMAL_FOLDER_NAMES = {"normal", "nofinding", "no_finding", "healthy", "negative", "0_normal"}

# Problem severities: BLOCK must be fixed; DECIDE needs the user to pick a way forward
# (a fix or "keep"); NOTE is information only.
BLOCK, DECIDE, NOTE = "block", "decide", "note"


class AnalysisError(ValueError):
    """The data cannot be used as chosen; the message says why in one line."""


# ---- inspecting a CSV or a class-folder tree ----------------------------------------------
@dataclass
class CsvInfo:
    path: Path
    columns: list[str]
    rows: int
    layout: str  # "nih", "findings" or "columns" (cxrviewer.labels)
    labels: list[str]
    image_column: str | None
    patient_column: str | None  # detected; None: the file names no patients
    split_columns: list[str]  # columns whose values are train/validation/test names
    warnings: list[str] = field(default_factory=list)


def inspect_csv(path: str | Path) -> CsvInfo:
    """Columns, layout and labels of a labels CSV (read by ``cxrviewer.labels``)."""
    from cxrviewer.labels import (
        IMAGE_COLUMNS,
        PATIENT_COLUMNS,
        LabelFileError,
        _find_column,
        _read_rows,
        read_label_table,
    )

    path = Path(path)
    try:
        rows = _read_rows(path)
        table = read_label_table(path)
    except LabelFileError as exc:
        raise AnalysisError(str(exc)) from None
    header = [h.strip() for h in rows[0]]
    img = _find_column(header, IMAGE_COLUMNS)
    pat = _find_column(header, PATIENT_COLUMNS)
    splits = []
    for j, name in enumerate(header):
        values = {r[j].strip() for r in rows[1:2001] if len(r) > j and r[j].strip()}
        if not values or len(values) > 3 or j in (img, pat):
            continue
        try:
            if all(normalise_split_name(v) in SPLITS for v in values):
                splits.append(name)
        except SplitError:
            continue
    return CsvInfo(path, header, len(rows) - 1, table.layout, list(table.labels),
                   header[img] if img is not None else None, header[pat] if pat is not None else None,
                   splits, list(table.warnings))


@dataclass
class FolderInfo:
    root: Path
    classes: list[str]
    films: dict[str, int]  # class -> films
    split_folders: list[str]  # e.g. ["train", "test"] when the tree has split folders


def inspect_folders(root: str | Path) -> FolderInfo:
    """Classes (folder names) and films per class of a folder-per-class tree."""
    try:
        ds = from_class_folders(root)
    except DatasetError as exc:
        raise AnalysisError(str(exc)) from None
    counts = {c: int(np.sum(ds.labels[:, j] >= 0.5)) for j, c in enumerate(ds.label_names)}
    splits = sorted({s for s in ds.splits if s}, key=SPLITS.index)
    return FolderInfo(Path(root), list(ds.label_names), counts, splits)


def default_label_map(classes: list[str]) -> dict[str, str]:
    """Folder -> finding for a multi-label model: a 'normal' folder is negative for all."""
    return {c: ("" if c.lower().replace(" ", "") in NORMAL_FOLDER_NAMES else c) for c in classes}


# ---- the data preview -----------------------------------------------------------------------
@dataclass
class DataPreview:
    dataset: Dataset
    films: int
    patients: int
    has_patients: bool  # False: every film is its own patient (no patient column / pattern)
    missing_rows: int  # label rows whose film is not in the folder
    unlabelled: list[str]  # films in the folder without a label row
    per_label: dict[str, dict[str, int]]  # label -> positive / negative / unknown
    notes: list[str]
    seconds: float = 0.0


def build_plan_dataset(plan: WizardPlan) -> Dataset:
    """The dataset ``run_training`` will build for this plan (its own ``build_dataset``)."""
    from cxrviewer.training.run import build_dataset

    try:
        return build_dataset(plan.to_recipe())
    except (RecipeError, DatasetError, SplitError, ValueError) as exc:
        raise AnalysisError(str(exc)) from None
    except OSError as exc:
        raise AnalysisError(f"cannot read the data: {exc}") from None


def preview_data(plan: WizardPlan) -> DataPreview:
    t0 = time.monotonic()
    ds = build_plan_dataset(plan)
    summary = ds.summary()
    has_patients = any(not p.startswith(FILM_PATIENT_PREFIX) for p in ds.patients)
    return DataPreview(ds, len(ds), summary["patients"], has_patients, ds.report.missing,
                       list(ds.report.unlabelled), summary["labels"], ds.report.lines(),
                       time.monotonic() - t0)


# ---- readable films -------------------------------------------------------------------------
def find_unreadable(paths: list[Path], *, workers: int = 2, progress: Callable[[int, int], None] | None = None,
                    cancelled: Callable[[], bool] | None = None) -> dict[int, str]:
    """{index: "file: reason"} for the films ``cxrviewer.io.load_film`` cannot read.

    The pipeline decodes with the same loader and drops the same films, so this list is
    what training will leave out. Stops early (returning what it has) when ``cancelled``.
    """
    from cxrviewer.io import FilmError, load_film

    bad: dict[int, str] = {}
    lock = threading.Lock()
    done = [0]
    total = len(paths)
    last = [0.0]

    def check(i: int) -> None:
        if cancelled is not None and cancelled():
            return
        try:
            load_film(paths[i])
        except FilmError as exc:
            with lock:
                bad[i] = str(exc)
        except Exception as exc:  # noqa: BLE001 - a decoder bug is this film's problem only
            with lock:
                bad[i] = f"{Path(paths[i]).name}: {' '.join(str(exc).split()) or type(exc).__name__}"
        with lock:
            done[0] += 1
            now = time.monotonic()
            if progress is not None and (now - last[0] > 0.1 or done[0] == total):
                last[0] = now
                progress(done[0], total)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="wizard-check") as pool:
        list(pool.map(check, range(total)))
    return dict(sorted(bad.items()))


# ---- split, leakage, class balance and problems -----------------------------------------------
@dataclass
class Fix:
    action: str  # "drop", "keep", "patient_split", "films_as_patients", "patient_column", "reseed"
    caption: str
    arg: str = ""


@dataclass
class Problem:
    key: str  # stable id, e.g. "no-positives:Hernia" (what "keep" remembers)
    severity: str  # BLOCK, DECIDE or NOTE
    text: str
    fixes: list[Fix] = field(default_factory=list)


@dataclass
class SplitCheck:
    split: Split | None
    how: str
    counts: dict[str, dict[str, int]]  # split -> images / patients
    positives: dict[str, dict[str, int]]  # split -> label -> positive films
    leakage_ok: bool | None  # None: no split to check
    leakage_text: str
    labels: list[str]
    task: str
    contributions: dict[str, np.ndarray] = field(default_factory=dict)  # see weights.contributions
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # w_pos/w_neg (or w per class)
    problems: list[Problem] = field(default_factory=list)
    usable: Dataset | None = None

    @property
    def blocking(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == BLOCK]


def _contributions(task: str, train_labels: np.ndarray, labels: list[str]):
    """The method's chart data: positive and negative share per class, before and after weighting."""
    freqs = class_frequencies(train_labels, labels)
    if task == "multilabel":
        w = binary_class_weights(freqs)
        return w.contributions(freqs), {"w_pos": w.w_pos, "w_neg": w.w_neg}
    counts = freqs.positives.astype(np.float64)
    n = max(float(counts.sum()), 1.0)
    try:
        w = multiclass_class_weights(freqs).astype(np.float64)
    except ValueError:
        w = np.zeros_like(counts)
    after = counts * w
    return ({"positive_before": counts / n, "negative_before": 1.0 - counts / n,
             "positive_after": after / max(after.sum(), 1e-12), "negative_after": 1.0 - after / max(after.sum(), 1e-12)},
            {"w": w})


def check_split(plan: WizardPlan, dataset: Dataset, unreadable: dict[int, str],
                accepted: set[str] | None = None) -> SplitCheck:
    """Split (the pipeline's ``make_split``, leakage check included), per-split counts,
    the class-balance chart data and the problems with their ways forward."""
    from cxrviewer.training.run import make_split

    accepted = accepted or set()
    labels, task = list(dataset.label_names), dataset.task
    problems: list[Problem] = []
    can_drop = plan.source_kind == CSV or task == "multilabel"

    def drop_fixes(label: str, keep_caption: str) -> list[Fix]:
        fixes = [Fix("drop", f"Drop {label}", label)] if can_drop and len(labels) > (2 if task == "multiclass" else 1) else []
        return fixes + ([Fix("keep", keep_caption)] if keep_caption else [])

    # -- patients
    if not any(not p.startswith(FILM_PATIENT_PREFIX) for p in dataset.patients):
        where = "the CSV has no patient column" if plan.source_kind == CSV else "no patient ID pattern is given"
        fixes = ([Fix("patient_column", "Choose the patient column…")] if plan.source_kind == CSV
                 else [Fix("patient_column", "Give a patient ID pattern…")])
        fixes.append(Fix("films_as_patients", "Treat each film as its own patient"))
        problems.append(Problem(
            "no-patients", NOTE if plan.films_as_patients else BLOCK,
            f"No patient IDs: {where}, so each film counts as its own patient. Films of one patient "
            "could then land in both training and validation, and the validation AUROC would look "
            "better than the model is (leakage)." + (" You accepted this risk." if plan.films_as_patients else ""),
            [] if plan.films_as_patients else fixes))

    # -- unreadable films
    usable = dataset.without(unreadable) if unreadable else dataset
    if unreadable:
        shown = "; ".join(list(unreadable.values())[:3]) + (" …" if len(unreadable) > 3 else "")
        if len(usable) == 0:
            problems.append(Problem("unreadable", BLOCK, f"None of the {len(dataset)} films can be read ({shown}). "
                                    "Choose another image folder."))
        else:
            problems.append(Problem("unreadable", NOTE, f"{len(unreadable)} film(s) cannot be read and will be left "
                                    f"out of training: {shown}"))
    if len(usable) == 0:
        return SplitCheck(None, "", {}, {}, None, "no films", labels, task, problems=problems, usable=usable)

    # -- the split and its leakage check
    recipe = plan.to_recipe()
    split, how, leak_ok, leak_text = None, "", None, ""
    try:
        split = make_split(recipe, usable)
        how = split.how
        leak_ok = True
        n_pat = len(set(usable.patients))
        leak_text = (f"No patient has films in two splits ({n_pat} patients checked)." if any(
            not p.startswith(FILM_PATIENT_PREFIX) for p in usable.patients)
            else "Each film is its own patient: the check cannot see leakage between films of one patient.")
    except LeakageError as exc:
        leak_ok, leak_text = False, str(exc)
        problems.append(Problem("leakage", BLOCK, f"The split leaks patients: {exc}",
                                [Fix("patient_split", "Split by patient instead")]))
    except SplitError as exc:
        problems.append(Problem("split", BLOCK, f"The split cannot be used: {exc}.",
                                [Fix("patient_split", "Split by patient instead")]
                                if plan.split_method == "given" else []))
    if split is None:
        return SplitCheck(None, how, {}, {}, leak_ok, leak_text, labels, task, problems=problems, usable=usable)

    counts = split.counts(usable.patients)
    y = usable.labels
    positives = {}
    for name in SPLITS:
        idx = split.indices(name)
        pos = (np.nan_to_num(y[idx], nan=0.0) >= 0.5).sum(axis=0) if len(idx) else np.zeros(len(labels))
        positives[name] = {lab: int(p) for lab, p in zip(labels, pos)}
    train_idx = split.indices("train")
    train_labels = y[train_idx]
    contributions, weights = _contributions(task, train_labels, labels)
    freqs = class_frequencies(train_labels, labels)

    # -- per-class trouble
    for j, lab in enumerate(labels):
        pos, neg = int(freqs.positives[j]), int(freqs.negatives[j])
        if pos == 0 or (task == "multilabel" and neg == 0):
            key = f"untrainable:{lab}"
            what = ("no positive" if pos == 0 else "no negative") + " training film"
            if task == "multiclass":
                problems.append(Problem(key, BLOCK, f"{lab}: {what}; a class the model never sees cannot be "
                                        "learnt.", drop_fixes(lab, "")
                                        + ([Fix("patient_split", "Split by patient instead")]
                                           if plan.split_method == "given" else [])))
            else:
                problems.append(Problem(key, NOTE if key in accepted else DECIDE,
                                        f"{lab}: {what} ({pos} positive, {neg} negative known labels in training). "
                                        "Nothing can be learnt for it: kept, it is marked untrained in the card "
                                        "and never shown as a finding.",
                                        [] if key in accepted else drop_fixes(lab, "Keep it, marked untrained")))
            continue
        present = [name for name in SPLITS if positives[name][lab] > 0]
        if positives["validation"][lab] == 0:
            key = f"one-split:{lab}"
            only = "only in " + " and ".join(present) if present else "nowhere"
            problems.append(Problem(
                key, NOTE if key in accepted else DECIDE,
                f"{lab}: positive films {only}, none in validation. Its validation AUROC cannot be "
                "estimated, early stopping ignores it and its threshold falls back to 0.5.",
                [] if key in accepted else drop_fixes(lab, "Keep it anyway")
                + [Fix("reseed", "Try another split seed")] * (plan.split_method == "patients")))
    for note in split.notes:
        problems.append(Problem("split-note", NOTE, note))
    return SplitCheck(split, how, counts, positives, leak_ok, leak_text, labels, task, contributions, weights,
                      problems, usable)


# ---- a run folder's checkpoint ----------------------------------------------------------------
def checkpoint_state(run_dir: str | Path) -> dict | None:
    """The state stored with the last checkpoint of a run folder (epoch, phase, history...),
    read the way ``fit.CheckpointStore`` writes it but without importing TensorFlow;
    None when the folder holds no readable checkpoint. A few KB of JSON."""
    import json

    latest = Path(run_dir) / "checkpoints" / "latest.json"
    try:
        name = json.loads(latest.read_text())["checkpoint"]
        state = json.loads((latest.parent / name / "state.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if isinstance(state, dict) else None


# ---- time per epoch ----------------------------------------------------------------------------
@dataclass
class TimeEstimate:
    step_seconds: float  # one training batch, steady state
    steps_per_epoch: int
    train_films: int
    validation_films: int
    validation_seconds: float  # estimated: a forward pass costs about a third of a training step
    device: str = ""

    @property
    def epoch_seconds(self) -> float:
        return self.step_seconds * self.steps_per_epoch + self.validation_seconds

    def total_seconds(self, epochs: int) -> float:
        return self.epoch_seconds * max(0, epochs)


FORWARD_SHARE = 0.35  # inference / training step time, measured for DenseNet121 on CPU


def estimate_time(plan: WizardPlan, dataset: Dataset, unreadable: dict[int, str], steps: int = 3,
                  cancelled: Callable[[], bool] | None = None) -> TimeEstimate:
    """Seconds per training batch measured with ``fit.measure_step_seconds`` on real films of
    this dataset at the chosen size and batch (after one warm-up batch), and what that
    means for a full epoch of this split."""
    from cxrviewer.model.card import Preprocess
    from cxrviewer.model.device import configure_device
    from cxrviewer.training.fit import measure_step_seconds
    from cxrviewer.training.loss import loss_for
    from cxrviewer.training.pipeline import GridCache, NormStats, make_dataset
    from cxrviewer.training.run import _start_model, make_split

    recipe = plan.to_recipe()
    usable = dataset.without(unreadable) if unreadable else dataset
    try:
        split = make_split(recipe, usable)
    except SplitError as exc:
        raise AnalysisError(f"fix the split first ({exc})") from None
    train = split.indices("train")
    n_train, n_val = len(train), len(split.indices("validation"))
    if cancelled is not None and cancelled():
        raise AnalysisError("cancelled")
    device = configure_device()
    try:
        build, pre, _ = _start_model(recipe, list(usable.label_names), usable.task)
    except (RecipeError, OSError, ValueError) as exc:
        raise AnalysisError(str(exc)) from None
    # Enough real films for the warm-up batch and the timed ones, decoded at the chosen size.
    batch = int(plan.batch_size)
    need = min(n_train, batch * (steps + 1))
    rows = np.asarray(train[:need], dtype=np.int64)
    cache = GridCache([usable.paths[i] for i in rows], plan.input_size, Preprocess(**pre.to_dict()))
    bad = cache.fill(workers=min(4, os.cpu_count() or 2))
    if len(bad) == len(rows):
        raise AnalysisError("none of the films sampled for the estimate could be read")
    labels = usable.labels[rows]
    ds = make_dataset(cache, np.arange(len(rows)), labels, stats=NormStats(0.5, 0.25, 0), channels=3,
                      batch_size=batch, training=True, augmentation=None)
    loss = loss_for(usable.task, usable.labels[train], list(usable.label_names))
    step = measure_step_seconds(build, ds, loss, steps=steps, lr=plan.finetune_lr)
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    if plan.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, int(plan.max_steps_per_epoch))
    val_s = FORWARD_SHARE * step * math.ceil(n_val / batch)
    summary = getattr(device, "summary", None)
    return TimeEstimate(step, steps_per_epoch, n_train, n_val, val_s, summary() if summary else str(device))
