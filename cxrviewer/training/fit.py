"""Two-phase fine-tuning with checkpoints, early stopping on validation AUROC, and resume.

Phase "head": backbone frozen, only the output layer learns (fast, and it cannot wreck
pretrained features while the new head is still random). Phase "finetune": every layer
learns, at a lower learning rate. From scratch there is nothing to protect, so a recipe
sets the head phase to 0 epochs.

Every finished epoch is checkpointed atomically (weights, optimizer state, epoch, phase,
history, early-stopping state) under ``run_dir/checkpoints``; ``resume=True`` continues
from the last one with no finished epoch lost. Training runs inside a ``tf.distribute``
strategy: MirroredStrategy over all GPUs when there are several, the default strategy on
one GPU or the CPU, with no other code change.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxrviewer.fsutil import atomic_path, write_json_atomic
from cxrviewer.training.progress import NullCallback, TrainingCallback

PHASES = ("head", "finetune")
CHECKPOINT_FORMAT = 1


class FitError(RuntimeError):
    """Training cannot start or continue (no checkpoint to resume, run folder in use...)."""


@dataclass
class FitConfig:
    batch_size: int = 16
    head_epochs: int = 1
    head_lr: float = 1e-3
    finetune_epochs: int = 5
    finetune_lr: float = 1e-4
    patience: int = 3  # epochs without a better validation AUROC before a phase stops
    min_delta: float = 1e-3
    # BatchNorm in the fine-tune phase: "auto" freezes it when starting from trained
    # weights and trains it from scratch (see _set_phase_trainable).
    freeze_batchnorm: str | bool = "auto"
    from_scratch: bool = True
    mixed_precision: bool = False
    max_steps_per_epoch: int = 0  # 0: the whole training set every epoch
    # Wall-clock budget for this call's epochs (0: none): no epoch is started that would
    # not finish within it, judged by the last epoch's duration.
    max_train_seconds: float = 0.0
    seed: int = 0

    def phase_plan(self) -> list[tuple[str, int, float]]:
        return [("head", int(self.head_epochs), float(self.head_lr)),
                ("finetune", int(self.finetune_epochs), float(self.finetune_lr))]

    @property
    def total_epochs(self) -> int:
        return int(self.head_epochs) + int(self.finetune_epochs)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    model: keras.Model
    history: list[dict]
    best_epoch: int | None
    best_val_auroc: float | None
    stopped: str  # "completed", "cancelled", "time budget"
    epochs_run: int
    train_seconds: float
    device: str
    replicas: int
    notes: list[str] = field(default_factory=list)


def choose_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over every GPU when there are several, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def measure_step_seconds(build_model: Callable[[], keras.Model], train_ds: tf.data.Dataset, loss,
                         steps: int = 3, lr: float = 1e-3) -> float:
    """Seconds per training batch, timed on ``steps`` batches after one warm-up batch.

    The warm-up batch traces the graph (slow, once per run) and is not counted. For the
    wizard's "time per epoch" estimate: multiply by the number of batches per epoch.
    """
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss, jit_compile=False)
    batches = iter(train_ds.repeat())
    x, y = next(batches)
    model.train_on_batch(x, y)
    start = time.monotonic()
    for _ in range(max(1, steps)):
        x, y = next(batches)
        model.train_on_batch(x, y)
    return (time.monotonic() - start) / max(1, steps)


# ---- checkpoints ----------------------------------------------------------------------
class CheckpointStore:
    """``checkpoints/epoch-NNN/`` folders plus ``latest.json`` naming the newest complete one.

    A checkpoint is written into a temp folder, renamed into place, and only then does
    ``latest.json`` (written atomically) point at it; a crash at any moment leaves the
    previous checkpoint intact and findable. The best weights so far (by validation AUROC)
    are kept in ``best-epoch-NNN.weights.h5``, named by the checkpoint state, so a crash
    between the two writes cannot pair a history with another epoch's weights.
    """

    def __init__(self, directory: str | Path, keep: int = 2):
        self.dir = Path(directory)
        self.keep = keep

    @property
    def latest_file(self) -> Path:
        return self.dir / "latest.json"

    def best_weights(self, epoch: int) -> Path:
        return self.dir / f"best-epoch-{epoch:03d}.weights.h5"

    def exists(self) -> bool:
        return self.latest_file.exists()

    def save(self, model: keras.Model, optimizer, state: dict) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{state['epoch']:03d}"
        final = self.dir / name
        tmp = self.dir / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save_weights(tmp / "model.weights.h5")
        store: dict[str, np.ndarray] = {}
        optimizer.save_own_variables(store)
        np.savez(tmp / "optimizer.npz", **store)
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        if final.exists():  # a re-run of this epoch after a resume: replace the old one
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_json_atomic(self.latest_file, {"format": CHECKPOINT_FORMAT, "checkpoint": name,
                                             "epoch": state["epoch"], "phase": state["phase"]})
        for old in sorted(self.dir.glob("epoch-*"))[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        best = state.get("best_epoch")
        for old in self.dir.glob("best-epoch-*.weights.h5"):
            if best is None or old != self.best_weights(best):
                old.unlink(missing_ok=True)
        return final

    def save_best(self, model: keras.Model, epoch: int) -> None:
        with atomic_path(self.best_weights(epoch), suffix=".weights.h5") as tmp:
            model.save_weights(tmp)

    def load_state(self) -> tuple[dict, Path]:
        try:
            latest = json.loads(self.latest_file.read_text())
            folder = self.dir / latest["checkpoint"]
            state = json.loads((folder / "state.json").read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise FitError(f"cannot read the last checkpoint in {self.dir} ({exc})") from None
        return state, folder


def _load_weights(model: keras.Model, path: Path) -> None:
    """Model weights only; Keras also stores the optimizer of the phase that saved them,
    which may not match the current phase's optimizer (that state comes from optimizer.npz)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
        model.load_weights(path)


def _restore_optimizer(optimizer, model: keras.Model, folder: Path) -> bool:
    path = folder / "optimizer.npz"
    if not path.exists():
        return False
    with np.load(path) as data:
        store = {k: data[k] for k in data.files}
    optimizer.build(model.trainable_variables)
    if len(store) != len(optimizer.variables):
        return False
    optimizer.load_own_variables(store)
    return True


# ---- phases ----------------------------------------------------------------------------
def _head_layer_names(model: keras.Model) -> set[str]:
    try:
        from cxrviewer.model.build import OUTPUT_LAYER
    except ImportError:  # pragma: no cover - older model package
        OUTPUT_LAYER = "predictions"
    names = {layer.name for layer in model.layers}
    return {OUTPUT_LAYER} if OUTPUT_LAYER in names else {model.layers[-1].name}


def _set_phase_trainable(model: keras.Model, phase: str, freeze_batchnorm: bool) -> None:
    """Head phase: only the output layer trains. Finetune: every layer.

    BatchNorm: in Keras 3 a BatchNormalization layer with ``trainable = False`` runs in
    inference mode, using and keeping its moving mean/variance. In the head phase the
    frozen backbone's BN layers therefore keep their statistics. In the fine-tune phase,
    starting from trained weights, BN stays frozen (``freeze_batchnorm``): with the small
    batches a CPU or one GPU affords, batch statistics are noisy and re-estimating them
    would shift every feature the pretrained backbone learnt (the Keras transfer-learning
    advice). From scratch, BN must learn its statistics, so it trains like any layer.
    """
    head = _head_layer_names(model)
    for layer in model.layers:
        if phase == "head":
            layer.trainable = layer.name in head
        elif freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        else:
            layer.trainable = True


# ---- per-epoch validation, checkpointing and early stopping -----------------------------
@contextlib.contextmanager
def quiet_dataset_warnings():
    """Silence two Keras warnings that are expected with our datasets: they shuffle
    themselves, and their length is only known once read (films that fail to decode are
    dropped on the way, so Keras meets the end of the data without being told)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        warnings.filterwarnings("ignore", message=".*ran out of data.*")
        yield


# Dataset map functions are plain TensorFlow ops: no AutoGraph conversion (which re-reads
# the source file and would trace the wrong function if the file changed on disk).
@tf.autograph.experimental.do_not_convert
def _images_only(x, y):
    return x


@tf.autograph.experimental.do_not_convert
def _labels_only(x, y):
    return y


def validation_scores(model: keras.Model, val_ds: tf.data.Dataset, loss, label_names: Sequence[str],
                      task: str) -> dict:
    """Validation loss and AUROC per class (cxrviewer.metrics), mean over estimable classes."""
    from cxrviewer.metrics import evaluate

    with quiet_dataset_warnings():
        scores = model.predict(val_ds.map(_images_only), verbose=0)
    y = np.concatenate([b.numpy() for b in val_ds.map(_labels_only)])
    scores = np.asarray(scores, dtype=np.float32).reshape(len(y), -1)
    report = evaluate(y, scores, list(label_names), task=task, n_bootstrap=0)
    per_class = {c.label: c.auroc for c in report.classes}
    return {"val_loss": float(loss(y, scores)), "val_auroc": report.mean_auroc,
            "val_auroc_per_class": per_class}


class _EpochKeeper(keras.callbacks.Callback):
    """Bridges Keras to the TrainingCallback and does the per-epoch bookkeeping:
    progress and cancel, validation AUROC, history, checkpoint, best weights, patience."""

    def __init__(self, run: "_Run", phase: str, total_steps: int):
        super().__init__()
        self.run = run
        self.phase = phase
        self.total_steps = total_steps
        self.t0 = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.monotonic()
        self.t_first = None
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches = batch + 1
        if batch == 0:
            self.t_first = time.monotonic()  # the first batch of a phase also traces the graph
        self.run.callback.on_batch_end(batch + 1, self.total_steps)
        if self.run.callback.should_stop():
            self.run.cancelled = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.run.cancelled:
            return  # a partial epoch is neither validated nor checkpointed
        run = self.run
        entry = {"epoch": epoch + 1, "phase": self.phase, "loss": float((logs or {}).get("loss", np.nan)),
                 "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))}
        now = time.monotonic()
        entry["train_seconds_epoch"] = now - self.t0
        # Steady-state seconds per batch, without the first batch (graph tracing).
        if self.batches > 1 and self.t_first is not None:
            entry["step_seconds"] = (now - self.t_first) / (self.batches - 1)
        else:
            entry["step_seconds"] = entry["train_seconds_epoch"] / max(self.batches, 1)
        t_val = time.monotonic()
        entry.update(validation_scores(self.model, run.val_ds, run.loss, run.label_names, run.task))
        entry["val_seconds"] = time.monotonic() - t_val
        entry["steps"] = self.total_steps
        entry["seconds"] = time.monotonic() - self.t0
        run.train_seconds += entry["seconds"]
        score = entry["val_auroc"]
        improved = score is not None and (run.best_score is None or score > run.best_score + run.config.min_delta)
        if improved:
            run.best_score, run.best_epoch = score, epoch + 1
            run.wait = 0
            run.store.save_best(self.model, epoch + 1)
        else:
            run.wait += 1
        entry["best"] = bool(improved)
        run.history.append(entry)
        phase_over = run.wait >= run.config.patience
        budget = run.config.max_train_seconds
        if budget and time.monotonic() - run.started + entry["seconds"] > budget:
            self.model.stop_training = True
            run.out_of_time = True  # not saved as a finished phase: --resume may continue
            run.callback.on_message(
                f"time budget: another epoch (~{entry['seconds'] / 60:.1f} min) would exceed the "
                f"{budget / 60:.0f} min allowed for training; stopping after epoch {epoch + 1}")
        elif phase_over:
            self.model.stop_training = True
            run.stopped_phases.append(self.phase)
            run.callback.on_message(
                f"early stopping in phase {self.phase}: no better validation AUROC for {run.wait} epoch(s)")
        run.save_checkpoint(self.model, epoch + 1, self.phase)
        run.callback.on_epoch_end(epoch + 1, dict(entry))


@dataclass
class _Run:
    config: FitConfig
    store: CheckpointStore
    callback: TrainingCallback
    val_ds: tf.data.Dataset
    loss: object
    label_names: list[str]
    task: str
    history: list[dict] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None
    wait: int = 0
    stopped_phases: list[str] = field(default_factory=list)
    train_seconds: float = 0.0
    cancelled: bool = False
    out_of_time: bool = False
    started: float = field(default_factory=time.monotonic)
    extra_state: dict = field(default_factory=dict)

    def state(self, epoch: int, phase: str) -> dict:
        return {"format": CHECKPOINT_FORMAT, "epoch": epoch, "phase": phase, "history": self.history,
                "best_score": self.best_score, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_phases": self.stopped_phases, "train_seconds": self.train_seconds,
                "config": self.config.to_dict(), **self.extra_state}

    def save_checkpoint(self, model, epoch: int, phase: str) -> None:
        self.store.save(model, model.optimizer, self.state(epoch, phase))


def fit(
    build_model: Callable[[], keras.Model],
    train_ds: tf.data.Dataset,
    train_images: int,
    val_ds: tf.data.Dataset,
    loss,
    label_names: Sequence[str],
    task: str,
    config: FitConfig,
    run_dir: str | Path,
    callback: TrainingCallback | None = None,
    resume: bool = False,
    extra_state: dict | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> FitResult:
    """Train ``build_model()`` in two phases; returns the model with its best weights.

    ``train_ds`` yields one epoch of (images, labels) batches; ``val_ds`` yields
    validation batches in a fixed order. ``extra_state`` (e.g. the split and the
    normalisation statistics) is stored in every checkpoint, so a resumed run can check
    it continues the same experiment. ``strategy``: None picks one (``choose_strategy``).
    """
    from cxrviewer.model.device import configure_device

    callback = callback or NullCallback()
    device = configure_device(mixed_precision=config.mixed_precision)
    for note in getattr(device, "notes", ()):
        callback.on_message(note)
    keras.utils.set_random_seed(config.seed)
    strategy = strategy or choose_strategy()
    if strategy.num_replicas_in_sync > 1:
        callback.on_message(f"training on {strategy.num_replicas_in_sync} devices (MirroredStrategy); "
                            f"batch {config.batch_size} is split between them")
    store = CheckpointStore(Path(run_dir) / "checkpoints")
    run = _Run(config, store, callback, val_ds, loss, list(label_names), task,
               extra_state=dict(extra_state or {}))

    state, folder = None, None
    if resume:
        if not store.exists():
            raise FitError(f"nothing to resume: no checkpoint in {store.dir}")
        state, folder = store.load_state()
        for key, value in run.extra_state.items():
            if key in state and state[key] != value:
                raise FitError(f"cannot resume: the checkpoint was made with a different {key}; "
                               "start a new run folder instead")
        run.history = list(state["history"])
        run.best_score, run.best_epoch = state["best_score"], state["best_epoch"]
        run.wait = int(state["wait"])
        run.stopped_phases = list(state.get("stopped_phases", []))
        run.train_seconds = float(state.get("train_seconds", 0.0))
    elif store.exists():
        raise FitError(f"{store.dir.parent} already holds a training run; resume it or choose a new output folder")

    with strategy.scope():
        model = build_model()
    if folder is not None:
        _load_weights(model, folder / "model.weights.h5")
        callback.on_message(f"resuming after epoch {state['epoch']} (phase {state['phase']})")
    done_epochs = int(state["epoch"]) if state else 0
    freeze_bn = (not config.from_scratch) if config.freeze_batchnorm == "auto" else bool(config.freeze_batchnorm)
    steps = max(1, -(-train_images // config.batch_size))
    if config.max_steps_per_epoch:
        steps = min(steps, int(config.max_steps_per_epoch))
        train_ds = train_ds.take(steps)
    if config.from_scratch and config.head_epochs > 0:
        callback.on_message("note: a head-only phase on a randomly initialised backbone learns little")

    # Epochs are numbered 1..N over the whole run; a phase that stops early hands over
    # to the next one at the next number, so the history has no gaps.
    cursor = done_epochs
    for phase, n_epochs, lr in config.phase_plan():
        finished_here = sum(1 for h in run.history if h["phase"] == phase)
        remaining = n_epochs - finished_here
        if remaining <= 0 or phase in run.stopped_phases:
            continue
        mid_phase = state is not None and state["phase"] == phase and finished_here > 0
        if not mid_phase:
            run.wait = 0  # a new phase gets its own patience
        _set_phase_trainable(model, phase, freeze_bn)
        with strategy.scope():
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss, jit_compile=False)
            # Adam's moment estimates belong to this phase's trainable variables: only a
            # resume in the middle of the same phase brings them back.
            if mid_phase and _restore_optimizer(model.optimizer, model, folder):
                callback.on_message("optimizer state restored")
        callback.on_phase_start(phase, remaining)
        with quiet_dataset_warnings():
            model.fit(train_ds, epochs=cursor + remaining, initial_epoch=cursor, verbose=0,
                      callbacks=[_EpochKeeper(run, phase, steps)])
        state = None
        cursor = len(run.history)
        if run.cancelled or run.out_of_time:
            break

    notes = []
    stopped = "cancelled" if run.cancelled else ("time budget" if run.out_of_time else "completed")
    if run.cancelled:
        callback.on_message("training cancelled; the last finished epoch is in the checkpoint (resume to continue)")
    if run.best_epoch is not None and store.best_weights(run.best_epoch).exists():
        _load_weights(model, store.best_weights(run.best_epoch))
        notes.append(f"weights from epoch {run.best_epoch} (best validation AUROC)")
    return FitResult(model, run.history, run.best_epoch, run.best_score, stopped, len(run.history),
                     run.train_seconds, device.summary() if hasattr(device, "summary") else str(device),
                     strategy.num_replicas_in_sync, notes)
