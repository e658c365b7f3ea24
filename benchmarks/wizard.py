"""Training wizard responsiveness: the longest GUI event-loop stall while it works.

    QT_QPA_PLATFORM=offscreen python benchmarks/wizard.py [--films 300] [--skip-densenet]

The viewer's method (``benchmarks/gui.py``): the lateness of a 5 ms QTimer on the GUI
thread, against the same timer on the idle window measured in the same run. The viewer is
open with a model loaded (TensorFlow already imported, as when a reader opens
Model ▸ Train a model…), and the wizard is driven through its pages on real NIH films:

1. checks: the readability check of every film and the split (task pool, no TensorFlow);
2. estimate: building the model and timing a few batches (task pool, TensorFlow);
3. training: the whole run (decode, fit, evaluation, export) in the training thread, with
   the tiny backbone at 64 px, and DenseNet121 at 128 px shortened to a few batches per
   epoch (its cost per batch is realistic, its length is not).

Target < 50 ms, as for the viewer.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.gui import DATA, _stall, _wait, _window  # noqa: E402  - the viewer benchmark's method

NIH_CSV = DATA / "nih" / "Data_Entry_2017_v2020.csv.gz"
THUMBS = DATA / "nih" / "thumbs64"
LABELS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Pneumothorax"]


def _films(folder: Path, n: int) -> Path:
    """``n`` NIH thumbnails, whole patients, copied into ``folder``."""
    per = collections.defaultdict(list)
    for p in sorted(THUMBS.glob("*/*/*.png"), key=lambda p: p.name):
        per[p.name.split("_")[0]].append(p)
    folder.mkdir(parents=True)
    count = 0
    for pid in sorted(per):
        for f in per[pid]:
            shutil.copy2(f, folder / f.name)
            count += 1
        if count >= n:
            break
    return folder


def _report(label: str, busy, idle) -> None:
    (bmax, bp99, ticks), (imax, ip99, _) = busy, idle
    print(f"stall ({label}): longest {bmax:.1f} ms (p99 {bp99:.1f} ms, {ticks} ticks); idle window "
          f"{imax:.1f} ms (p99 {ip99:.1f}); target < 50 ms: {'met' if bmax < 50 else 'NOT met'}", flush=True)


def run_case(app, win, folder: Path, tmp: Path, label: str, backbone: str, size: int, batch: int,
             max_steps: int, finetune: int) -> None:
    from PySide6.QtCore import Qt

    wz = win.open_training_wizard()
    _wait(app, lambda: wz.training_page.curves is not None)
    kinds = []
    wz.job_done.connect(kinds.append)
    page = wz.data_page
    page.csv_field.set_text(str(NIH_CSV))
    _wait(app, lambda: "csv" in kinds)
    page.images_field.set_text(str(folder))
    for i in range(page.label_list.count()):
        item = page.label_list.item(i)
        item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in LABELS
                           else Qt.CheckState.Unchecked)
    _wait(app, page.isComplete)
    idle = _stall(app, 2.0)

    kinds.clear()
    t0 = time.perf_counter()
    wz.next()
    busy = _stall(app, None, until=lambda: "checks" in kinds)
    print(f"checks: {len(wz.checks.usable)} films read and split in {time.perf_counter() - t0:.1f} s", flush=True)
    _report(f"{label}: readability check + split", busy, idle)
    for p in list(wz.checks_page.result.problems):
        keep = [f for f in p.fixes if f.action == "keep"]
        if p.severity == "decide" and keep:
            wz.accepted.add(p.key)
    kinds.clear()
    wz.checks_page.start_check()
    _wait(app, lambda: "checks" in kinds)
    assert wz.checks_page.isComplete(), [p.text for p in wz.checks_page.result.problems]

    wz.next()
    mp = wz.model_page
    mp.backbone.setCurrentIndex(mp.backbone.findData(backbone))
    mp.size_spin.setValue(size)
    mp.batch_spin.setValue(batch)
    mp.head_epochs.setValue(0)
    mp.fine_epochs.setValue(finetune)
    mp.bootstrap.setValue(200)
    mp.run_field.set_text(str(tmp / f"run-{backbone}"))
    wz.plan.max_steps_per_epoch = max_steps
    kinds.clear()
    t0 = time.perf_counter()
    mp.start_estimate()
    busy = _stall(app, None, until=lambda: "estimate" in kinds or "error" in kinds)
    est = mp.estimate
    print(f"estimate: {est.step_seconds:.3f} s per batch of {batch} at {size} px, measured in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    _report(f"{label}: time estimate (model build + batches)", busy, idle)

    finished = []
    wz.training_finished.connect(finished.append)
    t0 = time.perf_counter()
    wz.next()
    busy = _stall(app, None, until=lambda: bool(finished))
    secs = time.perf_counter() - t0
    outcome = finished[0]
    if outcome is None:
        raise RuntimeError(f"training failed: {wz.training_page.failure}")
    steps = outcome.history[-1].get("steps")
    print(f"training: {len(outcome.history)} epochs of {steps} batches + evaluation + export in {secs:.1f} s "
          f"(validation mean AUROC {outcome.summary.get('validation_mean_auroc')})", flush=True)
    _report(f"{label}: whole training run", busy, idle)
    wz.close()
    _wait(app, lambda: win.training_wizard is None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--films", type=int, default=300)
    ap.add_argument("--skip-densenet", action="store_true")
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    print(f"cxrviewer wizard benchmark · {os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.2f}", flush=True)
    from PySide6.QtWidgets import QApplication

    from cxrviewer.findings import CXR14_LABELS
    from cxrviewer.gui.theme import apply_theme
    from tests.model_helpers import make_tiny_model

    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_theme(app)
    with tempfile.TemporaryDirectory(prefix="cxrviewer-wizard-bench-") as tmp:
        tmp = Path(tmp)
        folder = _films(tmp / "films", args.films)
        model = make_tiny_model(tmp / "model", CXR14_LABELS, size=32, name="tiny-bench")
        win = _window(model, folder)
        win.start()
        _wait(app, lambda: win.views_built and win.state.model.ready)
        if not args.skip_tiny:
            run_case(app, win, folder, tmp, "tiny 64 px", "tiny", 64, 16, 0, 3)
        if not args.skip_densenet:
            run_case(app, win, folder, tmp, "DenseNet121 128 px", "densenet121", 128, 8, 6, 2)
        win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
