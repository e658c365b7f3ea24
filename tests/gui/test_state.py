"""The small pieces under the window: state objects, presets, the LRU cache, the exception hook."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.gui import presets
from cxrviewer.gui.cache import LRUCache
from cxrviewer.gui.state import ERROR, NOT_SCORED, SCORED, WARNING, FilmState, FolderState


def test_film_state_refuses_results_for_another_generation(qapp):
    fs = FilmState()
    g1 = fs.select(Path("a.dcm"))
    g2 = fs.select(Path("b.dcm"))
    assert g2 == g1 + 1
    assert not fs.set_film(Path("a.dcm"), g1, object())  # the reader moved on
    assert not fs.set_film(Path("b.dcm"), g1, object())  # right film, old request
    assert not fs.set_prediction(Path("a.dcm"), g2, object())  # wrong film, current generation
    film = object()
    assert fs.set_film(Path("b.dcm"), g2, film) and fs.film is film


def test_folder_status_keeps_the_most_serious_news(qapp, tmp_path):
    st = FolderState()
    st.open(tmp_path)
    a, b = tmp_path / "a.png", tmp_path / "sub" / "b.png"
    st.add([a, b])
    assert [e.rel for e in st.entries] == ["a.png", "sub/b.png"]
    changed = []
    st.status_changed.connect(changed.append)
    st.set_status(a, WARNING, "lateral view")
    st.set_status(a, SCORED, "", ["Effusion"])  # scored later: stays flagged, keeps calls
    assert (st.entries[0].status, st.entries[0].message, st.entries[0].calls) == (WARNING, "lateral view", ["Effusion"])
    st.set_status(b, ERROR, "b.png: truncated")
    st.set_status(b, NOT_SCORED)
    assert st.entries[1].status == ERROR
    assert changed == [0, 0, 1]


def test_lru_cache_drops_least_recently_used():
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now fresher than b
    c.put("c", 3)
    assert "b" not in c and c.get("a") == 1 and c.get("c") == 3 and len(c) == 2
    with pytest.raises(ValueError):
        LRUCache(0)


def test_preset_definitions_load_from_the_json():
    defs = {d.name: d for d in presets.load_preset_defs()}
    assert {"lung", "mediastinum", "bone", "auto"} <= set(defs)
    assert defs["lung"].hu == (-600.0, 1500.0)
    low, high = defs["lung"].density_percentiles
    assert 0 <= low < high <= 100


def test_presets_pick_the_same_anatomy_for_monochrome1_and_2(dicom_dir):
    """A film and its inverted-storage twin get windows that look the same on screen."""
    from cxrviewer.io import apply_window, load_film

    film = load_film(dicom_dir / "misc" / "siim-pneumothorax-cr.dcm")
    twin_raw = 255 - film.raw.astype(np.int32)  # what a MONOCHROME1 file of it stores
    for d in presets.load_preset_defs():
        c2, w2 = presets.resolve(d, film.raw, "MONOCHROME2", "")
        c1, w1 = presets.resolve(d, twin_raw, "MONOCHROME1", "")
        shown2 = apply_window(film.raw, c2, w2, invert=False)
        shown1 = apply_window(twin_raw, c1, w1, invert=True)
        assert np.abs(shown1 - shown2).mean() < 2 / 255, d.name
    # Lung spreads the low densities: its window sits below the bone window.
    lung = presets.resolve(next(d for d in presets.load_preset_defs() if d.name == "lung"), film.raw, None, "")
    bone = presets.resolve(next(d for d in presets.load_preset_defs() if d.name == "bone"), film.raw, None, "")
    assert lung[0] < bone[0]


def test_hu_presets_used_when_units_are_hounsfield():
    raw = np.linspace(-1000, 1000, 64 * 64).reshape(64, 64)
    lung = next(d for d in presets.load_preset_defs() if d.name == "lung")
    assert presets.resolve(lung, raw, "MONOCHROME2", "HU") == (-600.0, 1500.0)
    assert presets.resolve(lung, raw, "MONOCHROME2", "") != (-600.0, 1500.0)


def test_broken_preset_file_still_gives_auto(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    assert [d.name for d in presets.load_preset_defs(bad)] == ["auto"]


def test_exception_hook_logs_instead_of_aborting(caplog):
    from cxrviewer.gui.app import install_exception_hook

    saved = sys.excepthook, threading.excepthook
    try:
        install_exception_hook()
        with caplog.at_level(logging.ERROR, logger="cxrviewer.gui"):
            try:
                raise RuntimeError("boom in a slot")
            except RuntimeError:
                sys.excepthook(*sys.exc_info())
            t = threading.Thread(target=lambda: 1 / 0)
            t.start()
            t.join()
        text = caplog.text
        assert "unexpected error" in text and "boom in a slot" in text and "ZeroDivisionError" in text
    finally:
        sys.excepthook, threading.excepthook = saved
