"""How long `cxrviewer evaluate` takes on an NIH-archive-sized results file.

Builds a results CSV for all 112,120 NIH file names (real labels from the shared
Data_Entry CSV, probabilities that carry some signal), then times, in the same run:

* the bootstrap CI of one class: our vectorised resampler against scikit-learn's
  ``roc_auc_score`` called once per resample (measured on a few resamples, scaled);
* the whole evaluation (read, match, 14 classes with 1000 resamples) and the report writing.

Usage: python benchmarks/evaluate.py [--bootstrap 1000] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxrviewer.evaluate import evaluate_results, write_report  # noqa: E402
from cxrviewer.findings import CXR14_LABELS  # noqa: E402
from cxrviewer.labels import read_label_table  # noqa: E402
from cxrviewer.metrics import bootstrap_aurocs  # noqa: E402
from cxrviewer.results import format_row, write_results  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = ap.parse_args()
    labels_csv = Path(args.data) / "nih" / "Data_Entry_2017_v2020.csv.gz"
    labels = list(CXR14_LABELS)

    t = time.perf_counter()
    table = read_label_table(labels_csv, labels=labels)
    t_labels = time.perf_counter() - t
    rng = np.random.default_rng(0)
    y = table.matrix
    p = np.clip(0.25 * y + 0.75 * rng.random(y.shape), 0, 1)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.csv"
        write_results(results, labels, (format_row(f"images/{k}", "ok", p[i], [], "bench", "0" * 64, labels)
                                        for i, k in enumerate(table.keys)))
        print(f"cases: {len(table.keys)}, labels: {len(labels)}, bootstrap resamples: {args.bootstrap}")
        print(f"read NIH labels (gz, 112k rows): {t_labels:.2f} s")

        from sklearn.metrics import roc_auc_score

        j = labels.index("Effusion")
        yy, ss = y[:, j], np.round(p[:, j], 6)
        k = 10
        idx = np.random.default_rng(0).integers(0, len(yy), size=(k, len(yy)))
        t = time.perf_counter()
        for i in idx:
            roc_auc_score(yy[i], ss[i])
        t_sk = (time.perf_counter() - t) / k * args.bootstrap
        t = time.perf_counter()
        bootstrap_aurocs(yy, ss, args.bootstrap)
        t_ours = time.perf_counter() - t
        print(f"bootstrap CI, one class: sklearn per resample {t_sk:.1f} s (scaled from {k}), "
              f"vectorised {t_ours:.2f} s, speed-up {t_sk / t_ours:.1f}x")

        t = time.perf_counter()
        report = evaluate_results(results, labels_csv, n_bootstrap=args.bootstrap)
        t_eval = time.perf_counter() - t
        t = time.perf_counter()
        write_report(report, Path(tmp) / "report")
        t_write = time.perf_counter() - t
        size = (Path(tmp) / "report" / "report.json").stat().st_size / 1e6
        print(f"evaluate_results (read, match, 14 classes): {t_eval:.1f} s")
        print(f"write_report (JSON {size:.1f} MB, CSV, 15 PNGs, summaries): {t_write:.1f} s")
        print(f"mean AUROC {report.mean_auroc:.3f}, matched {report.source['matched']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
