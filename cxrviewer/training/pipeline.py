"""The tf.data input pipeline: decode once, cache, augment, normalise, batch.

    path --cxrviewer.io.load_film--> film pixels --preprocess.to_model_grid--> 0..1 grid
         (thread pool / tf.numpy_function, decode errors skipped and reported)
    grid cache (float16, memory or run_dir/.cache memmap: epochs 2+ never re-decode)
    --> augmentation in TF ops on the 0..1 grid (training only)
    --> normalise with the TRAINING set's mean/std (same maths as preprocess.normalise)
    --> batches, prefetched

Decoding a 1024 px PNG costs more than a small model's training step, so every film is
decoded and resized once; the grid cache holds the result at the model's input size.
Validation and test sets are normalised with the training statistics, never their own:
the deployed model only ever sees the statistics written in its card.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from cxrviewer.fsutil import write_json_atomic
from cxrviewer.model.card import Preprocess
from cxrviewer.model.preprocess import to_model_grid


# ---- normalisation statistics -----------------------------------------------------------
@dataclass(frozen=True)
class NormStats:
    """Mean and standard deviation of training grids (0..1 pixel units), for the card."""

    mean: float
    std: float
    images: int

    def to_dict(self) -> dict:
        return asdict(self)


def decode_grid(path: str | Path, spec: Preprocess, size: int) -> np.ndarray:
    """One film -> its (size, size) float32 grid in 0..1. Raises FilmError for a bad file."""
    from cxrviewer.io import load_film

    return to_model_grid(load_film(path).pixels, spec, size)


def measure_stats(
    paths: Sequence[str | Path],
    *,
    size: int,
    spec: Preprocess,
    max_images: int = 256,
    seed: int = 0,
    cache: "GridCache | None" = None,
) -> NormStats:
    """Pixel mean/std over a random sample of (training) films on the model grid.

    Measured before augmentation, on the same grids the model is fed. Films that cannot
    be decoded are skipped (the pipeline reports them).
    """
    paths = list(paths)
    if not paths:
        raise ValueError("no training films to measure statistics on")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(paths), size=min(max_images, len(paths)), replace=False)
    total = total_sq = 0.0
    count = 0
    for i in sorted(pick.tolist()):
        try:
            grid = cache.grid_for_path(paths[i]) if cache is not None else decode_grid(paths[i], spec, size)
        except Exception:  # noqa: BLE001 - unreadable films are reported by the cache fill
            continue
        g = grid.astype(np.float64)
        total += g.sum()
        total_sq += np.square(g).sum()
        count += 1
    if count == 0:
        raise ValueError("none of the sampled training films could be decoded")
    n = count * size * size
    mean = total / n
    std = math.sqrt(max(total_sq / n - mean * mean, 0.0))
    return NormStats(float(mean), float(max(std, 1e-3)), count)


# ---- grid cache -------------------------------------------------------------------------
class GridCache:
    """Every film of a dataset decoded once onto the model grid, as float16.

    In memory (``directory=None``) or as a memory-mapped file under ``directory`` (the run
    folder's ``.cache``) so a resumed run does not decode again. float16 keeps 11 bits of
    the 0..1 grey levels, finer than any 8-bit film and half the memory of float32.
    Thread-safe: decoding threads write distinct rows.
    """

    def __init__(self, paths: Sequence[str | Path], size: int, spec: Preprocess,
                 directory: str | Path | None = None):
        self.paths = [Path(p) for p in paths]
        self.size = int(size)
        self.spec = spec
        self._index = {str(p): i for i, p in enumerate(self.paths)}
        self._lock = threading.Lock()
        self.failures: dict[int, str] = {}
        shape = (len(self.paths), self.size, self.size)
        self._done_path = None
        if directory is None:
            self._grids = np.zeros(shape, dtype=np.float16)
            self._done = np.zeros(len(self.paths), dtype=bool)
        else:
            directory = Path(directory)
            directory.mkdir(parents=True, exist_ok=True)
            key = hashlib.sha256(json.dumps(
                [self.size, spec.resize, spec.crop, spec.clahe, [str(p) for p in self.paths]]).encode()).hexdigest()[:16]
            data_path = directory / f"grids-{key}.f16"
            self._done_path = directory / f"grids-{key}.done.json"
            mode = "r+" if data_path.exists() else "w+"
            self._grids = np.memmap(data_path, dtype=np.float16, mode=mode, shape=shape)
            self._done = np.zeros(len(self.paths), dtype=bool)
            if mode == "r+" and self._done_path.exists():
                state = json.loads(self._done_path.read_text())
                self._done[np.asarray(state.get("done", []), dtype=np.int64)] = True
                self.failures = {int(k): v for k, v in state.get("failures", {}).items()}

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def decoded(self) -> int:
        return int(self._done.sum())

    def index_of(self, path) -> int:
        return self._index[str(Path(path))]

    def get(self, i: int) -> np.ndarray:
        """The grid of film ``i`` as float32, decoding it on first use. Raises on a bad film."""
        i = int(i)
        if not self._done[i]:
            grid = decode_grid(self.paths[i], self.spec, self.size)
            self._grids[i] = grid
            self._done[i] = True
        return np.asarray(self._grids[i], dtype=np.float32)

    def grid_for_path(self, path) -> np.ndarray:
        return self.get(self.index_of(path))

    def try_get(self, i: int) -> np.ndarray | None:
        """The grid, or None after recording why the film could not be decoded."""
        try:
            return self.get(i)
        except Exception as exc:  # noqa: BLE001 - any decoder failure skips this film only
            with self._lock:
                self.failures[int(i)] = _reason(self.paths[int(i)], exc)
            return None

    def fill(self, indices: Sequence[int] | None = None, workers: int = 0,
             progress: Callable[[int, int], None] | None = None) -> dict[int, str]:
        """Decode every film not yet cached, in a thread pool; returns {index: "file: reason"}.

        ``progress(done, total)`` is called as films finish. Failures are also kept in
        ``self.failures`` (and on disk) so callers drop those films from the dataset.
        """
        todo = [int(i) for i in (range(len(self)) if indices is None else indices)
                if not self._done[int(i)] and int(i) not in self.failures]
        total = len(todo)
        workers = workers or min(8, (os.cpu_count() or 2))
        done = 0
        if total:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
                for _ in pool.map(self.try_get, todo):
                    done += 1
                    if progress is not None:
                        progress(done, total)
            self.flush()
        wanted = set(range(len(self))) if indices is None else {int(i) for i in indices}
        return {i: r for i, r in self.failures.items() if i in wanted}

    def flush(self) -> None:
        """Persist which rows are decoded (memmap data first, then the index, atomically)."""
        if self._done_path is None:
            return
        self._grids.flush()
        write_json_atomic(self._done_path, {"done": np.flatnonzero(self._done).tolist(),
                                            "failures": {str(k): v for k, v in self.failures.items()}})


def _reason(path: Path, exc: Exception) -> str:
    text = str(exc)
    return text if text.startswith(path.name) else f"{path.name}: {' '.join(text.split()) or type(exc).__name__}"


# ---- augmentation (TF ops on the 0..1 grid) --------------------------------------------
@dataclass(frozen=True)
class Augmentation:
    """Small geometric and photometric changes a chest film can plausibly show.

    No vertical flip exists at all (a film is never upside down), and horizontal flip is
    off by default: the heart's side (situs) is anatomy, not noise, and Cardiomegaly or a
    left-sided effusion would lose meaning if mirrored.
    """

    rotation_deg: float = 7.0
    shift: float = 0.05  # fraction of the side
    zoom: float = 0.10  # scale in [1 - zoom, 1 + zoom]
    brightness: float = 0.10  # added, in 0..1 units
    contrast: float = 0.10  # multiplied around the image mean, in [1 - c, 1 + c]
    horizontal_flip: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def augment_batch(images: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """(B, H, W, 1) grids in 0..1 -> augmented grids in 0..1, different draws per image.

    Rotation, shift and zoom are one affine transform (one resampling, one blur) applied
    by ImageProjectiveTransformV3; the border it uncovers is black, like collimation.
    """
    shape = tf.shape(images)
    b = shape[0]
    h = tf.cast(shape[1], tf.float32)
    w = tf.cast(shape[2], tf.float32)
    theta = tf.random.uniform([b], -1.0, 1.0) * (aug.rotation_deg * math.pi / 180.0)
    scale = 1.0 + tf.random.uniform([b], -1.0, 1.0) * aug.zoom
    tx = tf.random.uniform([b], -1.0, 1.0) * aug.shift * w
    ty = tf.random.uniform([b], -1.0, 1.0) * aug.shift * h
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    # The op maps each OUTPUT pixel (x, y) to the INPUT point it samples:
    #   in = C + R(theta)/scale @ (out - C - t)
    cos, sin = tf.cos(theta) / scale, tf.sin(theta) / scale
    a0, a1, b0, b1 = cos, -sin, sin, cos
    ox, oy = cx + tx, cy + ty
    a2 = cx - (a0 * ox + a1 * oy)
    b2 = cy - (b0 * ox + b1 * oy)
    zeros = tf.zeros([b])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    if aug.horizontal_flip:
        flip = tf.random.uniform([b, 1, 1, 1]) < 0.5
        out = tf.where(flip, tf.reverse(out, axis=[2]), out)
    mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
    contrast = 1.0 + tf.random.uniform([b, 1, 1, 1], -1.0, 1.0) * aug.contrast
    brightness = tf.random.uniform([b, 1, 1, 1], -1.0, 1.0) * aug.brightness
    out = (out - mean) * contrast + mean + brightness
    return tf.clip_by_value(out, 0.0, 1.0)


def normalise_batch(grids: tf.Tensor, stats: NormStats | Preprocess, channels: int) -> tf.Tensor:
    """(B, H, W, 1) 0..1 grids -> (B, H, W, channels) standardised: preprocess.normalise in TF."""
    mean = tf.reshape(tf.constant(stats.mean, tf.float32), [-1])
    std = tf.reshape(tf.constant(stats.std, tf.float32), [-1])
    x = tf.repeat(grids, channels, axis=-1) if channels > 1 else grids
    return (x - mean) / std


# ---- tf.data ------------------------------------------------------------------------------
def make_dataset(
    cache: GridCache,
    indices: Sequence[int],
    labels: np.ndarray,
    *,
    stats: NormStats,
    channels: int,
    batch_size: int,
    training: bool,
    augmentation: Augmentation | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (normalised images, labels) for the films ``indices`` of ``cache``.

    ``labels`` is the full (n, k) label matrix aligned with the cache. Training batches
    are reshuffled every epoch and augmented when ``augmentation`` is given; evaluation
    batches keep the order of ``indices`` (so predictions line up with the labels).
    Films that fail to decode are dropped from the stream and recorded in
    ``cache.failures``; fill the cache first to know the exact counts.
    """
    idx = np.asarray(indices, dtype=np.int64)
    y = np.asarray(labels, dtype=np.float32)[idx]
    size = cache.size

    def load(i):
        grid = cache.try_get(int(i))
        if grid is None:
            return np.zeros((size, size), np.float32), False
        return grid, True

    @tf.autograph.experimental.do_not_convert
    def tf_load(i, target):
        grid, ok = tf.numpy_function(load, [i], [tf.float32, tf.bool], stateful=False)
        grid = tf.ensure_shape(grid, [size, size])
        return grid[..., None], target, tf.ensure_shape(ok, [])

    ds = tf.data.Dataset.from_tensor_slices((idx, y))
    if training:
        ds = ds.shuffle(max(len(idx), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(_decoded).map(_drop_flag)
    ds = ds.batch(batch_size)
    aug = augmentation if training else None

    @tf.autograph.experimental.do_not_convert
    def finish(grids, target):
        if aug is not None:
            grids = augment_batch(grids, aug)
        return normalise_batch(grids, stats, channels), target

    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


@tf.autograph.experimental.do_not_convert
def _decoded(grid, target, ok):
    return ok


@tf.autograph.experimental.do_not_convert
def _drop_flag(grid, target, ok):
    return grid, target


def steps_for(n_images: int, batch_size: int) -> int:
    return max(1, math.ceil(n_images / batch_size))
