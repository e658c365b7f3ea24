"""Model card validation: every required field, inconsistent cards, file round trip."""

from __future__ import annotations

import copy
import json

import pytest

from cxrviewer.model.card import ModelCard, ModelCardError, card_path_for
from tests.model_helpers import tiny_card

LABELS = ["Atelectasis", "Cardiomegaly", "Effusion"]


@pytest.fixture
def card_dict():
    return tiny_card(LABELS, size=64).to_dict()


REQUIRED = [
    ("format",), ("name",), ("task",), ("labels",), ("input",), ("input", "size"), ("input", "channels"),
    ("preprocess",), ("preprocess", "resize"), ("preprocess", "clahe"), ("preprocess", "mean"),
    ("preprocess", "std"), ("gradcam_layer",), ("thresholds",), ("threshold_rule",), ("training",),
    ("metrics",), ("intended_use",),
]


@pytest.mark.parametrize("field", REQUIRED, ids=[".".join(f) for f in REQUIRED])
def test_each_required_field_missing_is_named(card_dict, field):
    d = copy.deepcopy(card_dict)
    parent = d
    for key in field[:-1]:
        parent = parent[key]
    del parent[field[-1]]
    with pytest.raises(ModelCardError) as err:
        ModelCard.from_dict(d, where="x.card.json")
    msg = str(err.value)
    assert msg.startswith("x.card.json: ")
    assert ".".join(field) in msg and "\n" not in msg


def test_missing_validation_auroc_is_named(card_dict):
    card_dict["metrics"] = {}
    with pytest.raises(ModelCardError, match="metrics.validation_auroc"):
        ModelCard.from_dict(card_dict)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["thresholds"].update({"Covid": 0.5}), "'thresholds' names unknown label 'Covid'"),
        (lambda d: d["thresholds"].pop("Effusion"), "'thresholds' lacks Effusion"),
        (lambda d: d["thresholds"].update({"Effusion": 1.5}), "threshold for 'Effusion'"),
        (lambda d: d["input"].update({"channels": 2}), "'input.channels' must be 1 or 3"),
        (lambda d: d["input"].update({"size": 8}), "'input.size' 8"),
        (lambda d: d["input"].update({"size": "320"}), "'input.size' should be int"),
        (lambda d: d.update({"task": "regression"}), "'task' must be one of"),
        (lambda d: d.update({"labels": ["A", "A"]}), "duplicates"),
        (lambda d: d.update({"labels": []}), "'labels' must be a non-empty"),
        (lambda d: d.update({"untrained_labels": ["Covid"]}), "'untrained_labels' names labels the model does not have"),
        (lambda d: d.update({"untrained_labels": list(LABELS)}), "every label is marked untrained"),
        (lambda d: d["preprocess"].update({"std": 0.0}), "'preprocess.std' must be positive"),
        (lambda d: d["preprocess"].update({"mean": [0.5, 0.5]}), "'preprocess.mean' has 2 values for 3 channels"),
        (lambda d: d["preprocess"].update({"resize": "cubic"}), "'preprocess.resize'"),
        (lambda d: d["preprocess"].update({"crop": "left"}), "'preprocess.crop'"),
        (lambda d: d["preprocess"].update({"clahe": "yes"}), "'preprocess.clahe' should be bool"),
        (lambda d: d.update({"gradcam_layer": " "}), "'gradcam_layer' is empty"),
        (lambda d: d.update({"threshold_rule": ""}), "say how the thresholds were chosen"),
        (lambda d: d.update({"intended_use": ""}), "'intended_use' is empty"),
        (lambda d: d["metrics"]["validation_auroc"].update({"Covid": 0.7}), "names unknown label 'Covid'"),
        (lambda d: d["metrics"]["validation_auroc"].update({"Effusion": 1.2}), "Effusion' must be in 0..1"),
        (lambda d: d.update({"format": 2}), "card format 2 is not supported"),
        (lambda d: d.update({"task": "multiclass", "labels": ["A"], "thresholds": {"A": 0.5},
                             "metrics": {"validation_auroc": {}}}), "at least two labels"),
    ],
)
def test_inconsistent_card_is_a_clear_error(card_dict, change, message):
    change(card_dict)
    with pytest.raises(ModelCardError) as err:
        ModelCard.from_dict(card_dict)
    assert message in str(err.value)


def test_untrained_labels_need_no_threshold_and_are_not_active(card_dict):
    card_dict["untrained_labels"] = ["Cardiomegaly"]
    del card_dict["thresholds"]["Cardiomegaly"]
    card = ModelCard.from_dict(card_dict)
    assert card.active_labels == ["Atelectasis", "Effusion"]


def test_card_file_round_trip_and_file_errors(tmp_path, card_dict):
    card = ModelCard.from_dict(card_dict)
    path = card_path_for(tmp_path / "m.keras")
    assert path.name == "m.card.json"
    card.save(path)
    assert ModelCard.load(path) == card
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelCardError, match="m.card.json: not valid JSON"):
        ModelCard.load(path)
    path.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(ModelCardError, match="not a JSON object"):
        ModelCard.load(path)
    with pytest.raises(ModelCardError, match="model card not found"):
        ModelCard.load(tmp_path / "other.card.json")


def test_save_refuses_an_invalid_card_and_keeps_the_old_file(tmp_path, card_dict):
    card = ModelCard.from_dict(card_dict)
    path = tmp_path / "m.card.json"
    card.save(path)
    original = path.read_text(encoding="utf-8")
    card.thresholds["Covid"] = 0.3
    with pytest.raises(ModelCardError):
        card.save(path)
    assert path.read_text(encoding="utf-8") == original
