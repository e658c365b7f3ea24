"""Background work for the viewer: an I/O pool for decoding, one inference thread for the model.

- ``IOPool``: a QThreadPool (2 threads) running plain Python callables (film decoding,
  thumbnails, folder listing, metrics). Results, errors and progress come back to the GUI
  thread by queued signals and are handed to the callbacks given at submit time.
- ``InferenceWorker``: ONE QThread that owns the Predictor, so TensorFlow is imported
  there (never on the GUI thread) and model calls are serialised. Interactive requests
  carry the film path and generation they were made for; a newer request replaces an
  older one still waiting, and requests for a film no longer shown are dropped before
  they run. A batch over a folder runs here too, through the command line's engine
  (``cxrviewer.batch.score_folder``); the reader's requests are served between its films.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal

from cxrviewer.gui.state import ModelInfo

log = logging.getLogger("cxrviewer.gui")


class Stale(Exception):
    """Raised inside a job whose result nobody wants any more; dropped silently."""


def describe_error(exc: BaseException) -> str:
    """One line for the status bar and log: FilmError already names the file."""
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


# --------------------------------------------------------------------------------------
# I/O pool
# --------------------------------------------------------------------------------------


class _Relay(QObject):
    """Lives in the GUI thread; jobs emit on it from pool threads (queued delivery)."""

    result = Signal(int, object)
    error = Signal(int, str)
    progress = Signal(int, object)


class Job(QRunnable):
    """One callable run on the pool. The callable gets this job as first argument so it
    can report progress and notice cancellation."""

    def __init__(self, job_id: int, relay: _Relay, fn: Callable, args: tuple):
        super().__init__()
        self.setAutoDelete(True)
        self.job_id = job_id
        self._relay = relay
        self._fn = fn
        self._args = args
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def progress(self, value) -> None:
        if not self.cancelled:
            self._relay.progress.emit(self.job_id, value)

    def run(self) -> None:  # pool thread
        if self.cancelled:
            self._relay.error.emit(self.job_id, "")  # releases the callbacks, never shown
            return
        try:
            value = self._fn(self, *self._args)
        except Stale:
            self._relay.error.emit(self.job_id, "")
        except Exception as exc:  # a bad file or a bug must not kill the pool thread
            if not _is_film_error(exc):
                log.debug("background job failed:\n%s", traceback.format_exc())
            self._relay.error.emit(self.job_id, describe_error(exc) or "failed")
        else:
            self._relay.result.emit(self.job_id, value)


def _is_film_error(exc: BaseException) -> bool:
    try:
        from cxrviewer.io import FilmError
    except ImportError:  # pragma: no cover - io is part of the package
        return False
    return isinstance(exc, FilmError)


class IOPool(QObject):
    """Two threads for decoding and other short I/O; callbacks run on the GUI thread."""

    # Priorities (higher runs first): the film the reader asked for jumps ahead of
    # everything; thumbnails add a rising counter so the rows painted last (the ones on
    # screen now) come first; batch decodes fill the gaps.
    PRIORITY_FILM = 1 << 30
    PRIORITY_TASK = 1 << 29
    PRIORITY_THUMBNAIL = 1000
    PRIORITY_BATCH = 0

    def __init__(self, threads: int = 2, parent=None):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(1, threads))
        self._relay = _Relay(self)
        self._relay.result.connect(self._on_result)
        self._relay.error.connect(self._on_error)
        self._relay.progress.connect(self._on_progress)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple] = {}
        self._jobs: dict[int, Job] = {}

    def submit(
        self,
        fn: Callable,
        *args,
        on_result: Callable | None = None,
        on_error: Callable | None = None,
        on_progress: Callable | None = None,
        priority: int = 0,
    ) -> Job:
        job_id = next(self._ids)
        job = Job(job_id, self._relay, fn, args)
        self._callbacks[job_id] = (on_result, on_error, on_progress)
        self._jobs[job_id] = job
        self.pool.start(job, priority)
        return job

    def _finish(self, job_id: int):
        self._jobs.pop(job_id, None)
        return self._callbacks.pop(job_id, (None, None, None))

    def _on_result(self, job_id: int, value) -> None:
        on_result, _, _ = self._finish(job_id)
        if on_result is not None:
            on_result(value)

    def _on_error(self, job_id: int, reason: str) -> None:
        _, on_error, _ = self._finish(job_id)
        if on_error is not None and reason:
            on_error(reason)

    def _on_progress(self, job_id: int, value) -> None:
        cb = self._callbacks.get(job_id)
        if cb and cb[2] is not None:
            cb[2](value)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel what has not started and wait for running jobs; callbacks are dropped."""
        for job in list(self._jobs.values()):
            job.cancel()
        self.pool.clear()
        self._callbacks.clear()
        self._jobs.clear()
        return self.pool.waitForDone(timeout_ms)


# --------------------------------------------------------------------------------------
# Inference worker
# --------------------------------------------------------------------------------------


@dataclass
class BatchRow:
    """One scored (or failed) film of a batch, as the results table shows it."""

    path: Path
    rel: str
    status: str  # "ok", "warning: <text>" or "error: <text>", as in the results CSV
    probabilities: dict[str, float] | None
    calls: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.status.split(":", 1)[0]

    @classmethod
    def from_scored(cls, row) -> "BatchRow":
        """From ``cxrviewer.batch.ScoredRow`` (what ``score_folder`` reports per film)."""
        return cls(Path(row.path), row.relpath, row.status,
                   dict(row.probabilities) if row.probabilities is not None else None, list(row.calls))


@dataclass
class BatchSummary:
    job_id: int
    total: int
    done: int
    failed: int
    cancelled: bool
    seconds: float
    results_csv: Path | None = None  # the run's results CSV (written by cxrviewer.batch)
    model_name: str = ""
    model_sha256: str = ""
    labels: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class _BatchRun:
    job_id: int
    folder: Path
    out_csv: Path
    batch_size: int
    cancel: threading.Event = field(default_factory=threading.Event)


class InferenceWorker(QThread):
    """The one thread that touches TensorFlow."""

    model_loading = Signal(object)  # requested path (None = shipped model)
    model_ready = Signal(object)  # ModelInfo
    model_failed = Signal(str)  # one-line reason, says how to get a model
    prediction_ready = Signal(object, int, object)  # path, generation, Prediction
    prediction_failed = Signal(object, int, str)
    gradcam_ready = Signal(object, int, str, object)  # path, generation, label, uint8 map (film shape)
    gradcam_failed = Signal(object, int, str, str)  # path, generation, label, reason
    batch_progress = Signal(int, int, int)  # job id, films done, total (-1 while counting)
    batch_rows = Signal(int, object)  # job id, list[BatchRow]
    batch_finished = Signal(int, object)  # job id, BatchSummary

    _NO_REQUEST = object()
    # Scheduling niceness added to this thread. Threads it starts inherit it (TensorFlow's
    # compute pools, the batch's decode threads), so when the CPU is short the GUI thread
    # runs first and the window stays responsive while a batch runs.
    NICE = 5

    def __init__(self, io_pool: IOPool | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("cxrviewer-inference")
        self._io_pool = io_pool
        self._cond = threading.Condition()
        self._stopping = False
        self._model_request = self._NO_REQUEST
        self._prediction: tuple | None = None  # (path, generation, film)
        self._gradcams: dict[str, tuple] = {}  # label -> (path, generation, film, label)
        self._current: tuple[Path | None, int] = (None, -1)
        self._batch: _BatchRun | None = None
        self._batch_started = False
        self._predictor = None
        # For tests and the benchmark: the thread that loaded the model, how long it took,
        # and how many requests of each kind actually ran (collapsed ones never do).
        self.model_thread_ident: int | None = None
        self.model_load_seconds: float | None = None
        self.served = {"prediction": 0, "gradcam": 0, "batch_films": 0}

    # ---- GUI-thread API ------------------------------------------------------------
    def request_model(self, path: str | Path | None) -> None:
        with self._cond:
            self._model_request = Path(path) if path else None
            if self._batch is not None:  # one batch, one model: never mix rows
                self._batch.cancel.set()
            self._cond.notify()
        if not self.isRunning():
            self.start()

    def set_current(self, path: Path | None, generation: int) -> None:
        """The film now on screen; waiting work for any other film is dropped."""
        with self._cond:
            self._current = (Path(path) if path else None, generation)
            if self._prediction and self._prediction[1] != generation:
                self._prediction = None
            self._gradcams = {k: v for k, v in self._gradcams.items() if v[1] == generation}

    def request_prediction(self, film, generation: int) -> None:
        with self._cond:
            self._prediction = (Path(film.path), generation, film)
            self._cond.notify()

    def request_gradcam(self, film, generation: int, label: str) -> None:
        with self._cond:
            self._gradcams[label] = (Path(film.path), generation, film, label)
            self._cond.notify()

    def start_batch(self, job_id: int, folder: Path, out_csv: Path, batch_size: int = 4) -> None:
        """Score ``folder`` into ``out_csv`` with ``cxrviewer.batch.score_folder``."""
        with self._cond:
            if self._batch is not None:
                self._batch.cancel.set()
            self._batch = _BatchRun(job_id, Path(folder), Path(out_csv), max(1, batch_size))
            self._batch_started = False
            self._cond.notify()

    def cancel_batch(self) -> None:
        with self._cond:
            if self._batch is not None:
                self._batch.cancel.set()
                self._cond.notify()

    @property
    def batch_running(self) -> bool:
        return self._batch is not None

    def stop(self, wait_ms: int = 60000) -> bool:
        with self._cond:
            self._stopping = True
            if self._batch is not None:
                self._batch.cancel.set()
            self._cond.notify()
        if self.isRunning():
            return self.wait(wait_ms)
        return True

    # ---- worker thread -------------------------------------------------------------
    def _has_work(self) -> bool:
        return (
            self._model_request is not self._NO_REQUEST
            or self._prediction is not None
            or bool(self._gradcams)
            or (self._batch is not None and not self._batch_started)
        )

    def run(self) -> None:
        threading.current_thread().name = "cxrviewer-inference"  # readable in logs and tracebacks
        lower_thread_priority(self.NICE)
        while True:
            with self._cond:
                while not self._stopping and not self._has_work():
                    self._cond.wait()
                if self._stopping:
                    break
                task = self._take_task()
            try:
                task()
            except Exception:  # keep serving: one failure must not end inference
                log.error("inference worker error:\n%s", traceback.format_exc())
        self._predictor = None

    def _take_task(self) -> Callable[[], None]:
        """Pick the next piece of work, most urgent first (called under the lock)."""
        if self._model_request is not self._NO_REQUEST:
            path, self._model_request = self._model_request, self._NO_REQUEST
            return lambda: self._load_model(path)
        interactive = self._take_interactive()
        if interactive is not None:
            return interactive
        run = self._batch
        self._batch_started = True
        return lambda: self._run_batch(run)

    def _take_interactive(self) -> Callable[[], None] | None:
        """The reader's waiting request, if any (called under the lock)."""
        if self._prediction is not None:
            req, self._prediction = self._prediction, None
            return lambda: self._predict(*req)
        if self._gradcams:
            label = next(iter(self._gradcams))
            req = self._gradcams.pop(label)
            return lambda: self._gradcam(*req)
        return None

    def _serve_interactive(self) -> None:
        """Run the reader's waiting requests now (from inside a batch, between films)."""
        while True:
            with self._cond:
                if self._stopping:
                    return
                task = self._take_interactive()
            if task is None:
                return
            try:
                task()
            except Exception:
                log.error("inference worker error:\n%s", traceback.format_exc())

    def _is_current(self, path: Path, generation: int) -> bool:
        with self._cond:
            return self._current == (path, generation)

    def _load_model(self, path: Path | None) -> None:
        self.model_loading.emit(path)
        t0 = time.perf_counter()
        self.model_thread_ident = threading.get_ident()
        try:
            from cxrviewer.model import load_model  # imports TensorFlow, here only

            predictor = load_model(path)
            # Trace the model (and Grad-CAM) now, while the window says "loading model",
            # rather than on the first film the reader opens.
            warm_up = getattr(predictor, "warm_up", None)
            if warm_up is not None:
                warm_up()
        except Exception as exc:
            reason = describe_error(exc)
            if not _is_model_load_error(exc):
                log.debug("model load failed:\n%s", traceback.format_exc())
            self.model_failed.emit(reason)
            return
        self._predictor = predictor
        # TensorFlow and Keras leave millions of long-lived objects behind; a full garbage
        # collection walking them holds the GIL for a quarter of a second, from whatever
        # thread triggers it, and the window freezes. Frozen objects are never walked again.
        gc.freeze()
        self.model_load_seconds = time.perf_counter() - t0
        card = predictor.card
        device = predictor.device
        info = ModelInfo(
            name=predictor.name,
            identity=predictor.identity,
            labels=list(predictor.labels),
            thresholds={k: float(v) for k, v in card.thresholds.items()},
            device_kind=str(getattr(device, "kind", "CPU")),
            device_name=str(getattr(device, "name", "")),
            model_path=Path(predictor.model_path) if getattr(predictor, "model_path", None) else None,
            card=card,
            checksum=str(getattr(predictor, "checksum", "")),
        )
        self.model_ready.emit(info)

    def _predict(self, path: Path, generation: int, film) -> None:
        if not self._is_current(path, generation):
            return
        if self._predictor is None:
            self.prediction_failed.emit(path, generation, "no model loaded")
            return
        self.served["prediction"] += 1
        try:
            prediction = self._predictor.predict([film], batch_size=1)[0]
        except Exception as exc:
            log.debug("prediction failed:\n%s", traceback.format_exc())
            self.prediction_failed.emit(path, generation, describe_error(exc))
            return
        self.prediction_ready.emit(path, generation, prediction)

    def _gradcam(self, path: Path, generation: int, film, label: str) -> None:
        if not self._is_current(path, generation) or self._predictor is None:
            return
        self.served["gradcam"] += 1
        try:
            import numpy as np

            heat = self._predictor.gradcam(film, label)
            # Quantised here, off the GUI thread: 8 bits is what the overlay draws, and a
            # quarter of the memory in the GUI's cache.
            heat8 = (np.clip(np.asarray(heat, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        except Exception as exc:
            log.debug("Grad-CAM failed:\n%s", traceback.format_exc())
            self.gradcam_failed.emit(path, generation, label, describe_error(exc))
            return
        self.gradcam_ready.emit(path, generation, label, heat8)

    # ---- batch ---------------------------------------------------------------------
    # Rows reach the GUI at most this often: each emit costs the GUI thread a little, and
    # a table that redraws per film makes the event loop stutter on fast models.
    ROW_INTERVAL_S = 0.2

    def _run_batch(self, run: _BatchRun) -> None:
        """The whole folder through ``cxrviewer.batch.score_folder`` (the CLI's engine),
        serving the reader's requests between films so the film on screen never waits
        for the batch."""
        predictor = self._predictor
        t0 = time.perf_counter()
        pending: list[BatchRow] = []
        last = [time.monotonic(), -2]  # last rows emit, last total reported
        failed = [0]

        def flush():
            if pending:
                self.batch_rows.emit(run.job_id, list(pending))
                pending.clear()

        def progress(p) -> None:
            if p.row is not None:
                pending.append(BatchRow.from_scored(p.row))
                failed[0] += int(p.row.is_error)
                self.served["batch_films"] += 1
            total = -1 if p.total is None else int(p.total)
            now = time.monotonic()
            if now - last[0] >= self.ROW_INTERVAL_S or total != last[1]:
                flush()
                self.batch_progress.emit(run.job_id, int(p.done), total)
                last[0], last[1] = now, total
            self._serve_interactive()
            if self._stopping:
                run.cancel.set()

        error, summary = "", None
        if predictor is None:
            error = "no model loaded"
        else:
            try:
                from cxrviewer.batch import ScoreError, score_folder

                try:
                    summary = score_folder(run.folder, run.out_csv, predictor, batch_size=run.batch_size,
                                           workers=2, progress=progress, stop_event=run.cancel)
                except ScoreError as exc:
                    error = describe_error(exc)
            except Exception as exc:  # the engine failing must not take the viewer with it
                log.debug("batch failed:\n%s", traceback.format_exc())
                error = describe_error(exc)
        flush()
        with self._cond:
            if self._batch is run:
                self._batch = None
                self._batch_started = False
        done = summary.done if summary else 0
        result = BatchSummary(
            job_id=run.job_id,
            total=done + (summary.skipped if summary else 0),
            done=done,
            failed=summary.errors if summary else failed[0],
            cancelled=bool(summary.stopped) if summary else run.cancel.is_set(),
            seconds=time.perf_counter() - t0,
            results_csv=run.out_csv if summary else None,
            model_name=getattr(predictor, "name", "") if predictor else "",
            model_sha256=getattr(predictor, "checksum", "") if predictor else "",
            labels=list(getattr(predictor, "labels", []) or []) if predictor else [],
            error=error,
        )
        self.batch_finished.emit(run.job_id, result)


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's nice value (Linux: per thread; elsewhere: no-op)."""
    if increment <= 0 or not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError:  # not permitted in some sandboxes: only responsiveness is at stake
        pass


def _is_model_load_error(exc: BaseException) -> bool:
    try:
        from cxrviewer.model import ModelLoadError
    except ImportError:
        return False
    return isinstance(exc, ModelLoadError)
