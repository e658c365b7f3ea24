"""``cxrviewer evaluate``: a results CSV against a labels file -> ROC report folder.

Matches result rows to label rows, picks the operating thresholds (the model card's when
the model is known, else Youden's J on these data, said to be optimistic), computes the
numbers with ``cxrviewer.metrics`` and writes ``report.json``, ``per_class.csv``, one ROC
PNG per class, ``roc_overview.png``, ``summary.md`` and ``summary.html``, each atomically.
``score --labels``, the training report and the GUI reuse these functions.
"""

from __future__ import annotations

import csv
import html
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.fsutil import atomic_path, file_sha256, write_json_atomic, write_text_atomic
from cxrviewer.labels import LabelFileError, read_label_table
from cxrviewer.metrics import DEFAULT_BOOTSTRAP, DEFAULT_SEED, EvaluationReport, evaluate
from cxrviewer.results import ResultsFileError, ResultsTable, read_results

OPTIMISTIC_NOTE = ("Thresholds were chosen by Youden's J on these evaluation data, so sensitivity "
                   "and specificity at them are optimistic; use a validation set's thresholds "
                   "(the model card's) for an honest estimate.")
UNMATCHED_EXAMPLES = 10


class EvaluationInputError(ValueError):
    """Inputs that cannot be evaluated together; the message is one line naming the file."""


@dataclass
class ThresholdChoice:
    thresholds: dict[str, float] | None
    source: str  # "card" or "youden"
    note: str
    task: str | None = None  # the card's task when a card was found
    warnings: list[str] = field(default_factory=list)


def choose_thresholds(results: ResultsTable, model_path: str | Path | None = None) -> ThresholdChoice:
    """Operating thresholds for ``results``: the given model's card, else the shipped
    model's card when the results come from it (same sha256), else Youden on the data.

    Reads card JSON only (``ModelCard.load``); TensorFlow is never imported here.
    Raises ModelCardError when ``model_path`` is given but its card is unusable.
    """
    from cxrviewer.model.card import ModelCard, card_path_for

    warnings: list[str] = []
    card = None
    if model_path is not None:
        model_path = Path(model_path)
        card = ModelCard.load(card_path_for(model_path))
        if model_path.is_file() and results.model_sha256:
            if file_sha256(model_path) != results.model_sha256:
                warnings.append(f"thresholds come from {model_path.name}'s card, but the results were "
                                f"scored by another model ({results.model_identity})")
    else:
        from cxrviewer.resources import default_model_path

        shipped = default_model_path()
        if results.model_sha256 and shipped.is_file() and file_sha256(shipped) == results.model_sha256:
            card = ModelCard.load(card_path_for(shipped))
            model_path = shipped
    if card is None:
        return ThresholdChoice(None, "youden", OPTIMISTIC_NOTE, None, warnings)
    thresholds = {lab: float(card.thresholds[lab]) for lab in results.labels if lab in card.thresholds}
    missing = [lab for lab in results.labels if lab not in thresholds]
    note = f"Thresholds from the model card of {card.name} ({card.threshold_rule})."
    if missing:
        note += " " + OPTIMISTIC_NOTE.replace("Thresholds were", f"For {', '.join(missing)} thresholds were")
    return ThresholdChoice(thresholds, "card", note, card.task, warnings)


def _infer_task(probs: np.ndarray, y: np.ndarray) -> str:
    """Softmax outputs sum to 1 on every row and each case has exactly one true class."""
    if probs.shape[1] < 2 or not len(probs):
        return "multilabel"
    sums_to_one = np.allclose(probs.sum(axis=1), 1.0, atol=2e-3)
    one_class = ((np.nan_to_num(y) > 0.5).sum(axis=1) == 1).all()
    return "multiclass" if sums_to_one and one_class else "multilabel"


def evaluate_results(
    results_csv: str | Path,
    labels_csv: str | Path,
    thresholds: dict[str, float] | None = None,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    *,
    seed: int = DEFAULT_SEED,
    task: str | None = None,
    label_map: dict[str, str] | None = None,
    threshold_source: str = "card",
    threshold_note: str | None = None,
) -> EvaluationReport:
    """Evaluate a results CSV against a labels file.

    ``thresholds`` None: Youden's J on these data (noted as optimistic in the report).
    Error rows are dropped; the report's ``source`` says how many rows matched labels.
    Raises ResultsFileError / LabelFileError / EvaluationInputError (one line, file name).
    """
    results_csv, labels_csv = Path(results_csv), Path(labels_csv)
    results = read_results(results_csv)
    if len(results.models) > 1:
        ids = ", ".join(f"{n}@{s[:12]}" for n, s in results.models)
        raise EvaluationInputError(
            f"{results_csv.name}: rows from {len(results.models)} models ({ids}); evaluate one model's results at a time")
    n_rows = len(results)
    results = results.latest_per_path()
    scored = results.scored_mask
    n_error = int(results.error_mask.sum())
    table = read_label_table(labels_csv, labels=results.labels, label_map=label_map)
    if np.isnan(table.matrix).all():
        try:
            have = read_label_table(labels_csv, label_map=label_map).labels
        except LabelFileError:
            have = []
        raise EvaluationInputError(
            f"{labels_csv.name}: none of the model's labels ({', '.join(results.labels)}) has a known value; "
            f"the file has: {', '.join(have) or 'no label columns'} (map one with --label-map COLUMN=LABEL)")
    scored_paths = [p for p, ok in zip(results.paths, scored) if ok]
    if not scored_paths:
        raise EvaluationInputError(f"{results_csv.name}: no film was scored (error rows: {n_error} of {len(results)}); "
                                   "nothing to evaluate")
    y_all, found = table.match(scored_paths)
    if not found.any():
        example = f"e.g. '{scored_paths[0]}' vs '{table.keys[0]}'"
        raise EvaluationInputError(
            f"{results_csv.name}: no scored film matches a row of {labels_csv.name} by path, file name or stem "
            f"({example})")
    probs = results.probabilities[scored][found]
    y = y_all[found]
    unmatched = [p for p, f in zip(scored_paths, found) if not f]

    card_note = threshold_note
    if thresholds is None:
        threshold_source, card_note = "youden", OPTIMISTIC_NOTE
    if task is None:
        task = _infer_task(probs, y)
    report = evaluate(y, probs, results.labels, task=task, thresholds=thresholds,
                      threshold_source=threshold_source, n_bootstrap=n_bootstrap, seed=seed)
    report.threshold_note = card_note or ""
    if task == "multiclass":
        report.threshold_note = "Calls are the arg-max class (softmax model); thresholds are not used."
    report.model_name, report.model_sha256 = results.model_name, results.model_sha256
    report.source = {
        "results_file": str(results_csv),
        "labels_file": str(labels_csv),
        "labels_layout": table.layout,
        "result_rows": n_rows,
        "films": len(results),
        "error_rows": n_error,
        "scored": int(scored.sum()),
        "matched": int(found.sum()),
        "unmatched": len(unmatched),
        "unmatched_examples": unmatched[:UNMATCHED_EXAMPLES],
        "results_truncated": results.truncated,
    }
    report.warnings = [f"{results_csv.name}: {w}" for w in results.warnings] + \
                      [f"{labels_csv.name}: {w}" for w in table.warnings]
    if n_rows > len(results):
        report.warnings.append(f"{_films(n_rows - len(results))} listed more than once; the last row counts")
    if unmatched:
        report.warnings.append(f"{_films(len(unmatched))} without a row in {labels_csv.name} left out")
    if n_error:
        report.warnings.append(f"{_films(n_error)} that could not be scored (error rows) left out")
    return report


def _films(n: int) -> str:
    return f"{n} film" if n == 1 else f"{n} films"


# ---- report files ----------------------------------------------------------------------
def _fmt(x, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _auroc_text(c) -> str:
    if not c.estimable:
        return "not estimable"
    if c.ci_low is None:
        return f"{c.auroc:.3f} (no CI)"
    return f"{c.auroc:.3f} ({c.ci_low:.3f}-{c.ci_high:.3f})"


def roc_png_name(label: str, taken: set[str] | None = None) -> str:
    base = "roc_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_.") or "class")
    name, k = base + ".png", 2
    while taken is not None and name in taken:
        name, k = f"{base}_{k}.png", k + 1
    if taken is not None:
        taken.add(name)
    return name


PER_CLASS_COLUMNS = (
    "label", "status", "n", "n_positive", "n_negative", "n_excluded", "auroc", "ci_low", "ci_high",
    "n_bootstrap_valid", "threshold", "threshold_source", "sensitivity", "specificity", "precision",
    "recall", "f1", "tn", "fp", "fn", "tp", "youden_threshold",
)


def per_class_csv(report: EvaluationReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PER_CLASS_COLUMNS)
    for c in report.classes:
        d = c.to_dict(with_curve=False)
        w.writerow(["" if d[k] is None else (f"{d[k]:.6f}" if isinstance(d[k], float) else d[k])
                    for k in PER_CLASS_COLUMNS])
    return buf.getvalue()


def _plot_roc(ax, c, color=None, short=False):
    if c.roc is None:
        return
    label = (f"{c.label}: " if short else "AUROC ") + _auroc_text(c).replace("(", "[").replace(")", "]")
    (line,) = ax.plot(c.roc.fpr, c.roc.tpr, lw=1.6, color=color, label=label)
    if c.sensitivity is not None and c.specificity is not None:
        mark = f"threshold {c.threshold:.3f} ({c.threshold_source})" if c.threshold is not None else "arg-max call"
        ax.plot([1 - c.specificity], [c.sensitivity], "o", ms=6 if not short else 4, color=line.get_color(),
                label=None if short else f"{mark}: sens {c.sensitivity:.2f}, spec {c.specificity:.2f}")


def _new_axes(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, target: Path) -> None:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")


def _style(ax, title):
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def write_roc_pngs(report: EvaluationReport, out_dir: Path) -> dict[str, Path]:
    """One PNG per class plus ``roc_overview.png``; returns {label or 'overview': path}."""
    written: dict[str, Path] = {}
    taken: set[str] = {"roc_overview.png"}
    ident = report.model_identity or "unknown model"
    for c in report.classes:
        fig = _new_axes((5.6, 6.0))
        ax = fig.add_axes((0.14, 0.17, 0.8, 0.72))
        _style(ax, f"{c.label}: {c.n_positive} positive, {c.n_negative} negative\n{ident}")
        if c.estimable:
            _plot_roc(ax, c)
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, f"ROC not estimable:\n{c.reason}", ha="center", va="center", fontsize=10, wrap=True)
        fig.text(0.5, 0.02, f"{round(report.ci_level * 100)}% CI: percentile bootstrap, {report.n_bootstrap} resamples. "
                 f"{NOT_FOR_DIAGNOSIS}", ha="center", fontsize=7, color="0.3")
        path = out_dir / roc_png_name(c.label, taken)
        _save_png(fig, path)
        written[c.label] = path

    fig = _new_axes((10.5, 6.6))
    ax = fig.add_axes((0.07, 0.1, 0.52, 0.8))
    _style(ax, f"ROC per class, {ident}, n={report.source.get('matched', report.n_cases)}")
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors
    for i, c in enumerate([c for c in report.classes if c.estimable]):
        _plot_roc(ax, c, color=colors[i % len(colors)], short=True)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=8,
                  title=f"AUROC [{round(report.ci_level * 100)}% CI]; dot = operating point", title_fontsize=8)
    if report.not_estimable:
        text = "Not estimable: " + ", ".join(c.label for c in report.not_estimable)
        fig.text(0.62, 0.08, "\n".join(_wrap(text, 60)), fontsize=8, va="bottom")
    fig.text(0.5, 0.01, NOT_FOR_DIAGNOSIS, ha="center", fontsize=8, color="0.3")
    path = out_dir / "roc_overview.png"
    _save_png(fig, path)
    written["overview"] = path
    return written


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def _source_text(s: dict) -> str:
    """One line saying what was evaluated: a results CSV against a labels CSV, or, for
    in-memory evaluations (training splits), whatever the caller put in ``report.source``."""
    if "results_file" in s:
        return (f"Results: {Path(s['results_file']).name}: {s['films']} films, {s['error_rows']} could "
                f"not be scored, {s['matched']} matched to labels, {s['unmatched']} without labels. "
                f"Labels: {Path(s['labels_file']).name} ({s['labels_layout']} layout).")
    return "Data: " + "; ".join(f"{k}: {v}" for k, v in s.items()) + "."


def summary_markdown(report: EvaluationReport, png_names: dict[str, str] | None = None) -> str:
    s = report.source
    lines = [
        f"# ROC evaluation: {report.model_identity or 'unknown model'}",
        "",
        f"**{NOT_FOR_DIAGNOSIS}**",
        "",
    ]
    if s:
        lines.append(f"- {_source_text(s)}")
    lines += [
        f"- Cases evaluated: {report.n_cases}; task: {report.task}.",
        f"- {round(report.ci_level * 100)}% confidence intervals: percentile bootstrap over cases, "
        f"{report.n_bootstrap} resamples, seed {report.seed}.",
        f"- Operating thresholds: {report.threshold_note or 'as given'}",
        f"- Created {report.created}.",
        "",
        "| Class | Positive / negative | AUROC (95% CI) | Threshold | Sensitivity | Specificity | Precision | F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in report.classes:
        thr = _fmt(c.threshold) + (f" ({c.threshold_source})" if c.threshold_source else "")
        lines.append(f"| {c.label} | {c.n_positive} / {c.n_negative} | {_auroc_text(c)} | {thr} | "
                     f"{_fmt(c.sensitivity)} | {_fmt(c.specificity)} | {_fmt(c.precision)} | {_fmt(c.f1)} |")
    if report.mean_auroc is not None:
        lines += ["", f"Mean AUROC over estimable classes: {report.mean_auroc:.3f}."]
    if report.not_estimable:
        lines += ["", "## Not estimable", ""]
        lines += [f"- {c.label}: not estimable ({c.reason})." for c in report.not_estimable]
    if report.multiclass:
        m = report.multiclass
        lines += ["", "## Confusion matrix (rows true, columns called)", "",
                  "| true \\ called | " + " | ".join(m.labels) + " |",
                  "|---" * (len(m.labels) + 1) + "|"]
        lines += [f"| {lab} | " + " | ".join(str(v) for v in row) + " |" for lab, row in zip(m.labels, m.confusion)]
        lines += ["", f"Accuracy {_fmt(m.accuracy)} on {m.n} cases."]
    if report.warnings:
        lines += ["", "## Notes", ""] + [f"- {w}" for w in report.warnings]
    if png_names:
        lines += ["", "![ROC overview](roc_overview.png)"]
    return "\n".join(lines) + "\n"


def summary_html(report: EvaluationReport, png_names: dict[str, str] | None = None) -> str:
    e = html.escape
    s = report.source
    rows = []
    for c in report.classes:
        thr = _fmt(c.threshold) + (f" ({c.threshold_source})" if c.threshold_source else "")
        cls = "" if c.estimable else ' class="ne"'
        rows.append(f"<tr{cls}><td>{e(c.label)}</td><td>{c.n_positive} / {c.n_negative}</td>"
                    f"<td>{e(_auroc_text(c))}</td><td>{e(thr)}</td><td>{_fmt(c.sensitivity)}</td>"
                    f"<td>{_fmt(c.specificity)}</td><td>{_fmt(c.precision)}</td><td>{_fmt(c.f1)}</td></tr>")
    facts = [f"Cases evaluated: {report.n_cases}; task: {e(report.task)}.",
             f"{round(report.ci_level * 100)}% CIs: percentile bootstrap over cases, {report.n_bootstrap} "
             f"resamples, seed {report.seed}.",
             f"Operating thresholds: {e(report.threshold_note or 'as given')}"]
    if s:
        facts.insert(0, e(_source_text(s)))
    parts = [
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
        f"<title>ROC evaluation: {e(report.model_identity or 'unknown model')}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}td:first-child{text-align:left}"
        ".ne{color:#777}.warn{color:#a00;font-weight:bold}</style></head><body>",
        f"<h1>ROC evaluation: {e(report.model_identity or 'unknown model')}</h1>",
        f"<p class=\"warn\">{e(NOT_FOR_DIAGNOSIS)}</p>",
        "<ul>" + "".join(f"<li>{f}</li>" for f in facts) + f"<li>Created {e(report.created)}.</li></ul>",
        "<table><tr><th>Class</th><th>Positive / negative</th><th>AUROC (95% CI)</th><th>Threshold</th>"
        "<th>Sensitivity</th><th>Specificity</th><th>Precision</th><th>F1</th></tr>",
        *rows, "</table>",
    ]
    if report.mean_auroc is not None:
        parts.append(f"<p>Mean AUROC over estimable classes: {report.mean_auroc:.3f}.</p>")
    if report.not_estimable:
        parts.append("<h2>Not estimable</h2><ul>" + "".join(
            f"<li>{e(c.label)}: not estimable ({e(c.reason)}).</li>" for c in report.not_estimable) + "</ul>")
    if report.multiclass:
        m = report.multiclass
        head = "".join(f"<th>{e(x)}</th>" for x in m.labels)
        body = "".join(f"<tr><td>{e(lab)}</td>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
                       for lab, row in zip(m.labels, m.confusion))
        parts.append(f"<h2>Confusion matrix (rows true, columns called)</h2><table><tr><th></th>{head}</tr>"
                     f"{body}</table><p>Accuracy {_fmt(m.accuracy)} on {m.n} cases.</p>")
    if report.warnings:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in report.warnings) + "</ul>")
    if png_names:
        parts.append('<p><img src="roc_overview.png" alt="ROC overview" style="max-width:100%"></p>')
        parts.append("<p>" + " ".join(f'<a href="{e(n)}">{e(lab)}</a>' for lab, n in png_names.items()
                                      if lab != "overview") + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(report: EvaluationReport, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Write the report folder; every file atomically. Returns {kind: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    pngs: dict[str, Path] = write_roc_pngs(report, out_dir) if plots else {}
    png_names = {k: p.name for k, p in pngs.items()}
    data = report.to_dict()
    data["files"] = {"per_class": "per_class.csv", "roc_png": {k: v for k, v in png_names.items()}}
    write_json_atomic(out_dir / "report.json", data)
    written["json"] = out_dir / "report.json"
    write_text_atomic(out_dir / "per_class.csv", per_class_csv(report))
    written["csv"] = out_dir / "per_class.csv"
    write_text_atomic(out_dir / "summary.md", summary_markdown(report, png_names))
    written["markdown"] = out_dir / "summary.md"
    write_text_atomic(out_dir / "summary.html", summary_html(report, png_names))
    written["html"] = out_dir / "summary.html"
    for k, p in pngs.items():
        written[f"png:{k}"] = p
    return written


# ---- command line --------------------------------------------------------------------
def _parse_label_map(items) -> dict[str, str]:
    out = {}
    for item in items or []:
        col, sep, lab = item.partition("=")
        if not sep or not col.strip() or not lab.strip():
            raise EvaluationInputError(f"--label-map '{item}': use COLUMN=LABEL, e.g. Target=Pneumonia")
        out[col.strip()] = lab.strip()
    return out


def run_evaluation(results_csv, labels_csv, out_dir, *, model=None, n_bootstrap=DEFAULT_BOOTSTRAP,
                   seed=DEFAULT_SEED, label_map=None) -> tuple[EvaluationReport, dict[str, Path]]:
    """Thresholds from the card (or Youden), evaluate, write the folder: what ``evaluate``
    and ``score --labels`` both do."""
    results = read_results(results_csv)
    if len(results.models) == 1:
        choice = choose_thresholds(results, model)
    else:  # evaluate_results explains the mixed-model problem
        choice = ThresholdChoice(None, "youden", OPTIMISTIC_NOTE)
    report = evaluate_results(results_csv, labels_csv, choice.thresholds, n_bootstrap, seed=seed,
                              task=choice.task, label_map=label_map, threshold_source=choice.source,
                              threshold_note=choice.note)
    report.warnings = choice.warnings + report.warnings
    return report, write_report(report, out_dir)


def evaluate_command(args) -> int:
    """``cxrviewer evaluate RESULTS --labels L --out DIR [--model M] [--bootstrap N]``."""
    from cxrviewer.model.card import ModelCardError

    try:
        n_boot = int(args.bootstrap)
        if n_boot < 0:
            raise EvaluationInputError(f"--bootstrap {n_boot}: must be 0 or more")
        report, written = run_evaluation(
            args.results, args.labels, args.out, model=getattr(args, "model", None), n_bootstrap=n_boot,
            seed=getattr(args, "seed", DEFAULT_SEED), label_map=_parse_label_map(getattr(args, "label_map", None)))
    except (ResultsFileError, LabelFileError, ModelCardError, EvaluationInputError) as exc:
        print(f"cxrviewer evaluate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cxrviewer evaluate: cannot write the report in {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    s = report.source
    print(f"{report.model_identity or 'unknown model'}: {s['matched']} films matched to labels "
          f"({s['unmatched']} without labels, {s['error_rows']} error rows). {NOT_FOR_DIAGNOSIS}")
    width = max(len(c.label) for c in report.classes)
    for c in report.classes:
        extra = (f"  sens {_fmt(c.sensitivity, 2)} spec {_fmt(c.specificity, 2)} at {_fmt(c.threshold)}"
                 if c.estimable and c.threshold is not None else "")
        print(f"  {c.label:<{width}}  {_auroc_text(c) if c.estimable else c.status}{extra}")
    print(f"thresholds: {report.threshold_note}")
    for w in report.warnings:
        print(f"note: {w}")
    print(f"report: {written['html']}")
    return 0
