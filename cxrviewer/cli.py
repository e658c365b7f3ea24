"""The ``cxrviewer`` command: argument parsing and dispatch only.

``cxrviewer [PATH]`` opens the viewer; the subcommands below run without a window.
Each handler lives in the module that owns the work and is imported only when its
subcommand runs, so ``cxrviewer --help`` and the window start without TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cxrviewer import NOT_FOR_DIAGNOSIS, __version__

# subcommand -> "module:function"; the function takes the parsed argparse.Namespace
# and returns the process exit code.
HANDLERS = {
    "score": "cxrviewer.batch:score_command",
    "merge": "cxrviewer.batch:merge_command",
    "evaluate": "cxrviewer.evaluate:evaluate_command",
    "train": "cxrviewer.training.run:train_command",
    "import-weights": "cxrviewer.model.import_torch:import_command",
    "selftest": "cxrviewer.selftest:selftest_command",
    "info": "cxrviewer.selftest:info_command",
}


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError("use I/N, e.g. 2/8") from None
    if not (n >= 1 and 1 <= i <= n):
        raise argparse.ArgumentTypeError("I/N needs 1 <= I <= N")
    return i, n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cxrviewer",
        description=f"Chest X-ray viewer and tools. {NOT_FOR_DIAGNOSIS}",
    )
    p.add_argument("--version", action="version", version=f"cxrviewer {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("score", help="score every film in a folder tree into a CSV")
    s.add_argument("folder")
    s.add_argument("--out", required=True, help="results CSV (resumed if it exists)")
    s.add_argument("--model", help=".keras model with its card beside it (default: shipped model)")
    s.add_argument("--gradcam-dir", help="write a Grad-CAM overlay PNG per film here")
    s.add_argument("--labels", help="labels CSV: also write an evaluation report beside --out")
    s.add_argument("--shard", type=_shard, help="score only part I of N of the file list")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--workers", type=int, default=0, help="decode threads (0: automatic)")

    s = sub.add_parser("merge", help="join shard CSVs from `score --shard` into one")
    s.add_argument("shards", nargs="+")
    s.add_argument("--out", required=True)

    s = sub.add_parser("evaluate", help="ROC/AUROC report of a results CSV against labels")
    s.add_argument("results")
    s.add_argument("--labels", required=True)
    s.add_argument("--out", required=True, help="report folder")
    s.add_argument("--model", help="model whose card gives the operating thresholds")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs (0: none)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    s.add_argument("--label-map", action="append", metavar="COLUMN=LABEL",
                   help="read a labels-file column or finding as a model label, e.g. Target=Pneumonia")

    s = sub.add_parser("train", help="fine-tune or train a model from a TOML recipe")
    s.add_argument("config")
    s.add_argument("--out", help="override the recipe's output folder")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    s.add_argument("--max-steps", type=int, metavar="N",
                   help="at most N batches per epoch (smoke test or time estimate)")
    s.add_argument("--epochs", type=int, metavar="N", help="at most N epochs in all (smoke test)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing model of the same name")

    s = sub.add_parser("import-weights", help="convert a PyTorch DenseNet121 checkpoint")
    s.add_argument("checkpoint")
    s.add_argument("--preset", required=True, choices=["xrv-densenet121", "chexnet-densenet121"])
    s.add_argument("--out", required=True, help="output folder for the .keras model and card")
    s.add_argument("--name", help="model name for the card")
    s.add_argument("--weights-name", help="torchxrayvision weight set (e.g. densenet121-res224-all, or custom) "
                   "when the checkpoint does not say which")

    s = sub.add_parser("selftest", help="load every DICOM in a folder, score it and run Grad-CAM")
    s.add_argument("folder")
    s.add_argument("--model")

    sub.add_parser("info", help="print versions and the compute device")
    return p


def _gui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxrviewer", add_help=False)
    p.add_argument("path", nargs="?")
    p.add_argument("--model")
    p.add_argument("--selftest", metavar="FOLDER", help="frozen-app self-test without a window")
    p.add_argument("--smoke-test", action="store_true",
                   help="open the window, print the time it took to show, and quit")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] in HANDLERS or argv[0] in ("-h", "--help", "--version")):
        args = build_parser().parse_args(argv)
        module, func = HANDLERS[args.command].split(":")
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    gui_args, rest = _gui_parser().parse_known_args(argv)
    if rest:
        build_parser().error(f"unknown arguments: {' '.join(rest)}")
    if gui_args.selftest:
        ns = argparse.Namespace(folder=gui_args.selftest, model=gui_args.model)
        from cxrviewer.selftest import selftest_command

        return int(selftest_command(ns) or 0)
    from cxrviewer.gui.platform_check import check_window_can_open

    if code := check_window_can_open():
        return code
    if gui_args.smoke_test:
        from cxrviewer.gui.app import STARTUP_PROBE_ENV

        os.environ[STARTUP_PROBE_ENV] = "1"
    from cxrviewer.gui.app import run_app

    return int(run_app(gui_args.path, model=gui_args.model) or 0)


if __name__ == "__main__":
    sys.exit(main())
