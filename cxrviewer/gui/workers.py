"""Background work for the viewer: an I/O pool for decoding, one inference thread for the model.

- ``IOPool``: a QThreadPool (2 threads) running plain Python callables (film decoding,
  thumbnails, folder listing, metrics). Results, errors and progress come back to the GUI
  thread by queued signals and are handed to the callbacks given at submit time.
- ``InferenceWorker``: ONE QThread that owns the Predictor, so TensorFlow is imported
  there (never on the GUI thread) and model calls are serialised. Interactive requests
  carry the film path and generation they were made for; a newer request replaces an
  older one still waiting, and requests for a film no longer shown are dropped before
  they run. A batch over a folder runs here in short steps, so a reader's film still
  gets its probabilities between batch steps.
"""

from __future__ import annotations

import itertools
import logging
import queue
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

    @property
    def pending(self) -> int:
        return len(self._callbacks)

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
    """One scored (or failed) film of a batch, as the results table and CSV need it."""

    path: Path
    rel: str
    status: str  # "ok", "warning: <text>" or "error: <text>"
    probabilities: dict[str, float] | None
    calls: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.status.split(":", 1)[0]


@dataclass
class BatchSummary:
    job_id: int
    total: int
    done: int
    failed: int
    cancelled: bool
    seconds: float
    model_name: str = ""
    model_sha256: str = ""
    labels: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class _BatchRun:
    job_id: int
    folder: Path
    batch_size: int
    started: float = field(default_factory=time.perf_counter)
    paths: list[Path] | None = None
    next_index: int = 0
    in_flight: int = 0
    ready: queue.Queue = field(default_factory=queue.Queue)
    done: int = 0
    failed: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)


class _DecodeForBatch(QRunnable):
    """Decode + prepare one film on the I/O pool and hand it to the batch's queue."""

    def __init__(self, run: _BatchRun, path: Path, predictor):
        super().__init__()
        self.setAutoDelete(True)
        self._run, self._path, self._predictor = run, path, predictor

    def run(self) -> None:
        item = (self._path, None, None, "")
        if not self._run.cancel.is_set():
            try:
                from cxrviewer.io import load_film

                film = load_film(self._path)
                x = self._predictor.prepare(film)
                item = (self._path, film, x, "")
            except Exception as exc:
                item = (self._path, None, None, describe_error(exc))
        self._run.ready.put(item)


def status_for(prediction, error: str = "") -> str:
    """The results-CSV status text of one film."""
    if error:
        return "error: " + error
    warnings = list(getattr(prediction, "warnings", []) or [])
    if warnings:
        return "warning: " + "; ".join(" ".join(w.split()) for w in warnings)
    return "ok"


class InferenceWorker(QThread):
    """The one thread that touches TensorFlow."""

    model_loading = Signal(object)  # requested path (None = shipped model)
    model_ready = Signal(object)  # ModelInfo
    model_failed = Signal(str)  # one-line reason, says how to get a model
    prediction_ready = Signal(object, int, object)  # path, generation, Prediction
    prediction_failed = Signal(object, int, str)
    gradcam_ready = Signal(object, int, str, object)  # path, generation, label, float32 map
    gradcam_failed = Signal(object, int, str, str)  # path, generation, label, reason
    batch_started = Signal(int, int)  # job id, number of films
    batch_rows = Signal(int, object)  # job id, list[BatchRow]
    batch_finished = Signal(int, object)  # job id, BatchSummary

    _NO_REQUEST = object()

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
        self._predictor = None
        # For tests and the benchmark: the thread that imported TensorFlow and when.
        self.model_thread_ident: int | None = None
        self.model_load_seconds: float | None = None

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

    def start_batch(self, job_id: int, folder: Path, batch_size: int = 4) -> None:
        with self._cond:
            if self._batch is not None:
                self._batch.cancel.set()
            self._batch = _BatchRun(job_id, Path(folder), max(1, batch_size))
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
            or self._batch is not None
        )

    def run(self) -> None:
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
        if self._prediction is not None:
            req, self._prediction = self._prediction, None
            return lambda: self._predict(*req)
        if self._gradcams:
            label = next(iter(self._gradcams))
            req = self._gradcams.pop(label)
            return lambda: self._gradcam(*req)
        run = self._batch
        return lambda: self._batch_step(run)

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
        except Exception as exc:
            reason = describe_error(exc)
            if not _is_model_load_error(exc):
                log.debug("model load failed:\n%s", traceback.format_exc())
            self.model_failed.emit(reason)
            return
        self._predictor = predictor
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
        try:
            heat = self._predictor.gradcam(film, label)
        except Exception as exc:
            log.debug("Grad-CAM failed:\n%s", traceback.format_exc())
            self.gradcam_failed.emit(path, generation, label, describe_error(exc))
            return
        self.gradcam_ready.emit(path, generation, label, heat)

    # ---- batch ---------------------------------------------------------------------
    def _batch_step(self, run: _BatchRun) -> None:
        """A bounded slice of batch work, so interactive requests wait at most one step."""
        predictor = self._predictor
        if run.paths is None:
            if predictor is None:
                self._end_batch(run, error="no model loaded")
                return
            try:
                from cxrviewer.io import list_films

                run.paths = list(list_films(run.folder))
            except Exception as exc:
                self._end_batch(run, error=describe_error(exc))
                return
            self.batch_started.emit(run.job_id, len(run.paths))
        if run.cancel.is_set() or self._stopping:
            self._end_batch(run)
            return
        # Keep a small window of decodes in flight: the model never waits on the disk, and
        # memory stays bounded whatever the folder size.
        window = run.batch_size + 2
        while run.in_flight < window and run.next_index < len(run.paths):
            task = _DecodeForBatch(run, run.paths[run.next_index], predictor)
            run.next_index += 1
            run.in_flight += 1
            if self._io_pool is not None:
                self._io_pool.pool.start(task, IOPool.PRIORITY_BATCH)
            else:
                task.run()
        if run.in_flight == 0:
            self._end_batch(run)
            return
        items = []
        try:
            items.append(run.ready.get(timeout=0.1))
        except queue.Empty:
            return
        while len(items) < run.batch_size:
            try:
                items.append(run.ready.get_nowait())
            except queue.Empty:
                break
        run.in_flight -= len(items)
        self._score_items(run, predictor, items)

    def _score_items(self, run: _BatchRun, predictor, items) -> None:
        import numpy as np

        rows: list[BatchRow] = []
        good = [(p, f, x) for p, f, x, err in items if not err]
        preds = {}
        if good:
            try:
                out = predictor.predict_arrays(np.stack([x for _, _, x in good]))
                for (p, f, _), row in zip(good, out):
                    preds[p] = predictor.to_prediction(f, row)
            except Exception as exc:
                reason = describe_error(exc)
                for p, _, _ in good:
                    preds[p] = reason
        for p, _, _, err in items:
            result = preds.get(p, err)
            rel = _relative(p, run.folder)
            if isinstance(result, str):
                rows.append(BatchRow(p, rel, status_for(None, result), None))
                run.failed += 1
            else:
                rows.append(
                    BatchRow(p, rel, status_for(result), dict(result.probabilities), list(result.calls))
                )
        run.done += len(rows)
        self.batch_rows.emit(run.job_id, rows)

    def _end_batch(self, run: _BatchRun, error: str = "") -> None:
        with self._cond:
            if self._batch is run:
                self._batch = None
        p = self._predictor
        summary = BatchSummary(
            job_id=run.job_id,
            total=len(run.paths or []),
            done=run.done,
            failed=run.failed,
            cancelled=run.cancel.is_set(),
            seconds=time.perf_counter() - run.started,
            model_name=getattr(p, "name", "") if p else "",
            model_sha256=getattr(p, "checksum", "") if p else "",
            labels=list(getattr(p, "labels", []) or []) if p else [],
            error=error,
        )
        self.batch_finished.emit(run.job_id, summary)


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return Path(path).name


def _is_model_load_error(exc: BaseException) -> bool:
    try:
        from cxrviewer.model import ModelLoadError
    except ImportError:
        return False
    return isinstance(exc, ModelLoadError)
