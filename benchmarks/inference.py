"""Inference speed on real films, against the raw model measured in the same run.

Run: python benchmarks/inference.py [FOLDER] [--model M.keras] [--films N] [--batch-size B]

Prints ms per film for
  (a) raw: the model on pre-decoded, pre-prepared tensors in batches, both as a plain
      eager ``model(x)`` call and through the Predictor's compiled function; the faster of
      the two is the baseline;
  (b) full path: file -> load_film -> prepare -> model -> Prediction, decoding overlapped
      with inference (``cxrviewer.model.pipeline.iter_predictions``), plus the same path
      run serially (decode, then infer) to show what the overlap buys;
  (c) probabilities + Grad-CAM (top 3 findings mapped onto the 1024x1024 film) on
      pre-decoded films: in batches (``Predictor.explain_batch``, as ``score --gradcam-dir``
      does; the batch-mode figure compared with raw batch throughput) and one film per call
      (``Predictor.explain``, as the viewer does; compared with one-film predict calls);
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


def ms_per_film(fn, n_films: int) -> tuple[float, float]:
    """(wall ms, process CPU ms) per film for one run of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return ((time.perf_counter() - wall) * 1000 / n_films, (time.process_time() - cpu) * 1000 / n_films)


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

        def explain_batched():
            for i in range(0, n, bs):
                predictor.explain_batch(films[i:i + bs], x=x[i:i + bs], top_k=args.top_k)

        def explain_one_map():
            for film in films:
                predictor.explain(film, top_k=1)

        def predict_one_by_one():
            for film in films:
                predictor.predict([film])

        # Interleaved rounds: every method sees the same background load (the machine may
        # be shared); the best round of each is reported. Process CPU time (all threads) is
        # shown beside wall time: it is what a method costs in compute, and is far less
        # disturbed by other processes than wall time.
        methods = {"eager": raw_eager, "compiled": raw_compiled, "decode": decode_only,
                   "full": full_overlapped, "serial": full_serial, "single": predict_one_by_one,
                   "explain_batch": explain_batched, "explain": explain_all, "explain1": explain_one_map}
        reps = args.repeats
        wall = {name: [] for name in methods}
        cpu = {name: [] for name in methods}
        for _ in range(reps):
            for name, fn in methods.items():
                w, c = ms_per_film(fn, n)
                wall[name].append(w)
                cpu[name].append(c)

    W = {k: min(v) for k, v in wall.items()}
    C = {k: min(v) for k, v in cpu.items()}
    base = "compiled" if W["compiled"] <= W["eager"] else "eager"
    rows = [
        ("eager", f"(a) raw model(x), eager, batches of {bs}"),
        ("compiled", f"(a) raw compiled predict_arrays, batches of {bs}"),
        ("decode", "    decode + prepare only, 1 thread"),
        ("full", f"(b) file -> probabilities, overlapped ({workers} decode)"),
        ("serial", "    file -> probabilities, serial"),
        ("single", "    one film per predict call (no map)"),
        ("explain_batch", f"(c) probs + Grad-CAM, top {args.top_k} maps, batches of {bs}"),
        ("explain", f"    probs + Grad-CAM, top {args.top_k} maps, one per call"),
        ("explain1", "    probs + Grad-CAM, 1 map, one per call"),
    ]
    print(f"\n{'':48s} {'wall ms/film':>12s} {'x raw':>6s}   {'CPU ms/film':>11s} {'x raw':>6s}")
    for key, label in rows:
        mark = "  <- baseline" if key == base else ""
        print(f"{label:48s} {W[key]:12.1f} {W[key] / W[base]:6.2f}   {C[key]:11.1f} {C[key] / C[base]:6.2f}{mark}")
    print()
    print(f"(b) throughput, overlapped: {W[base] / W['full'] * 100:5.1f}% of raw by wall time, "
          f"{C[base] / C['full'] * 100:5.1f}% by CPU time (target >= 90%)")
    print(f"(c) probabilities + Grad-CAM in batches: {W['explain_batch'] / W[base]:4.2f}x raw by wall time, "
          f"{C['explain_batch'] / C[base]:4.2f}x by CPU time (target <= 1.3x)")
    print(f"    one film per call (viewer): {W['explain'] / W['single']:4.2f}x one-film predict calls by wall "
          f"time, {C['explain'] / C['single']:4.2f}x by CPU time; {W['explain'] / W[base]:4.2f}x batched raw")
    spread = {k: (max(v) - min(v)) / min(v) * 100 for k, v in wall.items()}
    print(f"best of {reps} interleaved rounds; wall-time spread between rounds (max-min)/min: "
          + ", ".join(f"{k} {v:.0f}%" for k, v in spread.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
