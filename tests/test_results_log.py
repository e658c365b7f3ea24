"""The resumable results CSV on its own: creation, locking, partial header/rows, duplicates."""

from __future__ import annotations

import sys

import pytest

from cxrviewer.results import format_line, read_results, result_header
from cxrviewer.results_log import ResultsLog, ResultsLogError

LABELS = ["Cardiomegaly", "Effusion"]
SHA_A, SHA_B = "a" * 64, "b" * 64


def _open(path, sha=SHA_A):
    return ResultsLog.open(path, LABELS, "m", sha)


def test_new_file_gets_the_header_and_rows_are_on_disk_after_append(tmp_path):
    out = tmp_path / "sub" / "r.csv"
    with _open(out) as log:
        log.append([log.row("x/1.png", "ok", {"Cardiomegaly": 0.25, "Effusion": 0.5}, ["Effusion"])])
        # visible to a reader while the log is still open (flushed + fsynced)
        table = read_results(out)
        assert table.paths == ["x/1.png"] and table.calls == [["Effusion"]]
    assert out.read_text().splitlines()[0] == ",".join(result_header(LABELS))


def test_partial_header_from_a_kill_at_creation_starts_fresh(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text(format_line(result_header(LABELS))[:9])
    with _open(out) as log:
        assert log.resume.done == set()
    assert read_results(out).labels == LABELS


@pytest.mark.skipif(sys.platform == "win32", reason="advisory lock is POSIX only")
def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "r.csv"
    with _open(out):
        with pytest.raises(ResultsLogError, match="another cxrviewer score run"):
            _open(out)
    with _open(out):  # released on close
        pass


def test_duplicate_paths_are_reduced_to_the_last_row(tmp_path):
    out = tmp_path / "r.csv"
    with _open(out) as log:
        log.append([log.row("a.png", "ok", [0.1, 0.2], []), log.row("a.png", "ok", [0.3, 0.4], []),
                    log.row("b.png", "ok", [0.5, 0.6], ["Effusion"])])
    with _open(out) as log:
        assert log.resume.done == {"a.png", "b.png"} and log.resume.kept_rows == 2
    table = read_results(out)
    assert table.paths == ["a.png", "b.png"] and table.probabilities[0].tolist() == [0.3, 0.4]


def test_malformed_rows_are_dropped_with_a_backup(tmp_path):
    out = tmp_path / "r.csv"
    with _open(out) as log:
        log.append([log.row("a.png", "ok", [0.1, 0.2], [])])
    with open(out, "a") as fh:
        fh.write("b.png,ok,not-a-number,0.2,,m," + SHA_A + "\n")
    original = out.read_bytes()
    with _open(out) as log:
        assert log.resume.malformed_rows == 1 and log.resume.done == {"a.png"}
        assert log.resume.backup.read_bytes() == original
    assert read_results(out).paths == ["a.png"] and not read_results(out).warnings
