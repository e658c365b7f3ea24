"""The callables the main window runs on the I/O pool: list, load, thumbnail, export, evaluate.

Each takes the running ``Job`` first (for progress and cancellation) and calls the core
modules that own the work: ``cxrviewer.io`` to read films, ``cxrviewer.results`` to write
CSVs, ``cxrviewer.evaluate``/``metrics`` for ROC numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cxrviewer.gui.workers import Stale

LIST_CHUNK = 256
LIST_INTERVAL_S = 0.15


def list_folder(job, folder: Path, still_wanted: Callable[[], bool]) -> int:
    """Stream the folder's films to the GUI in chunks (progress), return the count."""
    from cxrviewer.io import list_films

    chunk: list[Path] = []
    count = 0
    last = time.monotonic()
    for path in list_films(folder):
        if job.cancelled or not still_wanted():
            raise Stale()
        chunk.append(Path(path))
        count += 1
        # The first film goes out at once so the reader sees it while the rest is listed.
        if count == 1 or len(chunk) >= LIST_CHUNK or time.monotonic() - last > LIST_INTERVAL_S:
            job.progress(chunk)
            chunk = []
            last = time.monotonic()
    if chunk:
        job.progress(chunk)
    return count


def load_film(job, path: Path, still_wanted: Callable[[], bool]):
    """The film for the view; skipped if the reader moved on while it waited in the queue."""
    if not still_wanted():
        raise Stale()
    from cxrviewer.io import load_film as _load

    film = _load(path)
    if not still_wanted():
        raise Stale()
    return film


def thumbnail(job, path: Path, still_wanted: Callable[[], bool]):
    """(QImage thumbnail, loader warnings) for the browser."""
    if not still_wanted():
        raise Stale()
    from cxrviewer.gui.browser import make_thumbnail
    from cxrviewer.io import load_film as _load

    film = _load(path)
    return make_thumbnail(film.pixels), list(film.warnings)


def export_results(job, source: Path, target: Path) -> Path:
    """Copy the batch's results CSV (written by ``cxrviewer.batch``, so byte for byte the
    ``cxrviewer score`` format) to the reader's file, atomically."""
    import shutil

    from cxrviewer.fsutil import atomic_path

    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)


def evaluate_csv(job, results_csv: Path, labels_csv: Path, thresholds: dict | None, threshold_note: str,
                 n_bootstrap: int = 1000):
    """ROC report of a results CSV against a labels CSV, by ``cxrviewer evaluate``'s code."""
    from cxrviewer.evaluate import evaluate_results

    return evaluate_results(
        results_csv, labels_csv, thresholds, n_bootstrap,
        threshold_source="card" if thresholds else "youden", threshold_note=threshold_note or None,
    )


def write_report(job, report, out_dir: Path) -> dict:
    from cxrviewer.evaluate import write_report as _write

    return _write(report, out_dir)
