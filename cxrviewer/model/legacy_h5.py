"""Load ``.h5`` weight files into a model of the same architecture, safely.

Two layouts exist:

* legacy Keras 2 (``model.save_weights("x.h5")`` in Keras <= 2.x and tf.keras, and the
  ``model_weights`` group of a full-model ``.h5``): root attribute ``layer_names``, one group
  per layer with a ``weight_names`` attribute. The widely shared course model
  ``pretrained_model.h5`` (DenseNet121 + GAP + Dense(14, sigmoid)) is in this layout. Old
  DenseNet names (``conv1/conv``) differ from Keras 3's (``conv1_conv``), so weights are
  matched in order, as Keras itself does, and each array's kind (kernel, gamma, ...) and
  shape are checked against the model variable it goes to.
* Keras 3 (``model.save_weights("x.weights.h5")``): handed to Keras's own reader.

Only arrays are read: no configuration, no code. A mismatch raises ``LegacyWeightsError``
and leaves the model's weights as they were.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np


class LegacyWeightsError(ValueError):
    """The weight file does not fit the model (or is not a weight file); one-line reason."""


def _attr_strings(group, name: str) -> list[str] | None:
    """A string-list attribute; Keras splits long ones into ``name0``, ``name1``, ..."""
    if name in group.attrs:
        values = list(group.attrs[name])
    elif f"{name}0" in group.attrs:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.extend(group.attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _kind(weight_name: str) -> str:
    """"conv1/bn/gamma:0" or "conv1_bn/gamma" -> "gamma"."""
    return weight_name.split("/")[-1].split(":")[0]


def _model_variables(model) -> list:
    """The model's weights in layer order, nested models expanded (Keras's loading order)."""
    out, seen = [], set()
    for layer in model.layers:
        for var in layer.weights:
            if id(var) not in seen:
                seen.add(id(var))
                out.append(var)
    return out


def _read_legacy(root, where: str) -> list[tuple[str, np.ndarray]]:
    layer_names = _attr_strings(root, "layer_names") or []
    arrays: list[tuple[str, np.ndarray]] = []
    for layer_name in layer_names:
        if layer_name not in root:
            raise LegacyWeightsError(f"{where}: layer '{layer_name}' is listed but has no group")
        group = root[layer_name]
        for weight_name in _attr_strings(group, "weight_names") or []:
            if weight_name not in group:
                raise LegacyWeightsError(f"{where}: weight '{weight_name}' is listed but missing")
            arrays.append((weight_name, np.asarray(group[weight_name])))
    return arrays


def _assign_in_order(model, arrays: list[tuple[str, np.ndarray]], where: str) -> None:
    variables = _model_variables(model)
    if len(arrays) != len(variables):
        raise LegacyWeightsError(
            f"{where}: the file holds {len(arrays)} weight arrays, the model has {len(variables)}: "
            "not the same architecture"
        )
    for (name, value), var in zip(arrays, variables):
        if _kind(name) != _kind(var.path):
            raise LegacyWeightsError(f"{where}: weight '{name}' does not fit model variable '{var.path}'")
        if tuple(value.shape) != tuple(var.shape):
            raise LegacyWeightsError(
                f"{where}: weight '{name}' has shape {tuple(value.shape)}, model variable '{var.path}' "
                f"needs {tuple(var.shape)}"
            )
    # Every array checked before any is assigned: a bad file never half-loads a model.
    for (_, value), var in zip(arrays, variables):
        var.assign(value.astype(var.dtype, copy=False))


def _digest(value) -> tuple:
    arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    return arr.shape, hashlib.sha1(arr.tobytes()).hexdigest()


def _file_digests(path: Path) -> Counter:
    import h5py

    found: Counter = Counter()
    with h5py.File(path, "r") as fh:
        def visit(_name, obj):
            if isinstance(obj, h5py.Dataset):
                found[_digest(obj[()])] += 1
        fh.visititems(visit)
    return found


def _load_keras3(model, path: Path, where: str) -> None:
    """Keras 3 weights files: Keras's own reader (it insists on the .weights.h5 suffix).

    Keras may skip parts of a model it cannot match with only a warning, so afterwards every
    model variable must hold an array from the file, one for one; otherwise the previous
    weights are restored and the file is refused.
    """
    before = model.get_weights()
    with tempfile.TemporaryDirectory() as tmp:
        target = path
        if not path.name.endswith(".weights.h5"):
            target = Path(tmp) / "weights.weights.h5"
            os.symlink(path.resolve(), target)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.load_weights(str(target))
        except Exception as exc:  # Keras raises ValueError/KeyError/... on any mismatch
            model.set_weights(before)
            reason = " ".join(str(exc).split())[:300]
            raise LegacyWeightsError(f"{where}: weights do not fit this model ({reason})") from None
    loaded = Counter(_digest(v) for v in _model_variables(model))
    if loaded != _file_digests(path):
        model.set_weights(before)
        raise LegacyWeightsError(f"{where}: weights do not fit this model (not every layer was matched)")


def _output_layer(model):
    from keras import layers

    last = model.layers[-1]
    if not isinstance(last, layers.Dense):
        raise LegacyWeightsError("label reordering needs the model to end in a Dense layer")
    return last


def _output_order(model, file_labels: Sequence[str], model_labels: Sequence[str]) -> list[int]:
    """Column of the file's output for each model label; checks the lists match the layer."""
    dense = _output_layer(model)
    units = int(dense.units)
    if len(file_labels) != units or len(model_labels) != units:
        raise LegacyWeightsError(
            f"label reordering: the output has {units} units, got {len(file_labels)} file labels "
            f"and {len(model_labels)} model labels"
        )
    if sorted(file_labels) != sorted(model_labels) or len(set(file_labels)) != units:
        missing = sorted(set(model_labels) - set(file_labels))
        raise LegacyWeightsError(
            "label reordering: the two label lists differ"
            + (f" (not in the file: {', '.join(missing)})" if missing else "")
        )
    return [list(file_labels).index(lab) for lab in model_labels]


def reorder_outputs(model, file_labels: Sequence[str], model_labels: Sequence[str]) -> None:
    """Permute the output Dense columns from ``file_labels`` order to ``model_labels`` order."""
    order = _output_order(model, file_labels, model_labels)
    dense = _output_layer(model)
    kernel, *rest = dense.get_weights()
    dense.set_weights([kernel[:, order]] + [b[order] for b in rest])


def load_legacy_h5_weights(
    model,
    path: str | Path,
    *,
    file_labels: Sequence[str] | None = None,
    model_labels: Sequence[str] | None = None,
) -> None:
    """Load an ``.h5`` weight file saved from the same architecture into ``model``.

    file_labels/model_labels: when the file's outputs are in another order than the model
    card's (the course model uses ``COURSE_H5_LABELS``, our cards ``CXR14_LABELS``), give
    both and the output layer's columns are permuted to ``model_labels`` order.
    """
    import h5py

    path = Path(path)
    where = path.name
    if (file_labels is None) != (model_labels is None):
        raise ValueError("give both file_labels and model_labels, or neither")
    if not path.is_file():
        raise LegacyWeightsError(f"{where}: file not found")
    if file_labels is not None:
        _output_order(model, file_labels, model_labels)  # refuse before touching the model
    try:
        fh = h5py.File(path, "r")
    except OSError:
        raise LegacyWeightsError(f"{where}: not an HDF5 weight file") from None
    with fh:
        root = fh
        if "model_weights" in fh and _attr_strings(fh["model_weights"], "layer_names") is not None:
            root = fh["model_weights"]  # full-model .h5: only its weights are read
        if _attr_strings(root, "layer_names") is not None:
            arrays = _read_legacy(root, where)
            legacy = True
        elif "layers" in fh or "vars" in fh:
            legacy = False
        else:
            raise LegacyWeightsError(f"{where}: no Keras weights in this HDF5 file")
    if legacy:
        _assign_in_order(model, arrays, where)
    else:
        _load_keras3(model, path, where)
    if file_labels is not None:
        reorder_outputs(model, file_labels, model_labels)
