"""The training run's thread: ``run_training`` with a TrainingCallback that speaks Qt signals.

TensorFlow is imported here, on this thread, never on the GUI thread. The callback runs on
this thread too; it only emits queued signals (the GUI thread draws them) and answers
``should_stop``, which is also where a pause waits: the run stops between two batches
until resumed or cancelled. Cancel discards the epoch in progress; the last finished epoch
stays in the run folder's checkpoint and ``resume=True`` continues from it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from cxrviewer.gui.workers import describe_error, lower_thread_priority

log = logging.getLogger("cxrviewer.gui")


class _SignalCallback:
    """``cxrviewer.training.progress.TrainingCallback`` for the worker (training thread)."""

    def __init__(self, worker: "TrainingWorker"):
        self.worker = worker
        self._last_batch = 0.0

    def on_phase_start(self, phase: str, epochs: int) -> None:
        self.worker.phase_started.emit(phase, int(epochs))

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.worker.epochs_done += 1
        self.worker.epoch_ended.emit(int(epoch), dict(logs))

    def on_batch_end(self, step: int, total: int) -> None:
        # At most ten updates a second reach the GUI: each one costs its thread the GIL.
        now = time.monotonic()
        if step <= 1 or step >= total or now - self._last_batch >= self.worker.BATCH_INTERVAL_S:
            self._last_batch = now
            self.worker.batch_ended.emit(int(step), int(total))

    def on_message(self, text: str) -> None:
        self.worker.message.emit(str(text))

    def should_stop(self) -> bool:
        return self.worker._wait_if_paused()


class TrainingWorker(QThread):
    """One training run (or its resumption) of a recipe, off the GUI thread."""

    phase_started = Signal(str, int)  # phase, epochs in it (left, when resuming)
    batch_ended = Signal(int, int)  # step, steps in the epoch (throttled)
    epoch_ended = Signal(int, object)  # epoch (1-based over the run), logs
    message = Signal(str)
    paused_changed = Signal(bool)  # the run really stopped between batches / went on
    run_finished = Signal(object)  # TrainingOutcome (stopped: "completed", "cancelled", "time budget")
    run_failed = Signal(str)  # one line: why the run could not start or go on

    BATCH_INTERVAL_S = 0.1
    # Like the viewer's inference thread: when the two cores are short, the GUI runs first.
    NICE = 5

    def __init__(self, recipe, run_dir: Path, *, resume: bool = False, parent=None):
        super().__init__(parent)
        self.setObjectName("cxrviewer-training")
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.resume = bool(resume)
        self._cond = threading.Condition()
        self._pause = False
        self._cancel = False
        self.is_paused = False  # True while the run waits between batches
        self.paused_seconds = 0.0
        self.epochs_done = 0
        self.thread_ident: int | None = None  # for tests: TensorFlow ran on this thread
        self.outcome = None
        self.error = ""

    # ---- GUI-thread API ------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        with self._cond:
            self._pause = bool(paused)
            self._cond.notify_all()

    @property
    def pause_requested(self) -> bool:
        return self._pause

    def cancel(self) -> None:
        """Stop after the batch in progress; the epoch in progress is discarded."""
        with self._cond:
            self._cancel = True
            self._cond.notify_all()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel

    # ---- training thread -----------------------------------------------------------
    def _wait_if_paused(self) -> bool:
        with self._cond:
            if self._pause and not self._cancel:
                t0 = time.monotonic()
                self.is_paused = True
                self.paused_changed.emit(True)
                while self._pause and not self._cancel:
                    self._cond.wait()
                self.is_paused = False
                self.paused_seconds += time.monotonic() - t0
                self.paused_changed.emit(False)
            return self._cancel

    def run(self) -> None:
        threading.current_thread().name = "cxrviewer-training"
        lower_thread_priority(self.NICE)
        self.thread_ident = threading.get_ident()
        try:
            import tensorflow  # noqa: F401  - here, on the training thread, never the GUI's

            # TensorFlow leaves millions of long-lived objects behind; a full collection
            # walking them holds the GIL long enough to freeze the window (see workers.py).
            gc.freeze()
            from cxrviewer.training.run import run_training

            self.outcome = run_training(self.recipe, run_dir=self.run_dir, resume=self.resume,
                                        callback=_SignalCallback(self))
        except Exception as exc:  # a bug must not take the viewer with it either
            if not _expected(exc):
                log.error("training failed:\n%s", traceback.format_exc())
            self.error = describe_error(exc)
        gc.freeze()
        if self.outcome is not None:
            self.run_finished.emit(self.outcome)
        else:
            self.run_failed.emit(self.error or "training failed")


def _expected(exc: BaseException) -> bool:
    """Errors the pipeline raises with a message meant for the user (no traceback needed)."""
    import sys

    from cxrviewer.training.datasets import DatasetError
    from cxrviewer.training.export import ExportError
    from cxrviewer.training.recipe import RecipeError
    from cxrviewer.training.split import SplitError

    kinds = [RecipeError, DatasetError, SplitError, ExportError, OSError]
    fit = sys.modules.get("cxrviewer.training.fit")
    if fit is not None:
        kinds.append(fit.FitError)
    return isinstance(exc, tuple(kinds))
