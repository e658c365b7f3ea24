"""Model files in and out: safe loading of a ``.keras`` model with its card, atomic saving.

Loading never runs code from the file. Before Keras sees the archive, its ``config.json``
is read as plain JSON and every object in it must be a built-in Keras class from an allowed
module; Lambda layers (Python code), custom or unknown objects and layers that load other
files are refused with a one-line reason. Keras then loads with ``safe_mode=True`` as a
second guard. Legacy ``.h5`` model files are refused outright: they can carry pickled code.
"""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

from cxrviewer.fsutil import atomic_path, file_sha256
from cxrviewer.model.card import ModelCard, ModelCardError, card_path_for

HOW_TO_GET_A_MODEL = (
    "train one with `cxrviewer train training/cxr14_densenet121.toml` or import public weights "
    "with `cxrviewer import-weights CHECKPOINT --preset xrv-densenet121 --out models/`"
)

# Layers that run stored Python code or read other files when they are rebuilt.
_REFUSED_LAYERS = {
    "Lambda": "a Lambda layer (it would run Python code stored in the file)",
    "TFSMLayer": "a TFSMLayer (it loads another SavedModel from disk)",
    "TorchModuleWrapper": "a TorchModuleWrapper (it unpickles a PyTorch module)",
    "JaxLayer": "a JaxLayer (it wraps stored Python functions)",
    "FlaxLayer": "a FlaxLayer (it wraps stored Python functions)",
}
# Modules the built-in objects of a plain Keras classifier come from.
_ALLOWED_MODULES = (
    "keras",
    "keras.layers",
    "keras.initializers",
    "keras.regularizers",
    "keras.constraints",
    "keras.activations",
    "keras.dtype_policies",
    "keras.models",
    "keras.src.models.functional",
    "keras.src.models.sequential",
)
# Plain-data markers Keras writes into configs (tensors, arrays, slices...).
_DATA_MARKERS = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"}
_MAX_CONFIG_BYTES = 64 * 1024 * 1024


class ModelLoadError(Exception):
    """The model cannot be used; ``str(err)`` is one line naming the file and the reason."""


def _refusal(obj: dict) -> str | None:
    """Why this serialized object may not be rebuilt, or None when it is a plain built-in."""
    cls = obj.get("class_name")
    if cls == "__lambda__":
        return "a Python lambda (code stored in the file)"
    if cls in _DATA_MARKERS:
        return None
    if cls.startswith("__"):
        return f"an unknown object kind '{cls}'"
    if cls in _REFUSED_LAYERS:
        return _REFUSED_LAYERS[cls]
    module = obj.get("module")
    registered = obj.get("registered_name")
    if registered not in (None, cls):
        return f"a custom object '{registered}'"
    if module not in _ALLOWED_MODULES:
        return f"an object '{cls}' from module '{module}' (only built-in Keras layers are loaded)"
    return None


def check_config_safe(config, where: str) -> None:
    """Raise ModelLoadError if the model config names anything but built-in Keras objects."""

    def walk(node, top=False):
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                reason = _refusal(node)
                if reason:
                    inner = node.get("config")
                    name = node.get("name") or (inner.get("name") if isinstance(inner, dict) else None)
                    named = f" ('{name}')" if isinstance(name, str) else ""
                    raise ModelLoadError(f"{where}: refused to load: the model contains {reason}{named}")
            for key, value in node.items():
                # Keras drops the top-level compile_config when loading with compile=False.
                if top and key == "compile_config":
                    continue
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config, top=True)


def read_keras_config(path: Path) -> dict:
    """The model config of a ``.keras`` archive, as plain JSON (nothing is instantiated)."""
    where = path.name
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo("config.json")
            except KeyError:
                raise ModelLoadError(f"{where}: not a Keras model archive (no config.json)") from None
            if info.file_size > _MAX_CONFIG_BYTES:
                raise ModelLoadError(f"{where}: model config is implausibly large ({info.file_size} bytes)")
            text = zf.read(info)
    except zipfile.BadZipFile:
        raise ModelLoadError(f"{where}: not a Keras 3 .keras file (not a zip archive)") from None
    except OSError as exc:
        raise ModelLoadError(f"{where}: cannot read ({exc.strerror or exc})") from None
    try:
        config = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ModelLoadError(f"{where}: model config is not valid JSON") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{where}: model config is not a JSON object")
    return config


def _activation_name(layer) -> str | None:
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", None) if fn is not None else None


def model_card_problems(model, card: ModelCard) -> list[str]:
    """Ways the card does not describe this model (empty list when it does)."""
    problems = []
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return [f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; one of each is needed"]
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        problems.append(f"the model input has shape {shape}, an image batch (n, size, size, channels) is needed")
    else:
        if shape[3] != card.input_channels:
            problems.append(f"the card says {card.input_channels} input channels, the model takes {shape[3]}")
        for side in shape[1:3]:
            if side is not None and side != card.input_size:
                problems.append(f"the card says input size {card.input_size}, the model takes {shape[1]}x{shape[2]}")
                break
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or out[1] != len(card.labels):
        problems.append(f"the card lists {len(card.labels)} labels, the model output has shape {out}")
    try:
        layer = model.get_layer(card.gradcam_layer)
        if len(layer.output.shape) != 4:
            problems.append(f"Grad-CAM layer '{card.gradcam_layer}' is not a spatial (4-D) layer")
    except ValueError:
        problems.append(f"Grad-CAM layer '{card.gradcam_layer}' is not in the model")
    except AttributeError:
        problems.append(f"Grad-CAM layer '{card.gradcam_layer}' has no single output")
    act = _activation_name(model.layers[-1])
    expected = {"multilabel": "sigmoid", "multiclass": "softmax"}[card.task]
    if act in ("sigmoid", "softmax") and act != expected:
        problems.append(f"the card says {card.task} but the output layer uses {act}")
    return problems


def check_model_matches_card(model, card: ModelCard) -> None:
    problems = model_card_problems(model, card)
    if problems:
        raise ModelCardError("; ".join(problems))


def _clone_with_policy(model, policy: str):
    """An uncompiled copy of ``model`` with every layer but the output on ``policy``.

    Rebuilt in this process from the model's own config (built-in layers only) with the
    dtype fields rewritten, weights copied over; the output layer stays float32 so
    probabilities keep full precision. (``keras.models.clone_model`` would carry the
    optimizer and compile state along.)
    """
    config = copy.deepcopy(model.get_config())
    output_name = model.layers[-1].name

    def recast(layers_config):
        for layer in layers_config:
            inner = layer.get("config", {})
            if layer.get("class_name") == "InputLayer":
                continue
            if "dtype" in inner:
                inner["dtype"] = "float32" if inner.get("name") == output_name else policy
            if isinstance(inner.get("layers"), list):  # nested functional model
                recast(inner["layers"])

    recast(config["layers"])
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def to_mixed_precision(model):
    """A copy of ``model`` computing in float16 (weights kept float32), output layer float32.

    Needed because a loaded model keeps the dtype policy it was saved with, whatever the
    global policy.
    """
    return _clone_with_policy(model, "mixed_float16")


def _needs_inference_copy(model) -> bool:
    compiled = getattr(model, "optimizer", None) is not None or getattr(model, "compiled", False)
    policies = {getattr(getattr(layer, "dtype_policy", None), "name", "float32") for layer in model.layers}
    return bool(compiled or policies - {"float32"})


def load_model(path: str | Path | None = None, *, mixed_precision: bool = False):
    """Load a ``.keras`` model and the card beside it -> Predictor (None: the shipped model).

    Raises ModelLoadError with one line: no model there (and how to get one), a card
    error, a refused or unreadable file, or a card that does not describe the model.
    """
    from cxrviewer.model.device import configure_device
    from cxrviewer.model.predictor import Predictor
    from cxrviewer.resources import default_model_path

    path = Path(path) if path is not None else default_model_path()
    where = path.name
    if not path.exists():
        raise ModelLoadError(f"no model at {path}: {HOW_TO_GET_A_MODEL}")
    if path.is_dir():
        raise ModelLoadError(f"{where}: is a folder; give the .keras file")
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise ModelLoadError(
            f"{where}: legacy .h5 model files are not loaded (they can carry code); build the "
            "architecture and load its weights with cxrviewer.model.build.load_legacy_h5_weights"
        )
    if path.suffix.lower() != ".keras":
        raise ModelLoadError(f"{where}: not a .keras model file")
    try:
        card = ModelCard.load(card_path_for(path))
    except ModelCardError as exc:
        raise ModelLoadError(str(exc)) from None
    check_config_safe(read_keras_config(path), where)

    device = configure_device(mixed_precision, set_policy=False)
    checksum = file_sha256(path)
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types; the user needs one line
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelLoadError(f"{where}: cannot load the model ({reason})") from None
    problems = model_card_problems(model, card)
    if problems:
        raise ModelLoadError(f"{where}: the card does not match the model: {'; '.join(problems)}")
    if device.mixed_precision:
        model = to_mixed_precision(model)
    return Predictor(model, card, model_path=path, checksum=checksum, device=device)


def save_model(model, card: ModelCard, path: str | Path) -> Path:
    """Write ``x.keras`` and ``x.card.json`` atomically after checking they agree.

    A compiled or mixed-precision model is saved as an uncompiled float32 copy.

    Both files are written to temp names first and renamed only when both are complete,
    so an interrupted save leaves the previous model and card as they were.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model files end in .keras, got {path.name}")
    card.validate(card_path_for(path).name)
    check_model_matches_card(model, card)
    if _needs_inference_copy(model):
        # Ship an inference model: no optimizer state (it would triple a DenseNet file and
        # drag the training loss into the config) and float32 layers that run anywhere.
        model = _clone_with_policy(model, "float32")
    with atomic_path(path) as tmp_model, atomic_path(card_path_for(path)) as tmp_card:
        model.save(tmp_model)
        tmp_card.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path
