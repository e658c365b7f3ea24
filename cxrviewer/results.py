"""The results CSV that ``cxrviewer score`` writes and ``evaluate`` and the GUI read.

Header: ``path,status,<one probability column per active label>,calls,model,model_sha256``.

* ``path``: relative to the scored folder, ``/`` separators;
* ``status``: ``ok``, ``warning: <text>`` or ``error: <text>``, always one line;
* probabilities ``%.6f``, empty on an error row;
* ``calls``: ``|``-separated labels at or above the card thresholds;
* ``model``: the card name; ``model_sha256``: full sha256 of the ``.keras`` file.

Every row ends with ``\\n``; a file that does not was cut mid-row by a kill, so the reader
drops that partial last row (the batch scorer then rescores that film on resume).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrviewer.fsutil import atomic_path

LEADING_COLUMNS = ("path", "status")
TRAILING_COLUMNS = ("calls", "model", "model_sha256")
RESULT_FIXED_COLUMNS = LEADING_COLUMNS + TRAILING_COLUMNS

STATUS_OK = "ok"
WARNING_PREFIX = "warning: "
ERROR_PREFIX = "error: "
PROBABILITY_FORMAT = "%.6f"
CALLS_SEPARATOR = "|"


class ResultsFileError(ValueError):
    """A results CSV cannot be read; str() is ``"<file name>: <one-line reason>"``."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path.name}: {self.reason}")


# ---- statuses --------------------------------------------------------------------------
def _one_line(text) -> str:
    if isinstance(text, (list, tuple)):
        text = "; ".join(str(t) for t in text)
    return " ".join(str(text).split())


def status_ok() -> str:
    return STATUS_OK


def status_warning(text) -> str:
    """``warning: <text>``; a list of warnings is joined with '; '."""
    return WARNING_PREFIX + (_one_line(text) or "unspecified")


def status_error(text) -> str:
    return ERROR_PREFIX + (_one_line(text) or "unspecified")


def is_error(status: str) -> bool:
    return status.startswith(ERROR_PREFIX.rstrip()) or status == "error"


def is_warning(status: str) -> bool:
    return status.startswith(WARNING_PREFIX.rstrip())


# ---- writing -------------------------------------------------------------------------
def result_header(labels) -> list[str]:
    return [*LEADING_COLUMNS, *labels, *TRAILING_COLUMNS]


def format_row(path, status: str, probabilities, calls, model_name: str, model_sha256: str, labels) -> list[str]:
    """One results row as CSV fields (give them to ``csv.writer`` or ``format_line``).

    ``probabilities``: dict label -> float, a sequence in ``labels`` order, or None (error
    row: empty cells). ``calls``: list of labels or an already joined string.
    """
    path = str(path).replace("\\", "/")
    if probabilities is None:
        probs = [""] * len(labels)
    else:
        if isinstance(probabilities, dict):
            values = [probabilities.get(lab) for lab in labels]
        else:
            values = list(probabilities)
            if len(values) != len(labels):
                raise ValueError(f"{len(values)} probabilities for {len(labels)} labels")
        probs = ["" if v is None or not math.isfinite(float(v)) else PROBABILITY_FORMAT % float(v)
                 for v in values]
    if calls is None:
        calls = ""
    elif not isinstance(calls, str):
        calls = CALLS_SEPARATOR.join(calls)
    return [path, _one_line(status), *probs, calls, model_name, model_sha256]


def format_line(fields) -> str:
    """CSV text for one row (or the header), ending in ``\\n``."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()


def write_results(target: str | Path, labels, rows) -> None:
    """Write a whole results CSV atomically (merge, GUI export). ``rows`` are field lists."""
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(format_line(result_header(labels)))
            for row in rows:
                fh.write(format_line(row))


# ---- reading -------------------------------------------------------------------------
@dataclass
class ResultsTable:
    source: Path
    labels: list[str]
    paths: list[str]
    statuses: list[str]
    probabilities: np.ndarray  # float64 (n, len(labels)); NaN on error rows
    calls: list[list[str]]
    model_names: list[str]
    model_sha256s: list[str]
    truncated: bool = False  # a partial last row (killed writer) was dropped
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def error_mask(self) -> np.ndarray:
        return np.array([is_error(s) for s in self.statuses], dtype=bool)

    @property
    def scored_mask(self) -> np.ndarray:
        """Rows with a full set of probabilities (ok and warning rows)."""
        return ~self.error_mask & np.isfinite(self.probabilities).all(axis=1)

    @property
    def models(self) -> list[tuple[str, str]]:
        """Distinct (name, sha256) pairs in first-seen order."""
        return list(dict.fromkeys(zip(self.model_names, self.model_sha256s)))

    @property
    def model_name(self) -> str | None:
        m = self.models
        return m[0][0] if len(m) == 1 else None

    @property
    def model_sha256(self) -> str | None:
        m = self.models
        return m[0][1] if len(m) == 1 else None

    @property
    def model_identity(self) -> str | None:
        """``name@sha12`` when every row comes from one model."""
        m = self.models
        return f"{m[0][0]}@{m[0][1][:12]}" if len(m) == 1 else None

    def rows_for_model(self, sha256: str) -> "ResultsTable":
        keep = [i for i, s in enumerate(self.model_sha256s) if s == sha256]
        return self._subset(keep)

    def latest_per_path(self) -> "ResultsTable":
        """One row per path, the last one written (a rescored film appends a new row)."""
        last = {p: i for i, p in enumerate(self.paths)}
        return self._subset(sorted(last.values()))

    def _subset(self, idx) -> "ResultsTable":
        return ResultsTable(
            self.source, list(self.labels), [self.paths[i] for i in idx], [self.statuses[i] for i in idx],
            self.probabilities[idx] if len(idx) else np.zeros((0, len(self.labels))),
            [self.calls[i] for i in idx], [self.model_names[i] for i in idx],
            [self.model_sha256s[i] for i in idx], self.truncated, list(self.warnings))


def read_results(path: str | Path) -> ResultsTable:
    """Read a results CSV; raises ResultsFileError naming the file for unusable input.

    A partial final row (no trailing newline: the writer was killed) is dropped and
    ``truncated`` set. A malformed row elsewhere is skipped with a warning.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ResultsFileError(path, "file not found") from None
    except UnicodeDecodeError:
        raise ResultsFileError(path, "not a UTF-8 text file") from None
    except OSError as exc:
        raise ResultsFileError(path, f"cannot read ({exc.strerror or exc})") from None
    truncated = bool(text) and not text.endswith("\n")
    if truncated:
        text = text[: text.rfind("\n") + 1]
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ResultsFileError(path, f"not a readable CSV ({exc})") from None
    if not rows:
        raise ResultsFileError(path, "empty file (no header)" if not truncated else "only a partial header")
    header = rows[0]
    nl, nt = len(LEADING_COLUMNS), len(TRAILING_COLUMNS)
    if (len(header) < nl + nt + 1 or tuple(header[:nl]) != LEADING_COLUMNS
            or tuple(header[-nt:]) != TRAILING_COLUMNS):
        raise ResultsFileError(
            path, f"not a cxrviewer results file (header must be {','.join(LEADING_COLUMNS)},<labels>,"
                  f"{','.join(TRAILING_COLUMNS)})")
    labels = header[nl:-nt]
    width = len(header)
    paths, statuses, probs, calls, names, shas, warnings = [], [], [], [], [], [], []
    bad_rows = []
    for lineno, r in enumerate(rows[1:], start=2):
        if not r:
            continue
        if len(r) != width:
            bad_rows.append(lineno)
            continue
        try:
            p = [float(c) if c.strip() else np.nan for c in r[nl:-nt]]
        except ValueError:
            bad_rows.append(lineno)
            continue
        if any(not (0.0 <= v <= 1.0) for v in p if not math.isnan(v)):
            bad_rows.append(lineno)
            continue
        status = r[1]
        if is_error(status):
            p = [np.nan] * len(labels)
        paths.append(r[0])
        statuses.append(status)
        probs.append(p)
        c = r[-nt]
        calls.append([x for x in c.split(CALLS_SEPARATOR) if x] if c else [])
        names.append(r[-2])
        shas.append(r[-1])
    if bad_rows:
        shown = ", ".join(str(n) for n in bad_rows[:5]) + (" ..." if len(bad_rows) > 5 else "")
        warnings.append(f"{len(bad_rows)} malformed rows skipped (lines {shown})")
    if truncated:
        warnings.append("the last row was incomplete (interrupted writer) and was ignored")
    matrix = np.array(probs, dtype=np.float64).reshape(len(paths), len(labels))
    return ResultsTable(path, labels, paths, statuses, matrix, calls, names, shas, truncated, warnings)
