"""Decode-ahead batching: order, failures beside the batch, bounded look-ahead, same results."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cxrviewer.io import load_film
from cxrviewer.model.pipeline import iter_predictions, iter_prepared


@pytest.fixture
def mixed_folder(tmp_path, nih_paths):
    """Seven real films with a truncated PNG and a text file in between."""
    paths = []
    for i, src in enumerate(nih_paths[:7]):
        dst = tmp_path / f"{i:02d}_{src.name}"
        shutil.copy(src, dst)
        paths.append(dst)
    broken = tmp_path / "03b_truncated.png"
    broken.write_bytes(nih_paths[0].read_bytes()[:500])
    text = tmp_path / "05b_notes.png"
    text.write_text("not an image", encoding="utf-8")
    paths.insert(4, broken)
    paths.insert(7, text)
    return paths


def test_batches_keep_input_order_and_report_failures(tiny_predictor, mixed_folder):
    batches = list(iter_prepared(mixed_folder, tiny_predictor, workers=2, batch_size=3))
    items = [it for b in batches for it in b.items]
    assert [it.path for it in items] == mixed_folder
    failed = {it.path.name: it.error for it in items if it.error}
    assert set(failed) == {"03b_truncated.png", "05b_notes.png"}
    assert all(msg.startswith(name + ": ") and "\n" not in msg for name, msg in failed.items())
    assert [len(b.films) for b in batches] == [3, 3, 1]
    for b in batches:
        assert b.x.shape == (len(b.films), 32, 32, 3) and b.x.dtype == np.float32
        for film, x in zip(b.films, b.x):
            np.testing.assert_array_equal(x, tiny_predictor.prepare(film))


def test_iter_predictions_equals_predict(tiny_predictor, mixed_folder):
    results = list(iter_predictions(mixed_folder, tiny_predictor, workers=2, batch_size=4))
    assert [r[0] for r in results] == mixed_folder
    good = [p for p in mixed_folder if "truncated" not in p.name and "notes" not in p.name]
    expected = tiny_predictor.predict([load_film(p) for p in good])
    got = [pred for _, pred, err in results if err is None]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.path == b.path and a.calls == b.calls
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
    errors = [err for _, pred, err in results if pred is None]
    assert len(errors) == 2


def test_look_ahead_is_bounded_and_early_exit_stops(tiny_predictor, nih_paths):
    taken = []

    def lazy_paths():
        for p in nih_paths:
            taken.append(p)
            yield p

    gen = iter_prepared(lazy_paths(), tiny_predictor, workers=2, batch_size=2, prefetch_batches=1)
    first = next(gen)
    assert len(first.films) == 2
    assert len(taken) <= 2 + 2 * 2  # one batch yielded + a window of two batches
    gen.close()
    assert len(taken) < len(nih_paths)


def test_unexpected_loader_errors_do_not_stop_the_batch(tiny_predictor, nih_paths):
    def flaky(path):
        if path == nih_paths[1]:
            raise RuntimeError("decoder\nexploded")
        return load_film(path)

    items = [it for b in iter_prepared(nih_paths[:3], tiny_predictor, batch_size=2, loader=flaky) for it in b.items]
    assert [it.error is None for it in items] == [True, False, True]
    assert items[1].error == f"{nih_paths[1].name}: unexpected error (RuntimeError: decoder exploded)"


def test_all_failures_still_yield_a_batch(tiny_predictor, tmp_path):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    batches = list(iter_prepared([bad], tiny_predictor))
    assert len(batches) == 1 and batches[0].films == [] and batches[0].x is None
    assert batches[0].errors[0][0] == bad
    assert list(iter_predictions([bad], tiny_predictor))[0][1] is None
