"""Splitting a folder's films into N deterministic shards, and joining the shards' CSVs.

A film belongs to shard ``1 + sha256(relative path) mod N``: it depends on nothing but the
film's own relative path, so every machine of a job array agrees without coordination,
films added to the archive later do not move the others between shards, and the union of
the N shards is the whole folder, each film in exactly one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cxrviewer.results import ResultsFileError, format_row, is_error, read_results, write_results


class MergeError(ValueError):
    """Shard CSVs that cannot be joined; one line naming the file."""


def shard_of(relpath: str, n: int) -> int:
    """The shard (1..n) a film's ``/``-separated relative path belongs to."""
    if n < 1:
        raise ValueError(f"number of shards must be at least 1, got {n}")
    digest = hashlib.sha256(relpath.replace("\\", "/").encode("utf-8")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % n


def in_shard(relpath: str, shard: tuple[int, int] | None) -> bool:
    """Whether the film is in shard ``(i, n)``; no shard means every film."""
    if shard is None:
        return True
    i, n = shard
    return shard_of(relpath, n) == i


@dataclass
class MergeSummary:
    out: Path
    rows: int
    inputs: int
    duplicates: int  # paths found in more than one row; one row kept each
    errors: int  # error rows in the merged file
    model: str
    warnings: list[str] = field(default_factory=list)


def merge_results(shards, out: str | Path) -> MergeSummary:
    """Join shard CSVs into ``out`` (atomic), one row per path, sorted by path.

    All shards must share the header (labels) and the model (sha256). A path in several
    rows keeps a scored row over an error row, else the row of the shard given last.
    ``out`` may exist only as a results file (e.g. an earlier merge); it is replaced.
    """
    out = Path(out)
    shards = [Path(s) for s in shards]
    if not shards:
        raise MergeError("no shard CSVs given")
    if out.exists():
        if out.is_dir():
            raise MergeError(f"{out.name}: is a folder; give a CSV file name for --out")
        if out.resolve() not in {s.resolve() for s in shards}:
            try:
                read_results(out)
            except ResultsFileError as exc:
                raise MergeError(f"{exc} -- refusing to overwrite it; choose another --out") from None
    tables = []
    for s in shards:
        try:
            tables.append(read_results(s))
        except ResultsFileError as exc:
            raise MergeError(str(exc)) from None
    first = tables[0]
    warnings = []
    models: dict[str, str] = {}
    for t in tables:
        if t.labels != first.labels:
            raise MergeError(f"{t.source.name}: its label columns differ from {first.source.name}'s; "
                             "shards must come from one model")
        for name, sha in t.models:
            models.setdefault(sha, f"{name}@{sha[:12]}")
        for w in t.warnings:
            warnings.append(f"{t.source.name}: {w}")
        if t.truncated:
            warnings.append(f"{t.source.name}: rerun that shard's `score` to score the film whose row was cut off")
    if len(models) > 1:
        raise MergeError(f"the shards hold rows of {len(models)} models ({', '.join(models.values())}); "
                         "merge one model's results at a time")
    if not any(len(t) for t in tables):
        warnings.append("the shards hold no rows")
    best: dict[str, tuple[bool, int, int]] = {}  # path -> (scored, table, row)
    total_rows = 0
    for ti, t in enumerate(tables):
        for ri, (path, status) in enumerate(zip(t.paths, t.statuses)):
            total_rows += 1
            key = (not is_error(status), ti, ri)
            if path not in best or key[0] >= best[path][0]:
                best[path] = key
    duplicates = total_rows - len(best)
    rows = []
    n_errors = 0
    for path in sorted(best):
        _, ti, ri = best[path]
        t = tables[ti]
        n_errors += is_error(t.statuses[ri])
        probs = None if is_error(t.statuses[ri]) else t.probabilities[ri]
        rows.append(format_row(path, t.statuses[ri], probs, t.calls[ri], t.model_names[ri],
                               t.model_sha256s[ri], first.labels))
    if duplicates:
        warnings.append(f"{duplicates} duplicate rows (same path) resolved: a scored row wins over an error "
                        "row, otherwise the shard given last")
    write_results(out, first.labels, rows)
    model = next(iter(models.values()), "no model")
    return MergeSummary(out, len(rows), len(shards), duplicates, n_errors, model, warnings)
