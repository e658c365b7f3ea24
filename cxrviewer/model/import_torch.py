"""Import a public PyTorch DenseNet121 chest X-ray checkpoint as a cxrviewer model (.keras + card).

``cxrviewer import-weights CHECKPOINT --preset P --out DIR`` reads the checkpoint with the
torch-free reader (``torch_checkpoint``), finds the state dict in it, renames its keys to the
torchvision DenseNet121 layout, copies every tensor onto the matching layer of a Keras
DenseNet121 classifier, and writes ``DIR/<name>.keras`` with a complete model card beside it.

Layer correspondence (torchvision -> ``keras.applications.DenseNet121``):

=====================================================  ============================
``features.conv0`` / ``features.norm0``                ``conv1_conv`` / ``conv1_bn``
``features.denseblockB.denselayerL.norm1``             ``conv{B+1}_block{L}_0_bn``
``features.denseblockB.denselayerL.conv1``             ``conv{B+1}_block{L}_1_conv``
``features.denseblockB.denselayerL.norm2``             ``conv{B+1}_block{L}_1_bn``
``features.denseblockB.denselayerL.conv2``             ``conv{B+1}_block{L}_2_conv``
``features.transitionT.norm`` / ``.conv``              ``pool{T+1}_bn`` / ``pool{T+1}_conv``
``features.norm5``                                     ``bn``
``classifier``                                         the classifier's Dense layer
=====================================================  ============================

The two graphs compute the same function: torch's 7x7/2 conv with padding 3 and 3x3/2 max
pool with padding 1 are Keras's explicit ZeroPadding2D + valid conv/pool (zero padding is
exact for the pool because it follows a ReLU), the 3x3 dense-layer convs use "same"
padding, and both apply ReLU after ``norm5`` then global average pooling. Batch norm uses
torch's epsilon 1e-5 (Keras's DenseNet default is 1.001e-5). The test suite checks the
logits against torch on real films.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrviewer import NOT_FOR_DIAGNOSIS, __version__
from cxrviewer.fsutil import file_sha256, write_json_atomic
from cxrviewer.model.card import ModelCard, Preprocess, card_path_for
from cxrviewer.model.torch_checkpoint import CheckpointError, read_checkpoint

DENSENET121_BLOCKS = (6, 12, 24, 16)
TORCH_BN_EPSILON = 1e-5
INPUT_SIZE = 224

# torchxrayvision's 18 outputs in its ``default_pathologies`` order (the order of every
# ``densenet121-res224-*`` classifier row, trained or not).
XRV_LABELS = (
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema",
    "Fibrosis", "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule",
    "Mass", "Hernia", "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum",
)

# CheXNet's CLASS_NAMES order (Rajpurkar et al. 2017 and its PyTorch reproductions).
CHEXNET_LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)

NAN = float("nan")


@dataclass(frozen=True)
class XrvWeights:
    """One published torchxrayvision weight set: what it was trained on and its operating points.

    ``op_threshs`` are torchxrayvision's per-output operating points on the sigmoid output
    (Youden J on a held-out 20% patient split, their scripts/model_calibrate.py); NaN marks an
    output that weight set never trained.
    """

    name: str
    download_prefix: str  # file name of the original download, before "-densenet121-d121"
    data: str
    op_threshs: tuple[float, ...]


XRV_WEIGHTS = {w.name: w for w in (
    XrvWeights(
        "densenet121-res224-all", "nih-pc-chex-mimic_ch-google-openi-kaggle",
        "NIH ChestX-ray14, PadChest, CheXpert, MIMIC-CXR (CheXpert labels), Google's NIH relabels, "
        "OpenI and the RSNA Pneumonia Challenge, pooled (torchxrayvision; Cohen et al., MIDL 2020, "
        "arXiv:2002.02497)",
        (0.07422872, 0.038290843, 0.09814756, 0.0098118475, 0.023601074, 0.0022490358, 0.010060724,
         0.103246614, 0.056810737, 0.026791653, 0.050318155, 0.023985857, 0.01939503, 0.042889766,
         0.053369623, 0.035975814, 0.20204692, 0.05015312),
    ),
    XrvWeights(
        "densenet121-res224-nih", "nih",
        "NIH ChestX-ray14 (torchxrayvision; Cohen et al., MIDL 2020, arXiv:2002.02497)",
        (0.039117552, 0.0034529066, 0.11396341, 0.0057298196, 0.00045666535, 0.0018880932, 0.012037827,
         0.038744126, 0.0037213727, 0.014730946, 0.016149804, 0.054241467, 0.037198864, 0.0004403434,
         NAN, NAN, NAN, NAN),
    ),
    XrvWeights(
        "densenet121-res224-pc", "pc",
        "PadChest, University of Alicante (torchxrayvision; Cohen et al., MIDL 2020, arXiv:2002.02497)",
        (0.031012505, 0.013347598, 0.081435576, 0.001262615, 0.002587246, 0.0035944257, 0.0023071,
         0.055412333, 0.044385884, 0.042766232, 0.043258056, 0.037629247, 0.005658899, 0.0091741895,
         NAN, 0.026507627, NAN, NAN),
    ),
    XrvWeights(
        "densenet121-res224-chex", "chex",
        "CheXpert, Stanford (torchxrayvision; Cohen et al., MIDL 2020, arXiv:2002.02497)",
        (0.1988969, 0.05710573, NAN, 0.0531293, 0.1435217, NAN, NAN, 0.27212676, 0.07749717, NAN,
         0.19712369, NAN, NAN, NAN, 0.09932402, 0.09273402, 0.3270967, 0.10888247),
    ),
    XrvWeights(
        "densenet121-res224-rsna", "kaggle",
        "RSNA Pneumonia Detection Challenge (torchxrayvision; Cohen et al., MIDL 2020, arXiv:2002.02497)",
        (NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, 0.13486601, NAN, NAN, NAN, NAN, NAN, NAN, NAN,
         0.13511065, NAN),
    ),
    XrvWeights(
        "densenet121-res224-mimic_nb", "mimic_nb",
        "MIMIC-CXR with NegBio labels (torchxrayvision; Cohen et al., MIDL 2020, arXiv:2002.02497)",
        (0.08558747, 0.011884617, NAN, 0.0040595434, 0.010733786, NAN, NAN, 0.118761964, 0.022924708,
         NAN, 0.06358637, NAN, NAN, NAN, 0.022143636, 0.017476924, 0.1258702, 0.014020768),
    ),
    XrvWeights(
        "densenet121-res224-mimic_ch", "mimic_ch",
        "MIMIC-CXR with CheXpert-labeller labels (torchxrayvision; Cohen et al., MIDL 2020, "
        "arXiv:2002.02497)",
        (0.09121389, 0.010573786, NAN, 0.005023008, 0.003698257, NAN, NAN, 0.08001232, 0.037242252,
         NAN, 0.05006329, NAN, NAN, NAN, 0.019866971, 0.03823637, 0.11303808, 0.0069147074),
    ),
)}
CUSTOM_WEIGHTS = "custom"  # an xrv-layout model with no published operating points (own fine-tune)
WEIGHTS_NAMES = (*XRV_WEIGHTS, CUSTOM_WEIGHTS)


@dataclass(frozen=True)
class Preset:
    """How a family of checkpoints is fed and what its outputs mean."""

    name: str
    labels: tuple[str, ...]
    channels: int
    preprocess: Preprocess
    publisher: str
    preprocess_note: str


PRESETS = {p.name: p for p in (
    Preset(
        "xrv-densenet121", XRV_LABELS, 1,
        # xrv scales 8-bit films to [-1024, 1024]: (p - 0.5) * 2048 on 0..1 pixels.
        Preprocess(resize="area", crop="center", clahe=False, mean=0.5, std=1.0 / 2048.0),
        "torchxrayvision (mlmed)",
        "centre square crop, area resize to 224, one grey channel scaled to [-1024, 1024] "
        "(torchxrayvision's XRayCenterCrop + XRayResizer(224) + normalize)",
    ),
    Preset(
        "chexnet-densenet121", CHEXNET_LABELS, 3,
        Preprocess(resize="area", crop="center", clahe=False,
                   mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        "a CheXNet reproduction (Rajpurkar et al. 2017, arXiv:1711.05225)",
        "centre square crop, area resize to 224, grey copied to 3 channels, ImageNet mean/std. "
        "CheXNet's reference code resized to 256 and averaged ten 224 crops; cxrviewer feeds the "
        "whole centred square at 224 in one pass so probabilities and Grad-CAM cover the whole "
        "film (a 12.5% difference in scale from that crop)",
    ),
)}


# ---- finding the state dict -----------------------------------------------------------------
ANCHOR = "features.conv0.weight"
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "state", "net", "network", "weights", "params")


def _is_state_dict(obj) -> bool:
    return (isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj)
            and any(k.endswith(ANCHOR) for k in obj))


def find_state_dict(content, path: Path) -> dict:
    """The DenseNet state dict in a checkpoint: bare, or under a wrapper key (``state_dict``...)."""
    if _is_state_dict(content):
        return content
    if isinstance(content, dict):
        for key in WRAPPER_KEYS:
            if _is_state_dict(content.get(key)):
                return content[key]
        for val in content.values():
            if _is_state_dict(val):
                return val
        keys = ", ".join(repr(k) for k in list(content)[:8])
        raise CheckpointError(path, f"no DenseNet state dict found (no '{ANCHOR}' key; top-level keys: {keys})")
    raise CheckpointError(path, f"no DenseNet state dict found (the file holds a {type(content).__name__})")


_OLD_STYLE = re.compile(r"\.(norm|relu|conv)\.([12])\.")


def normalise_keys(state: dict, path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Torchvision-layout keys -> arrays, and the extras (e.g. xrv's ``op_threshs``).

    Strips whatever wraps the network (``module.``, ``model.``, ``module.densenet121.`` ...:
    the text before ``features.conv0.weight``), renames CheXNet-era ``norm.1``/``conv.1`` to
    ``norm1``/``conv1`` and a ``classifier.0`` (Sequential(Linear, Sigmoid)) to ``classifier``.
    """
    anchors = [k for k in state if k.endswith(ANCHOR)]
    if len(anchors) != 1:
        raise CheckpointError(path, f"expected one '{ANCHOR}' key, found {len(anchors)}")
    prefix = anchors[0][: -len(ANCHOR)]
    net: dict[str, np.ndarray] = {}
    extras: dict[str, np.ndarray] = {}
    for key, val in state.items():
        if key.startswith(prefix):
            key = key[len(prefix):]
        elif prefix and key.startswith(prefix.split(".")[0] + "."):
            key = key[len(prefix.split(".")[0]) + 1:]  # e.g. module.op_threshs beside module.densenet121.*
        if key.endswith("num_batches_tracked"):
            continue  # batch-norm bookkeeping, not a weight
        key = _OLD_STYLE.sub(lambda m: f".{m.group(1)}{m.group(2)}.", key)
        key = re.sub(r"^classifier\.0\.", "classifier.", key)
        if not (key.startswith("features.") or key.startswith("classifier.")):
            extras[key] = val
            continue
        if not isinstance(val, np.ndarray):
            raise CheckpointError(path, f"'{key}' is a {type(val).__name__}, not a tensor")
        net[key] = val
    return net, extras


# ---- torch key -> Keras layer ---------------------------------------------------------------
def densenet121_layer_map() -> list[tuple[str, str, str]]:
    """(torch module path, Keras layer name, kind) for every weighted layer but the classifier."""
    out = [("features.conv0", "conv1_conv", "conv"), ("features.norm0", "conv1_bn", "bn")]
    for b, n_layers in enumerate(DENSENET121_BLOCKS, start=1):
        for i in range(1, n_layers + 1):
            t, k = f"features.denseblock{b}.denselayer{i}", f"conv{b + 1}_block{i}"
            out += [(f"{t}.norm1", f"{k}_0_bn", "bn"), (f"{t}.conv1", f"{k}_1_conv", "conv"),
                    (f"{t}.norm2", f"{k}_1_bn", "bn"), (f"{t}.conv2", f"{k}_2_conv", "conv")]
        if b < len(DENSENET121_BLOCKS):
            out += [(f"features.transition{b}.norm", f"pool{b + 1}_bn", "bn"),
                    (f"features.transition{b}.conv", f"pool{b + 1}_conv", "conv")]
    out.append(("features.norm5", "bn", "bn"))
    return out


PARAM_NAMES = {"conv": ("weight",), "bn": ("weight", "bias", "running_mean", "running_var"),
               "dense": ("weight", "bias")}


def _torch_to_keras(kind: str, tensors: list[np.ndarray]) -> list[np.ndarray]:
    if kind == "conv":
        return [tensors[0].transpose(2, 3, 1, 0)]  # OIHW -> HWIO
    if kind == "dense":
        return [tensors[0].T, tensors[1]]  # (out, in) -> (in, out)
    return tensors  # gamma, beta, moving mean, moving variance: same order and shape


def _layers_by_name(model) -> dict:
    found = {}

    def walk(m):
        for layer in m.layers:
            found.setdefault(layer.name, layer)
            if hasattr(layer, "layers"):
                walk(layer)

    walk(model)
    return found


def classifier_layer(model):
    """The model's single Dense layer (the classification head)."""
    import keras

    dense = [lay for lay in _layers_by_name(model).values() if isinstance(lay, keras.layers.Dense)]
    if len(dense) != 1:
        raise ValueError(f"expected one Dense layer in the Keras model, found {len(dense)}")
    return dense[0]


def expected_keys() -> set[str]:
    """Every key of a torchvision DenseNet121 state dict (batch-norm counters aside)."""
    plan = [(t, kind) for t, _, kind in densenet121_layer_map()] + [("classifier", "dense")]
    return {f"{t}.{p}" for t, kind in plan for p in PARAM_NAMES[kind]}


def check_keys(net: dict[str, np.ndarray], path: Path) -> None:
    """Refuse a state dict that is not exactly DenseNet121's, naming what is missing or extra."""
    expected = expected_keys()
    missing = sorted(expected - net.keys(), key=_natural)
    unexpected = sorted(net.keys() - expected, key=_natural)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
        raise CheckpointError(path, "not a torchvision DenseNet121 state dict: " + "; ".join(parts))


def load_densenet121_weights(model, net: dict[str, np.ndarray], path: Path) -> None:
    """Copy torchvision-layout tensors onto a Keras DenseNet121 classifier, strictly.

    Every expected key must be present with the right shape and every key must be used;
    nothing is assigned unless all of them fit.
    """
    check_keys(net, path)
    layers = _layers_by_name(model)
    plan = [(t, layers.get(k), kind) for t, k, kind in densenet121_layer_map()]
    plan.append(("classifier", classifier_layer(model), "dense"))
    assignments = []
    for tprefix, layer, kind in plan:
        if layer is None:
            raise ValueError(f"the Keras model lacks the DenseNet121 layer for {tprefix}")
        values = _torch_to_keras(kind, [net[f"{tprefix}.{p}"] for p in PARAM_NAMES[kind]])
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if want != got:
            raise CheckpointError(path, f"'{tprefix}' has shape(s) {got}; the Keras layer {layer.name} needs {want}")
        assignments.append((layer, [v.astype(np.float32) for v in values]))
    for layer, values in assignments:
        layer.set_weights(values)


def _natural(key: str):
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", key)]


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


# ---- the Keras model ------------------------------------------------------------------------
def build_keras_densenet121(n_outputs: int, channels: int):
    """A fresh DenseNet121 + GAP + Dense(sigmoid) classifier with torch's batch-norm epsilon."""
    from cxrviewer.model.build import build_classifier

    model = build_classifier(n_outputs, task="multilabel", backbone="densenet121",
                             input_size=INPUT_SIZE, channels=channels, weights=None)
    import keras

    for layer in _layers_by_name(model).values():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.epsilon = TORCH_BN_EPSILON
    return model


# ---- xrv calibration: which outputs are trained, where each is called -----------------------
def _weights_from_filename(path: Path) -> str | None:
    stem = path.name.lower()
    for w in XRV_WEIGHTS.values():
        if w.name in stem:
            return w.name
    head = stem.split("-densenet121")[0] if "-densenet121" in stem else None
    for w in XRV_WEIGHTS.values():
        if head == w.download_prefix:
            return w.name
    return None


def _same_threshs(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a.shape == b.shape and np.array_equal(np.isnan(a), np.isnan(b))
            and np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-5, atol=1e-9))


@dataclass
class XrvCalibration:
    weights_name: str | None  # a key of XRV_WEIGHTS, or None for custom weights
    op_threshs: list[float] | None  # per output, NaN = untrained; None when unknown
    source: str  # where the operating points came from, for the card


def xrv_calibration(extras: dict, weights_name: str | None, path: Path) -> XrvCalibration:
    """Decide the weight set and its operating points.

    The checkpoint's own ``op_threshs`` buffer (present in a pretrained xrv model's
    ``state_dict()``) wins; it also identifies the weight set when it equals a published one.
    Otherwise the weight set named by ``--weights-name`` or by the file name gives them.
    """
    own = extras.get("op_threshs")
    if own is not None:
        own = np.asarray(own, dtype=np.float64).reshape(-1)
        if own.shape != (len(XRV_LABELS),):
            raise CheckpointError(path, f"'op_threshs' has {own.size} values, expected {len(XRV_LABELS)}")
        if weights_name in XRV_WEIGHTS and not _same_threshs(own, XRV_WEIGHTS[weights_name].op_threshs):
            raise CheckpointError(path, f"its op_threshs differ from torchxrayvision's published ones for "
                                        f"{weights_name}: check --weights-name")
        if weights_name is None:
            weights_name = next((w.name for w in XRV_WEIGHTS.values() if _same_threshs(own, w.op_threshs)),
                                _weights_from_filename(path))
        return XrvCalibration(weights_name if weights_name != CUSTOM_WEIGHTS else None, own.tolist(),
                              "the checkpoint's own op_threshs buffer")
    if weights_name is None:
        weights_name = _weights_from_filename(path)
        how = f"torchxrayvision's published table for {weights_name} (weight set inferred from the file name)"
    else:
        how = f"torchxrayvision's published table for {weights_name} (--weights-name)"
    if weights_name is None:
        raise CheckpointError(
            path, "cannot tell which torchxrayvision weight set this is (no op_threshs in the file, none "
                  f"named in the file name): pass --weights-name, one of {', '.join(WEIGHTS_NAMES)}")
    if weights_name == CUSTOM_WEIGHTS:
        return XrvCalibration(None, None, "none (custom weights)")
    return XrvCalibration(weights_name, list(XRV_WEIGHTS[weights_name].op_threshs), how)


def dead_outputs(net: dict[str, np.ndarray], labels) -> list[str]:
    """Labels whose classifier row (weights and bias) is all zero or not finite: never trained."""
    w, b = net["classifier.weight"], net["classifier.bias"]
    dead = []
    for i, lab in enumerate(labels):
        row = np.append(w[i], b[i])
        if not np.all(np.isfinite(row)) or not np.any(row):
            dead.append(lab)
    return dead


# ---- the card -------------------------------------------------------------------------------
def make_card(preset: Preset, name: str, checkpoint: Path, sha256: str, layout: str, net: dict,
              calibration: XrvCalibration | None, gradcam_layer: str) -> ModelCard:
    labels = list(preset.labels)
    dead = dead_outputs(net, labels)
    source = {"file": checkpoint.name, "sha256": sha256, "preset": preset.name, "format": f"torch.save ({layout})",
              "converter": f"cxrviewer {__version__} import-weights"}
    if calibration is None:  # CheXNet
        untrained = dead
        thresholds = {lab: 0.5 for lab in labels if lab not in untrained}
        rule = ("0.5 on the sigmoid output: CheXNet reproductions publish no per-finding operating points. "
                "Uncalibrated; choose local ones with `cxrviewer evaluate` on labelled films.")
        data = ("NIH ChestX-ray14 (112,120 frontal films, 30,805 patients; labels mined from reports), as used by "
                "CheXNet (Rajpurkar et al. 2017, arXiv:1711.05225); the split depends on the reproduction "
                "this checkpoint came from")
        untrained_rule = "outputs whose classifier row is all zero or not finite"
    else:
        thr = calibration.op_threshs
        no_point = [lab for lab, t in zip(labels, thr)
                    if t is None or not math.isfinite(t)] if thr is not None else []
        untrained = [lab for lab in labels if lab in set(no_point) | set(dead)]
        if thr is None:
            thresholds = {lab: 0.5 for lab in labels if lab not in untrained}
            rule = ("0.5 on the sigmoid output: custom torchxrayvision-layout weights with no published "
                    "operating points. Uncalibrated; choose local ones with `cxrviewer evaluate`.")
        else:
            thresholds = {lab: float(t) for lab, t in zip(labels, thr) if lab not in untrained}
            published = calibration.weights_name is not None and _same_threshs(
                thr, XRV_WEIGHTS[calibration.weights_name].op_threshs)
            how = ("chosen by torchxrayvision: Youden J on a held-out 20% patient split of the training data"
                   if published else "how they were chosen is not recorded in the checkpoint")
            rule = (f"op_threshs operating points from {calibration.source}, {how}. A finding is called "
                    "when the sigmoid output reaches its point, exactly where torchxrayvision's op_norm-rescaled "
                    "output crosses 0.5; the probabilities shown are the raw sigmoid outputs, not op_norm's "
                    "rescaled ones.")
            source["op_threshs"] = [None if not math.isfinite(t) else float(t) for t in thr]
        weights = XRV_WEIGHTS.get(calibration.weights_name) if calibration.weights_name else None
        data = weights.data if weights else "unknown (custom torchxrayvision-layout weights)"
        source["weights_name"] = calibration.weights_name or CUSTOM_WEIGHTS
        untrained_rule = ("outputs with no operating point (NaN op_threshs: torchxrayvision's mark for an output "
                          "the weight set never trained) plus outputs whose classifier row is all zero or not finite")
    source["untrained_rule"] = untrained_rule
    active = [lab for lab in labels if lab not in untrained]
    return ModelCard(
        name=name,
        task="multilabel",
        labels=labels,
        untrained_labels=untrained,
        input_size=INPUT_SIZE,
        input_channels=preset.channels,
        preprocess=preset.preprocess,
        gradcam_layer=gradcam_layer,
        thresholds=thresholds,
        threshold_rule=rule,
        training={"data": data, "patients": None, "images": None, "epochs": None,
                  "preprocessing": preset.preprocess_note, "imported": True},
        metrics={"validation_auroc": {lab: None for lab in active},
                 "note": "not measured by cxrviewer for imported weights (unknown here); see the publisher's "
                         "paper, and measure on local labelled films with `cxrviewer score --labels`"},
        intended_use=(f"Imported research model from {preset.publisher}, converted from PyTorch by cxrviewer; "
                      f"for research and software testing. {NOT_FOR_DIAGNOSIS}"),
        architecture={"backbone": "densenet121", "input_size": INPUT_SIZE, "channels": preset.channels,
                      "head": "global average pool + dense sigmoid",
                      "batchnorm_epsilon": TORCH_BN_EPSILON, "converted_from": "torchvision DenseNet121 layout"},
        source=source,
    )


# ---- the command ----------------------------------------------------------------------------
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


def default_name(preset: Preset, checkpoint: Path, calibration: XrvCalibration | None) -> str:
    if calibration is not None and calibration.weights_name:
        return "xrv-" + calibration.weights_name
    stem = _NAME_OK.sub("-", checkpoint.name.split(".")[0]).strip("-.") or "imported"
    return f"{preset.name}-{stem}"


def _write_new(target: Path, write) -> None:
    """``write(tmp)`` beside ``target``, then move it in only if nothing is there yet.

    The hard link is the atomic no-clobber step (it fails if ``target`` exists), so a file
    that appeared meanwhile is never replaced; file systems without hard links fall back to
    check-then-rename.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise FileExistsError(f"{target} already exists; choose another --name or --out") from None
        except OSError:
            if target.exists():
                raise FileExistsError(f"{target} already exists; choose another --name or --out") from None
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def import_checkpoint(checkpoint: str | Path, preset: str, out_dir: str | Path, name: str | None = None,
                      weights_name: str | None = None) -> Path:
    """Convert ``checkpoint`` and write ``out_dir/<name>.keras`` + card; returns the .keras path.

    Raises CheckpointError (the file), FileExistsError (would overwrite) or ValueError (arguments).
    """
    checkpoint = Path(checkpoint)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' (choose {', '.join(PRESETS)})")
    spec = PRESETS[preset]
    if weights_name is not None and weights_name not in WEIGHTS_NAMES:
        raise ValueError(f"unknown --weights-name '{weights_name}' (choose {', '.join(WEIGHTS_NAMES)})")
    if weights_name is not None and preset != "xrv-densenet121":
        raise ValueError("--weights-name applies to the xrv-densenet121 preset only")
    if name is not None and (not name.strip() or _NAME_OK.search(name)):
        raise ValueError(f"--name '{name}' may use only letters, digits, '.', '_' and '-'")

    ckpt = read_checkpoint(checkpoint)
    state = find_state_dict(ckpt.content, checkpoint)
    net, extras = normalise_keys(state, checkpoint)
    calibration = xrv_calibration(extras, weights_name, checkpoint) if preset == "xrv-densenet121" else None
    extras.pop("op_threshs", None)
    if extras:
        raise CheckpointError(checkpoint, f"not a torchvision DenseNet121 state dict: {len(extras)} unexpected "
                                          f"key(s) ({_few(sorted(extras, key=_natural))})")
    check_keys(net, checkpoint)
    _check_shape_family(net, spec, checkpoint)

    name = name or default_name(spec, checkpoint, calibration)
    out_dir = Path(out_dir)
    model_path = out_dir / f"{name}.keras"
    card_path = card_path_for(model_path)
    for target in (model_path, card_path):
        if target.exists():
            raise FileExistsError(f"{target} already exists; choose another --name or --out (nothing was written)")

    from cxrviewer.model.build import default_gradcam_layer

    model = build_keras_densenet121(len(spec.labels), spec.channels)
    load_densenet121_weights(model, net, checkpoint)
    card = make_card(spec, name, checkpoint, file_sha256(checkpoint), ckpt.layout, net, calibration,
                     default_gradcam_layer("densenet121"))
    card.validate(card_path.name)
    from cxrviewer.model.loading import check_model_matches_card

    check_model_matches_card(model, card)

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_new(model_path, model.save)
    try:
        _write_new(card_path, lambda tmp: write_json_atomic(tmp, card.to_dict()))
    except BaseException:
        model_path.unlink(missing_ok=True)  # a model without its card is unusable: leave nothing behind
        raise
    return model_path


def _check_shape_family(net: dict, spec: Preset, path: Path) -> None:
    conv0 = net.get("features.conv0.weight")
    if conv0 is not None and conv0.ndim == 4 and conv0.shape[1] != spec.channels:
        raise CheckpointError(path, f"its first convolution takes {conv0.shape[1]} input channel(s); preset "
                                    f"{spec.name} expects {spec.channels}")
    head = net.get("classifier.weight")
    if head is not None and head.ndim == 2 and head.shape[0] != len(spec.labels):
        raise CheckpointError(path, f"its classifier has {head.shape[0]} outputs; preset {spec.name} expects "
                                    f"{len(spec.labels)}")


def import_command(args) -> int:
    """``cxrviewer import-weights``: 0 on success, 2 with a one-line reason on failure."""
    try:
        model_path = import_checkpoint(args.checkpoint, args.preset, args.out, name=getattr(args, "name", None),
                                       weights_name=getattr(args, "weights_name", None))
    except (CheckpointError, FileExistsError, ValueError) as exc:
        print(f"cxrviewer import-weights: {exc}", file=sys.stderr)
        return 2
    card = ModelCard.load(card_path_for(model_path))
    print(f"wrote {model_path} and {card_path_for(model_path).name}")
    print(f"  {len(card.active_labels)} finding(s) shown; untrained outputs hidden: "
          f"{', '.join(card.untrained_labels) or 'none'}")
    print(f"  thresholds: {card.threshold_rule.split(':')[0]}")
    print(f"  {NOT_FOR_DIAGNOSIS}")
    return 0
