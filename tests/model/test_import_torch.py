"""Importing PyTorch DenseNet121 chest X-ray checkpoints: equivalence with torch, cards, CLI.

The equivalence tests build DenseNet121 in torch (torchvision's layout and key names, written
out below so torchvision is not needed), randomise its batch-norm statistics, save it with
torch.save, import it, and compare logits on real films; they skip where torch is absent.
Everything else writes checkpoints with the torch-free writer in ``torch_files`` and runs
everywhere.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.cli import main as cli_main
from cxrviewer.fsutil import file_sha256
from cxrviewer.model.card import ModelCard, card_path_for
from cxrviewer.model.import_torch import (
    CHEXNET_LABELS,
    XRV_LABELS,
    XRV_WEIGHTS,
    PRESETS,
    import_checkpoint,
    make_card,
    normalise_keys,
    xrv_calibration,
)
from cxrviewer.model.torch_checkpoint import CheckpointError
from tests.model.films import load_real_film
from tests.model.torch_files import densenet121_state_dict, save_like_torch

NIH = XRV_WEIGHTS["densenet121-res224-nih"]
CHEX = XRV_WEIGHTS["densenet121-res224-chex"]


def _film_paths(data_dir: Path) -> list[Path]:
    """A square NIH PNG, a non-square COVID film and a JPEG-compressed CR DICOM."""
    return [
        sorted((data_dir / "nih" / "png1024").glob("*.png"))[0],
        sorted((data_dir / "covid-mhh" / "png").glob("*.png"))[0],
        sorted((data_dir / "dicom" / "rsna-cr").glob("*.dcm"))[0],
    ]


# ---- torch side ------------------------------------------------------------------------------
def _torch_densenet121(torch, in_channels: int, n_outputs: int, sequential_head: bool):
    """DenseNet121 with torchvision's module names (features.denseblockN.denselayerM.norm1 ...)."""
    nn, F = torch.nn, torch.nn.functional

    class DenseLayer(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
            self.conv1 = nn.Conv2d(cin, 128, 1, bias=False)
            self.norm2, self.relu2 = nn.BatchNorm2d(128), nn.ReLU()
            self.conv2 = nn.Conv2d(128, 32, 3, padding=1, bias=False)

        def forward(self, x):
            y = self.conv1(self.relu1(self.norm1(x)))
            return torch.cat([x, self.conv2(self.relu2(self.norm2(y)))], 1)

    class DenseBlock(nn.Module):
        def __init__(self, n_layers, cin):
            super().__init__()
            for i in range(n_layers):
                self.add_module(f"denselayer{i + 1}", DenseLayer(cin + 32 * i))

        def forward(self, x):
            for layer in self.children():
                x = layer(x)
            return x

    class Transition(nn.Sequential):
        def __init__(self, cin):
            super().__init__(OrderedDict(norm=nn.BatchNorm2d(cin), relu=nn.ReLU(),
                                         conv=nn.Conv2d(cin, cin // 2, 1, bias=False), pool=nn.AvgPool2d(2, 2)))

    class DenseNet121(nn.Module):
        def __init__(self):
            super().__init__()
            parts = OrderedDict(conv0=nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), norm0=nn.BatchNorm2d(64),
                                relu0=nn.ReLU(), pool0=nn.MaxPool2d(3, 2, 1))
            c = 64
            for b, n in enumerate((6, 12, 24, 16), start=1):
                parts[f"denseblock{b}"] = DenseBlock(n, c)
                c += 32 * n
                if b < 4:
                    parts[f"transition{b}"] = Transition(c)
                    c //= 2
            parts["norm5"] = nn.BatchNorm2d(c)
            self.features = nn.Sequential(parts)
            linear = nn.Linear(c, n_outputs)
            # CheXNet wrapped its head as Sequential(Linear, Sigmoid): keys classifier.0.*
            self.classifier = nn.Sequential(linear, nn.Sigmoid()) if sequential_head else linear

        @property
        def head(self):
            return self.classifier[0] if sequential_head else self.classifier

        def logits(self, x):
            x = F.relu(self.features(x))
            return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(1234)
    net = DenseNet121()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(1000)
        net.head.weight.mul_(20.0)  # spread the logits over a few units, like a trained head
    return net.eval()


def _old_style(key: str) -> str:
    """torchvision key -> CheXNet-era name (norm.1, conv.2 ...) under DataParallel + a wrapper."""
    key = re.sub(r"\.(norm|relu|conv)([12])\.", r".\1.\2.", key)
    return "module.densenet121." + key


@pytest.fixture(scope="module")
def torch_imports(tmp_path_factory):
    """Both presets' checkpoints from real torch.save, imported once: {preset: (torch net, .keras)}."""
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("import_torch")
    out = {}

    # torchxrayvision style: zip layout, bare state dict with a DataParallel `module.` prefix and
    # the op_threshs buffer a pretrained xrv model carries (here the NIH weight set's).
    xrv = _torch_densenet121(torch, 1, 18, sequential_head=False)
    sd = OrderedDict((f"module.{k}", v) for k, v in xrv.state_dict().items())
    sd["module.op_threshs"] = torch.tensor(NIH.op_threshs, dtype=torch.float32)
    path = root / "weights.pt"
    torch.save(sd, path)
    out["xrv-densenet121"] = (xrv, import_checkpoint(path, "xrv-densenet121", root / "models"), path)

    # CheXNet style: legacy (pre-1.6) layout, old-style key names, Sequential head, wrapped in a dict
    chex = _torch_densenet121(torch, 3, 14, sequential_head=True)
    state = OrderedDict((_old_style(k), v) for k, v in chex.state_dict().items())
    path = root / "model.pth.tar"
    torch.save({"epoch": 5, "arch": "densenet121", "best_loss": 0.15, "state_dict": state}, path,
               _use_new_zipfile_serialization=False)
    out["chexnet-densenet121"] = (chex, import_checkpoint(path, "chexnet-densenet121", root / "models"), path)
    return torch, out


@pytest.mark.parametrize("preset", ["xrv-densenet121", "chexnet-densenet121"])
def test_keras_logits_match_torch_on_real_films(torch_imports, preset, data_dir):
    import keras

    from cxrviewer.model import load_model

    torch, imports = torch_imports
    net, model_path, _ = imports[preset]
    predictor = load_model(model_path)  # the saved .keras file through the app's loader
    films = [load_real_film(p) for p in _film_paths(data_dir)]
    x = np.stack([predictor.prepare(f) for f in films])  # the card's preprocessing, fed to both
    with torch.no_grad():
        want = net.logits(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()

    model = predictor.model
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    kernel, bias = model.get_layer("predictions").get_weights()
    got = np.asarray(features(x)) @ kernel + bias
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    print(f"\n{preset}: logits in [{want.min():.3f}, {want.max():.3f}], max relative error {rel:.2e}")
    assert rel < 1e-4
    probs = predictor.predict_arrays(x)
    np.testing.assert_allclose(probs, 1.0 / (1.0 + np.exp(-want)), atol=1e-5)
    assert want.std() > 0.1  # the comparison is over varied logits, not a constant


def test_xrv_card_takes_calibration_from_the_checkpoint(torch_imports):
    _, imports = torch_imports
    _, model_path, ckpt = imports["xrv-densenet121"]
    assert model_path.name == "xrv-densenet121-res224-nih.keras"  # weight set recognised by its op_threshs
    card = ModelCard.load(card_path_for(model_path))
    assert card.labels == list(XRV_LABELS)
    assert card.untrained_labels == ["Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum"]
    assert card.input_channels == 1 and card.input_size == 224
    assert card.preprocess.crop == "center" and card.preprocess.mean == 0.5
    assert card.preprocess.std == pytest.approx(1 / 2048)
    for lab, thr in zip(XRV_LABELS, NIH.op_threshs):
        if math.isfinite(thr):
            assert card.thresholds[lab] == pytest.approx(thr, rel=1e-6)
    assert card.source["sha256"] == file_sha256(ckpt) and card.source["file"] == "weights.pt"
    assert card.source["weights_name"] == "densenet121-res224-nih"
    assert card.gradcam_layer == "relu"
    assert set(card.metrics["validation_auroc"].values()) == {None}
    assert "Not for diagnostic use" in card.intended_use
    assert "NIH ChestX-ray14" in card.training["data"]


def test_chexnet_card(torch_imports):
    _, imports = torch_imports
    _, model_path, ckpt = imports["chexnet-densenet121"]
    card = ModelCard.load(card_path_for(model_path))
    assert model_path.name == "chexnet-densenet121-model.keras"
    assert card.labels == list(CHEXNET_LABELS) and card.untrained_labels == []
    assert card.input_channels == 3
    assert card.preprocess.mean == [0.485, 0.456, 0.406] and card.preprocess.std == [0.229, 0.224, 0.225]
    assert set(card.thresholds.values()) == {0.5} and "0.5" in card.threshold_rule
    assert card.source["sha256"] == file_sha256(ckpt) and "legacy" in card.source["format"]


# ---- checkpoints written without torch ------------------------------------------------------
def _xrv_checkpoint(path: Path, *, zero_row: str | None = None, **extra) -> Path:
    sd = densenet121_state_dict(1, 18, seed=3)
    if zero_row:
        i = XRV_LABELS.index(zero_row)
        sd["classifier.weight"][i] = 0.0
        sd["classifier.bias"][i] = 0.0
    sd.update(extra)
    return save_like_torch(sd, path)


@pytest.fixture(scope="module")
def free_import(tmp_path_factory) -> Path:
    """An xrv-layout checkpoint (NIH op_threshs inside) from the torch-free writer, imported once."""
    root = tmp_path_factory.mktemp("free_import")
    ckpt = _xrv_checkpoint(root / "weights.pt", op_threshs=np.asarray(NIH.op_threshs, dtype=np.float32))
    return import_checkpoint(ckpt, "xrv-densenet121", root / "models")


def test_gradcam_and_untrained_outputs_on_imported_model(free_import, data_dir):
    from cxrviewer.model import load_model

    predictor = load_model(free_import)
    assert predictor.labels == list(XRV_LABELS[:14])  # untrained heads are not findings
    film = load_real_film(_film_paths(data_dir)[1])  # non-square: the centre crop maps back
    assert film.pixels.shape[0] != film.pixels.shape[1]
    prediction, maps = predictor.explain(film, top_k=2)
    assert set(prediction.probabilities) == set(XRV_LABELS[:14])
    assert len(maps) == 2
    for heat in maps.values():
        assert heat.shape == film.pixels.shape and heat.dtype == np.float32
        assert 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0.0


@pytest.mark.slow  # a full DenseNet121 training step at 224 px: ~25 s on two CPU cores
def test_imported_model_trains_from_its_weights(free_import, data_dir):
    """The imported file is a normal pipeline model: it loads and takes a gradient step."""
    import keras

    from cxrviewer.model import load_model

    predictor = load_model(free_import)
    model = predictor.model  # this test's own copy: load_model returns a fresh one per call
    x = np.stack([predictor.prepare(load_real_film(p)) for p in _film_paths(data_dir)[:2]])
    y = np.zeros((2, 18), dtype=np.float32)
    y[0, 2] = 1.0
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="binary_crossentropy")
    before = model.get_layer("predictions").get_weights()[0].copy()
    loss = float(model.train_on_batch(x, y))
    assert math.isfinite(loss)
    assert not np.allclose(before, model.get_layer("predictions").get_weights()[0])


def test_cli_imports_once_and_never_overwrites(tmp_path, capsys):
    # no op_threshs in the file: the weight set comes from the file name; a zeroed row is untrained
    ckpt = _xrv_checkpoint(tmp_path / "densenet121-res224-chex.pt", zero_row="Atelectasis")
    out = tmp_path / "models"
    args = ["import-weights", str(ckpt), "--preset", "xrv-densenet121", "--out", str(out), "--name", "chex-test"]
    assert cli_main(args) == 0
    model_path, card_path = out / "chex-test.keras", out / "chex-test.card.json"
    assert model_path.is_file() and card_path.is_file()
    assert sorted(p.name for p in out.iterdir()) == ["chex-test.card.json", "chex-test.keras"]  # no temp left
    card = ModelCard.load(card_path)
    never = [lab for lab, t in zip(XRV_LABELS, CHEX.op_threshs) if not math.isfinite(t)]
    assert set(card.untrained_labels) == set(never) | {"Atelectasis"}
    assert card.thresholds["Pneumothorax"] == pytest.approx(CHEX.op_threshs[3])
    assert "inferred from the file name" in card.threshold_rule
    assert card.source["sha256"] == file_sha256(ckpt)

    before = (file_sha256(model_path), card_path.read_bytes())
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "\n" not in err
    assert (file_sha256(model_path), card_path.read_bytes()) == before


def test_existing_card_alone_blocks_the_import(tmp_path, capsys):
    ckpt = _xrv_checkpoint(tmp_path / "densenet121-res224-all.pt")
    out = tmp_path / "models"
    out.mkdir()
    (out / "xrv-densenet121-res224-all.card.json").write_text("{}")
    assert cli_main(["import-weights", str(ckpt), "--preset", "xrv-densenet121", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["xrv-densenet121-res224-all.card.json"]
    assert (out / "xrv-densenet121-res224-all.card.json").read_text() == "{}"


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cli_refuses_a_malicious_checkpoint(tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    with zipfile.ZipFile(ckpt, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"state_dict": {}, "x": _RunsCommand(marker)}, protocol=2))
    out = tmp_path / "models"
    assert cli_main(["import-weights", str(ckpt), "--preset", "chexnet-densenet121", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "evil.pt: refused" in err and "system" in err
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize(
    "edit, preset, message",
    [
        (lambda sd: sd.pop("features.denseblock3.denselayer7.conv2.weight"), "xrv-densenet121",
         r"1 missing key\(s\) \(features\.denseblock3\.denselayer7\.conv2\.weight\)"),
        (lambda sd: sd.__setitem__("features.denseblock4.denselayer17.conv1.weight", np.zeros((1, 1, 1, 1), "f4")),
         "xrv-densenet121", r"1 unexpected key\(s\) \(features\.denseblock4\.denselayer17\.conv1\.weight\)"),
        (lambda sd: None, "chexnet-densenet121", "takes 1 input channel.*expects 3"),
        (lambda sd: sd.__setitem__("features.norm5.weight", np.ones(7, "f4")), "xrv-densenet121",
         r"'features\.norm5' has shape"),
    ],
    ids=["missing", "unexpected", "channels", "shape"],
)
def test_wrong_state_dicts_are_named(tmp_path, edit, preset, message):
    sd = densenet121_state_dict(1, 18)
    edit(sd)
    sd["op_threshs"] = np.asarray(NIH.op_threshs, dtype=np.float32)
    ckpt = save_like_torch({"model_state_dict": sd, "epoch": 1}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=message) as err:
        import_checkpoint(ckpt, preset, tmp_path / "models")
    assert str(err.value).startswith("ckpt.pt: ") and "\n" not in str(err.value)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_xrv_weight_set_must_be_known(tmp_path, capsys):
    ckpt = _xrv_checkpoint(tmp_path / "finetuned.pt")
    out = tmp_path / "models"
    assert cli_main(["import-weights", str(ckpt), "--preset", "xrv-densenet121", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--weights-name" in err and "densenet121-res224-all" in err and "custom" in err
    assert not out.exists()


def test_calibration_rules():
    path = Path("w.pt")
    # the file's own op_threshs identify the weight set
    own = {"op_threshs": np.asarray(CHEX.op_threshs, dtype=np.float32)}
    cal = xrv_calibration(own, None, path)
    assert cal.weights_name == "densenet121-res224-chex" and "own op_threshs" in cal.source
    # ...and contradict a wrong --weights-name
    with pytest.raises(CheckpointError, match="differ from torchxrayvision's published ones"):
        xrv_calibration(own, "densenet121-res224-nih", path)
    # custom weights: no operating points, only dead classifier rows are hidden
    net = {"classifier.weight": np.ones((18, 4), "f4"), "classifier.bias": np.zeros(18, "f4")}
    net["classifier.weight"][5] = 0.0
    net["classifier.weight"][6, 0] = np.nan
    cal = xrv_calibration({}, "custom", path)
    card = make_card(PRESETS["xrv-densenet121"], "custom-xrv", path, "0" * 64, "zip", net, cal, "relu")
    assert card.untrained_labels == ["Emphysema", "Fibrosis"]
    assert set(card.thresholds.values()) == {0.5} and "no published operating points" in card.threshold_rule
    card.validate()
    # the published tables are 18 long, NaN exactly where xrv's label list is blank
    for weights in XRV_WEIGHTS.values():
        assert len(weights.op_threshs) == len(XRV_LABELS)


@pytest.mark.parametrize(
    "keys",
    [
        ["features.conv0.weight", "features.denseblock1.denselayer1.norm1.weight", "classifier.weight"],
        ["module.features.conv0.weight", "module.features.denseblock1.denselayer1.norm1.weight",
         "module.classifier.weight"],
        ["model.features.conv0.weight", "model.features.denseblock1.denselayer1.norm1.weight",
         "model.classifier.weight"],
        ["module.densenet121.features.conv0.weight",
         "module.densenet121.features.denseblock1.denselayer1.norm.1.weight",
         "module.densenet121.classifier.0.weight"],
    ],
    ids=["bare", "module", "model", "chexnet"],
)
def test_key_normalisation(keys):
    state = {k: np.zeros(1, "f4") for k in keys}
    state[keys[0].replace("conv0.weight", "norm0.num_batches_tracked")] = np.zeros((), "i8")
    net, extras = normalise_keys(state, Path("x.pt"))
    assert sorted(net) == ["classifier.weight", "features.conv0.weight",
                           "features.denseblock1.denselayer1.norm1.weight"]
    assert extras == {}


def test_docs_describe_the_command():
    text = (Path(__file__).resolve().parents[2] / "docs" / "import-weights.md").read_text(encoding="utf-8")
    assert "cxrviewer import-weights" in text
    for preset in PRESETS:
        assert preset in text
