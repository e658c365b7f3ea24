"""The wizard's TensorFlow work in a separate process, reporting through a pipe (no Qt).

TensorFlow builds a graph before it runs one: the first batch of every phase, the first
validation pass, the evaluation. That tracing runs long stretches of C++ that hold the
GIL; in a thread of the viewer's process it kept the window from repainting for up to
0.8 s at a time (DenseNet121, ``benchmarks/wizard.py``). A child process has its own GIL,
its own memory (returned when the run ends) and runs at a lower priority, so the
window only ever waits for itself.

Parent side: ``ChildRun(kind, payload)`` starts the process ("spawn": a fresh
interpreter, no inherited threads) and ``messages()`` yields what it reports. Child side:
``_child_main`` runs ``run_training`` with ``PipeCallback`` (the TrainingCallback that
sends every report over the pipe and waits there while paused), or the time estimate.
Last message: ``("result", value)`` or ``("error", text, expected)``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback

NICE = 5  # like the viewer's inference thread: when the cores are short, the window comes first
BATCH_INTERVAL_S = 0.1  # batch reports at most ten a second


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _expected(exc: BaseException) -> bool:
    """Errors whose message is meant for the user (no traceback needed)."""
    from cxrviewer.training.datasets import DatasetError
    from cxrviewer.training.export import ExportError
    from cxrviewer.training.recipe import RecipeError
    from cxrviewer.training.split import SplitError

    kinds = [RecipeError, DatasetError, SplitError, ExportError, OSError]
    fit = sys.modules.get("cxrviewer.training.fit")
    if fit is not None:
        kinds.append(fit.FitError)
    analysis = sys.modules.get("cxrviewer.gui.wizard.analysis")
    if analysis is not None:
        kinds.append(analysis.AnalysisError)
    return isinstance(exc, tuple(kinds))


class PipeCallback:
    """``cxrviewer.training.progress.TrainingCallback`` that reports over a pipe (child side)."""

    def __init__(self, conn, pause, cancel):
        self.conn, self.pause, self.cancel = conn, pause, cancel
        self._last_batch = 0.0

    def on_phase_start(self, phase: str, epochs: int) -> None:
        self.conn.send(("phase", phase, int(epochs)))

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.conn.send(("epoch", int(epoch), dict(logs)))

    def on_batch_end(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step <= 1 or step >= total or now - self._last_batch >= BATCH_INTERVAL_S:
            self._last_batch = now
            self.conn.send(("batch", int(step), int(total)))

    def on_message(self, text: str) -> None:
        self.conn.send(("message", str(text)))

    def should_stop(self) -> bool:
        if self.pause.is_set() and not self.cancel.is_set():
            t0 = time.monotonic()
            self.conn.send(("paused", True, 0.0))
            while self.pause.is_set() and not self.cancel.is_set():
                self.cancel.wait(0.05)
            self.conn.send(("paused", False, time.monotonic() - t0))
        return self.cancel.is_set()


def _child_main(kind: str, payload: tuple, conn, pause, cancel) -> None:
    """Entry point of the child process."""
    try:
        os.nice(NICE)
    except (AttributeError, OSError):  # not on this platform / not permitted: only speed is at stake
        pass
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if kind == "train":
            from cxrviewer.training.run import run_training

            recipe, run_dir, resume = payload
            conn.send(("started", os.getpid()))
            value = run_training(recipe, run_dir=run_dir, resume=resume, callback=PipeCallback(conn, pause, cancel))
        elif kind == "estimate":
            from cxrviewer.gui.wizard.analysis import estimate_time

            plan, dataset = payload
            conn.send(("started", os.getpid()))
            value = estimate_time(plan, dataset, {})
        else:
            raise ValueError(f"unknown job kind {kind!r}")
    except BaseException as exc:  # everything goes back to the parent, never a silent death
        expected = _expected(exc)
        if not expected:
            traceback.print_exc()
        conn.send(("error", _one_line(exc), expected))
    else:
        conn.send(("result", value))
    finally:
        conn.close()


class ChildRun:
    """One job in a child process (parent side; any thread)."""

    def __init__(self, kind: str, payload: tuple, *, pause=None, cancel=None):
        ctx = multiprocessing.get_context("spawn")
        self.pause = pause if pause is not None else ctx.Event()
        self.cancel = cancel if cancel is not None else ctx.Event()
        self.conn, child_conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_child_main, args=(kind, payload, child_conn, self.pause, self.cancel),
                                   name=f"cxrviewer-{kind}", daemon=True)
        self.process.start()
        child_conn.close()  # the child holds the only writing end: EOF when it exits

    def messages(self, poll_s: float = 0.2):
        """Every message until the last one, and None after each ``poll_s`` without one (so a
        caller can look at its own state); a child that dies silently yields an error."""
        while True:
            try:
                ready = self.conn.poll(poll_s)
            except (EOFError, OSError):
                ready = True
            if ready:
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    self.process.join(5)
                    yield ("error", f"the {self.process.name} process stopped unexpectedly "
                                    f"(exit code {self.process.exitcode})", False)
                    return
                yield msg
                if msg[0] in ("result", "error"):
                    self.process.join(30)
                    return
            elif not self.process.is_alive() and not self.conn.poll(0):
                yield ("error", f"the {self.process.name} process stopped unexpectedly "
                                f"(exit code {self.process.exitcode})", False)
                return
            else:
                yield None

    def result(self, cancelled=None):
        """Block until the job ends: its value, or ``RuntimeError`` with the child's reason."""
        for msg in self.messages():
            if cancelled is not None and cancelled():
                self.terminate()
                raise RuntimeError("cancelled")
            if msg is None:
                continue
            if msg[0] == "result":
                return msg[1]
            if msg[0] == "error":
                raise RuntimeError(msg[1])
        raise RuntimeError("no result")

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
