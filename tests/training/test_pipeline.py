"""tf.data pipeline: decode once through cxrviewer.io, cache, augment (never upside down),
normalise validation with the training statistics."""

from __future__ import annotations

import numpy as np
import pytest

from cxrviewer.model.card import Preprocess
from cxrviewer.model.preprocess import normalise, to_model_grid

SIZE = 48


@pytest.fixture(scope="module")
def films(nih_png_dir):
    return sorted(nih_png_dir.glob("*.png"))[:8]


def test_cache_decodes_once_reports_bad_files_and_persists(films, tmp_path):
    from cxrviewer.io import load_film
    from cxrviewer.training.pipeline import GridCache

    bad = tmp_path / "broken.png"
    bad.write_bytes(films[0].read_bytes()[:300])  # a truncated PNG
    paths = list(films[:3]) + [bad]
    spec = Preprocess()
    cache = GridCache(paths, SIZE, spec, directory=tmp_path / ".cache")
    seen = []
    failures = cache.fill(workers=2, progress=lambda done, total: seen.append((done, total)))
    assert list(failures) == [3] and failures[3].startswith("broken.png:")
    assert seen[-1] == (4, 4) and cache.decoded == 3
    expect = to_model_grid(load_film(films[1]).pixels, spec, SIZE)
    np.testing.assert_allclose(cache.get(1), expect, atol=1e-3)  # float16 storage
    # A second cache over the same films finds the decoded grids on disk: no decoding.
    again = GridCache(paths, SIZE, spec, directory=tmp_path / ".cache")
    assert again.decoded == 3 and 3 in again.failures
    again.paths[1] = tmp_path / "gone.png"  # would fail if it were decoded again
    np.testing.assert_allclose(again.get(1), expect, atol=1e-3)


def test_measured_stats_match_numpy_on_the_same_grids(films):
    from cxrviewer.io import load_film
    from cxrviewer.training.pipeline import measure_stats

    spec = Preprocess()
    stats = measure_stats(films, size=SIZE, spec=spec, max_images=100)
    grids = np.stack([to_model_grid(load_film(p).pixels, spec, SIZE) for p in films])
    assert stats.images == len(films)
    assert stats.mean == pytest.approx(float(grids.mean()), abs=1e-5)
    assert stats.std == pytest.approx(float(grids.std()), abs=1e-5)


def test_validation_is_normalised_with_training_statistics_not_its_own(films):
    from cxrviewer.training.pipeline import GridCache, make_dataset, measure_stats

    spec = Preprocess()
    cache = GridCache(films, SIZE, spec)
    cache.fill(workers=2)
    train_idx, val_idx = [0, 1, 2, 3, 4], [5, 6, 7]
    train_stats = measure_stats([films[i] for i in train_idx], size=SIZE, spec=spec, cache=cache)
    val_own = measure_stats([films[i] for i in val_idx], size=SIZE, spec=spec, cache=cache)
    assert abs(train_stats.mean - val_own.mean) > 1e-3  # different films, different stats
    labels = np.arange(len(films), dtype=np.float32)[:, None]
    ds = make_dataset(cache, val_idx, labels, stats=train_stats, channels=3, batch_size=2, training=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert y[:, 0].tolist() == [5, 6, 7]  # evaluation keeps the order
    card_spec = Preprocess(mean=train_stats.mean, std=train_stats.std)
    expected = np.stack([normalise(cache.get(i), card_spec, 3) for i in val_idx])
    np.testing.assert_allclose(x, expected, atol=1e-5)  # the inference maths, training stats
    # ...and it is the training statistics: the validation set's own would differ.
    own = np.stack([normalise(cache.get(i), Preprocess(mean=val_own.mean, std=val_own.std), 3) for i in val_idx])
    assert np.abs(x - own).max() > 1e-2


def test_pipeline_skips_films_that_fail_to_decode(films, tmp_path):
    from cxrviewer.training.pipeline import GridCache, NormStats, make_dataset

    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    paths = [films[0], bad, films[1]]
    cache = GridCache(paths, SIZE, Preprocess())
    labels = np.array([[0.0], [1.0], [2.0]], dtype=np.float32)
    ds = make_dataset(cache, [0, 1, 2], labels, stats=NormStats(0.5, 0.25, 1), channels=1,
                      batch_size=4, training=True, seed=0)
    got = sorted(float(v) for _, y in ds for v in y.numpy()[:, 0])
    assert got == [0.0, 2.0]
    assert list(cache.failures) == [1] and "empty.png" in cache.failures[1]


def test_augmentation_never_flips_vertically_and_stays_small():
    import tensorflow as tf

    from cxrviewer.training.pipeline import Augmentation, augment_batch

    # Top third bright, rest dark, and a bright block on the left: an asymmetric "film".
    img = np.zeros((64, 64), np.float32)
    img[:20, :] = 0.9
    img[30:50, 4:20] = 0.8
    batch = tf.constant(np.repeat(img[None, :, :, None], 200, axis=0))
    tf.random.set_seed(3)
    out = augment_batch(batch, Augmentation()).numpy()[..., 0]
    assert out.shape == (200, 64, 64) and out.min() >= 0.0 and out.max() <= 1.0
    top = out[:, :16, :].mean(axis=(1, 2))
    bottom = out[:, -16:, :].mean(axis=(1, 2))
    assert (top > bottom + 0.4).all()  # never upside down
    left = out[:, 32:48, :24].mean(axis=(1, 2))
    right = out[:, 32:48, -24:].mean(axis=(1, 2))
    assert (left > right + 0.2).all()  # no horizontal flip by default (heart side)
    assert np.abs(out - img).mean(axis=(1, 2)).max() > 0.01  # it does change the image
    # Horizontal flip only when asked for.
    flipped = augment_batch(batch, Augmentation(horizontal_flip=True)).numpy()[..., 0]
    fl = flipped[:, 32:48, :24].mean(axis=(1, 2)) < flipped[:, 32:48, -24:].mean(axis=(1, 2))
    assert 0.2 < fl.mean() < 0.8
    assert (flipped[:, :16].mean(axis=(1, 2)) > flipped[:, -16:].mean(axis=(1, 2)) + 0.4).all()


def test_training_batches_are_augmented_and_shuffled(films):
    from cxrviewer.training.pipeline import Augmentation, GridCache, NormStats, make_dataset

    cache = GridCache(films, SIZE, Preprocess())
    labels = np.arange(len(films), dtype=np.float32)[:, None]
    ds = make_dataset(cache, list(range(len(films))), labels, stats=NormStats(0.5, 0.25, 8), channels=1,
                      batch_size=8, training=True, augmentation=Augmentation(), seed=1)
    (x1, y1), = list(ds)
    (x2, y2), = list(ds)
    assert sorted(y1.numpy()[:, 0].tolist()) == list(range(len(films)))
    order1, order2 = y1.numpy()[:, 0], y2.numpy()[:, 0]
    assert not np.array_equal(order1, order2) or not np.allclose(x1.numpy(), x2.numpy())
    raw = np.stack([(cache.get(int(i)) - 0.5) / 0.25 for i in order1])[..., None]
    assert np.abs(x1.numpy() - raw).mean() > 0.01
