"""Decode films on a few threads while the model scores the previous batch.

``iter_prepared`` turns a (lazy) sequence of paths into batches of model inputs, in input
order, with every unreadable file reported beside the batch instead of stopping it. A
small thread pool loads and prepares films (OpenCV, pydicom and NumPy release the GIL for
the heavy parts); a bounded window of pending files keeps memory flat on folders of any
size. ``iter_predictions`` adds the model call. Batch scoring, the GUI batch panel and the
inference benchmark all use these two.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np


@dataclass
class PreparedItem:
    """One input path: its film and model input, or why it could not be used."""

    path: Path
    film: object | None = None  # cxrviewer.io.Film
    x: np.ndarray | None = None
    error: str | None = None  # one line: "<file name>: <reason>"


@dataclass
class PreparedBatch:
    """Consecutive input paths: ``items`` all of them in order, ``films``/``x`` the usable ones."""

    items: list[PreparedItem]
    films: list = field(default_factory=list)
    x: np.ndarray | None = None  # (len(films), size, size, channels) float32

    @property
    def errors(self) -> list[tuple[Path, str]]:
        return [(it.path, it.error) for it in self.items if it.error is not None]


def default_workers() -> int:
    """Decode threads: the cores minus one for the model, at least one, at most four."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _load_one(path: Path, loader: Callable, prepare: Callable) -> PreparedItem:
    from cxrviewer.io import FilmError

    try:
        film = loader(path)
        return PreparedItem(path, film, prepare(film))
    except FilmError as exc:
        return PreparedItem(path, error=str(exc))
    except Exception as exc:  # a bug or odd file must not stop a folder of thousands
        reason = " ".join(str(exc).split())[:200]
        return PreparedItem(path, error=f"{Path(path).name}: unexpected error ({type(exc).__name__}: {reason})")


def iter_prepared(
    paths: Iterable[str | Path],
    predictor,
    workers: int = 0,
    batch_size: int = 8,
    *,
    prefetch_batches: int = 2,
    loader: Callable | None = None,
) -> Iterator[PreparedBatch]:
    """Yield PreparedBatch objects in input order, decoding ahead on ``workers`` threads.

    A batch is yielded once it holds ``batch_size`` usable films (or the paths run out);
    failures travel with the batch they were met in. At most ``batch_size *
    (1 + prefetch_batches)`` files are loaded or pending at once. ``predictor`` needs only
    ``prepare(film)``. Leaving the loop early cancels the pending work.
    """
    if loader is None:
        from cxrviewer.io import load_film as loader
    workers = workers or default_workers()
    batch_size = max(1, int(batch_size))
    window = batch_size * (1 + max(0, int(prefetch_batches)))
    pending: deque = deque()
    path_iter = iter(paths)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="film-decode")

    def fill():
        while len(pending) < window:
            try:
                path = Path(next(path_iter))
            except StopIteration:
                return
            pending.append(executor.submit(_load_one, path, loader, predictor.prepare))

    def emit(items: list[PreparedItem]) -> PreparedBatch:
        usable = [it for it in items if it.error is None]
        x = np.stack([it.x for it in usable]) if usable else None
        for it in usable:
            it.x = None  # the batch array holds the data; do not keep two copies
        return PreparedBatch(items, [it.film for it in usable], x)

    try:
        fill()
        items: list[PreparedItem] = []
        n_ok = 0
        while pending:
            item = pending.popleft().result()
            fill()
            items.append(item)
            n_ok += item.error is None
            if n_ok == batch_size:
                yield emit(items)
                items, n_ok = [], 0
        if items:
            yield emit(items)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def iter_predictions(paths, predictor, workers: int = 0, batch_size: int = 8, **kwargs):
    """Yield (path, Prediction or None, error or None) for every path, in input order,
    with decoding overlapped with inference."""
    for batch in iter_prepared(paths, predictor, workers, batch_size, **kwargs):
        rows = predictor.predict_arrays(batch.x) if batch.films else []
        by_film = {id(f): predictor.to_prediction(f, r) for f, r in zip(batch.films, rows)}
        for item in batch.items:
            if item.error is not None:
                yield item.path, None, item.error
            else:
                yield item.path, by_film[id(item.film)], None
