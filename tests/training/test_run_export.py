"""Recipes, the end-to-end run (`cxrviewer train`), export of model + card, and the
shipped recipe's data plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.model.card import ModelCard, card_path_for
from cxrviewer.training.recipe import RecipeError, load_recipe, parse_recipe

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "training" / "tiny_smoke.toml"
SHIPPED = REPO / "training" / "cxr14_densenet121.toml"


def _tiny_recipe(tmp_path, data_dir, publish: Path | None = None, **train) -> Path:
    """The smoke recipe with the data root pinned, optionally publishing the model to
    ``publish``, and a few training keys changed."""
    text = SMOKE.read_text()
    text = text.replace('root = "../../shared/data"', f'root = "{data_dir.as_posix()}"')
    if publish is not None:
        text = text.replace("[output]\n", f'[output]\nmodel = "{publish.as_posix()}"\n')
    for key, value in train.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key} =")]
        at = lines.index("[train]") + 1
        lines.insert(at, f"{key} = {value}")
        text = "\n".join(lines) + "\n"
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_recipe_parsing_resolves_paths_and_rejects_typos(tmp_path, monkeypatch):
    monkeypatch.delenv("CXR_DATA", raising=False)
    recipe = load_recipe(SMOKE)
    assert recipe.data.labels == ["Effusion", "Infiltration", "Pneumonia"]
    assert recipe.data_root == (REPO.parent / "shared" / "data").resolve()
    assert recipe.run_dir == (REPO / "runs" / "tiny-smoke").resolve()
    assert recipe.data.sources[1].label_map == {"PNEUMONIA": "Pneumonia", "NORMAL": ""}
    monkeypatch.setenv("CXR_DATA", str(tmp_path))
    assert recipe.data_root == tmp_path
    base = '[data]\nlabels = "cxr14"\n[[data.sources]]\nfolders = "x"\nlabel_map = {A = "Hernia"}\n'
    assert len(parse_recipe(base).data.labels) == 14
    with pytest.raises(RecipeError, match="unknown key.*finetune_epoch\\b"):
        parse_recipe(base + "[train]\nfinetune_epoch = 3\n")
    with pytest.raises(RecipeError, match="whole number"):
        parse_recipe(base + "[train]\nbatch_size = 1.5\n")
    with pytest.raises(RecipeError, match="no \\[\\[data.sources\\]\\]"):
        parse_recipe("[data]\nlabels = ['A']\n")
    with pytest.raises(RecipeError, match="add(ing)? up to 1"):
        parse_recipe(base + "[split]\nfractions = [0.5, 0.1, 0.1]\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        parse_recipe("[data\n")


def test_end_to_end_run_exports_a_model_that_loads_with_its_evaluation(tmp_path, data_dir, capsys):
    from cxrviewer.cli import main
    from cxrviewer.model import load_model

    published = tmp_path / "models" / "tiny-smoke.keras"
    recipe = _tiny_recipe(tmp_path, data_dir, publish=published)
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "split (patient-level" in err and "epoch 3 (finetune)" in err
    model_path = out / "model" / "tiny-smoke.keras"
    card = ModelCard.load(card_path_for(model_path))  # validates
    assert card.intended_use == "Demonstration model. Not for diagnostic use."
    assert card.training["images"] == 240 and card.training["epochs"] == 3
    assert card.training["sources"]["kermany"]["labelled"] == ["Pneumonia"]
    assert set(card.metrics["validation_auroc"]) == set(card.labels)
    assert card.threshold_rule.startswith("Youden's J on the validation split")
    assert card.preprocess.mean != 0.5  # measured on the training films
    report = json.loads((out / "report" / "validation" / "report.json").read_text())
    for c in report["classes"]:
        assert card.metrics["validation_auroc"][c["label"]] == c["auroc"]
        if c["youden_threshold"] is not None:
            assert card.thresholds[c["label"]] == pytest.approx(c["youden_threshold"], abs=1e-6)
    assert report["source"] == {"split": "validation", "films": report["n_cases"]}
    test_report = json.loads((out / "report" / "test" / "report.json").read_text())
    assert test_report["source"]["split"] == "test"
    assert all(c["threshold_source"] in ("validation Youden", None) for c in test_report["classes"])
    assert (out / "report" / "test" / "per_class.csv").exists()
    assert (out / "report" / "validation" / "roc_overview.png").stat().st_size > 1000
    predictor = load_model(model_path)
    assert predictor.labels == card.active_labels
    from cxrviewer.io import load_film

    film = load_film(sorted((data_dir / "nih" / "png1024").glob("*.png"))[0])
    (pred,) = predictor.predict([film])
    assert set(pred.probabilities) == set(card.active_labels)
    # The split file names splits, not patients.
    header = (out / "split.csv").read_text().splitlines()[0]
    assert header == "path,source,split"
    assert published.read_bytes() == model_path.read_bytes()
    assert card_path_for(published).read_text() == card_path_for(model_path).read_text()
    # Running again into the same folder is refused (no silent restart over a run)...
    assert main(["train", str(recipe), "--out", str(out)]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    # ...and so is a new run that would replace the published model, before any training.
    before = published.read_bytes()
    assert main(["train", str(recipe), "--out", str(tmp_path / "run2")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert published.read_bytes() == before
    assert not (tmp_path / "run2" / "checkpoints").exists()


def test_shortened_run_and_resume_through_the_command_line(tmp_path, data_dir, capsys):
    from cxrviewer.cli import main

    published = tmp_path / "models" / "tiny-smoke.keras"
    recipe = _tiny_recipe(tmp_path, data_dir, publish=published)
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--epochs", "2", "--max-steps", "2"]) == 0
    card = ModelCard.load(out / "model" / "tiny-smoke.card.json")
    assert card.training["epochs"] == 2 and card.training["shortened"]["max_steps_per_epoch"] == 2
    err = capsys.readouterr().err
    assert "per training batch" in err  # the time estimate
    assert "not published" in err and not published.exists()  # a smoke run never ships
    # --resume continues the same run to the full recipe and replaces its own model.
    assert main(["train", str(recipe), "--out", str(out), "--resume"]) == 0
    card = ModelCard.load(out / "model" / "tiny-smoke.card.json")
    assert [h["epoch"] for h in card.training["history"]] == [1, 2, 3]


def test_export_refuses_to_overwrite_and_leaves_no_temp_files(tmp_path):
    import keras

    from cxrviewer.model.build import build_classifier
    from cxrviewer.training.export import ExportError, export_model
    from tests.model_helpers import tiny_card

    card = tiny_card(["Effusion", "Pneumonia"], size=32, name="exported")
    model = build_classifier(2, backbone="tiny", input_size=32)
    model.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy")  # a training model
    target = tmp_path / "exported.keras"
    export_model(model, card, target)
    first = target.read_bytes()
    with pytest.raises(ExportError, match="already exists"):
        export_model(model, card, target)
    assert target.read_bytes() == first
    export_model(model, card, target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported.card.json", "exported.keras"]
    # The inference file has no optimizer state.
    import zipfile

    import h5py  # a Keras dependency

    with zipfile.ZipFile(target) as zf, h5py.File(zf.open("model.weights.h5"), "r") as h5:
        assert "optimizer" not in h5


def test_start_from_an_existing_model_keeps_its_weights_and_normalisation(tmp_path, data_dir):
    from cxrviewer.model import load_model
    from cxrviewer.training.run import _start_model
    from tests.model_helpers import make_tiny_model

    start = make_tiny_model(tmp_path, ["Effusion", "Infiltration", "Pneumonia"], size=32, name="start",
                            architecture={"backbone": "tiny", "input_size": 32, "channels": 3})
    text = _tiny_recipe(tmp_path, data_dir).read_text().replace('backbone = "tiny"',
                                                                f'backbone = "tiny"\nstart = "{start.as_posix()}"')
    recipe = parse_recipe(text, tmp_path / "r.toml")
    build, pre, origin = _start_model(recipe, ["Effusion", "Infiltration", "Pneumonia"], "multilabel")
    model = build()
    source = load_model(start).model
    for a, b in zip(model.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (pre.mean, pre.std) == (0.5, 0.25) and origin["head"] == "kept"
    # A different label set keeps the backbone and starts a new head.
    build2, _, origin2 = _start_model(recipe, ["Hernia", "Mass"], "multilabel")
    m2 = build2()
    np.testing.assert_array_equal(m2.get_layer("tiny_conv1").get_weights()[0],
                                  source.get_layer("tiny_conv1").get_weights()[0])
    assert m2.output.shape[-1] == 2 and origin2["head"] == "new"


def test_shipped_recipe_plans_a_patient_split_over_the_real_films(monkeypatch):
    from cxrviewer.training.run import build_dataset, make_split

    monkeypatch.delenv("CXR_DATA", raising=False)
    recipe = load_recipe(SHIPPED)
    assert recipe.model.backbone == "densenet121" and recipe.model.input_size == 224
    assert recipe.data.labels == list(__import__("cxrviewer.findings", fromlist=["x"]).CXR14_LABELS)
    assert recipe.publish_path == (REPO / "models" / "cxr14-densenet121.keras").resolve()
    assert recipe.start_model is None and recipe.output.overwrite is False
    ds = build_dataset(recipe)
    split = make_split(recipe, ds)  # includes the leakage check
    counts = split.counts(ds.patients)
    n_train = counts["train"]["images"]
    epochs = recipe.train.head_epochs + recipe.train.finetune_epochs
    # The time budget in training/README.md: at most ~18k DenseNet121 image-steps.
    assert n_train * epochs <= 18_000
    assert counts["validation"]["images"] >= 200
    summary = ds.summary()
    for lab in recipe.data.labels:  # every finding has training signal
        assert summary["labels"][lab]["positive"] >= 5


def test_multiclass_run_from_class_folders_with_their_own_split(tmp_path, data_dir):
    """Kermany as the wizard's folder-per-class case: softmax head, weighted categorical
    loss, the folders' own train/test split (plus a patient-level validation set is not
    possible there, so validation comes from a user split column instead)."""
    import shutil

    from cxrviewer.training.progress import NullCallback
    from cxrviewer.training.recipe import parse_recipe
    from cxrviewer.training.run import run_training

    # A small copy with train/val/test folders, patients kept within one split folder.
    src = data_dir / "kermany-pneumonia" / "train"
    root = tmp_path / "xray"
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((src / cls).iterdir())[:45]
        for i, f in enumerate(files):
            split = "train" if i < 27 else ("val" if i < 36 else "test")
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, root / split / cls / f.name)
    text = f'''
[data]
root = "{tmp_path.as_posix()}"
labels = ["NORMAL", "PNEUMONIA"]
task = "multiclass"
[[data.sources]]
name = "clinic"
folders = "xray"
[split]
method = "given"
[model]
name = "tiny-multiclass"
backbone = "tiny"
input_size = 32
[train]
head_epochs = 1
finetune_epochs = 1
finetune_lr = 3e-3
[output]
run_dir = "run"
bootstrap = 100
'''
    recipe = parse_recipe(text, tmp_path / "mc.toml")
    phases = []

    class Phases(NullCallback):
        def on_phase_start(self, phase, epochs):
            phases.append((phase, epochs))

    outcome = run_training(recipe, callback=Phases())
    # After the training phases, "evaluate" says no more batches come (the GUI shows it).
    assert phases == [("head", 1), ("finetune", 1), ("evaluate", 0)]
    card = outcome.card
    assert card.task == "multiclass" and card.labels == ["NORMAL", "PNEUMONIA"]
    assert card.training["split"] == "split given by the sources"
    assert card.training["splits"]["validation"]["images"] == 18
    assert card.training["loss"].startswith("inverse-frequency weighted categorical")
    report = json.loads((outcome.run_dir / "report" / "test" / "report.json").read_text())
    assert report["multiclass"]["n"] == 18 and len(report["multiclass"]["confusion"]) == 2
    # The outcome carries the reports behind the card (the GUI wizard shows them).
    assert set(outcome.reports) == {"validation", "test"}
    assert outcome.reports["test"].multiclass.confusion == report["multiclass"]["confusion"]
    val = outcome.reports["validation"]
    assert {c.label: c.auroc for c in val.classes} == card.metrics["validation_auroc"]
    assert val.mean_auroc == card.metrics["validation_mean_auroc"]
    from cxrviewer.model import load_model

    assert load_model(outcome.model_path).labels == ["NORMAL", "PNEUMONIA"]


def test_user_split_with_a_shared_patient_stops_the_run_before_training(tmp_path, data_dir, nih_png_dir):
    import shutil

    from cxrviewer.training.recipe import parse_recipe
    from cxrviewer.training.run import run_training
    from cxrviewer.training.split import LeakageError

    names = sorted(p.name for p in nih_png_dir.glob("*.png"))[:12]
    for n in names:
        shutil.copy(nih_png_dir / n, tmp_path / n)
    rows = ["image,patient,Effusion,fold"]
    for i, n in enumerate(names):
        rows.append(f"{n},{'P' + str(i // 2) if i != 11 else 'P0'},{i % 2},{['train', 'val', 'test'][i % 3]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    text = f'''
[data]
root = "{tmp_path.as_posix()}"
labels = ["Effusion"]
[[data.sources]]
csv = "labels.csv"
images = "."
split_column = "fold"
[split]
method = "given"
[model]
name = "leaky"
backbone = "tiny"
input_size = 32
[output]
run_dir = "run"
'''
    with pytest.raises(LeakageError) as info:
        run_training(parse_recipe(text, tmp_path / "leaky.toml"))
    assert "P0" not in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_shipped_recipe_runs_a_few_steps_and_exports_a_loadable_model(tmp_path, capsys):
    """The real DenseNet121 recipe, shortened to 1 epoch of 2 batches (minutes on 2 cores)."""
    from cxrviewer.cli import main
    from cxrviewer.findings import CXR14_LABELS
    from cxrviewer.model import load_model

    recipe = load_recipe(SHIPPED)
    out = tmp_path / "run"
    assert main(["train", str(SHIPPED), "--out", str(out), "--epochs", "1", "--max-steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "per training batch" in err and "not published" in err
    model_path = out / "model" / "cxr14-densenet121.keras"
    assert model_path.stat().st_size < 40 * 1024 * 1024
    predictor = load_model(model_path)
    assert predictor.labels == list(CXR14_LABELS) and predictor.card.input_size == 224
    assert predictor.card.intended_use == "Demonstration model. Not for diagnostic use."
    assert not recipe.publish_path.exists() or recipe.publish_path.stat().st_mtime < model_path.stat().st_mtime
