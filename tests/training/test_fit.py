"""Two-phase fit on real films with a tiny backbone: loss goes down, checkpoints resume,
cancel keeps finished epochs, phases freeze the right layers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrviewer.model.card import Preprocess
from cxrviewer.training.progress import NullCallback

LABELS = ["Pneumonia"]
SIZE = 32


@pytest.fixture(scope="module")
def tiny_data(data_dir):
    """30 real NIH thumbnails + 150 Kermany films labelled for pneumonia, on a 32 px grid,
    patient-split; tf.data pipelines. (A finding the tiny net can learn in a few epochs;
    masked labels are exercised by the loss tests and the end-to-end recipe run.)"""
    from cxrviewer.training.datasets import combine, from_class_folders, from_csv
    from cxrviewer.training.pipeline import GridCache, make_dataset, measure_stats
    from cxrviewer.training.split import split_by_patient

    nih = from_csv(data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz", data_dir / "nih" / "thumbs64", LABELS)
    kermany = from_class_folders(data_dir / "kermany-pneumonia", label_map={"PNEUMONIA": "Pneumonia"},
                                 labels=LABELS, patient_regex=r"^(person\d+|(?:NORMAL2-)?IM-\d+)")
    ds = combine([nih.limit(30, seed=3), kermany.limit(150, seed=3)], LABELS)
    cache = GridCache(ds.paths, SIZE, Preprocess())
    assert cache.fill(workers=2) == {}
    split = split_by_patient(ds.patients, ds.labels, (0.7, 0.3, 0.0), seed=0)
    tr, va = split.indices("train"), split.indices("validation")
    stats = measure_stats([ds.paths[i] for i in tr], size=SIZE, spec=Preprocess(), cache=cache)

    def pipelines(augment=None):
        common = dict(stats=stats, channels=3, batch_size=16)
        return (make_dataset(cache, tr, ds.labels, training=True, augmentation=augment, seed=0, **common),
                make_dataset(cache, va, ds.labels, training=False, **common))

    return ds, tr, va, pipelines


def _builder():
    from cxrviewer.model.build import build_classifier

    return lambda: build_classifier(len(LABELS), backbone="tiny", input_size=SIZE)


def _fit(tiny_data, run_dir, config, callback=None, resume=False):
    from cxrviewer.training.fit import fit
    from cxrviewer.training.loss import loss_for

    import keras

    ds, tr, va, pipelines = tiny_data
    keras.utils.set_random_seed(config.seed)  # same shuffles whatever ran before
    train_ds, val_ds = pipelines()
    loss = loss_for("multilabel", ds.labels[tr], LABELS)
    return fit(_builder(), train_ds, len(tr), val_ds, loss, LABELS, "multilabel", config, run_dir,
               callback, resume=resume, extra_state={"split": "fixture"})


class Recorder(NullCallback):
    def __init__(self, stop_at=None):
        self.events, self.messages, self.stop_at = [], [], stop_at
        self.epoch = 0
        self.step = 0

    def on_phase_start(self, phase, epochs):
        self.events.append(("phase", phase, epochs))

    def on_epoch_end(self, epoch, logs):
        self.epoch = epoch
        self.events.append(("epoch", epoch, logs["phase"]))

    def on_batch_end(self, step, total):
        self.step = step

    def on_message(self, text):
        self.messages.append(text)

    def should_stop(self):
        # Cancel in the middle of the epoch after ``stop_at`` finished epochs.
        return self.stop_at is not None and self.epoch >= self.stop_at and self.step >= 2


def test_training_loss_goes_down_and_history_is_complete(tiny_data, tmp_path):
    from cxrviewer.training.fit import FitConfig

    rec = Recorder()
    config = FitConfig(batch_size=16, head_epochs=1, head_lr=3e-3, finetune_epochs=9, finetune_lr=3e-3,
                       patience=20, seed=0)
    result = _fit(tiny_data, tmp_path / "run", config, rec)
    losses = [h["loss"] for h in result.history]
    assert [h["phase"] for h in result.history] == ["head"] + ["finetune"] * 9
    assert [h["epoch"] for h in result.history] == list(range(1, 11))
    assert np.isfinite(losses).all()
    # Measured here over seeds 0-2: the last three epochs 5-7 % below the first three,
    # falling almost every epoch.
    assert np.mean(losses[-3:]) < 0.97 * np.mean(losses[:3]), losses
    assert np.corrcoef(np.arange(len(losses)), losses)[0, 1] < -0.7, losses
    assert all(h["val_auroc"] is None or 0 <= h["val_auroc"] <= 1 for h in result.history)
    assert set(result.history[0]["val_auroc_per_class"]) == set(LABELS)
    assert rec.events[0] == ("phase", "head", 1) and ("phase", "finetune", 9) in rec.events
    assert result.stopped == "completed" and result.best_epoch is not None
    latest = json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())
    assert latest["epoch"] == 10 and latest["phase"] == "finetune"
    # The best epoch's weights are kept (and only those); the model returned holds them.
    best = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("best-epoch-*"))
    assert best == [f"best-epoch-{result.best_epoch:03d}.weights.h5"]
    top = max(h["val_auroc"] for h in result.history if h["val_auroc"] is not None)
    assert top - config.min_delta <= result.best_val_auroc <= top


def test_cancel_then_resume_continues_from_the_right_epoch_and_phase(tiny_data, tmp_path):
    from cxrviewer.training.fit import CheckpointStore, FitConfig, FitError

    config = FitConfig(batch_size=16, head_epochs=1, head_lr=1e-2, finetune_epochs=3, finetune_lr=1e-3,
                       patience=10, seed=0)
    run = tmp_path / "run"
    first = _fit(tiny_data, run, config, Recorder(stop_at=2))
    # Epochs 1 (head) and 2 (finetune) finished; epoch 3 was cancelled half-way.
    assert first.stopped == "cancelled"
    assert [(h["epoch"], h["phase"]) for h in first.history] == [(1, "head"), (2, "finetune")]
    state, folder = CheckpointStore(run / "checkpoints").load_state()
    assert state["epoch"] == 2 and state["phase"] == "finetune" and folder.name == "epoch-002"
    with pytest.raises(FitError, match="already holds a training run"):
        _fit(tiny_data, run, config)  # never silently restart over a run
    rec = Recorder()
    second = _fit(tiny_data, run, config, rec, resume=True)
    assert second.stopped == "completed"
    assert [(h["epoch"], h["phase"]) for h in second.history] == [
        (1, "head"), (2, "finetune"), (3, "finetune"), (4, "finetune")]
    assert second.history[:2] == first.history  # finished epochs kept as they were
    assert rec.events[0] == ("phase", "finetune", 2)  # the head phase is not run again
    assert any("resuming after epoch 2" in m for m in rec.messages)
    assert any("optimizer state restored" in m for m in rec.messages)


def test_resume_refuses_a_different_experiment_and_a_missing_checkpoint(tiny_data, tmp_path):
    from cxrviewer.training.fit import FitConfig, FitError, fit
    from cxrviewer.training.loss import loss_for

    ds, tr, va, pipelines = tiny_data
    config = FitConfig(batch_size=16, head_epochs=0, finetune_epochs=1, seed=0)
    with pytest.raises(FitError, match="nothing to resume"):
        _fit(tiny_data, tmp_path / "empty", config, resume=True)
    _fit(tiny_data, tmp_path / "run", config)
    train_ds, val_ds = pipelines()
    with pytest.raises(FitError, match="different split"):
        fit(_builder(), train_ds, len(tr), val_ds, loss_for("multilabel", ds.labels[tr], LABELS), LABELS,
            "multilabel", config, tmp_path / "run", resume=True, extra_state={"split": "another"})


def test_checkpoint_holds_weights_and_optimizer_state(tiny_data, tmp_path):
    import keras

    from cxrviewer.training.fit import CheckpointStore, FitConfig, _restore_optimizer

    config = FitConfig(batch_size=16, head_epochs=0, finetune_epochs=1, seed=0)
    result = _fit(tiny_data, tmp_path / "run", config)
    store = CheckpointStore(tmp_path / "run" / "checkpoints")
    state, folder = store.load_state()
    assert state["config"]["finetune_epochs"] == 1 and state["history"] == result.history
    fresh = _builder()()
    fresh.load_weights(folder / "model.weights.h5")
    for a, b in zip(fresh.get_weights(), result.model.get_weights()):
        np.testing.assert_allclose(a, b)  # best == last here: one epoch
    fresh.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    assert _restore_optimizer(fresh.optimizer, fresh, folder)
    assert int(fresh.optimizer.iterations.numpy()) > 0  # Adam's step count came back
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))


def test_head_phase_freezes_backbone_and_batchnorm_rule():
    import keras

    from cxrviewer.training.fit import _set_phase_trainable

    model = _builder()()
    _set_phase_trainable(model, "head", freeze_batchnorm=False)
    trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
    assert trainable == {"predictions"}
    _set_phase_trainable(model, "finetune", freeze_batchnorm=True)
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and not any(layer.trainable for layer in bn)
    assert model.get_layer("tiny_conv1").trainable
    _set_phase_trainable(model, "finetune", freeze_batchnorm=False)
    assert all(layer.trainable for layer in bn)


def test_text_progress_bar_writes_lines_into_a_log(tmp_path):
    import io

    from cxrviewer.training.progress import TextProgress

    out = io.StringIO()
    bar = TextProgress(out, log_every=0.0)
    bar.on_phase_start("finetune", 2)
    for step in range(1, 5):
        bar.on_batch_end(step, 4)
    bar.on_epoch_end(1, {"phase": "finetune", "loss": 0.5, "val_loss": 0.6, "val_auroc": None, "seconds": 3})
    text = out.getvalue()
    assert "phase finetune: 2 epoch(s)" in text
    assert "[" + "#" * 28 + "] 4/4" in text
    assert "epoch 1 (finetune): loss 0.5000  val_loss 0.6000  val_auroc n/a" in text


def test_step_time_is_measured_after_the_warm_up_batch(tiny_data):
    from cxrviewer.training.fit import measure_step_seconds
    from cxrviewer.training.loss import loss_for

    ds, tr, va, pipelines = tiny_data
    train_ds, _ = pipelines()
    seconds = measure_step_seconds(_builder(), train_ds, loss_for("multilabel", ds.labels[tr], LABELS), steps=2)
    assert 0 < seconds < 5  # a 32 px tiny net: milliseconds, not the graph tracing time


def test_time_budget_stops_before_an_epoch_that_would_not_fit_and_resume_continues(tiny_data, tmp_path):
    from cxrviewer.training.fit import FitConfig

    rec = Recorder()
    # A budget shorter than one epoch: the first epoch runs (nothing to judge by before it),
    # then no further epoch is started.
    config = FitConfig(batch_size=16, head_epochs=0, finetune_epochs=5, finetune_lr=3e-3, patience=20,
                       max_train_seconds=0.5, seed=0)
    result = _fit(tiny_data, tmp_path / "run", config, rec)
    assert result.stopped == "time budget" and len(result.history) == 1
    assert any("time budget" in m for m in rec.messages)
    config.max_train_seconds = 0.0
    resumed = _fit(tiny_data, tmp_path / "run", config, resume=True)
    assert resumed.stopped == "completed" and [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]
