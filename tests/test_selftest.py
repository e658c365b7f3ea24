"""`cxrviewer selftest` / `--selftest` and `cxrviewer info`, from source (the frozen app: test_frozen_app)."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.cli import main
from cxrviewer.codec_check import _compare, run_codec_checks
from cxrviewer.findings import CXR14_LABELS
from cxrviewer.io import list_films, load_film
from tests.model_helpers import make_tiny_model

WARNED_FILMS = {  # bad-input films that must load with a warning, and still count as worked
    "nih-dx/test4.dcm": "body part",
    "nih-dx/test5.dcm": "modality CT",
    "nih-dx/test6.dcm": "patient position",
    "misc/not-a-chest-ot.dcm": "modality OT",
}


def run_cli(argv) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model"), CXR14_LABELS, size=32)


@pytest.fixture(scope="module")
def shared_run(dicom_dir, tiny_model):
    """One self-test over every shared DICOM, through the frozen app's `--selftest` flag."""
    return run_cli(["--selftest", dicom_dir, "--model", tiny_model])


def status_lines(output: str) -> dict[str, str]:
    """file name -> status from the per-file lines ("  ok       rsna-cr/x.dcm  ...")."""
    out = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ok", "warning", "error") and parts[1].endswith(".dcm"):
            out[parts[1]] = parts[0]
    return out


def test_selftest_passes_on_every_shared_dicom(shared_run, dicom_dir):
    code, output = shared_run
    assert code == 0, output
    statuses = status_lines(output)
    expected = {p.relative_to(dicom_dir).as_posix() for p in dicom_dir.rglob("*.dcm")}
    assert set(statuses) == expected
    assert "error" not in statuses.values()
    assert "self-test PASSED" in output
    assert "round trips 3/3 passed" in output


def test_bad_input_films_count_as_worked_with_their_warning(shared_run):
    code, output = shared_run
    statuses = status_lines(output)
    for name, reason in WARNED_FILMS.items():
        assert statuses[name] == "warning", name
        line = next(line for line in output.splitlines() if name in line and line.strip().startswith("warning"))
        assert reason in line
    # the JPEG Baseline films (RSNA, SIIM) decode and report their transfer syntax
    rsna = [line for line in output.splitlines() if "rsna-cr/" in line and line.strip().startswith("ok")]
    assert len(rsna) == 16 and all("JPEG Baseline" in line for line in rsna)


def test_selftest_prints_versions_device_and_decoders(shared_run):
    _, output = shared_run
    for needle in ("TensorFlow", "Keras", "pydicom", "pylibjpeg-openjpeg", "PySide6 / Qt",
                   "Compute device: ", "Model: tiny@", "JPEG 2000 Image Compression",
                   "JPEG-LS Lossless", "RLE Lossless", "frozen app          no"):
        assert needle in output, needle
    assert "MISSING" not in output


def test_corrupt_and_fake_dicoms_fail_and_are_named(tmp_path, dicom_dir, tiny_model):
    folder = tmp_path / "films"
    folder.mkdir()
    shutil.copy(dicom_dir / "nih-dx" / "test1.dcm", folder / "good.dcm")
    data = (dicom_dir / "rsna-cr" / "0004cfab-14fd-4e49-80ba-63a80b6bddd6.dcm").read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) // 3])  # JPEG stream cut short
    (folder / "notes.dcm").write_text("not a DICOM file\n")
    code, output = run_cli(["selftest", folder, "--model", tiny_model])
    assert code == 1, output
    statuses = status_lines(output)
    assert statuses == {"good.dcm": "ok", "notes.dcm": "error", "truncated.dcm": "error"}
    assert "failed: truncated.dcm: cannot load" in output
    assert "failed: notes.dcm: cannot load" in output
    assert "1 ok, 0 loaded with warnings, 2 failed" in output
    assert "self-test FAILED" in output


def test_folder_without_dicom_cannot_run(tmp_path, data_dir, tiny_model):
    shutil.copy(next(iter(sorted((data_dir / "nih" / "png1024").glob("*.png")))), tmp_path / "a.png")
    code, output = run_cli(["selftest", tmp_path, "--model", tiny_model])
    assert code == 2
    assert "no DICOM file" in output


def test_missing_model_cannot_run(tmp_path, dicom_dir):
    code, output = run_cli(["selftest", dicom_dir / "nih-dx", "--model", tmp_path / "none.keras"])
    assert code == 2
    assert "no model at" in output and "self-test FAILED" in output


def test_codec_round_trips_prove_each_pylibjpeg_plugin(dicom_dir):
    film = load_film(dicom_dir / "misc" / "siim-pneumothorax-cr.dcm")
    checks = run_codec_checks(film.pixels)
    assert [c.syntax for c in checks] == [
        "JPEG 2000 Image Compression (Lossless Only)", "JPEG Baseline (Process 1)", "RLE Lossless"]
    assert [c.module.split()[0] for c in checks] == ["openjpeg", "libjpeg", "rle"]
    assert all(c.ok for c in checks), [c.detail for c in checks]


def test_codec_comparison_catches_changed_pixels():
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8)
    assert _compare("x", stored.copy(), stored, exact=True) is None
    changed = stored.copy()
    changed[3, 3] += 1
    assert "changed 1 pixels" in _compare("x", changed, stored, exact=True)
    assert _compare("x", changed, stored, exact=False) is None
    assert "off by" in _compare("x", stored + 9, stored, exact=False)
    assert "shape" in _compare("x", stored[:4], stored, exact=True)


def test_info_prints_decoders_window_and_device():
    code, output = run_cli(["info"])
    assert code == 0
    for needle in ("Versions:", "TensorFlow", "Pixel-data decoders", "JPEG Baseline (Process 1)",
                   "JPEG 2000 Image Compression", "RLE Lossless", "Window:", "Shipped model:",
                   "Compute device: "):
        assert needle in output, needle
    decoder_lines = [line for line in output.splitlines() if "JPEG 2000 Image Compression (Lossless" in line]
    assert decoder_lines and "pylibjpeg" in decoder_lines[0]


def test_selftest_lists_what_list_films_finds(dicom_dir):
    from cxrviewer.selftest import dicom_files

    assert list(dicom_files(dicom_dir)) == [p for p in list_films(dicom_dir) if p.suffix == ".dcm"]
