"""The callables the main window runs on the I/O pool: list, load, thumbnail, export, evaluate.

Each takes the running ``Job`` first (for progress and cancellation) and calls the core
modules that own the work: ``cxrviewer.io`` to read films, ``cxrviewer.results`` to write
CSVs, ``cxrviewer.evaluate``/``metrics`` for ROC numbers.
"""

from __future__ import annotations

import tempfile
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


def export_results(job, target: Path, labels: list[str], rows: list[list[str]]) -> Path:
    """Write the results CSV atomically in the ``cxrviewer score`` format."""
    from cxrviewer.results import write_results

    write_results(target, labels, rows)
    return Path(target)


def evaluate_rows(job, labels: list[str], rows: list[list[str]], labels_csv: Path, thresholds: dict | None,
                  threshold_note: str, n_bootstrap: int = 1000):
    """ROC report for batch rows against a labels CSV, by the same code as ``cxrviewer evaluate``.

    The rows go through a results CSV in a private temp folder so matching, error-row
    handling and task detection are exactly the command line's.
    """
    from cxrviewer.evaluate import evaluate_results
    from cxrviewer.results import write_results

    with tempfile.TemporaryDirectory(prefix="cxrviewer-roc-") as tmp:
        results_csv = Path(tmp) / "results.csv"
        write_results(results_csv, labels, rows)
        report = evaluate_results(
            results_csv, labels_csv, thresholds, n_bootstrap,
            threshold_source="card" if thresholds else "youden", threshold_note=threshold_note or None,
        )
    # The temp file is gone; say where the numbers really came from.
    report.source["results_file"] = "batch panel (unsaved)"
    return report


def write_report(job, report, out_dir: Path) -> dict:
    from cxrviewer.evaluate import write_report as _write

    return _write(report, out_dir)
