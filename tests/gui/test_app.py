"""`cxrviewer [PATH]` as a process: the window opens without TensorFlow, PATH opens a file or folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(args, probe, tmp_path, timeout=120):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO),
           "CXRVIEWER_STARTUP_PROBE": probe,
           # A private settings location: the process must not read or write the user's.
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "cxrviewer", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def line(out: str, key: str) -> str:
    hits = [ln for ln in out.splitlines() if ln.startswith(key)]
    assert hits, out
    return hits[0]


def test_window_opens_without_tensorflow(tmp_path):
    proc = run_cli(["--model", str(tmp_path / "missing.keras")], "window", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert line(proc.stdout, "CXRVIEWER_WINDOW_SHOWN").endswith("tf_loaded=False")


def test_path_argument_opens_a_file(tmp_path, dicom_dir):
    target = dicom_dir / "misc" / "siim-fake-monochrome1.dcm"
    proc = run_cli([str(target), "--model", str(tmp_path / "missing.keras")], "film", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert line(proc.stdout, "CXRVIEWER_FILM_SHOWN").split()[2] == target.name


def test_path_argument_opens_a_folder_at_its_first_film(tmp_path, dicom_dir):
    from cxrviewer.io import list_films

    folder = dicom_dir / "rsna-cr"
    proc = run_cli([str(folder), "--model", str(tmp_path / "missing.keras")], "film", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert line(proc.stdout, "CXRVIEWER_FILM_SHOWN").split()[2] == next(iter(list_films(folder))).name
