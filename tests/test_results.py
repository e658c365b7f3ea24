"""The results CSV: one definition shared by the scorer, evaluate and the GUI."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from cxrviewer.results import (
    RESULT_FIXED_COLUMNS,
    ResultsFileError,
    format_line,
    format_row,
    read_results,
    result_header,
    status_error,
    status_ok,
    status_warning,
    write_results,
)

LABELS = ["Cardiomegaly", "Effusion"]
SHA = "ab" * 32


def _write(path, rows, labels=LABELS):
    path.write_text(format_line(result_header(labels)) + "".join(format_line(r) for r in rows))


def test_header_and_row_format():
    assert result_header(LABELS) == ["path", "status", *LABELS, "calls", "model", "model_sha256"]
    assert set(RESULT_FIXED_COLUMNS) == {"path", "status", "calls", "model", "model_sha256"}
    row = format_row("sub\\a.png", status_ok(), {"Effusion": 0.5, "Cardiomegaly": 0.1234567},
                     ["Effusion"], "demo", SHA, LABELS)
    assert row == ["sub/a.png", "ok", "0.123457", "0.500000", "Effusion", "demo", SHA]
    row = format_row("b.png", status_error("cannot decode\nline two"), None, [], "demo", SHA, LABELS)
    assert row == ["b.png", "error: cannot decode line two", "", "", "", "demo", SHA]
    assert format_row("c.png", "ok", [0.2, 0.9], "Effusion", "demo", SHA, LABELS)[2:5] == ["0.200000", "0.900000", "Effusion"]
    with pytest.raises(ValueError):
        format_row("c.png", "ok", [0.2], [], "demo", SHA, LABELS)


def test_statuses_stay_one_line():
    assert status_ok() == "ok"
    assert status_warning(["lateral view?", "body part\r\nRIBCAGE"]) == "warning: lateral view?; body part RIBCAGE"
    assert status_error("") == "error: unspecified"


def test_round_trip_with_commas_quotes_and_errors(tmp_path):
    f = tmp_path / "results.csv"
    rows = [
        format_row("a, b.png", status_warning('odd "header", check'), [0.1, 0.7], ["Effusion"], "demo", SHA, LABELS),
        format_row("c.png", status_error("c.png: not a DICOM file"), None, None, "demo", SHA, LABELS),
        format_row("d.png", status_ok(), [0.9, 0.8], ["Cardiomegaly", "Effusion"], "demo", SHA, LABELS),
    ]
    write_results(f, LABELS, rows)
    t = read_results(f)
    assert t.labels == LABELS
    assert t.paths == ["a, b.png", "c.png", "d.png"]
    assert t.statuses[0] == 'warning: odd "header", check'
    assert t.error_mask.tolist() == [False, True, False]
    assert t.scored_mask.tolist() == [True, False, True]
    np.testing.assert_allclose(t.probabilities[[0, 2]], [[0.1, 0.7], [0.9, 0.8]])
    assert np.isnan(t.probabilities[1]).all()
    assert t.calls == [["Effusion"], [], ["Cardiomegaly", "Effusion"]]
    assert t.model_identity == "demo@" + SHA[:12] and t.model_sha256 == SHA
    assert not t.truncated and t.warnings == []
    with open(f, newline="") as fh:
        assert next(csv.reader(fh)) == result_header(LABELS)


def test_truncated_last_line_from_a_kill_is_ignored(tmp_path):
    f = tmp_path / "results.csv"
    _write(f, [format_row(f"{i}.png", "ok", [0.1, 0.2], [], "demo", SHA, LABELS) for i in range(3)])
    full = f.read_text()
    # Cut inside the sha of the last row: it has all its fields but is still partial.
    f.write_text(full[:-10])
    t = read_results(f)
    assert t.paths == ["0.png", "1.png"] and t.truncated
    assert any("incomplete" in w for w in t.warnings)
    # Cut right after the header line's newline plus a few bytes of row 1.
    header_len = len(format_line(result_header(LABELS)))
    f.write_text(full[: header_len + 4])
    t = read_results(f)
    assert len(t) == 0 and t.truncated and t.probabilities.shape == (0, 2)


def test_malformed_middle_row_is_skipped_with_warning(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text(format_line(result_header(LABELS)) + "a.png,ok,0.1,0.2,,demo," + SHA + "\n"
                 + "b.png,ok,0.1\n" + "c.png,ok,1.7,0.2,,demo," + SHA + "\n"
                 + "d.png,ok,0.3,0.4,,demo," + SHA + "\n")
    t = read_results(f)
    assert t.paths == ["a.png", "d.png"]
    assert "2 malformed rows skipped (lines 3, 4)" in t.warnings[0]


def test_latest_row_per_path_and_models(tmp_path):
    f = tmp_path / "results.csv"
    other = "cd" * 32
    _write(f, [
        format_row("a.png", status_error("busy"), None, [], "demo", SHA, LABELS),
        format_row("b.png", "ok", [0.5, 0.5], [], "demo2", other, LABELS),
        format_row("a.png", "ok", [0.2, 0.3], [], "demo", SHA, LABELS),
    ])
    t = read_results(f)
    assert t.models == [("demo", SHA), ("demo2", other)]
    assert t.model_identity is None and t.model_name is None
    latest = t.latest_per_path()
    assert latest.paths == ["b.png", "a.png"] and latest.statuses == ["ok", "ok"]
    only = t.rows_for_model(SHA)
    assert only.paths == ["a.png", "a.png"] and only.model_identity == "demo@" + SHA[:12]


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty"), (b"a,b,c\n1,2,3\n", "not a cxrviewer results file"), (b"path,status,calls,model,model_sha256\n", "not a cxrviewer")],
)
def test_unusable_results_files(tmp_path, content, reason):
    f = tmp_path / "r.csv"
    f.write_bytes(content)
    with pytest.raises(ResultsFileError) as err:
        read_results(f)
    assert str(err.value).startswith("r.csv: ") and reason in str(err.value)
    with pytest.raises(ResultsFileError, match="file not found"):
        read_results(tmp_path / "none.csv")


def test_nan_probability_never_written_as_a_number():
    row = format_row("a.png", "ok", [math.nan, 0.5], [], "demo", SHA, LABELS)
    assert row[2] == "" and row[3] == "0.500000"
