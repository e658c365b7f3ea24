"""Progress and time left of a training run, from what the TrainingCallback reports (no Qt).

The run reports phases, batches and epochs; this turns them into a fraction done and an
estimate of the time left, using the steady-state time per batch (the first batch of a
phase traces the graph and is left out) and the last validation pass. Early stopping can
only make the run shorter than estimated; the final evaluation comes on top.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# cxrviewer.training.fit.PHASES, not imported from there: fit.py imports TensorFlow.
PHASE_ORDER = ("head", "finetune")


@dataclass
class EtaState:
    fraction: float  # 0..1 of the planned epochs
    seconds_left: float | None  # None until a rate is known
    elapsed: float
    epoch: int  # 1-based epoch in progress (over the whole run)
    total_epochs: int
    step: int
    steps: int
    phase: str
    evaluating: bool = False  # training is over; the reports and the export are being written


class EtaEstimator:
    """Feed it the callback's events (GUI thread); ``state()`` says where the run is."""

    def __init__(self, head_epochs: int, finetune_epochs: int, clock=time.monotonic):
        self.plan = {"head": int(head_epochs), "finetune": int(finetune_epochs)}
        self.clock = clock
        self.started = clock()
        self.phase = ""
        self.phase_remaining = 0  # epochs of the current phase still to run, at its start
        self.phase_done = 0  # epochs finished in the current phase since it started
        self.epoch = 0  # last finished epoch number (1-based, over the run)
        self.step = 0
        self.steps = 0
        self.step_seconds: float | None = None
        self.val_seconds = 0.0
        self._epoch_first_batch: float | None = None
        self.evaluating = False

    @property
    def total_epochs(self) -> int:
        return sum(self.plan.values())

    def _later_epochs(self) -> int:
        if self.phase not in PHASE_ORDER:
            return 0
        later = PHASE_ORDER[PHASE_ORDER.index(self.phase) + 1:]
        return sum(self.plan[p] for p in later)

    def epochs_left(self) -> int:
        """Epochs not yet finished, the one in progress included."""
        if self.evaluating:
            return 0
        if not self.phase:
            return max(0, self.total_epochs - self.epoch)
        return max(0, self.phase_remaining - self.phase_done) + self._later_epochs()

    def seed(self, logs: dict) -> None:
        """Rates from an epoch finished before (a resumed run's checkpoint history)."""
        self._take_rates(logs)
        self.epoch = max(self.epoch, int(logs.get("epoch", 0)))

    # ---- events ----------------------------------------------------------------------
    def phase_started(self, phase: str, epochs: int) -> None:
        if phase not in PHASE_ORDER:  # "evaluate": the epochs are over, the reports follow
            self.phase, self.evaluating = phase, True
            self.step = 0
            return
        self.phase = phase
        self.phase_remaining = int(epochs)
        self.phase_done = 0
        self.step = 0
        # A resumed run starts with some epochs already done.
        self.epoch = max(self.epoch, self.total_epochs - self.epochs_left())

    def batch_ended(self, step: int, total: int) -> None:
        now = self.clock()
        self.step, self.steps = int(step), int(total)
        if step <= 1:
            self._epoch_first_batch = now  # the rate is timed from the end of the first batch
        elif self._epoch_first_batch is not None and self.step_seconds is None:
            self.step_seconds = (now - self._epoch_first_batch) / (step - 1)

    def epoch_ended(self, epoch: int, logs: dict) -> None:
        self.epoch = int(epoch)
        self.phase_done += 1
        self.step = 0
        self._take_rates(logs)

    def _take_rates(self, logs: dict) -> None:
        """Batch time, validation time and batches per epoch from an epoch's logs."""
        if logs.get("step_seconds"):
            self.step_seconds = float(logs["step_seconds"])
        if logs.get("val_seconds") is not None:
            self.val_seconds = float(logs["val_seconds"])
        if logs.get("steps"):
            self.steps = int(logs["steps"])

    # ---- reading ---------------------------------------------------------------------
    def state(self) -> EtaState:
        total = max(1, self.total_epochs)
        in_epoch = (self.step / self.steps) if self.steps else 0.0
        done = self.total_epochs - self.epochs_left()
        fraction = min(1.0, max(0.0, (done + in_epoch) / total))
        left = None
        if self.step_seconds is not None and self.steps and not self.evaluating:
            epochs_left = self.epochs_left()
            this_epoch = (self.steps - self.step) * self.step_seconds + self.val_seconds if epochs_left else 0.0
            later = max(0, epochs_left - 1) * (self.steps * self.step_seconds + self.val_seconds)
            left = this_epoch + later
        return EtaState(fraction, left, self.clock() - self.started, min(done + 1, total), total,
                        self.step, self.steps, self.phase, self.evaluating)
