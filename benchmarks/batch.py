"""Batch scoring throughput: ``score_folder`` on real films vs raw model throughput.

Both are measured in the same run, on the same films, with the same model and batch size:

* raw: the films decoded and prepared in memory beforehand, then only
  ``Predictor.predict_arrays`` in batches (what the model alone can do);
* score: the real ``cxrviewer.batch.score_folder`` on a folder holding those films (listing,
  decoding, preparing, inference, CSV rows with fsync), into a fresh CSV each time.

Target: score >= 0.9 x raw, i.e. decoding is hidden behind inference. Each measurement is
repeated (``--repeats``) alternately and the best of each is kept, which damps noise from
other processes on a shared machine.

    python benchmarks/batch.py [--films 64] [--batch-size 8] [--workers 0] [--source DIR] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "nih" / "png1024"
TARGET = 0.9


def fresh_densenet(folder: Path, size: int = 224) -> Path:
    """An untrained DenseNet121 (random weights) at ``size`` px with a card, saved for load_model."""
    from cxrviewer import NOT_FOR_DIAGNOSIS
    from cxrviewer.findings import CXR14_LABELS
    from cxrviewer.model import ModelCard, Preprocess, save_model
    from cxrviewer.model.build import build_classifier, default_gradcam_layer

    labels = list(CXR14_LABELS)
    card = ModelCard(
        name="benchmark-densenet121-untrained", task="multilabel", labels=labels, input_size=size,
        input_channels=3, preprocess=Preprocess(resize="area", crop="none", clahe=False, mean=0.5, std=0.25),
        gradcam_layer=default_gradcam_layer("densenet121"), thresholds={lab: 0.5 for lab in labels},
        threshold_rule="fixed 0.5 (untrained benchmark model)",
        training={"data": "none: random weights", "patients": 0, "images": 0, "epochs": 0},
        metrics={"validation_auroc": {lab: None for lab in labels}},
        intended_use=f"Throughput benchmark only. {NOT_FOR_DIAGNOSIS}",
        architecture={"backbone": "densenet121", "input_size": size, "channels": 3},
    )
    model = build_classifier(len(labels), backbone="densenet121", input_size=size, channels=3)
    return save_model(model, card, folder / "benchmark-densenet121.keras")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--films", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0, help="decode threads for score (0: automatic)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of real films")
    ap.add_argument("--model", type=Path, help=".keras model (default: shipped one, else a fresh DenseNet121)")
    args = ap.parse_args(argv)

    from cxrviewer.batch import score_folder
    from cxrviewer.io import list_films, load_film
    from cxrviewer.model import load_model
    from cxrviewer.model.pipeline import default_workers
    from cxrviewer.resources import default_model_path

    sources = [p for p, _ in zip(list_films(args.source), range(args.films))]
    if len(sources) < args.films:
        print(f"only {len(sources)} films in {args.source}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="cxr-bench-batch-") as tmp:
        tmp = Path(tmp)
        films_dir = tmp / "films"
        films_dir.mkdir()
        for p in sources:  # a folder of exactly these films, on local disk
            shutil.copy2(p, films_dir / p.name)

        model_path = args.model or default_model_path()
        if args.model is None and not model_path.exists():
            model_path = fresh_densenet(tmp)
            which = "fresh untrained DenseNet121 at 224 px (no shipped model found)"
        else:
            which = f"{'given' if args.model else 'shipped'} model {model_path.name}"
        predictor = load_model(model_path)
        print(f"model: {which}: {predictor.identity}, input {predictor.card.input_size} px")
        print(f"device: {predictor.device.summary()}")
        t0 = time.perf_counter()
        films = [load_film(p) for p in sorted(films_dir.iterdir())]
        n = len(films)
        x = np.stack([predictor.prepare(f) for f in films])
        decode_ms = (time.perf_counter() - t0) / n * 1000
        bs = args.batch_size
        print(f"films: {n} from {args.source} ({films[0].shape[1]}x{films[0].shape[0]} px), batch size {bs}, "
              f"decode workers {args.workers or default_workers()} (cpu count {os.cpu_count()})")
        predictor.predict_arrays(x[:bs])  # warm-up: graph tracing and first allocation

        def raw() -> float:
            t0 = time.perf_counter()
            for i in range(0, n, bs):
                predictor.predict_arrays(x[i : i + bs])
            return n / (time.perf_counter() - t0)

        def score(k: int) -> float:
            out = tmp / f"results-{k}.csv"
            t0 = time.perf_counter()
            summary = score_folder(films_dir, out, predictor, batch_size=bs, workers=args.workers)
            rate = summary.done / (time.perf_counter() - t0)
            assert summary.done == n and summary.errors == 0, summary.lines()
            return rate

        raws, scores = [], []
        for k in range(max(1, args.repeats)):
            if k % 2:  # alternate the order so neither side always runs on a warmer machine
                scores.append(score(k))
                raws.append(raw())
            else:
                raws.append(raw())
                scores.append(score(k))
            print(f"  run {k + 1}: raw {raws[-1]:.2f} films/s, score {scores[-1]:.2f} films/s")
        best_raw, best_score = max(raws), max(scores)
        ratio = best_score / best_raw
        print(f"raw model (pre-decoded, predict_arrays): {best_raw:.2f} films/s ({1000 / best_raw:.1f} ms/film)")
        print(f"score_folder (files -> CSV):            {best_score:.2f} films/s ({1000 / best_score:.1f} ms/film)")
        print(f"ratio score/raw: {ratio:.3f} (target >= {TARGET}) {'OK' if ratio >= TARGET else 'BELOW TARGET'}")
        # Decoding is hidden behind inference only while there are cores to spare: on a CPU-only
        # machine the decode threads and the model share the cores, so this is the ceiling.
        print(f"decode + prepare alone: {decode_ms:.1f} ms/film on one thread "
              f"({decode_ms / (1000 / best_raw) * 100:.0f}% of the raw model time per film)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
