"""``score_folder`` on real films: CSV contents, resume, shards, stop, Grad-CAM overlays."""

from __future__ import annotations

import shutil
import threading

import cv2
import numpy as np
import pytest

from cxrviewer.batch import ScoreError, ScoreProgress, score_folder
from cxrviewer.io import load_film
from cxrviewer.fsutil import file_sha256
from cxrviewer.overlay import overlay_path
from cxrviewer.results import read_results, result_header
from cxrviewer.shards import in_shard, merge_results, shard_of
from tests.batch_films import (  # noqa: F401 - fixtures
    BAD,
    NARROW,
    WARNED,
    expected_paths,
    film_folder,
    models,
    predictor,
    probs_of,
    rows_by_path,
)


@pytest.fixture(scope="module")
def full_run(film_folder, predictor, tmp_path_factory):
    """One complete run over the folder, shared by the read-only checks."""
    out = tmp_path_factory.mktemp("full") / "results.csv"
    seen = []
    summary = score_folder(film_folder, out, predictor, batch_size=4, workers=2, progress=seen.append)
    return out, summary, seen


def test_one_row_per_film_with_header_statuses_and_model(film_folder, predictor, models, full_run):
    out, summary, _ = full_run
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(result_header(predictor.labels))
    rows = rows_by_path(out)
    assert set(rows) == expected_paths(film_folder)  # readme.txt is not a film
    sha = file_sha256(models["a"])
    for rel, r in rows.items():
        assert r["model"] == "tiny-a" and r["model_sha256"] == sha
        if rel in BAD:
            assert r["status"].startswith("error: ")
            assert rel.split("/")[-1] in r["status"]  # the FilmError names the file
            assert all(r[lab] == "" for lab in predictor.labels) and r["calls"] == ""
        elif rel in WARNED:
            assert r["status"].startswith("warning: ") and WARNED[rel] in r["status"]
        else:
            assert r["status"] == "ok", (rel, r["status"])
    assert "empty" in rows["bad/empty.png"]["status"] and "text" in rows["bad/notes.png"]["status"]
    assert (summary.ok, summary.warnings, summary.errors) == (len(rows) - len(BAD) - len(WARNED), len(WARNED), len(BAD))
    assert summary.exit_code == 1 and not summary.stopped
    table = read_results(out)
    assert not table.truncated and not table.warnings


def test_probabilities_and_calls_match_predictor(film_folder, predictor, full_run):
    out, _, _ = full_run
    rows = rows_by_path(out)
    scored = sorted(rel for rel in rows if rel not in BAD)
    preds = predictor.predict([load_film(film_folder / rel) for rel in scored], batch_size=3)
    thresholds = predictor.card.thresholds
    for rel, pred in zip(scored, preds):
        got = probs_of(rows[rel], predictor.labels)
        want = np.array([pred.probabilities[lab] for lab in predictor.labels])
        np.testing.assert_allclose(got, want, atol=2e-6, err_msg=rel)
        calls = rows[rel]["calls"].split("|") if rows[rel]["calls"] else []
        assert calls == [lab for lab, p in zip(predictor.labels, got) if p >= thresholds[lab]]
        assert calls == pred.calls


def test_progress_reports_every_film_with_rate_and_total(film_folder, full_run):
    _, summary, seen = full_run
    film_updates = [p for p in seen if p.row is not None]
    assert [p.done for p in film_updates] == list(range(1, summary.done + 1))
    assert {p.row.relpath for p in film_updates} == expected_paths(film_folder)
    last = film_updates[-1]
    assert last.total == summary.done and last.eta_s == pytest.approx(0.0, abs=1e-6)
    assert last.films_per_s and last.films_per_s > 0
    assert last.errors == len(BAD) and last.row.fields[0] == last.row.relpath
    assert all(isinstance(p, ScoreProgress) for p in seen)


def test_resume_after_deleted_rows_and_a_kill_mid_row(film_folder, predictor, full_run, tmp_path):
    full, _, _ = full_run
    out = tmp_path / "results.csv"
    lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    removed = [body[2], body[7]]
    kept = [r for r in body if r not in removed]
    cut = kept[-1][: len(kept[-1]) // 2]  # a kill in the middle of writing the last row
    out.write_text(header + "".join(kept[:-1]) + cut, encoding="utf-8")
    assert read_results(out).truncated

    summary = score_folder(film_folder, out, predictor, batch_size=4)
    kept_ok = [r for r in kept[:-1] if "error: " not in r]
    assert summary.skipped == len(kept_ok)  # complete rows scored before are not scored again
    assert summary.done == len(body) - len(kept_ok)  # the deleted, the cut-off and the failed ones
    assert summary.resume.dropped_partial_row
    table = read_results(out)
    assert not table.truncated and not table.warnings
    assert sorted(table.paths) == sorted(expected_paths(film_folder))  # each film exactly once
    before, after = rows_by_path(full), rows_by_path(out)
    for rel in after:
        assert after[rel]["status"] == before[rel]["status"]
        if rel not in BAD:
            np.testing.assert_allclose(probs_of(after[rel], predictor.labels),
                                       probs_of(before[rel], predictor.labels), atol=2e-6)


def test_rerun_of_a_complete_csv_scores_nothing_new_but_retries_errors(film_folder, predictor, full_run, tmp_path):
    out = tmp_path / "results.csv"
    shutil.copy2(full_run[0], out)
    summary = score_folder(film_folder, out, predictor)
    # the bad files are tried again (and fail again); the rest is skipped
    assert summary.done == len(BAD) and summary.errors == len(BAD)
    assert summary.resume.retried_errors == len(BAD)
    assert sorted(read_results(out).paths) == sorted(expected_paths(film_folder))


def test_rows_of_another_model_are_rescored_and_backed_up(film_folder, models, full_run, tmp_path):
    from cxrviewer.model import load_model

    out = tmp_path / "results.csv"
    shutil.copy2(full_run[0], out)
    other = load_model(models["b"])
    summary = score_folder(film_folder, out, other)
    assert summary.done == len(expected_paths(film_folder)) and summary.skipped == 0
    assert summary.resume.other_model_rows == summary.done
    assert any("another model" in n and "tiny-a@" in n for n in summary.notes)
    table = read_results(out)
    assert table.model_sha256 == other.checksum and sorted(table.paths) == sorted(expected_paths(film_folder))
    backup = summary.resume.backup
    assert backup is not None and backup.read_bytes() == full_run[0].read_bytes()


def test_refuses_an_out_file_it_did_not_write(film_folder, predictor, tmp_path):
    out = tmp_path / "patients.csv"
    out.write_text("name,age\nsomeone,42\n")
    with pytest.raises(ScoreError, match="refusing to overwrite"):
        score_folder(film_folder, out, predictor)
    assert out.read_text() == "name,age\nsomeone,42\n"
    other_labels = tmp_path / "other.csv"
    other_labels.write_text("path,status,Pneumonia,calls,model,model_sha256\n")
    with pytest.raises(ScoreError, match="other labels"):
        score_folder(film_folder, other_labels, predictor)
    with pytest.raises(ScoreError, match="no such folder"):
        score_folder(tmp_path / "missing", tmp_path / "x.csv", predictor)
    with pytest.raises(ScoreError, match="1 <= I <= N"):
        score_folder(film_folder, tmp_path / "x.csv", predictor, shard=(0, 2))


def test_shards_partition_the_folder_and_merge_equals_full_run(film_folder, predictor, full_run, tmp_path):
    full, _, _ = full_run
    n = 3
    shard_csvs, parts = [], []
    for i in range(1, n + 1):
        out = tmp_path / f"shard{i}.csv"
        summary = score_folder(film_folder, out, predictor, shard=(i, n), batch_size=2)
        assert summary.shard == (i, n)
        paths = set(read_results(out).paths)
        assert all(shard_of(p, n) == i and in_shard(p, (i, n)) for p in paths)
        shard_csvs.append(out)
        parts.append(paths)
    assert sum(len(p) for p in parts) == len(set().union(*parts))  # disjoint
    assert set().union(*parts) == expected_paths(film_folder)

    merged = tmp_path / "all.csv"
    ms = merge_results(shard_csvs, merged)
    assert ms.rows == len(expected_paths(film_folder)) and ms.duplicates == 0
    got, want = rows_by_path(merged), rows_by_path(full)
    assert list(got) == sorted(want)  # sorted by path
    for rel in want:
        for key in ("status", "calls", "model", "model_sha256"):
            assert got[rel][key] == want[rel][key]
        if rel not in BAD:
            np.testing.assert_allclose(probs_of(got[rel], predictor.labels),
                                       probs_of(want[rel], predictor.labels), atol=2e-6)
    # a path in two inputs: the scored row beats an error row, whatever the order
    again = merge_results([full, *shard_csvs], tmp_path / "again.csv")
    assert again.duplicates == len(want) and again.rows == len(want)


def test_stop_event_mid_run_leaves_a_valid_resumable_csv(film_folder, predictor, tmp_path):
    out = tmp_path / "results.csv"
    stop = threading.Event()

    def on_progress(p: ScoreProgress):
        if p.row is not None:
            stop.set()  # as the GUI's cancel button does, from another thread

    summary = score_folder(film_folder, out, predictor, batch_size=3, progress=on_progress, stop_event=stop)
    assert summary.stopped and summary.exit_code == 130
    table = read_results(out)
    # the batch in flight was finished and written, nothing after it
    assert not table.truncated and len(table) == summary.done
    assert 3 <= summary.done < len(expected_paths(film_folder))
    scored_before = int((~table.error_mask).sum())
    summary2 = score_folder(film_folder, out, predictor, batch_size=3)
    assert not summary2.stopped and summary2.skipped == scored_before
    assert summary2.done == len(expected_paths(film_folder)) - scored_before
    assert sorted(read_results(out).paths) == sorted(expected_paths(film_folder))


def test_gradcam_overlays_mirror_the_tree_and_keep_the_film_aspect(film_folder, predictor, tmp_path):
    out, cams = tmp_path / "results.csv", tmp_path / "cams"
    summary = score_folder(film_folder, out, predictor, gradcam_dir=cams, batch_size=4)
    rows = rows_by_path(out)
    scored = [rel for rel in rows if rel not in BAD]
    assert summary.overlays == len(scored)
    for rel in scored:
        png = cams / (rel + ".gradcam.png")
        assert png == overlay_path(cams, rel)
        img = cv2.imread(str(png))
        assert img is not None and img.ndim == 3, rel
        film = load_film(film_folder / rel)
        assert img.shape[1] / img.shape[0] == pytest.approx(film.shape[1] / film.shape[0], rel=0.01), rel
        assert img.std() > 5  # a picture, not a blank
    for rel in BAD:
        assert not overlay_path(cams, rel).exists()
    assert not any(p.name.startswith(".") for p in cams.rglob("*"))  # no temp files left
    # the probabilities are the model's (one forward pass of explain)
    pred = predictor.predict([load_film(film_folder / NARROW)])[0]
    np.testing.assert_allclose(probs_of(rows[NARROW], predictor.labels),
                               [pred.probabilities[lab] for lab in predictor.labels], atol=1e-5)
    # rerun: a deleted overlay is drawn again, no row is added
    overlay_path(cams, NARROW).unlink()
    again = score_folder(film_folder, out, predictor, gradcam_dir=cams)
    assert overlay_path(cams, NARROW).exists() and again.overlays == 1 and again.done == 1 + len(BAD)
    assert sorted(read_results(out).paths) == sorted(rows)


def test_gradcam_dir_inside_the_folder_is_not_scored(film_folder, predictor, tmp_path):
    folder = tmp_path / "films"
    shutil.copytree(film_folder / "nih", folder)
    out = tmp_path / "r.csv"
    score_folder(folder, out, predictor, gradcam_dir=folder / "cams")
    summary = score_folder(folder, out, predictor, gradcam_dir=folder / "cams")
    assert summary.done == 0 and summary.skipped == len(list(folder.glob("*.png")))
    assert not any("cams/" in p for p in read_results(out).paths)


def test_overlay_maps_calls_whatever_their_rank_else_the_top_label():
    from cxrviewer.model.predictor import Prediction
    from cxrviewer.overlay import choose_findings

    probs = {"A": 0.9, "B": 0.8, "C": 0.7, "D": 0.6, "E": 0.1}
    # D and E are calls (low thresholds) though four labels outrank E.
    assert choose_findings(Prediction(None, probs, ["D", "E"]), top_k=3) == ["D", "E"]
    assert choose_findings(Prediction(None, probs, ["E", "D", "C", "B"]), top_k=3) == ["B", "C", "D"]
    assert choose_findings(Prediction(None, probs, []), top_k=3) == ["A"]
