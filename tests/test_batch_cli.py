"""``cxrviewer score`` and ``cxrviewer merge`` from the command line: exit codes, --labels
report against scikit-learn, shards + merge, and Ctrl-C on a real subprocess."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrviewer.cli import main
from cxrviewer.results import read_results
from tests.batch_films import (  # noqa: F401 - fixtures
    BAD,
    expected_paths,
    film_folder,
    models,
    nih_labels_csv,
    rows_by_path,
)

REPO = Path(__file__).resolve().parents[1]


def _score(folder, out, model, *extra) -> int:
    return main(["score", str(folder), "--out", str(out), "--model", str(model), *map(str, extra)])


@pytest.fixture(scope="module")
def nih_folder(data_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("nih") / "films"
    d.mkdir()
    for p in sorted((data_dir / "nih" / "png1024").glob("*.png"))[:16]:
        shutil.copy2(p, d / p.name)
    return d


def test_exit_codes_clean_warned_and_failed_folders(film_folder, models, tmp_path, capsys):
    assert _score(film_folder / "nih", tmp_path / "a.csv", models["a"]) == 0  # ok + one warning
    assert _score(film_folder / "dicom", tmp_path / "b.csv", models["a"]) == 0  # warnings only
    assert _score(film_folder, tmp_path / "c.csv", models["a"], "--batch-size", 3, "--workers", 1) == 1
    out = capsys.readouterr().out
    assert "3 failed" in out and "Not for diagnostic use" in out
    assert sorted(read_results(tmp_path / "c.csv").paths) == sorted(expected_paths(film_folder))


def test_usage_errors_exit_2_and_touch_nothing(film_folder, models, tmp_path, capsys):
    assert _score(tmp_path / "nowhere", tmp_path / "x.csv", models["a"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert _score(film_folder, tmp_path / "x.csv", tmp_path / "missing.keras") == 2
    assert "no model at" in capsys.readouterr().err
    not_a_model = tmp_path / "m.keras"
    not_a_model.write_text("not a model")
    assert _score(film_folder, tmp_path / "x.csv", not_a_model) == 2
    assert _score(film_folder, tmp_path / "x.csv", models["a"], "--batch-size", 0) == 2
    assert _score(film_folder, tmp_path / "x.csv", models["a"], "--labels", tmp_path / "nolabels.csv") == 2
    assert "nolabels.csv" in capsys.readouterr().err
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("a,b\n1,2\n")
    assert _score(film_folder, theirs, models["a"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert theirs.read_text() == "a,b\n1,2\n"
    assert not (tmp_path / "x.csv").exists()


def test_score_labels_report_matches_sklearn_on_the_csv(nih_folder, models, data_dir, tmp_path):
    labels = nih_labels_csv(data_dir, [p.name for p in nih_folder.glob("*.png")], tmp_path / "labels.csv")
    out = tmp_path / "run" / "scores.csv"
    assert _score(nih_folder, out, models["a"], "--labels", labels) == 0
    report_dir = tmp_path / "run" / "scores_report"
    assert (report_dir / "summary.html").exists() and (report_dir / "roc_overview.png").exists()
    report = json.loads((report_dir / "report.json").read_text())
    # ground truth and scores read here with the csv module, independently of cxrviewer's readers
    with open(labels, newline="") as fh:
        truth = {r["Image Index"]: set(r["Finding Labels"].split("|")) for r in csv.DictReader(fh)}
    rows = rows_by_path(out)
    assert set(rows) == set(truth)
    names = sorted(rows)
    estimable = 0
    for c in report["classes"]:
        yk = np.array([c["label"] in truth[n] for n in names], dtype=int)
        sk = np.array([float(rows[n][c["label"]]) for n in names])
        if yk.min() == yk.max():
            assert c["auroc"] is None and "not estimable" in c["status"]
            continue
        estimable += 1
        assert c["auroc"] == pytest.approx(roc_auc_score(yk, sk), abs=1e-9)
    assert estimable >= 2


def test_shards_and_merge_commands(film_folder, models, tmp_path, capsys):
    for i in (1, 2):
        assert _score(film_folder, tmp_path / f"s{i}.csv", models["a"], "--shard", f"{i}/2") in (0, 1)
    assert main(["merge", str(tmp_path / "s1.csv"), str(tmp_path / "s2.csv"), "--out", str(tmp_path / "all.csv")]) == 0
    merged = rows_by_path(tmp_path / "all.csv")
    assert list(merged) == sorted(expected_paths(film_folder))
    # another model's shard cannot be merged in
    assert _score(film_folder, tmp_path / "b1.csv", models["b"], "--shard", "1/2") in (0, 1)
    before = (tmp_path / "all.csv").read_bytes()
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "s2.csv"), str(tmp_path / "b1.csv"), "--out", str(tmp_path / "all.csv")]) == 2
    assert "2 models" in capsys.readouterr().err
    assert (tmp_path / "all.csv").read_bytes() == before
    with pytest.raises(SystemExit) as exc:
        main(["score", str(film_folder), "--out", "x.csv", "--shard", "3/2"])
    assert exc.value.code == 2


def test_ctrl_c_stops_cleanly_then_rerun_completes(data_dir, models, tmp_path):
    folder = tmp_path / "films"
    folder.mkdir()
    for p in sorted((data_dir / "nih" / "png1024").glob("*.png"))[:40]:
        shutil.copy2(p, folder / p.name)
    out, cams = tmp_path / "results.csv", tmp_path / "cams"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "cxrviewer", "score", str(folder), "--out", str(out), "--model", str(models["a"]),
           "--gradcam-dir", str(cams), "--batch-size", "2", "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # plain progress lines: stderr is not a terminal here
            if "films/s" in line:
                break
            assert time.monotonic() < deadline
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "stopping after the batch in progress" in stderr
    assert "stopped after" in stdout and "run the same command again" in stdout
    table = read_results(out)
    assert not table.truncated and not table.warnings and 0 < len(table) < 40
    assert len(list(cams.glob("*.gradcam.png"))) == len(table)
    # resume in-process: every film exactly once
    assert _score(folder, out, models["a"]) == 0
    assert sorted(read_results(out).paths) == sorted(p.name for p in folder.glob("*.png"))


def test_batch_modules_import_without_tensorflow():
    code = ("import sys\nimport cxrviewer.batch, cxrviewer.results_log, cxrviewer.shards, cxrviewer.progress\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'cv2') if m in sys.modules]\nassert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
