"""The results CSV as an append-only log that survives kills and resumes where it stopped.

``ResultsLog.open`` looks at an existing file before writing anything: a file from another
tool, or one written for other labels, is refused (nothing the user made is overwritten);
rows of this model are kept and their films skipped; a partial last row (a kill mid-write)
is cut away; rows from another model and error rows are dropped so those films are scored
again, exactly once each (another model's rows are first copied to a backup file beside it).
Rows are then appended a batch at a time, flushed and fsynced, so an interruption loses at
most the batch in flight and never leaves a CSV the reader rejects.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cxrviewer.fsutil import atomic_path
from cxrviewer.results import (
    ResultsFileError,
    format_line,
    format_row,
    is_error,
    read_results,
    result_header,
)

try:  # POSIX advisory lock: two runs appending to one CSV would interleave rows.
    import fcntl
except ImportError:  # Windows: no lock; the user is told not to share --out between runs.
    fcntl = None


class ResultsLogError(Exception):
    """The results file cannot be used for this run; one line naming the file and why."""


@dataclass
class ResumeState:
    """What an existing results file held when a run started."""

    done: set[str] = field(default_factory=set)  # relative paths scored by this model
    kept_rows: int = 0
    retried_errors: int = 0  # error rows of this model dropped to try those films again
    other_model_rows: int = 0  # rows of other models dropped to rescore those films
    other_models: list[str] = field(default_factory=list)  # "name@sha12" of those models
    dropped_partial_row: bool = False  # a kill left half a row at the end
    malformed_rows: int = 0
    backup: Path | None = None  # copy of the file before rows were dropped

    def notes(self) -> list[str]:
        """What the user should hear about the existing file, one line each."""
        out = []
        if self.kept_rows:
            out.append(f"resuming: {self.kept_rows} films already scored by this model are skipped")
        if self.other_model_rows:
            out.append(f"{self.other_model_rows} rows scored by another model ({', '.join(self.other_models)}) "
                       f"are rescored with this model")
        if self.retried_errors:
            out.append(f"{self.retried_errors} films that failed before are tried again")
        if self.dropped_partial_row:
            out.append("the last row was cut off by an interruption; that film is scored again")
        if self.malformed_rows:
            out.append(f"{self.malformed_rows} malformed rows dropped; those films are scored again")
        if self.backup is not None:
            out.append(f"the previous file was saved as {self.backup.name}")
        return out


class ResultsLog:
    """An open results CSV for one model, appended to batch by batch. Use as a context manager."""

    def __init__(self, path: Path, fh, labels: list[str], model_name: str, model_sha256: str, resume: ResumeState):
        self.path = path
        self._fh = fh
        self.labels = labels
        self.model_name = model_name
        self.model_sha256 = model_sha256
        self.resume = resume

    # ---- opening --------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, labels, model_name: str, model_sha256: str) -> "ResultsLog":
        path = Path(path)
        labels = list(labels)
        header = format_line(result_header(labels)).encode("utf-8")
        if path.is_dir():
            raise ResultsLogError(f"{path.name}: is a folder; give a CSV file name for --out")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "ab")  # creates it if missing; never truncates what is there
        except OSError as exc:
            raise ResultsLogError(f"{path.name}: cannot open for writing ({exc.strerror or exc})") from None
        try:
            _lock(fh, path)
            existing = path.read_bytes()
            if header.startswith(existing):
                # New, empty, or only part of our own header (killed while creating it).
                fh = _replace_content(path, fh, header)
                return cls(path, fh, labels, model_name, model_sha256, ResumeState())
            resume, fh = _resume(path, fh, existing, header, labels, model_name, model_sha256)
            return cls(path, fh, labels, model_name, model_sha256, resume)
        except BaseException:
            fh.close()
            raise

    # ---- writing --------------------------------------------------------------------
    def row(self, relpath: str, status: str, probabilities, calls) -> list[str]:
        """CSV fields of one row for this log's labels and model."""
        return format_row(relpath, status, probabilities, calls, self.model_name, self.model_sha256, self.labels)

    def append(self, rows) -> None:
        """Append field lists as one write, then flush and fsync: they are on disk on return."""
        data = "".join(format_line(r) for r in rows).encode("utf-8")
        if not data:
            return
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()  # releases the lock
            self._fh = None

    def __enter__(self) -> "ResultsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _lock(fh, path: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise ResultsLogError(
            f"{path.name}: another cxrviewer score run is writing this file; give each run its own --out "
            "(use --shard and `cxrviewer merge` to split a folder)") from None


def _replace_content(path: Path, fh, content: bytes):
    """Atomically give ``path`` new content; return an append handle on it, locked."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(OSError):
            shutil.copymode(path, tmp)
    new = open(path, "ab")
    fh.close()  # the old inode's lock goes with it; the new one is locked right away
    try:
        _lock(new, path)
    except BaseException:
        new.close()
        raise
    return new


def _backup_name(path: Path) -> Path:
    base = f"{path.stem}.before-rescore"
    candidate, k = path.with_name(base + path.suffix), 2
    while candidate.exists():
        candidate, k = path.with_name(f"{base}-{k}{path.suffix}"), k + 1
    return candidate


def _resume(path: Path, fh, existing: bytes, header: bytes, labels, model_name, model_sha256):
    try:
        table = read_results(path)
    except ResultsFileError as exc:
        raise ResultsLogError(
            f"{exc} -- refusing to overwrite it; choose another --out or move the file away") from None
    if table.labels != labels:
        raise ResultsLogError(
            f"{path.name}: was written for other labels ({', '.join(table.labels)}) than this model's "
            f"({', '.join(labels)}); choose another --out")
    state = ResumeState(dropped_partial_row=table.truncated)
    state.malformed_rows = sum(int(m.group(1)) for w in table.warnings
                               if (m := re.match(r"(\d+) malformed rows", w)))
    keep = []
    others = {}
    for i, (rel, status, sha) in enumerate(zip(table.paths, table.statuses, table.model_sha256s)):
        if sha != model_sha256:
            state.other_model_rows += 1
            others[f"{table.model_names[i]}@{sha[:12]}"] = True
        elif is_error(status):
            state.retried_errors += 1
        else:
            keep.append(i)
    latest = {}
    for i in keep:  # a path listed twice (e.g. concatenated files) keeps its last row
        latest[table.paths[i]] = i
    keep = sorted(latest.values())
    state.other_models = list(others)
    state.kept_rows = len(keep)
    state.done = {table.paths[i] for i in keep}
    duplicates = len(latest) != len(table.paths) - state.other_model_rows - state.retried_errors
    if not (state.other_model_rows or state.retried_errors or state.malformed_rows or duplicates):
        if table.truncated:  # only a partial last row: cut it off in place
            fh.truncate(existing.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())
        return state, fh
    if state.other_model_rows or state.malformed_rows:
        state.backup = _backup_name(path)
        shutil.copy2(path, state.backup)
    body = [header]
    for i in keep:
        fields = format_row(table.paths[i], table.statuses[i], table.probabilities[i], table.calls[i],
                            table.model_names[i], table.model_sha256s[i], labels)
        body.append(format_line(fields).encode("utf-8"))
    return state, _replace_content(path, fh, b"".join(body))
