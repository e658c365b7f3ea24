"""Inference speed on real films, against the raw model measured in the same run.

Run: python benchmarks/inference.py [FOLDER] [--model M.keras] [--films N] [--batch-size B]

Prints ms per film for
  (a) raw: the model on pre-decoded, pre-prepared tensors in batches, both as a plain
      eager ``model(x)`` call and through the Predictor's compiled function; the faster of
      the two is the baseline;
  (b) full path: file -> load_film -> prepare -> model -> Prediction, decoding overlapped
      with inference (``cxrviewer.model.pipeline.iter_predictions``), plus the same path
      run serially (decode, then infer) to show what the overlap buys;
  (c) probabilities + Grad-CAM (``Predictor.explain``, top 3 findings mapped onto the
      1024x1024 film) on pre-decoded films, one film per call as the viewer does;
and the ratios. Targets: (b) keeps >= 90% of raw throughput; (c) <= 1.3x raw per film.

Without --model the shipped model is used when present, otherwise a randomly initialised
DenseNet121 at 320x320 (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih" / "png1024"


def random_densenet(tmp: Path, size: int = 320):
    """A 14-label DenseNet121 with random weights, saved and loaded through the real path."""
    from cxrviewer import NOT_FOR_DIAGNOSIS
    from cxrviewer.findings import CXR14_LABELS
    from cxrviewer.model import load_model, save_model
    from cxrviewer.model.build import build_classifier, default_gradcam_layer
    from cxrviewer.model.card import ModelCard, Preprocess

    labels = list(CXR14_LABELS)
    card = ModelCard(
        name="random-densenet121-benchmark", task="multilabel", labels=labels, input_size=size,
        input_channels=3, preprocess=Preprocess(), gradcam_layer=default_gradcam_layer("densenet121"),
        thresholds=dict.fromkeys(labels, 0.5), threshold_rule="fixed 0.5 (benchmark only)",
        training={"data": "none: random weights"}, metrics={"validation_auroc": {}},
        intended_use=f"Speed benchmark only. {NOT_FOR_DIAGNOSIS}",
        architecture={"backbone": "densenet121"},
    )
    model = build_classifier(len(labels), input_size=size)
    return load_model(save_model(model, card, tmp / "random-densenet121.keras"))


def ms_per_film(fn, n_films: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000 / n_films


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_FOLDER))
    ap.add_argument("--model", help=".keras model (default: shipped model, else random DenseNet121 320)")
    ap.add_argument("--films", type=int, default=32, help="films to use (default 32)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0, help="decode threads (0: automatic)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top-k", type=int, default=3, help="Grad-CAM maps per film in (c)")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from cxrviewer.io import list_films, load_film
    from cxrviewer.model import load_model
    from cxrviewer.model.pipeline import default_workers, iter_predictions
    from cxrviewer.resources import default_model_path

    paths = list(list_films(Path(args.folder)))[: args.films]
    if not paths:
        print(f"no films in {args.folder}")
        return 1
    n = len(paths)
    bs = args.batch_size
    workers = args.workers or default_workers()

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            predictor = load_model(args.model)
        elif default_model_path().exists():
            predictor = load_model()
        else:
            predictor = random_densenet(Path(tmp))
        card = predictor.card
        print(f"model: {predictor.identity} ({card.architecture.get('backbone', '?')}, "
              f"input {card.input_size}x{card.input_size}x{card.input_channels})")
        print(f"device: {predictor.device.summary()}; TF intra-op threads "
              f"{tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}")
        print(f"films: {n} from {args.folder}; batch size {bs}; decode workers {workers}; best of {args.repeats}")

        films = [load_film(p) for p in paths]
        x = np.stack([predictor.prepare(f) for f in films])
        model = predictor.model
        predictor.warm_up()
        model(x[:bs], training=False)  # eager warm-up

        def raw_eager():
            for i in range(0, n, bs):
                np.asarray(model(x[i:i + bs], training=False))

        def raw_compiled():
            for i in range(0, n, bs):
                predictor.predict_arrays(x[i:i + bs])

        def full_overlapped():
            got = list(iter_predictions(paths, predictor, workers=workers, batch_size=bs))
            assert all(err is None for _, _, err in got), [err for _, _, err in got if err]

        def full_serial():
            for i in range(0, n, bs):
                chunk = [load_film(p) for p in paths[i:i + bs]]
                predictor.predict(chunk, batch_size=bs)

        def decode_only():
            for p in paths:
                predictor.prepare(load_film(p))

        def explain_all():
            for film in films:
                predictor.explain(film, top_k=args.top_k)

        def explain_one_map():
            for film in films:
                predictor.explain(film, top_k=1)

        def predict_one_by_one():
            for film in films:
                predictor.predict([film])

        # Interleaved rounds: every method sees the same background load (this machine is
        # shared); the best round of each method is reported.
        methods = {"eager": raw_eager, "compiled": raw_compiled, "decode": decode_only,
                   "full": full_overlapped, "serial": full_serial, "single": predict_one_by_one,
                   "explain": explain_all, "explain1": explain_one_map}
        reps = args.repeats
        runs = {name: [] for name in methods}
        for _ in range(reps):
            for name, fn in methods.items():
                runs[name].append(ms_per_film(fn, n))
        best = {name: min(v) for name, v in runs.items()}
        t_eager, t_comp, t_decode = best["eager"], best["compiled"], best["decode"]
        t_full, t_serial, t_single = best["full"], best["serial"], best["single"]
        t_explain, t_explain1 = best["explain"], best["explain1"]
        raw = min(t_eager, t_comp)

    print()
    print(f"(a) raw model(x), eager, batches of {bs}           {t_eager:8.1f} ms/film")
    print(f"(a) raw compiled predict_arrays, batches of {bs}   {t_comp:8.1f} ms/film   <- baseline {raw:.1f}")
    print(f"    decode + prepare only (1 thread)              {t_decode:8.1f} ms/film")
    print(f"(b) file -> probabilities, overlapped             {t_full:8.1f} ms/film   "
          f"throughput {raw / t_full * 100:5.1f}% of raw (target >= 90%)")
    print(f"    file -> probabilities, serial                 {t_serial:8.1f} ms/film   "
          f"{raw / t_serial * 100:5.1f}% of raw")
    print(f"    predict one film per call (viewer, no map)    {t_single:8.1f} ms/film   {t_single / raw:5.2f}x raw")
    print(f"(c) probabilities + Grad-CAM, top {args.top_k} maps         {t_explain:8.1f} ms/film   "
          f"{t_explain / raw:5.2f}x raw (target <= 1.3x)")
    print(f"    probabilities + Grad-CAM, 1 map               {t_explain1:8.1f} ms/film   {t_explain1 / raw:5.2f}x raw")
    print(f"    Grad-CAM overhead at equal batch size (c / one-per-call predict): top {args.top_k} "
          f"{t_explain / t_single:5.2f}x, 1 map {t_explain1 / t_single:5.2f}x")
    spread = {name: (max(v) - min(v)) / min(v) * 100 for name, v in runs.items()}
    print(f"\nbest of {reps} interleaved rounds; spread between rounds (max-min)/min: "
          + ", ".join(f"{k} {v:.0f}%" for k, v in spread.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
