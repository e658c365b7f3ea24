"""Predictor: one loaded model + its card -> per-film probabilities, calls, warnings, heat maps."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cxrviewer.model import preprocess
from cxrviewer.model.card import ModelCard

# Above this long side / short side ratio, the square model input visibly squeezes anatomy.
_ASPECT_WARNING = 1.5


@dataclass
class Prediction:
    """The model's answer for one film.

    probabilities: active label -> probability, in the card's output order (sigmoid outputs
    for multi-label models, softmax outputs for multi-class ones); calls: labels at or above
    their card threshold (at most one, the most probable, for multi-class); warnings: the
    loader's warnings about the film, then the model's (e.g. film smaller than its input).
    """

    path: Path | None
    probabilities: dict[str, float]
    calls: list[str]
    warnings: list[str] = field(default_factory=list)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The k most probable labels, highest first."""
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[: max(0, int(k))]


def _pixels_of(film) -> np.ndarray:
    return film if isinstance(film, np.ndarray) else film.pixels


class Predictor:
    """A loaded model with its card: probabilities, calls and Grad-CAM for films.

    Thread safety: every TensorFlow call (``predict_arrays``, ``predict``, ``gradcam``,
    ``explain``) takes one internal lock, so any number of worker threads may share one
    Predictor; their calls run one at a time (a model uses all cores or the GPU anyway).
    ``prepare`` and ``to_prediction`` are pure NumPy and take no lock, so I/O workers can
    prepare the next batch while the model runs. Do not call from the GUI thread: a
    DenseNet121 forward pass takes a noticeable fraction of a second on a CPU.
    """

    #: Largest batch handed to the model at once (bounds memory for big arrays).
    max_batch = 16

    def __init__(self, model, card: ModelCard, *, model_path: str | Path | None = None,
                 checksum: str = "", device=None):
        import tensorflow as tf

        from cxrviewer.model.loading import check_model_matches_card

        check_model_matches_card(model, card)
        self.model = model
        self.card = card
        self.model_path = Path(model_path) if model_path else None
        self.checksum = checksum
        if device is None:
            from cxrviewer.model.device import configure_device

            # Report only: a model handed over by a training run keeps its policy, and the
            # global one stays as that run set it.
            mixed = any(getattr(layer, "compute_dtype", "float32") == "float16" for layer in model.layers)
            device = dataclasses.replace(configure_device(set_policy=False), mixed_precision=mixed)
        self.device = device
        self._lock = threading.RLock()
        self._index = {lab: i for i, lab in enumerate(card.labels)}
        self._active = card.active_labels
        size, channels = card.input_size, card.input_channels
        # One trace for every batch size: the batch dimension is left open.
        self._forward = tf.function(
            lambda x: tf.cast(model(x, training=False), tf.float32),
            input_signature=[tf.TensorSpec([None, size, size, channels], tf.float32)],
        )
        self._gradcam = None

    # ---- identity -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.card.name

    @property
    def labels(self) -> list[str]:
        """Active labels (shown as findings), in output order."""
        return list(self._active)

    @property
    def identity(self) -> str:
        """"name@sha12": which model produced a result, short enough for a status bar."""
        return f"{self.card.name}@{self.checksum[:12]}" if self.checksum else self.card.name

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.card.input_size, self.card.input_size, self.card.input_channels)

    def __repr__(self) -> str:
        return f"Predictor({self.identity}, {len(self._active)} labels, {self.device.summary()})"

    # ---- NumPy side (no lock) -------------------------------------------------------
    def prepare(self, film) -> np.ndarray:
        """Film (or its 2-D pixel array) -> model input (size, size, channels) float32."""
        return preprocess.prepare(_pixels_of(film), self.card)

    def film_warnings(self, film) -> list[str]:
        """What the model adds to a film's warnings: inputs it sees poorly."""
        pixels = _pixels_of(film)
        r0, r1, c0, c1 = preprocess.crop_box(pixels.shape[:2], self.card.preprocess.crop)
        rows, cols = r1 - r0, c1 - c0
        size = self.card.input_size
        out = []
        if min(rows, cols) < size:
            out.append(
                f"film is {pixels.shape[1]}x{pixels.shape[0]} px, smaller than the model input "
                f"{size}x{size}: it was enlarged and fine detail is missing"
            )
        if max(rows, cols) > _ASPECT_WARNING * min(rows, cols):
            out.append(f"film is {cols}x{rows} px, far from square: the model sees it squeezed to {size}x{size}")
        return out

    def to_prediction(self, film, row) -> Prediction:
        """One output row (len(card.labels)) -> Prediction with calls and warnings."""
        row = np.asarray(row, dtype=np.float64).reshape(-1)
        if row.shape[0] != len(self.card.labels):
            raise ValueError(f"expected {len(self.card.labels)} outputs, got {row.shape[0]}")
        probs = {lab: float(row[self._index[lab]]) for lab in self._active}
        thresholds = self.card.thresholds
        if self.card.task == "multiclass":
            best = max(self._active, key=lambda lab: probs[lab])
            calls = [best] if probs[best] >= thresholds[best] else []
        else:
            calls = [lab for lab in self._active if probs[lab] >= thresholds[lab]]
        warnings = list(getattr(film, "warnings", []) or []) + self.film_warnings(film)
        return Prediction(getattr(film, "path", None), probs, calls, warnings)

    # ---- TensorFlow side (locked) ---------------------------------------------------
    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        """Prepared inputs (n, size, size, channels) -> outputs (n, len(card.labels)) float32."""
        import tensorflow as tf

        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"expected inputs of shape (n, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, len(self.card.labels)), dtype=np.float32)
        parts = []
        with self._lock:
            for i in range(0, len(x), self.max_batch):
                parts.append(self._forward(tf.constant(x[i : i + self.max_batch])).numpy())
        return np.concatenate(parts, axis=0)

    def predict(self, films, batch_size: int = 8) -> list[Prediction]:
        """Films -> one Prediction each, in order. Loader warnings travel into the result."""
        if not isinstance(films, (list, tuple)):
            films = [films] if hasattr(films, "pixels") else list(films)
        batch_size = max(1, int(batch_size))
        out: list[Prediction] = []
        for i in range(0, len(films), batch_size):
            chunk = films[i : i + batch_size]
            rows = self.predict_arrays(np.stack([self.prepare(f) for f in chunk]))
            out.extend(self.to_prediction(f, r) for f, r in zip(chunk, rows))
        return out

    def _label_indices(self, labels: Iterable[str]) -> list[int]:
        idx = []
        for lab in labels:
            if lab not in self._index:
                raise ValueError(f"unknown label '{lab}' (model labels: {', '.join(self._active)})")
            if lab not in self._active:
                raise ValueError(f"label '{lab}' is not trained in this model")
            idx.append(self._index[lab])
        return idx

    def _engine(self):
        if self._gradcam is None:
            from cxrviewer.model.gradcam import GradCamEngine

            self._gradcam = GradCamEngine(self.model, self.card.gradcam_layer,
                                          self.card.input_size, self.card.input_channels)
        return self._gradcam

    def explain(self, film, labels: Sequence[str] | None = None, top_k: int = 3, choose=None):
        """Probabilities and Grad-CAM maps from one forward pass.

        labels: which findings to map; None maps the ``top_k`` most probable active labels,
        or, with ``choose`` (a function Prediction -> labels), the labels it picks once the
        probabilities are known (e.g. every call, whatever its rank).
        Returns (Prediction, {label: float32 map in 0..1 with the film's shape}).
        """
        return self.explain_batch([film], labels=labels, top_k=top_k, choose=choose)[0]

    def explain_batch(self, films, x: np.ndarray | None = None, labels: Sequence[str] | None = None,
                      top_k: int = 3, choose=None) -> list[tuple[Prediction, dict[str, np.ndarray]]]:
        """``explain`` for several films in one batched forward pass (batch scoring with maps).

        x: the films' prepared inputs when the caller already has them (decode workers).
        Maps on the model grid are computed for every candidate label (cheap: behind
        DenseNet's last block only pooling and the output layer are differentiated); only
        the chosen ones are upsampled to film size.
        """
        from cxrviewer.model.gradcam import to_film

        films = list(films)
        if not films:
            return []
        wanted = list(self._active) if labels is None else list(labels)
        idx = self._label_indices(wanted)
        if not idx or (top_k <= 0 and labels is None and choose is None):
            return [(p, {}) for p in self.predict(films)]
        if x is None:
            x = np.stack([self.prepare(f) for f in films])
        results = []
        for start in range(0, len(films), self.max_batch):
            chunk = slice(start, start + self.max_batch)
            with self._lock:
                probs, cams = self._engine()(np.asarray(x[chunk], dtype=np.float32), idx)
            for film, p_row, film_cams in zip(films[chunk], probs, cams):
                prediction = self.to_prediction(film, p_row)
                if labels is not None:
                    chosen = wanted
                elif choose is not None:
                    chosen = list(choose(prediction))
                else:
                    chosen = [lab for lab, _ in prediction.top(top_k)]
                shape = _pixels_of(film).shape[:2]
                crop = self.card.preprocess.crop
                results.append((prediction, {lab: to_film(film_cams[wanted.index(lab)], shape, crop)
                                             for lab in chosen}))
        return results

    def warm_up(self, gradcam: bool = True) -> None:
        """Trace the compiled functions now (seconds for DenseNet121) rather than on the
        first film the reader opens; call from the inference worker right after loading."""
        blank = np.zeros((self.card.input_size, self.card.input_size), np.float32)
        self.predict_arrays(self.prepare(blank))
        if gradcam:
            self.explain(blank, self._active[:1])

    def gradcam(self, film, label: str) -> np.ndarray:
        """Grad-CAM of one finding: float32 0..1, same shape as ``film.pixels``."""
        return self.explain(film, [label])[1][label]
