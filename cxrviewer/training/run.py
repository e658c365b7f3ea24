"""A training run from a recipe, end to end, and the ``cxrviewer train`` command.

    recipe -> datasets (sources, union of labels) -> decode once into the grid cache
    (unreadable films reported and dropped) -> patient-level split + leakage check
    -> class weights, normalisation statistics (training films only) -> two-phase fit
    (checkpoints, early stopping, resume) -> validation/test reports (thresholds from
    validation) -> model + card export (atomic, never over an existing model)

Everything lands in the run folder: ``train.log``, ``recipe.toml`` (as run),
``split.csv``, ``checkpoints/``, ``report/validation``, ``report/test``, ``model/`` and
``summary.json``. The GUI wizard drives the same ``run_training`` with its own callback.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrviewer import NOT_FOR_DIAGNOSIS, __version__
from cxrviewer.fsutil import write_json_atomic, write_text_atomic
from cxrviewer.training.datasets import Dataset, DatasetError, combine, from_class_folders, from_csv
from cxrviewer.training.progress import Fanout, LogFile, NullCallback, TextProgress, TrainingCallback
from cxrviewer.training.recipe import Recipe, RecipeError, load_recipe
from cxrviewer.training.split import (
    SPLITS,
    Split,
    SplitError,
    check_split_leakage,
    split_by_patient,
    split_from_values,
)
from cxrviewer.training.weights import binary_class_weights, class_frequencies


FINAL_RESERVE_S = 300.0  # evaluation + export of a DenseNet121 on 2 CPU cores: ~2-3 min


@dataclass
class TrainingOutcome:
    run_dir: Path
    model_path: Path | None
    published_path: Path | None
    card: object | None
    stopped: str
    history: list[dict]
    summary: dict
    notes: list[str] = field(default_factory=list)
    # The evaluation behind the card's numbers (``cxrviewer.metrics.EvaluationReport``):
    # "validation" (thresholds chosen there) and "test" when there is a test split.
    reports: dict = field(default_factory=dict)


# ---- data ---------------------------------------------------------------------------
def build_dataset(recipe: Recipe) -> Dataset:
    """Every source of the recipe, sampled as asked, combined over the recipe's labels."""
    parts = []
    labels = list(recipe.data.labels)
    for src in recipe.data.sources:
        want = src.labels or labels
        if src.kind == "folders":
            if recipe.data.task == "multiclass" and not src.label_map:
                ds = from_class_folders(recipe.data_path(src.folders), name=src.name, labels=want,
                                        patient_regex=src.patient_regex or None,
                                        patient_namespace=src.patient_namespace or None)
            else:
                if not src.label_map:
                    raise RecipeError(f"{recipe.path.name}: source {src.name}: a multi-label recipe needs a "
                                      "label_map from class folders to findings")
                ds = from_class_folders(recipe.data_path(src.folders), name=src.name, labels=want,
                                        label_map=src.label_map, patient_regex=src.patient_regex or None,
                                        patient_namespace=src.patient_namespace or None)
        else:
            ds = from_csv(recipe.data_path(src.csv), recipe.data_path(src.images), want, name=src.name,
                          task=recipe.data.task, image_column=src.image_column or None,
                          patient_column=src.patient_column or None,
                          findings_column=src.findings_column or None,
                          split_column=src.split_column or None,
                          patient_namespace=src.patient_namespace or None, label_map=None)
        if src.max_images:
            ds = ds.limit(src.max_images, seed=src.seed)
        parts.append(ds)
    return combine(parts, labels)


def make_split(recipe: Recipe, dataset: Dataset) -> Split:
    """The recipe's split of ``dataset``, checked for patient leakage (raises LeakageError)."""
    if recipe.split.method == "given":
        if not dataset.has_user_split:
            raise SplitError("split.method = 'given' but no source has a split column or split folders")
        split = split_from_values(dataset.splits, "split given by the sources")
    else:
        split = split_by_patient(dataset.patients, dataset.labels, recipe.split.fractions,
                                 seed=recipe.split.seed, stratify=recipe.split.stratify)
    check_split_leakage(split, dataset.patients)
    for name in ("train", "validation"):
        if len(split.indices(name)) == 0:
            raise SplitError(f"the {name} split is empty ({split.how})")
    return split


def _split_csv(dataset: Dataset, split: Split) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["path", "source", "split"])
    for p, s, a in zip(dataset.paths, dataset.sources, split.assignment):
        w.writerow([str(p), s, a])
    return out.getvalue()


def _split_fingerprint(dataset: Dataset, split: Split) -> str:
    h = hashlib.sha256()
    for p, a in zip(dataset.paths, split.assignment):
        h.update(f"{p}\t{a}\n".encode())
    return h.hexdigest()[:16]


# ---- model ----------------------------------------------------------------------------
def _start_model(recipe: Recipe, labels: list[str], task: str):
    """(builder, preprocess, architecture notes). From scratch or from a .keras + card."""
    from cxrviewer.model.build import build_classifier
    from cxrviewer.model.card import Preprocess

    m = recipe.model
    name = m.name.replace(" ", "_")
    if recipe.start_model is None:
        def build():
            return build_classifier(len(labels), task=task, backbone=m.backbone, input_size=m.input_size,
                                    channels=m.channels, name=name)

        pre = Preprocess(resize=m.resize, crop=m.crop, clahe=m.clahe)  # mean/std measured later
        return build, pre, None

    from cxrviewer.model import load_model

    source = load_model(recipe.start_model)
    card = source.card
    backbone = card.architecture.get("backbone", m.backbone)
    if backbone != m.backbone:
        raise RecipeError(f"model.start {recipe.start_model.name} is a {backbone}, the recipe asks for {m.backbone}")
    if card.input_size != m.input_size or card.input_channels != m.channels:
        raise RecipeError(f"model.start {recipe.start_model.name} takes {card.input_size} px x {card.input_channels} "
                          f"channel(s); set model.input_size/channels to match")
    weights = {layer.name: layer.get_weights() for layer in source.model.layers}
    same_head = list(card.labels) == list(labels) and card.task == task

    def build():
        from cxrviewer.model.build import OUTPUT_LAYER

        model = build_classifier(len(labels), task=task, backbone=m.backbone, input_size=m.input_size,
                                 channels=m.channels, name=name)
        for layer in model.layers:
            if layer.name == OUTPUT_LAYER and not same_head:
                continue  # a new label set gets a new, randomly initialised head
            if layer.name in weights and weights[layer.name]:
                layer.set_weights(weights[layer.name])
        return model

    # Keep the starting model's input normalisation: its features were learnt with it.
    pre = Preprocess(**card.preprocess.to_dict())
    origin = {"start": card.name, "start_sha256": source.checksum, "head": "kept" if same_head else "new"}
    return build, pre, origin


# ---- the run ------------------------------------------------------------------------------
def run_training(recipe: Recipe, *, run_dir: str | Path | None = None, resume: bool = False,
                 callback: TrainingCallback | None = None, max_steps: int | None = None,
                 epochs: int | None = None, overwrite: bool | None = None) -> TrainingOutcome:
    """Run ``recipe`` (see the module docstring). ``max_steps``/``epochs`` shorten a run for
    a smoke test or a time estimate; ``overwrite`` overrides the recipe's output.overwrite."""
    import tensorflow as tf

    from cxrviewer.model.build import default_gradcam_layer
    from cxrviewer.model.card import ModelCard, Preprocess
    from cxrviewer.training.export import INTENDED_USE, check_target, export_model, publish_model
    from cxrviewer.training.fit import CheckpointStore, FitConfig, FitError, fit
    from cxrviewer.training.loss import loss_for
    from cxrviewer.training.pipeline import Augmentation, GridCache, make_dataset, measure_stats
    from cxrviewer.training.report import evaluate_splits

    t_start = time.monotonic()
    run_dir = Path(run_dir) if run_dir is not None else recipe.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    callback = Fanout(callback or NullCallback(), LogFile(run_dir / "train.log"))
    say = callback.on_message
    overwrite = recipe.output.overwrite if overwrite is None else bool(overwrite)
    m, t = recipe.model, recipe.train
    model_path = run_dir / "model" / f"{m.name}.keras"
    publish = recipe.publish_path
    shortened = bool(max_steps) or epochs is not None
    if shortened and publish is not None:
        say_later = f"shortened run (--max-steps/--epochs): the model is not published to {publish}"
        publish = None
    else:
        say_later = None
    # Fail before hours of training, not after.
    if CheckpointStore(run_dir / "checkpoints").exists() and not resume:
        raise FitError(f"{run_dir} already holds a training run; use --resume or another --out folder")
    if not resume:
        check_target(model_path, overwrite)
    if publish is not None:
        check_target(publish, overwrite)
    write_text_atomic(run_dir / "recipe.toml", recipe.text or "")
    say(f"cxrviewer {__version__} training '{m.name}' in {run_dir}. {NOT_FOR_DIAGNOSIS}")
    if say_later:
        say(say_later)

    # -- data
    dataset = build_dataset(recipe)
    labels, task = list(dataset.label_names), dataset.task
    for line in dataset.report.lines():
        say(line)
    build, pre, origin = _start_model(recipe, labels, task)
    cache = GridCache(dataset.paths, m.input_size, pre, directory=run_dir / ".cache")
    say(f"decoding {len(dataset)} films onto the {m.input_size} px grid ({cache.decoded} cached)")
    last = [0.0]

    def decode_progress(done, total):
        now = time.monotonic()
        if done == total or now - last[0] > 10:
            last[0] = now
            say(f"decoded {done}/{total}")

    failures = cache.fill(workers=t.workers, progress=decode_progress)
    kept = np.asarray([i for i in range(len(dataset)) if i not in failures], dtype=np.int64)
    usable = dataset.without(failures)
    if failures:
        say(f"{len(failures)} film(s) could not be read and are left out: "
            + "; ".join(list(failures.values())[:5]) + (" ..." if len(failures) > 5 else ""))
    split = make_split(recipe, usable)
    counts = split.counts(usable.patients)
    for note in split.notes:
        say(note)
    say(f"split ({split.how}): " + ", ".join(
        f"{k} {v['images']} films / {v['patients']} patients" for k, v in counts.items()))
    idx = {name: kept[split.indices(name)] for name in SPLITS}  # rows of the cache
    train_labels = dataset.labels[idx["train"]]
    freqs = class_frequencies(train_labels, labels)
    untrained = freqs.untrainable() if task == "multilabel" else []
    if untrained:
        say(f"no positive or no negative training film for: {', '.join(untrained)} (marked untrained in the card)")
    write_text_atomic(run_dir / "split.csv", _split_csv(usable, split))

    # -- normalisation statistics: training films only
    if recipe.start_model is None:
        stats = measure_stats([dataset.paths[i] for i in idx["train"]], size=m.input_size, spec=pre,
                              max_images=m.stats_images, seed=recipe.split.seed, cache=cache)
        pre = Preprocess(resize=pre.resize, crop=pre.crop, clahe=pre.clahe,
                         mean=round(stats.mean, 6), std=round(stats.std, 6))
        say(f"normalisation: mean {pre.mean:.4f}, std {pre.std:.4f} over {stats.images} training films")
    else:
        say(f"normalisation: kept from the starting model (mean {pre.mean}, std {pre.std})")
    from cxrviewer.training.pipeline import NormStats

    norm = NormStats(float(np.mean(pre.mean)), float(np.mean(pre.std)), 0)
    if isinstance(pre.mean, list) or isinstance(pre.std, list):
        norm = NormStats(pre.mean, pre.std, 0)  # type: ignore[arg-type]

    # -- fit
    aug = Augmentation(t.rotation_deg, t.shift, t.zoom, t.brightness, t.contrast, t.horizontal_flip) if t.augment else None
    loss = loss_for(task, train_labels, labels)
    common = dict(stats=norm, channels=m.channels, batch_size=t.batch_size)
    train_ds = make_dataset(cache, idx["train"], dataset.labels, training=True, augmentation=aug,
                            seed=t.seed, **common)
    val_ds = make_dataset(cache, idx["validation"], dataset.labels, training=False, **common)
    test_ds = make_dataset(cache, idx["test"], dataset.labels, training=False, **common) if len(idx["test"]) else None
    head, fine = t.head_epochs, t.finetune_epochs
    if epochs is not None:  # a shortened run: keep the phase order, cap the total
        head, fine = min(head, epochs), max(0, min(fine, epochs - min(head, epochs)))
    config = FitConfig(batch_size=t.batch_size, head_epochs=head, head_lr=t.head_lr, finetune_epochs=fine,
                       finetune_lr=t.finetune_lr, patience=t.patience, min_delta=t.min_delta,
                       freeze_batchnorm=t.freeze_batchnorm, from_scratch=recipe.start_model is None,
                       mixed_precision=t.mixed_precision,
                       max_steps_per_epoch=max_steps if max_steps is not None else t.max_steps_per_epoch,
                       seed=t.seed)
    if t.max_minutes:
        # What is left of the run's budget, minus a reserve for the final evaluation and
        # export (about two validation passes, a test pass and writing the model).
        config.max_train_seconds = max(60.0, t.max_minutes * 60 - (time.monotonic() - t_start) - FINAL_RESERVE_S)
    fingerprint = _split_fingerprint(usable, split)
    result = fit(build, train_ds, len(idx["train"]), val_ds, loss, labels, task, config, run_dir, callback,
                 resume=resume, extra_state={"split": fingerprint, "mean": pre.mean, "std": pre.std})
    if result.history:
        _say_estimate(say, result.history, len(idx["train"]), t.batch_size, t.head_epochs + t.finetune_epochs)
    if result.stopped == "cancelled":
        summary = {"stopped": "cancelled", "epochs": len(result.history), "run_dir": str(run_dir)}
        write_json_atomic(run_dir / "summary.json", summary)
        return TrainingOutcome(run_dir, None, None, None, "cancelled", result.history, summary)

    # -- evaluation: thresholds from validation, test at those thresholds
    callback.on_phase_start("evaluate", 0)  # no more batches: a UI can say so (no pause here)
    say("evaluating on the validation and test splits")
    val_report, test_report, thresholds = evaluate_splits(
        result.model, val_ds, test_ds, labels, task, run_dir / "report", n_bootstrap=recipe.output.bootstrap,
        seed=recipe.split.seed, model_name=m.name)

    # -- card + export
    sources = {}
    for src in dict.fromkeys(usable.sources):
        rows = [i for i, s in enumerate(usable.sources) if s == src]
        known = ~np.isnan(usable.labels[rows])
        sources[src] = {"images": len(rows), "patients": len({usable.patients[i] for i in rows}),
                        "labelled": [lab for j, lab in enumerate(labels) if known[:, j].any()]}
    wall = time.monotonic() - t_start
    history = [{k: h.get(k) for k in ("epoch", "phase", "loss", "val_loss", "val_auroc", "seconds")}
               for h in result.history]
    training = {
        "data": "; ".join(f"{s}: {v['images']} films, {v['patients']} patients, labels "
                          + (", ".join(v["labelled"]) if len(v["labelled"]) < len(labels) else f"all {len(labels)}")
                          for s, v in sources.items()),
        "sources": sources,
        "patients": len(set(usable.patients)),
        "images": len(usable),
        "split": split.how,
        "splits": counts,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped": result.stopped,
        "wall_time_s": round(wall, 1),
        "train_time_s": round(result.train_seconds, 1),
        "device": result.device,
        "replicas": result.replicas,
        "recipe": recipe.path.name,
        "recipe_sha256": hashlib.sha256((recipe.text or "").encode()).hexdigest(),
        "settings": recipe.to_dict(),
        "loss": ("weighted binary cross-entropy, w_pos = 1 - p, w_neg = p per class, unknown labels masked"
                 if task == "multilabel" else "inverse-frequency weighted categorical cross-entropy"),
        "class_weights": binary_class_weights(freqs).to_dict() if task == "multilabel" else None,
        "normalisation": ("measured on training films" if recipe.start_model is None else "from the starting model"),
        "augmentation": aug.to_dict() if aug else None,
        "history": history,
        "start": origin or "random initialisation (from scratch)",
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "software": {"cxrviewer": __version__, "tensorflow": tf.__version__, "python": sys.version.split()[0]},
    }
    if shortened:
        training["shortened"] = {"max_steps_per_epoch": max_steps, "epochs": epochs}
    val_auroc = {c.label: c.auroc for c in val_report.classes}
    metrics = {
        "validation_auroc": val_auroc,
        "validation_auroc_ci95": {c.label: [c.ci_low, c.ci_high] for c in val_report.classes},
        "validation_mean_auroc": val_report.mean_auroc,
        "validation_images": val_report.n_cases,
    }
    if test_report is not None:
        metrics["test_auroc"] = {c.label: c.auroc for c in test_report.classes}
        metrics["test_auroc_ci95"] = {c.label: [c.ci_low, c.ci_high] for c in test_report.classes}
        metrics["test_mean_auroc"] = test_report.mean_auroc
        metrics["test_images"] = test_report.n_cases
    card = ModelCard(
        name=m.name, task=task, labels=labels, input_size=m.input_size, input_channels=m.channels,
        preprocess=pre, gradcam_layer=default_gradcam_layer(m.backbone),
        thresholds=thresholds.values, threshold_rule=thresholds.rule, training=training, metrics=metrics,
        intended_use=INTENDED_USE, untrained_labels=untrained,
        architecture={"backbone": m.backbone, "input_size": m.input_size, "channels": m.channels,
                      "head": "global average pooling + dense " + ("sigmoid" if task == "multilabel" else "softmax")},
        source={"recipe": recipe.path.name},
    )
    exported = export_model(result.model, card, model_path, overwrite=overwrite or resume)
    say(f"model written: {exported}")
    published = None
    if publish is not None:
        published = publish_model(exported, publish, overwrite=overwrite)
        say(f"model published: {published}")
    summary = {"model": str(exported), "published": str(published) if published else None,
               "stopped": result.stopped, "epochs": len(result.history), "best_epoch": result.best_epoch,
               "validation_mean_auroc": val_report.mean_auroc,
               "test_mean_auroc": test_report.mean_auroc if test_report else None,
               "wall_time_s": round(time.monotonic() - t_start, 1), "splits": counts,
               "dataset_notes": usable.report.lines(), "split_notes": split.notes}
    write_json_atomic(run_dir / "summary.json", summary)
    say(f"done in {summary['wall_time_s']:.0f} s: validation mean AUROC "
        f"{_fmt(val_report.mean_auroc)}, test {_fmt(summary['test_mean_auroc'])}")
    reports = {"validation": val_report, **({"test": test_report} if test_report is not None else {})}
    return TrainingOutcome(run_dir, exported, published, card, result.stopped, result.history, summary,
                           result.notes, reports)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _say_estimate(say, history, n_train, batch_size, planned_epochs) -> None:
    """Time per full epoch and for the whole plan, from the epochs just run."""
    h = history[-1]
    per_step = h.get("step_seconds") or h["train_seconds_epoch"] / (h.get("steps") or 1)
    full_steps = -(-n_train // batch_size)
    full_epoch = per_step * full_steps + h.get("val_seconds", 0.0)
    say(f"time: {per_step:.2f} s per training batch; a full epoch ({full_steps} batches + validation) "
        f"~ {full_epoch / 60:.1f} min; {planned_epochs} epochs ~ {planned_epochs * full_epoch / 60:.0f} min")


# ---- command line -----------------------------------------------------------------------
def train_command(args) -> int:
    """``cxrviewer train CONFIG [--out DIR] [--resume] [--max-steps N] [--epochs N] [--overwrite]``."""
    from cxrviewer.training.export import ExportError
    from cxrviewer.training.fit import FitError

    try:
        recipe = load_recipe(args.config)
        outcome = run_training(recipe, run_dir=Path(args.out) if getattr(args, "out", None) else None,
                               resume=bool(getattr(args, "resume", False)), callback=TextProgress(),
                               max_steps=getattr(args, "max_steps", None), epochs=getattr(args, "epochs", None),
                               overwrite=True if getattr(args, "overwrite", False) else None)
    except (RecipeError, DatasetError, SplitError, FitError, ExportError) as exc:
        print(f"cxrviewer train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cxrviewer train: interrupted; the last finished epoch is checkpointed "
              "(run again with --resume)", file=sys.stderr)
        return 130
    if outcome.stopped == "cancelled":
        return 1
    print(f"model: {outcome.model_path}" + (f"\npublished: {outcome.published_path}" if outcome.published_path else ""))
    return 0
