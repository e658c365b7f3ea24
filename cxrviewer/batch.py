"""Batch scoring: every film in a folder tree -> one results CSV row each (``cxrviewer score``).

``score_folder`` is the engine the command line and the GUI's batch panel share. Films are
listed lazily (``cxrviewer.io.list_films``), decoded and prepared by a thread pool while the
model scores the previous batch (``cxrviewer.model.pipeline.iter_prepared``), and the rows
appended to the CSV a batch at a time with an fsync (``cxrviewer.results_log``), so a run can
be stopped or killed at any moment and resumed by running it again. A bad file becomes an
``error:`` row; loader and model warnings become a ``warning:`` status on a scored row.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.progress import ProgressPrinter, RateMeter, format_duration
from cxrviewer.results import is_error, is_warning, status_error, status_ok, status_warning
from cxrviewer.results_log import ResultsLog, ResultsLogError, ResumeState
from cxrviewer.shards import MergeError, in_shard, merge_results

EXIT_OK, EXIT_FILE_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
GRADCAM_TOP_K = 3


class ScoreError(Exception):
    """The run cannot start (bad folder, unusable --out...); one line for the user."""


@dataclass
class ScoredRow:
    """One film's outcome as written to the CSV (``fields``), and as the GUI shows it."""

    path: Path  # the film
    relpath: str  # relative to the scored folder, "/" separators (the CSV's path)
    status: str
    probabilities: dict[str, float] | None  # None on an error row
    calls: list[str]
    fields: list[str]  # the CSV row
    overlay: Path | None = None

    @property
    def is_error(self) -> bool:
        return is_error(self.status)

    @property
    def is_warning(self) -> bool:
        return is_warning(self.status)


@dataclass
class ScoreProgress:
    """What a progress callback receives after each film.

    done/total count films of this run (total is None while the folder is still being
    counted in the background); ``row`` is the film just written (None for a film that only
    got its missing overlay); ``message`` is a line worth showing once (an error, a note).
    """

    done: int
    total: int | None
    films_per_s: float | None
    eta_s: float | None
    ok: int = 0
    warnings: int = 0
    errors: int = 0
    skipped: int = 0
    row: ScoredRow | None = None
    message: str | None = None


@dataclass
class ScoreSummary:
    folder: Path
    out: Path
    model: str  # name@sha12
    shard: tuple[int, int] | None = None
    done: int = 0  # films handled in this run
    ok: int = 0
    warnings: int = 0
    errors: int = 0
    skipped: int = 0  # already in the CSV from an earlier run with this model
    overlays: int = 0  # Grad-CAM PNGs written
    stopped: bool = False  # stop event or Ctrl-C before the end
    elapsed_s: float = 0.0
    resume: ResumeState = field(default_factory=ResumeState)
    notes: list[str] = field(default_factory=list)

    @property
    def films_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """130 stopped, 1 when any film failed, else 0 (warnings are fine)."""
        if self.stopped:
            return EXIT_INTERRUPTED
        return EXIT_FILE_ERRORS if self.errors else EXIT_OK

    def lines(self) -> list[str]:
        shard = f" (shard {self.shard[0]}/{self.shard[1]})" if self.shard else ""
        head = "stopped after" if self.stopped else "scored"
        out = [f"{head} {self.done} films{shard} in {format_duration(self.elapsed_s)} "
               f"({self.films_per_s:.1f} films/s): {self.ok} ok, {self.warnings} with warnings, "
               f"{self.errors} failed" + (f"; {self.skipped} already scored, skipped" if self.skipped else "")]
        if self.overlays:
            out.append(f"{self.overlays} Grad-CAM overlays written")
        out.extend(self.notes)
        out.append(f"results: {self.out} ({self.model}). {NOT_FOR_DIAGNOSIS}")
        if self.stopped:
            out.append("run the same command again to score the rest")
        return out


def relative_path(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


class _FilmCounter(threading.Thread):
    """Counts the films a run will handle, in the background, so the progress can show a
    total and an ETA without holding the file list in memory or delaying the first film."""

    def __init__(self, make_iter: Callable):
        super().__init__(name="cxr-count-films", daemon=True)
        self._make_iter = make_iter
        self._stop = threading.Event()
        self.total: int | None = None

    def run(self) -> None:
        n = 0
        for _ in self._make_iter():
            if self._stop.is_set():
                return
            n += 1
        self.total = n

    def stop(self) -> None:
        self._stop.set()


def score_folder(folder, out_csv, predictor, *, gradcam_dir=None, shard: tuple[int, int] | None = None,
                 batch_size: int = 8, workers: int = 0, progress: Callable[[ScoreProgress], None] | None = None,
                 stop_event: threading.Event | None = None) -> ScoreSummary:
    """Score every film under ``folder`` into ``out_csv``; resumes an earlier run's CSV.

    predictor: a loaded ``cxrviewer.model.Predictor``. gradcam_dir: also write
    ``<relpath>.gradcam.png`` overlays there (probabilities then come from
    ``Predictor.explain``, one forward pass per film). shard: ``(i, n)`` scores only films in
    shard i of n (``cxrviewer.shards``). workers: decode threads (0: automatic).
    progress: called after every film with a ``ScoreProgress`` (from this thread).
    stop_event: when set, the run finishes the batch in flight, closes the CSV and returns
    with ``stopped``; Ctrl-C (KeyboardInterrupt) does the same. Raises ScoreError when the
    run cannot start; bad films never raise.
    """
    from cxrviewer.io import list_films
    from cxrviewer.model.pipeline import iter_prepared

    folder = Path(folder)
    out_csv = Path(out_csv)
    if not folder.is_dir():
        raise ScoreError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    if batch_size < 1:
        raise ScoreError(f"--batch-size {batch_size}: must be at least 1")
    if workers < 0:
        raise ScoreError(f"--workers {workers}: must be 0 (automatic) or more")
    if shard is not None and not (len(shard) == 2 and 1 <= shard[0] <= shard[1]):
        raise ScoreError(f"--shard {'/'.join(map(str, shard))}: use I/N with 1 <= I <= N")
    folder = folder.resolve()
    gradcam_root = Path(gradcam_dir).resolve() if gradcam_dir is not None else None
    if gradcam_root is not None and gradcam_root.exists() and not gradcam_root.is_dir():
        raise ScoreError(f"{gradcam_root}: --gradcam-dir exists and is not a folder")
    stop_event = stop_event or threading.Event()

    try:
        log = ResultsLog.open(out_csv, predictor.labels, predictor.name, predictor.checksum)
    except ResultsLogError as exc:
        raise ScoreError(str(exc)) from None
    summary = ScoreSummary(folder, out_csv, predictor.identity, shard, resume=log.resume,
                           notes=log.resume.notes())
    done_before = log.resume.done

    def overlay_missing(rel: str) -> bool:
        from cxrviewer.overlay import overlay_path

        return gradcam_root is not None and not overlay_path(gradcam_root, rel).exists()

    def films(count_skipped: bool):
        for path in list_films(folder):
            if gradcam_root is not None and path.resolve().is_relative_to(gradcam_root):
                continue  # our own overlays when --gradcam-dir is inside the folder
            rel = relative_path(path, folder)
            if not in_shard(rel, shard):
                continue
            if rel in done_before and not overlay_missing(rel):
                if count_skipped:
                    summary.skipped += 1
                continue
            yield path

    counter = _FilmCounter(lambda: films(False))
    counter.start()
    meter = RateMeter()
    started = time.monotonic()

    def report(row: ScoredRow | None, message: str | None = None) -> None:
        if progress is None:
            return
        meter.update(summary.done)
        progress(ScoreProgress(summary.done, counter.total, meter.rate, meter.eta_s(summary.done, counter.total),
                               summary.ok, summary.warnings, summary.errors, summary.skipped, row, message))

    if progress is not None:
        for note in summary.notes:
            progress(ScoreProgress(0, counter.total, None, None, message=note))
    batches = iter_prepared(films(True), predictor, workers, batch_size)
    try:
        with log:
            for batch in batches:
                results = _score_batch(batch, folder, predictor, log, gradcam_root, done_before)
                log.append([r.fields for r, _, _ in results if r is not None])
                for row, overlay_written, message in results:
                    summary.done += 1
                    summary.overlays += overlay_written
                    if row is not None:
                        if row.is_error:
                            summary.errors += 1
                        elif row.is_warning:
                            summary.warnings += 1
                        else:
                            summary.ok += 1
                    report(row, message)
                if stop_event.is_set():
                    summary.stopped = True
                    break
    except KeyboardInterrupt:
        summary.stopped = True
    finally:
        batches.close()  # stops the decode threads
        counter.stop()
        summary.elapsed_s = time.monotonic() - started
    return summary


def _reason(item) -> str:
    """The failure without the file name the loader put in front (the row names the file)."""
    prefix = f"{item.path.name}: "
    return item.error[len(prefix):] if item.error.startswith(prefix) else item.error


def _score_batch(batch, folder, predictor, log, gradcam_root, done_before):
    """One ``PreparedBatch`` -> list of (ScoredRow or None, overlays written, message), in order."""
    predictions, maps = {}, {}
    if gradcam_root is None and batch.films:
        outputs = predictor.predict_arrays(batch.x)
        predictions = {id(f): predictor.to_prediction(f, o) for f, o in zip(batch.films, outputs)}
    elif batch.films:
        # Probabilities and the overlays' Grad-CAM maps from one batched forward pass.
        from cxrviewer.overlay import choose_findings

        explained = predictor.explain_batch(batch.films, x=batch.x,
                                            choose=lambda p: choose_findings(p, GRADCAM_TOP_K))
        for film, (pred, film_maps) in zip(batch.films, explained):
            predictions[id(film)], maps[id(film)] = pred, film_maps
    results = []
    for item in batch.items:
        rel = relative_path(item.path, folder)
        if rel in done_before:  # scored before; only its Grad-CAM overlay is missing
            if item.error is not None:
                results.append((None, 0, f"{rel}: overlay not written: {_reason(item)}"))
                continue
            written, problem = _draw(item, rel, predictions[id(item.film)], maps[id(item.film)],
                                     predictor, gradcam_root)
            results.append((None, int(written is not None), problem))
            continue
        if item.error is not None:
            status = status_error(item.error)
            results.append((ScoredRow(item.path, rel, status, None, [], log.row(rel, status, None, [])), 0,
                            f"{rel}: failed: {_reason(item)}"))
            continue
        overlay, message = None, None
        pred = predictions[id(item.film)]
        warnings = list(pred.warnings)
        if gradcam_root is not None:
            overlay, problem = _draw(item, rel, pred, maps[id(item.film)], predictor, gradcam_root)
            warnings += [problem] if problem else []
            message = f"{rel}: {problem}" if problem else None
        status = status_warning(warnings) if warnings else status_ok()
        row = ScoredRow(item.path, rel, status, dict(pred.probabilities), list(pred.calls),
                        log.row(rel, status, pred.probabilities, pred.calls), overlay)
        results.append((row, int(overlay is not None), message))
    return results


def _draw(item, rel, pred, maps, predictor, gradcam_root):
    """Overlay PNG of a film's mapped findings -> (path or None, problem text or None).

    The findings mapped are up to ``GRADCAM_TOP_K`` calls (above threshold), most probable
    first, whatever their rank among all labels; else the most probable label alone.
    """
    from cxrviewer.overlay import overlay_path, write_overlay

    findings = [(lab, pred.probabilities[lab], cam, lab in pred.calls) for lab, cam in maps.items()]
    target = overlay_path(gradcam_root, rel)
    try:
        write_overlay(target, item.film.pixels, findings, footer=predictor.identity)
    except OSError as exc:
        return None, f"Grad-CAM overlay not written ({exc.strerror or exc})"
    return target, None


# ---- command line --------------------------------------------------------------------
@contextlib.contextmanager
def _ctrl_c_stops(stop_event: threading.Event, say: Callable[[str], None]):
    """First Ctrl-C: finish the batch in flight and stop cleanly. Second: stop at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop_event.is_set():
            raise KeyboardInterrupt
        stop_event.set()
        say("stopping after the batch in progress (press Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def report_dir_for(out_csv: str | Path) -> Path:
    """``results.csv`` -> ``results_report/`` beside it."""
    out_csv = Path(out_csv)
    return out_csv.with_name(f"{out_csv.stem}_report")


def _usage_error(text: str) -> int:
    print(f"cxrviewer score: {text}", file=sys.stderr)
    return EXIT_USAGE


def score_command(args) -> int:
    """``cxrviewer score FOLDER --out CSV [--model M] [--gradcam-dir D] [--labels L] [--shard I/N]``."""
    folder = Path(args.folder)
    if not folder.is_dir():
        return _usage_error(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    if args.batch_size < 1:
        return _usage_error(f"--batch-size {args.batch_size}: must be at least 1")
    if args.workers < 0:
        return _usage_error(f"--workers {args.workers}: must be 0 (automatic) or more")
    if getattr(args, "labels", None):
        from cxrviewer.labels import LabelFileError, read_label_table

        try:  # a bad labels file is found now, not after a night of scoring
            read_label_table(args.labels)
        except LabelFileError as exc:
            return _usage_error(str(exc))

    from cxrviewer.model import ModelLoadError, load_model

    try:
        predictor = load_model(getattr(args, "model", None))
    except ModelLoadError as exc:
        return _usage_error(str(exc))
    printer = ProgressPrinter(sys.stderr)
    printer.message(f"{predictor.identity} on {predictor.device.summary()}; {NOT_FOR_DIAGNOSIS}")
    stop = threading.Event()
    try:
        with _ctrl_c_stops(stop, printer.message):
            summary = score_folder(folder, args.out, predictor, gradcam_dir=getattr(args, "gradcam_dir", None),
                                   shard=getattr(args, "shard", None), batch_size=args.batch_size,
                                   workers=args.workers, progress=printer, stop_event=stop)
    except ScoreError as exc:
        printer.close()
        return _usage_error(str(exc))
    printer.close()
    for line in summary.lines():
        print(line)
    code = summary.exit_code
    if summary.stopped or not getattr(args, "labels", None):
        if summary.stopped and getattr(args, "labels", None):
            print("no evaluation report: the run was stopped before the end")
        return code
    return max(code, _write_report(args, predictor, summary))


def _write_report(args, predictor, summary: ScoreSummary) -> int:
    """``score --labels``: evaluate the finished CSV into ``<out stem>_report/``."""
    from cxrviewer.evaluate import EvaluationInputError, run_evaluation
    from cxrviewer.labels import LabelFileError
    from cxrviewer.results import ResultsFileError

    target = report_dir_for(args.out)
    try:
        report, written = run_evaluation(args.out, args.labels, target, model=predictor.model_path)
    except (ResultsFileError, LabelFileError, EvaluationInputError) as exc:
        print(f"cxrviewer score: no evaluation report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"cxrviewer score: cannot write the report in {target}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FILE_ERRORS
    s = report.source
    print(f"evaluation: {s['matched']} films matched to labels ({s['unmatched']} without labels)")
    for c in report.classes:
        text = f"{c.auroc:.3f}" + (f" ({c.ci_low:.3f}-{c.ci_high:.3f})" if c.ci_low is not None else "") \
            if c.estimable else c.status
        print(f"  {c.label}: AUROC {text}")
    print(f"report: {written['html']}")
    return EXIT_OK


def merge_command(args) -> int:
    """``cxrviewer merge SHARD.csv... --out ALL.csv``."""
    try:
        summary = merge_results(args.shards, args.out)
    except MergeError as exc:
        print(f"cxrviewer merge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"cxrviewer merge: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FILE_ERRORS
    for w in summary.warnings:
        print(f"cxrviewer merge: note: {w}", file=sys.stderr)
    print(f"merged {summary.inputs} files into {summary.out}: {summary.rows} films "
          f"({summary.errors} failed), model {summary.model}")
    return EXIT_OK
