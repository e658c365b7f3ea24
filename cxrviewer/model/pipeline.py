"""Decode -> prepare -> infer overlap: films are read and prepared by a thread pool while the
model runs on the previous batch.

``iter_prepared`` takes a (lazy) iterable of paths and yields batches of ``PreparedFilm`` in
input order. Decoding (pydicom, OpenCV) and ``Predictor.prepare`` release the GIL for most
of their work, so a few threads keep the model fed. At most ``prefetch`` batches beyond the
one being yielded are in flight, so memory stays bounded whatever the number of paths, and
the path iterable is consumed only as fast as films are needed.

A file that cannot be used becomes a ``PreparedFilm`` with ``error`` set (the loader's
``FilmError``, or one made from an unexpected preparation failure); it never stops the run.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from cxrviewer.io import CorruptFilmError, Film, FilmError, load_film

DEFAULT_PREFETCH = 2  # batches decoded ahead of the one the model is working on


@dataclass
class PreparedFilm:
    """One path after decoding: the film and its model input, or why it could not be used."""

    path: Path
    film: Film | None = None
    x: np.ndarray | None = None  # (size, size, channels) float32 model input
    error: FilmError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_workers() -> int:
    """Decode threads when the caller says 0: all cores but the one feeding the model, 1..8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def prepare_one(path: Path, predictor, load: Callable[[Path], Film] = load_film) -> PreparedFilm:
    """Load and prepare one film; any failure is captured, never raised."""
    path = Path(path)
    try:
        film = load(path)
    except FilmError as exc:
        return PreparedFilm(path, error=exc)
    try:
        x = predictor.prepare(film)
    except Exception as exc:  # noqa: BLE001 - one odd film must not stop a batch
        return PreparedFilm(path, error=CorruptFilmError(path, f"cannot prepare for the model: "
                                                               f"{type(exc).__name__}: {exc}"))
    return PreparedFilm(path, film=film, x=x)


def iter_prepared(paths: Iterable, predictor, workers: int = 0, batch_size: int = 8, *,
                  prefetch: int = DEFAULT_PREFETCH,
                  load: Callable[[Path], Film] = load_film) -> Iterator[list[PreparedFilm]]:
    """Yield lists of up to ``batch_size`` PreparedFilm, in the order of ``paths``.

    workers: decode threads (0: ``default_workers()``). While the caller runs the model on
    one batch, the pool decodes the next ``prefetch`` batches. Closing the generator (break,
    exception, garbage collection) cancels what has not started and waits for the films
    being decoded, so no thread outlives it.
    """
    batch_size = max(1, int(batch_size))
    workers = int(workers) or default_workers()
    limit = batch_size * (1 + max(0, int(prefetch)))
    pending: collections.deque = collections.deque()
    source = iter(paths)
    exhausted = False
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxr-decode")
    try:
        def top_up():
            nonlocal exhausted
            while not exhausted and len(pending) < limit:
                try:
                    path = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending.append(pool.submit(prepare_one, path, predictor, load))

        top_up()
        while pending:
            batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            top_up()  # the pool decodes ahead while the caller runs the model on this batch
            yield batch
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
