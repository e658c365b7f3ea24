"""Grad-CAM: alignment on real films (square, non-square, centre crop), one pass, zero maps.

The alignment model is built by hand: its score for each class is the mean brightness of
one region of an 8x8 grid over the model input (Cropping2D + ZeroPadding2D keep only that
region in that class's channel), so the correct Grad-CAM of a class is that region's
brightness. A bright square pasted into a real NIH film must come out as the peak, at the
right place in film coordinates.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.model import load_model, save_model
from cxrviewer.model.card import ModelCard, Preprocess
from cxrviewer.model.gradcam import normalise_map
from tests.model.films import film_from_pixels, load_real_film

SIZE, GRID = 64, 8
# class -> (first row, last row, first col, last col) of grid cells, asymmetric on purpose
# so a transposed or flipped map cannot pass.
REGIONS = {"upper_right": (1, 3, 4, 6), "lower_left": (5, 7, 0, 2)}
LABELS = list(REGIONS)


def build_region_model():
    import keras
    from keras import layers

    inp = keras.Input((SIZE, SIZE, 3))
    bright = layers.Conv2D(1, 1, activation="relu", name="brightness")(inp)  # relu(standardised grey)
    grid = layers.AveragePooling2D(SIZE // GRID, name="grid")(bright)  # (8, 8, 1) mean per cell
    channels = []
    for label, (r0, r1, c0, c1) in REGIONS.items():
        crop = ((r0, GRID - 1 - r1), (c0, GRID - 1 - c1))
        region = layers.Cropping2D(crop, name=f"crop_{label}")(grid)
        channels.append(layers.ZeroPadding2D(crop, name=f"pad_{label}")(region))
    target = layers.Activation("linear", name="cam_target")(layers.Concatenate(name="regions")(channels))
    pooled = layers.GlobalAveragePooling2D(name="avg_pool")(target)
    out = layers.Dense(len(REGIONS), activation="sigmoid", name="predictions")(pooled)
    model = keras.Model(inp, out, name="region_brightness")
    # Weights by hand: grey = mean of the three (identical) channels; class r reads channel r.
    model.get_layer("brightness").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32), np.zeros(1, np.float32)])
    model.get_layer("predictions").set_weights([np.eye(len(REGIONS), dtype=np.float32) * 10.0,
                                                np.full(len(REGIONS), -1.0, np.float32)])
    return model


def region_card(crop="none") -> ModelCard:
    return ModelCard(
        name="region-brightness", task="multilabel", labels=LABELS, input_size=SIZE, input_channels=3,
        preprocess=Preprocess(resize="area", crop=crop, clahe=False, mean=0.5, std=0.25),
        gradcam_layer="cam_target", thresholds=dict.fromkeys(LABELS, 0.5), threshold_rule="fixed 0.5",
        training={"data": "none: weights set by hand"}, metrics={"validation_auroc": {}},
        intended_use=f"Grad-CAM alignment test. {NOT_FOR_DIAGNOSIS}",
    )


@pytest.fixture(scope="module", params=["none", "center"])
def region_predictor(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("region") / "region.keras"
    save_model(build_region_model(), region_card(request.param), path)
    return load_model(path)


def cell_box(film_shape, crop, r0, r1, c0, c1):
    """Film-pixel box (row0, row1, col0, col1) covered by grid cells r0..r1, c0..c1."""
    rows, cols = film_shape
    if crop == "center":
        side = min(rows, cols)
        top, left, h, w = (rows - side) // 2, (cols - side) // 2, side, side
    else:
        top, left, h, w = 0, 0, rows, cols
    ch, cw = h / GRID, w / GRID
    return top + r0 * ch, top + (r1 + 1) * ch, left + c0 * cw, left + (c1 + 1) * cw


@pytest.fixture(scope="module")
def nih_pixels(nih_paths):
    return load_real_film(nih_paths[1]).pixels


@pytest.mark.parametrize("film_shape", [(1024, 1024), (1024, 700), (700, 1024)], ids=["square", "tall", "wide"])
def test_gradcam_peak_lands_on_the_bright_square(region_predictor, nih_pixels, film_shape):
    rows, cols = film_shape
    crop = region_predictor.card.preprocess.crop
    pixels = nih_pixels[(1024 - rows) // 2:(1024 - rows) // 2 + rows, (1024 - cols) // 2:(1024 - cols) // 2 + cols].copy()
    assert pixels.shape == film_shape
    # Paste a white square that covers grid cell (2, 5), inside region "upper_right", with margin.
    br0, br1, bc0, bc1 = cell_box(film_shape, crop, 2, 2, 5, 5)
    mr, mc = (br1 - br0) * 0.2, (bc1 - bc0) * 0.2
    sq = (int(br0 - mr), int(br1 + mr), int(bc0 - mc), int(bc1 + mc))
    pixels[sq[0]:sq[1], sq[2]:sq[3]] = 1.0
    film = film_from_pixels(pixels, "pasted.png")

    prediction, maps = region_predictor.explain(film, LABELS)
    cam = maps["upper_right"]
    assert cam.shape == film_shape and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    assert sq[0] <= peak[0] < sq[1] and sq[2] <= peak[1] < sq[3], (peak, sq)
    # Nothing outside the class's region (allow half a cell of bilinear spill).
    r0, r1, c0, c1 = cell_box(film_shape, crop, *REGIONS["upper_right"])
    hr, hc = (r1 - r0) / 6, (c1 - c0) / 6
    outside = np.ones(film_shape, bool)
    outside[max(0, int(r0 - hr) - 2):int(r1 + hr) + 2, max(0, int(c0 - hc) - 2):int(c1 + hc) + 2] = False
    assert cam[outside].max() == 0.0

    # The other class, from the same pass, looks only at its own region.
    other = maps["lower_left"]
    if other.max() > 0:
        r0, r1, c0, c1 = cell_box(film_shape, crop, *REGIONS["lower_left"])
        pr, pc = np.unravel_index(np.argmax(other), other.shape)
        assert r0 - hr <= pr < r1 + hr and c0 - hc <= pc < c1 + hc
    if crop == "center":  # outside the centre crop the model saw nothing
        side = min(film_shape)
        if cols > rows:
            assert cam[:, : (cols - side) // 2].max() == 0.0
        elif rows > cols:
            assert cam[: (rows - side) // 2, :].max() == 0.0
    # Bright region -> high score, and the call follows.
    assert prediction.probabilities["upper_right"] > 0.5 and "upper_right" in prediction.calls


def test_blank_film_gives_all_zero_maps_not_nan(region_predictor):
    film = film_from_pixels(np.zeros((600, 500), np.float32), "blank.png")
    _, maps = region_predictor.explain(film, LABELS)
    for cam in maps.values():
        assert cam.shape == (600, 500) and np.all(np.isfinite(cam)) and cam.max() == 0.0


def test_normalise_map_edge_cases():
    assert normalise_map(np.zeros((3, 3))).max() == 0.0
    out = normalise_map(np.array([[np.nan, -1.0], [2.0, 4.0]]))
    assert np.all(np.isfinite(out)) and out.max() == 1.0 and out.min() == 0.0


def test_explain_matches_predict_and_gradcam(tiny_predictor, nih_films):
    film = nih_films[2]
    pred, maps = tiny_predictor.explain(film, top_k=3)
    plain = tiny_predictor.predict([film])[0]
    assert pred.probabilities == pytest.approx(plain.probabilities, abs=1e-5)
    assert pred.calls == plain.calls
    assert list(maps) == [lab for lab, _ in plain.top(3)]
    for label, cam in maps.items():
        assert cam.shape == film.pixels.shape and cam.dtype == np.float32
        assert 0.0 <= cam.min() and cam.max() <= 1.0
        np.testing.assert_allclose(tiny_predictor.gradcam(film, label), cam, atol=1e-5)
    # Different findings give different maps (gradients really are per class).
    a, b = list(maps.values())[:2]
    assert np.abs(a - b).max() > 1e-3


def test_explain_choose_maps_labels_picked_after_the_forward_pass(tiny_predictor, nih_films):
    """``choose`` sees the probabilities first, so a label ranked last can still be mapped."""
    film = nih_films[2]
    plain = tiny_predictor.predict([film])[0]
    last = plain.top(len(plain.probabilities))[-1][0]
    seen = []

    def pick(prediction):
        seen.append(prediction)
        return [last]

    pred, maps = tiny_predictor.explain(film, choose=pick)
    assert list(maps) == [last] and maps[last].shape == film.pixels.shape
    assert seen and seen[0].probabilities == pytest.approx(plain.probabilities, abs=1e-5)
    np.testing.assert_allclose(tiny_predictor.gradcam(film, last), maps[last], atol=1e-5)


def test_explain_batch_equals_explain_film_by_film(tiny_predictor, nih_films):
    """One batched pass gives each film its own maps: no film's gradient leaks into another's."""
    import cv2

    films = list(nih_films[:3])
    # A non-square film in the same batch: maps come back in each film's own shape.
    films[1] = dataclasses.replace(films[1], pixels=np.ascontiguousarray(films[1].pixels[:, :700]))
    batched = tiny_predictor.explain_batch(films, labels=["Effusion", "Mass"])
    assert len(batched) == 3
    for film, (pred, maps) in zip(films, batched):
        single_pred, single_maps = tiny_predictor.explain(film, ["Effusion", "Mass"])
        assert pred.probabilities == pytest.approx(single_pred.probabilities, abs=1e-5)
        for lab in ("Effusion", "Mass"):
            assert maps[lab].shape == film.pixels.shape
            np.testing.assert_allclose(maps[lab], single_maps[lab], atol=1e-4)
    # Different films give different maps (the batch is not one film repeated).
    a = cv2.resize(batched[0][1]["Mass"], (64, 64))
    b = cv2.resize(batched[2][1]["Mass"], (64, 64))
    assert np.abs(a - b).max() > 1e-3


def test_explain_on_densenet121(tmp_path, nih_films):
    """The method's architecture: target ``relu`` after the last dense block."""
    from cxrviewer.findings import CXR14_LABELS
    from cxrviewer.model.build import build_classifier
    from tests.model_helpers import randomise_weights, tiny_card

    model = build_classifier(14, input_size=64)
    randomise_weights(model, seed=1)
    card = tiny_card(CXR14_LABELS, size=64, name="densenet-test", gradcam_layer="relu",
                     architecture={"backbone": "densenet121"})
    predictor = load_model(save_model(model, card, tmp_path / "dn.keras"))
    film = nih_films[0]
    pred, maps = predictor.explain(film, ["Effusion", "Mass"])
    assert pred.probabilities == pytest.approx(predictor.predict([film])[0].probabilities, abs=1e-5)
    for cam in maps.values():
        assert cam.shape == (1024, 1024) and np.isfinite(cam).all() and 0.0 <= cam.min() <= cam.max() <= 1.0


def test_target_layer_with_a_side_branch_uses_the_full_tape(tmp_path, nih_films):
    """When the head also reads layers before the target, the model cannot be split at the
    target; Grad-CAM then records the whole forward pass and must still agree with predict."""
    import keras
    from keras import layers

    from tests.model_helpers import randomise_weights, tiny_card

    inp = keras.Input((32, 32, 3))
    feats = layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(inp)
    side = layers.Conv2D(2, 3, padding="same", name="side")(inp)
    pooled = layers.GlobalAveragePooling2D()(layers.Concatenate()([feats, side]))
    model = keras.Model(inp, layers.Dense(3, activation="sigmoid", name="predictions")(pooled))
    randomise_weights(model, seed=5)
    labels = ["A", "B", "C"]
    predictor = load_model(save_model(model, tiny_card(labels), tmp_path / "side.keras"))
    film = nih_films[0]
    pred, maps = predictor.explain(film, labels)
    assert predictor._gradcam.split is False
    assert pred.probabilities == pytest.approx(predictor.predict([film])[0].probabilities, abs=1e-5)
    assert all(m.shape == film.pixels.shape and np.isfinite(m).all() for m in maps.values())


def test_sequential_model_gets_grad_cam_too(tmp_path, nih_films):
    """Sequential layers also carry nodes of Keras's internal graph; the engine rebuilds one graph."""
    import keras
    from keras import layers

    from tests.model_helpers import randomise_weights, tiny_card

    model = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3, activation="relu", name="features"),
                              layers.GlobalAveragePooling2D(), layers.Dense(3, activation="sigmoid")])
    randomise_weights(model, seed=2)
    labels = ["A", "B", "C"]
    predictor = load_model(save_model(model, tiny_card(labels), tmp_path / "seq.keras"))
    film = nih_films[1]
    pred, maps = predictor.explain(film, labels)
    assert pred.probabilities == pytest.approx(predictor.predict([film])[0].probabilities, abs=1e-5)
    assert predictor._gradcam.split is True
    assert all(m.shape == film.pixels.shape and m.max() == pytest.approx(1.0) for m in maps.values())
    assert predictor.explain(film, [])[1] == {}
