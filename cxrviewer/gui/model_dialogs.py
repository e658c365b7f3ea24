"""The model card shown to the reader: what the model is, what it was trained on, how well
it did, where it calls each finding, and what it is for."""

from __future__ import annotations

import html

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

from cxrviewer import NOT_FOR_DIAGNOSIS


def card_html(info) -> str:
    """HTML for a ModelInfo (its card plus where the model file is and its checksum)."""
    card = info.card
    e = html.escape
    auroc = card.validation_auroc
    rows = []
    for lab in card.labels:
        untrained = lab in card.untrained_labels
        thr = card.thresholds.get(lab)
        a = auroc.get(lab)
        rows.append(
            "<tr><td>{}</td><td align=right>{}</td><td align=right>{}</td><td>{}</td></tr>".format(
                e(lab.replace("_", " ")),
                "—" if thr is None else f"{thr:.3f}",
                "not estimable" if a is None and lab in auroc else ("—" if a is None else f"{a:.3f}"),
                "untrained (hidden)" if untrained else "",
            )
        )
    training = card.training or {}
    train_rows = "".join(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in training.items())
    other = {k: v for k, v in (card.metrics or {}).items() if k != "validation_auroc"}
    metric_rows = "".join(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in other.items())
    arch = ", ".join(f"{k}: {v}" for k, v in (card.architecture or {}).items()) or "—"
    pre = card.preprocess
    return f"""
<h2>{e(card.name)}</h2>
<p style="color:#ffb4a8"><b>{e(NOT_FOR_DIAGNOSIS)}</b></p>
<h3>Intended use</h3><p>{e(card.intended_use)}</p>
<h3>Model</h3>
<table cellspacing=4>
<tr><td>Task</td><td>{e(card.task)}</td></tr>
<tr><td>Input</td><td>{card.input_size} × {card.input_size} px, {card.input_channels} channel(s);
 resize {e(pre.resize)}, crop {e(pre.crop)}, CLAHE {'on' if pre.clahe else 'off'}, mean {e(str(pre.mean))},
 std {e(str(pre.std))}</td></tr>
<tr><td>Architecture</td><td>{e(arch)}</td></tr>
<tr><td>Grad-CAM layer</td><td>{e(card.gradcam_layer)}</td></tr>
<tr><td>File</td><td>{e(str(info.model_path or ''))}</td></tr>
<tr><td>SHA-256</td><td><code>{e(info.checksum or '')}</code></td></tr>
<tr><td>Device</td><td>{e(info.device_kind)} {e(info.device_name)}</td></tr>
</table>
<h3>Findings, thresholds and validation AUROC</h3>
<p>Thresholds: {e(card.threshold_rule)}</p>
<table border=0 cellspacing=2 cellpadding=3>
<tr><th align=left>Finding</th><th>Threshold</th><th>Validation AUROC</th><th></th></tr>
{''.join(rows)}
</table>
<h3>Training data</h3>
<table cellspacing=4>{train_rows or '<tr><td>not stated</td></tr>'}</table>
{('<h3>Other metrics</h3><table cellspacing=4>' + metric_rows + '</table>') if metric_rows else ''}
"""


class ModelCardDialog(QDialog):
    def __init__(self, info, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Model card — {info.name}")
        self.resize(640, 720)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setHtml(card_html(info))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.browser)
        lay.addWidget(buttons)
