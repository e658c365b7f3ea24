"""How training reports progress: a small callback protocol and a text progress bar.

The GUI wizard implements ``TrainingCallback`` with Qt signals; the command line uses
``TextProgress``. Neither needs TensorFlow to be imported to be defined.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO, runtime_checkable


@runtime_checkable
class TrainingCallback(Protocol):
    """What the trainer tells its caller, and how the caller can stop it.

    Called from the training thread. ``should_stop`` is polled after every batch: return
    True to cancel (the epoch in progress is discarded, the last finished epoch stays in
    the checkpoint and ``--resume`` / the wizard continue from there). A UI that wants
    to *pause* may block inside ``should_stop`` until resumed, or cancel and resume later.
    """

    def on_phase_start(self, phase: str, epochs: int) -> None:
        """phase: "head" (frozen backbone) or "finetune" (all layers), epochs: how many; then
        "evaluate" (epochs 0): training is over, the reports and the export follow (no
        batches, no ``should_stop`` polls until the run returns)."""

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        """epoch: 1-based over the whole run; logs: loss, val_loss, val_auroc, per-class AUROC..."""

    def on_batch_end(self, step: int, total: int) -> None:
        """step: 1-based batch in the current epoch of ``total``."""

    def on_message(self, text: str) -> None:
        """A line for the user's log (never patient identifiers)."""

    def should_stop(self) -> bool:
        ...


class NullCallback:
    """Reports nothing, never stops."""

    def on_phase_start(self, phase: str, epochs: int) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_batch_end(self, step: int, total: int) -> None:
        pass

    def on_message(self, text: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class TextProgress(NullCallback):
    """A one-line progress bar with rate and ETA for the command line (no dependency).

    On a terminal the bar redraws in place; into a file or pipe it writes a line every
    ``log_every`` seconds so logs stay readable.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 28, log_every: float = 30.0):
        self.stream = stream or sys.stderr
        self.width = width
        self.log_every = log_every
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._epoch_start = time.monotonic()
        self._last_draw = 0.0
        self._epoch = 0
        self._phase = ""
        self._open_line = False

    def _write(self, text: str, newline: bool = True) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False
        self.stream.write(text + ("\n" if newline else ""))
        self.stream.flush()

    def on_phase_start(self, phase: str, epochs: int) -> None:
        self._phase = phase
        if phase == "evaluate":
            return  # the run says "evaluating ..." itself
        what = "head only, backbone frozen" if phase == "head" else "all layers"
        self._write(f"phase {phase}: {epochs} epoch(s), {what}")

    def on_message(self, text: str) -> None:
        self._write(text)

    def on_batch_end(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step <= 1:
            # The first batch includes tracing the graph: time the rate from its end.
            self._epoch_start = now
            self._last_draw = 0.0
        if not self._tty and now - self._last_draw < self.log_every and step < total:
            return
        self._last_draw = now
        elapsed = now - self._epoch_start
        rate = (step - 1) / elapsed if elapsed > 0 and step > 1 else 0.0
        eta = (total - step) / rate if rate > 0 else 0.0
        filled = int(self.width * step / max(total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        speed = f" {1.0 / rate:.2f} s/batch" if rate else ""
        line = f"[{bar}] {step}/{total} {format_duration(elapsed)}<{format_duration(eta)}{speed}"
        if self._tty:
            self.stream.write("\r" + line)
            self.stream.flush()
            self._open_line = True
        else:
            self._write(line)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        def f(key):
            v = logs.get(key)
            return "n/a" if v is None else f"{v:.4f}"

        self._write(f"epoch {epoch} ({logs.get('phase', self._phase)}): loss {f('loss')}  "
                    f"val_loss {f('val_loss')}  val_auroc {f('val_auroc')}  "
                    f"({format_duration(logs.get('seconds', 0.0))})")


class LogFile(NullCallback):
    """Appends messages and epoch summaries to a text file (the run folder's train.log)."""

    def __init__(self, path):
        self.path = path

    def _line(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp}  {text}\n")

    def on_phase_start(self, phase: str, epochs: int) -> None:
        if phase != "evaluate":
            self._line(f"phase {phase}: {epochs} epoch(s)")

    def on_message(self, text: str) -> None:
        self._line(text)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        keys = ("phase", "loss", "val_loss", "val_auroc", "seconds", "train_seconds_epoch", "step_seconds",
                "val_seconds", "best")

        def fmt(v):
            return f"{v:.4f}" if isinstance(v, float) else str(v)

        self._line(f"epoch {epoch}: " + ", ".join(f"{k}={fmt(logs[k])}" for k in keys if k in logs))


class Fanout(NullCallback):
    """Sends every report to several callbacks; stops when any of them asks to."""

    def __init__(self, *callbacks):
        self.callbacks = [c for c in callbacks if c is not None]

    def on_phase_start(self, phase: str, epochs: int) -> None:
        for c in self.callbacks:
            c.on_phase_start(phase, epochs)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        for c in self.callbacks:
            c.on_epoch_end(epoch, logs)

    def on_batch_end(self, step: int, total: int) -> None:
        for c in self.callbacks:
            c.on_batch_end(step, total)

    def on_message(self, text: str) -> None:
        for c in self.callbacks:
            c.on_message(text)

    def should_stop(self) -> bool:
        return any(c.should_stop() for c in self.callbacks)
