"""The training run's thread: it starts ``run_training`` in a child process and turns what the
child's TrainingCallback reports into Qt signals.

TensorFlow never runs in the viewer's process for training: the child (``child.py``)
imports it, traces and trains, and its ``PipeCallback`` sends phases, batches, epochs and
messages over a pipe. This QThread waits on that pipe (no GIL held while waiting) and
emits one queued signal per report; the GUI thread only draws. Pause and cancel are
process-shared events the child's ``should_stop`` reads between batches: a pause waits
there, a cancel discards the epoch in progress (the last finished one stays in the
checkpoint and ``resume=True`` continues from it).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from cxrviewer.gui.wizard.child import ChildRun

log = logging.getLogger("cxrviewer.gui")


class TrainingWorker(QThread):
    """One training run (or its resumption) of a recipe, in a child process."""

    phase_started = Signal(str, int)  # phase ("head", "finetune", then "evaluate"), epochs in it
    batch_ended = Signal(int, int)  # step, steps in the epoch (at most ten a second)
    epoch_ended = Signal(int, object)  # epoch (1-based over the run), logs
    message = Signal(str)
    paused_changed = Signal(bool)  # the run really stopped between batches / went on
    run_finished = Signal(object)  # TrainingOutcome (stopped: "completed", "cancelled", "time budget")
    run_failed = Signal(str)  # one line: why the run could not start or go on

    def __init__(self, recipe, run_dir: Path, *, resume: bool = False, parent=None):
        super().__init__(parent)
        self.setObjectName("cxrviewer-training")
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.resume = bool(resume)
        ctx = multiprocessing.get_context("spawn")
        self._pause = ctx.Event()
        self._cancel = ctx.Event()
        self._child: ChildRun | None = None
        self.is_paused = False  # True while the run waits between batches
        self.paused_seconds = 0.0
        self.child_pid: int | None = None  # for tests: TensorFlow ran in this process
        self.outcome = None
        self.error = ""

    # ---- GUI-thread API ------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        (self._pause.set if paused else self._pause.clear)()

    @property
    def pause_requested(self) -> bool:
        return self._pause.is_set()

    def cancel(self) -> None:
        """Stop after the batch in progress; the epoch in progress is discarded."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def terminate_child(self) -> None:
        """Last resort (quitting while the run cannot stop): end the child process now."""
        if self._child is not None:
            self._child.terminate()

    # ---- this thread ----------------------------------------------------------------
    def run(self) -> None:
        threading.current_thread().name = "cxrviewer-training"
        try:
            self._child = ChildRun("train", (self.recipe, self.run_dir, self.resume),
                                   pause=self._pause, cancel=self._cancel)
            for msg in self._child.messages():
                if msg is not None:
                    self._relay(msg)
        except Exception as exc:  # e.g. the process could not start
            log.error("training process failed: %s", exc)
            self.error = " ".join(str(exc).split()) or type(exc).__name__
        if self.outcome is not None:
            self.run_finished.emit(self.outcome)
        else:
            self.run_failed.emit(self.error or "training failed")

    def _relay(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "batch":
            self.batch_ended.emit(msg[1], msg[2])
        elif kind == "epoch":
            self.epoch_ended.emit(msg[1], msg[2])
        elif kind == "phase":
            self.phase_started.emit(msg[1], msg[2])
        elif kind == "message":
            self.message.emit(msg[1])
        elif kind == "paused":
            self.is_paused = bool(msg[1])
            self.paused_seconds += float(msg[2])
            self.paused_changed.emit(self.is_paused)
        elif kind == "started":
            self.child_pid = int(msg[1])
        elif kind == "result":
            self.outcome = msg[1]
        elif kind == "error":
            self.error = msg[1]
            if not msg[2]:
                log.error("training failed: %s", msg[1])
