"""Grad-CAM: per-finding heat maps from one forward pass, mapped back onto the film.

For a class c with pre-activation score z_c (the logit, before sigmoid/softmax, so a
confident p = 1.0 does not flatten the gradient to zero) and target-layer activations A
(h, w, k channels): weights a_ck = mean over (h, w) of dz_c/dA_k; map = ReLU(sum_k a_ck A_k).
All requested classes come from one forward pass: the gradients are a Jacobian of the
selected scores with respect to A, and for targets right before global pooling (DenseNet121's
final ``relu``) backprop crosses only GAP + Dense.
"""

from __future__ import annotations

import numpy as np

from cxrviewer.model.preprocess import film_map


def normalise_map(cam: np.ndarray) -> np.ndarray:
    """Scale a non-negative map to 0..1 by its maximum; an all-zero map stays all zero."""
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0.0:
        return np.zeros_like(cam)
    return np.clip(cam / peak, 0.0, 1.0)


def to_film(cam: np.ndarray, film_shape: tuple[int, int], crop: str) -> np.ndarray:
    """Model-grid map -> float32 0..1 map of the film's shape (zero outside the model's crop).

    Rescaled after upsampling so the peak is exactly 1 on the film too (bilinear sampling
    rarely hits a grid cell's centre). Bilinear values are convex combinations of the grid's,
    so they stay within 0..1 and need no second clip; the film-sized work is one max and one
    in-place divide (about 2 ms on a 1024x1024 film).
    """
    out = film_map(normalise_map(cam), film_shape, crop)
    peak = float(out.max()) if out.size else 0.0
    if peak > 0.0:
        np.divide(out, np.float32(peak), out=out)
    return out


def _head_kind(last) -> str:
    """How scores and probabilities follow from the output layer's input.

    Dense(sigmoid|softmax) output: scores are recomputed from its kernel, so probabilities
    equal the model's. Activation output: its input is the logits. Anything else: the
    output itself is differentiated (Grad-CAM of probabilities).
    """
    from keras import layers

    if isinstance(last, layers.Dense):
        return "dense"
    if isinstance(last, layers.Activation):
        return "activation"
    return "identity"


def _graph_tensors(model, layer_name: str):
    """(inputs, target-layer output, output layer's input) as tensors of one graph.

    A Sequential model's layers also carry nodes from its internal graph, so their
    ``.output`` may belong to another graph than ``model.inputs``; it is re-applied to a
    fresh input (same layers, same weights) and the tensors are picked up on the way.
    """
    import keras

    last = model.layers[-1]
    kind = _head_kind(last)
    if isinstance(model, keras.Sequential):
        inp = keras.Input(shape=tuple(model.inputs[0].shape[1:]))
        t, target, head = inp, None, None
        for layer in model.layers:
            if layer is last:
                head = t
            t = layer(t)
            if layer.name == layer_name:
                target = t
        if target is None:
            raise ValueError(f"Grad-CAM layer '{layer_name}' is not in the model")
        return [inp], target, (head if kind != "identity" else t), kind, last
    try:
        target = model.get_layer(layer_name).output
    except ValueError:
        raise ValueError(f"Grad-CAM layer '{layer_name}' is not in the model") from None
    head = last.input if kind != "identity" else model.outputs[0]
    return model.inputs, target, head, kind, last


def _head_is_connected(head_model, target_shape) -> bool:
    """Does the head really read the target tensor (cheap eager check on zeros)?"""
    import tensorflow as tf

    acts = tf.zeros([1, *[int(d) for d in target_shape[1:]]])
    with tf.GradientTape() as tape:
        tape.watch(acts)
        out = tf.reduce_sum(tf.cast(head_model(acts, training=False), tf.float32))
    return tape.gradient(out, acts) is not None


class GradCamEngine:
    """Compiled probabilities + Grad-CAM for one model and one target layer.

    Not thread-safe by itself: the Predictor that owns it serialises calls with its lock.
    """

    def __init__(self, model, layer_name: str, input_size: int, channels: int):
        import keras
        import tensorflow as tf

        inputs, target, head_input, kind, last = _graph_tensors(model, layer_name)
        # Split at the target layer when the head (target -> pre-activation) is self-contained,
        # as after DenseNet's final relu: the backbone then runs outside the gradient tape, so
        # neither tracing nor running records the ~400 backbone layers for backprop.
        self.split = False
        try:
            self._head = keras.Model(target, head_input, name="gradcam_head")
            self._backbone = keras.Model(inputs, target, name="gradcam_backbone")
            self.split = _head_is_connected(self._head, target.shape)
        except (ValueError, TypeError):
            pass
        if not self.split:
            self._features = keras.Model(inputs, [target, head_input], name="gradcam_features")

        def scores_and_probs(head):
            head = tf.cast(head, tf.float32)
            if kind == "dense":
                z = tf.matmul(head, tf.cast(last.kernel, tf.float32))
                if last.use_bias:
                    z = z + tf.cast(last.bias, tf.float32)
                return z, tf.cast(last.activation(z), tf.float32)
            if kind == "activation":
                return head, tf.cast(last.activation(head), tf.float32)
            return head, head

        def forward(x):
            if self.split:
                acts = self._backbone(x, training=False)
                tape = tf.GradientTape(watch_accessed_variables=False)
                with tape:
                    tape.watch(acts)
                    head = self._head(acts, training=False)
            else:
                tape = tf.GradientTape()
                with tape:
                    acts, head = self._features(x, training=False)
            return tape, acts, head

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, input_size, input_size, channels], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ],
            reduce_retracing=True,
        )
        def run(x, class_idx):
            tape, acts, head = forward(x)
            with tape:
                z, probs = scores_and_probs(head)
                # Summed over the batch: in inference mode films do not interact, so the
                # gradient of the sum with respect to film n's activations is film n's own.
                selected = tf.reduce_sum(tf.gather(z, class_idx, axis=1), axis=0)
            # d selected_k / d acts for every requested class at once: (k, n, h, w, C).
            jac = tf.cast(tape.jacobian(selected, acts), tf.float32)
            weights = tf.reduce_mean(jac, axis=[2, 3])  # (k, n, C)
            cams = tf.nn.relu(tf.einsum("knc,nhwc->nkhw", weights, tf.cast(acts, tf.float32)))
            return probs, cams

        self._run = run

    def __call__(self, x: np.ndarray, class_idx) -> tuple[np.ndarray, np.ndarray]:
        """x: (n, size, size, channels) -> (probabilities (n, n_outputs), maps (n, k, h, w) >= 0)."""
        import tensorflow as tf

        idx = tf.constant(np.asarray(class_idx, dtype=np.int32).reshape(-1))
        try:
            probs, cams = self._run(tf.constant(x, dtype=tf.float32), idx)
        except ValueError as exc:
            if "None values not supported" in str(exc):  # no gradient path to the target
                raise ValueError("the Grad-CAM layer does not feed the model's output") from None
            raise
        return probs.numpy(), cams.numpy()
