"""Results page: the run's evaluation report (the viewer's ROC panel, thresholds, confusion
counts), then save the model + card (asking before replacing anything) and load it into
the viewer in one click."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from cxrviewer.gui.tables import fmt_number, set_class_row
from cxrviewer.gui.wizard.plan import safe_name
from cxrviewer.gui.wizard.widgets import PathField
from cxrviewer.model.card import card_path_for

OPS_COLUMNS = ["Finding", "Threshold", "TP", "FP", "FN", "TN", "Sensitivity", "Specificity", "Precision", "F1"]
REPORTS = [("Validation split (thresholds chosen here)", "validation"), ("Test split (at those thresholds)", "test")]


class ResultsPage(QWizardPage):
    def __init__(self, wizard):
        super().__init__()
        self.wz = wizard
        self.setTitle("Results")
        self.setSubTitle("How the model did on patients it never trained on. Thresholds are Youden's J on the "
                         "validation split, applied unchanged to the test split.")
        self.outcome = None
        self.roc = None
        self.saved_path: Path | None = None
        self.confirm_box: QMessageBox | None = None
        self._load_after_save = False

        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report_combo = QComboBox()
        self._roc_placeholder = QLabel("Loading the ROC panel…")
        self.ops = QTableWidget(0, len(OPS_COLUMNS))
        self.ops.setHorizontalHeaderLabels(OPS_COLUMNS)
        self.ops.verticalHeader().hide()
        self.ops.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.ops.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.ops.horizontalHeader().setMinimumSectionSize(60)
        self.matrix_label = QLabel("")
        self.matrix_label.setWordWrap(True)
        self.save_field = PathField("save", "Save the model as", "Keras model (*.keras)")
        self.save_button = QPushButton("Save model")
        self.load_button = QPushButton("Save and load into viewer")
        self.load_button.setToolTip("Save the model and its card, then show its findings in the viewer")
        self.save_status = QLabel("")
        self.save_status.setWordWrap(True)

        self._splitter = QSplitter(Qt.Orientation.Vertical)
        self._splitter.addWidget(self._roc_placeholder)
        lower = QWidget()
        ll = QVBoxLayout(lower)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("Operating points and confusion counts at the card's thresholds:"))
        ll.addWidget(self.ops, 1)
        ll.addWidget(self.matrix_label)
        self._splitter.addWidget(lower)
        self._splitter.setStretchFactor(0, 3)
        self._splitter.setStretchFactor(1, 2)
        self._splitter.setSizes([400, 230])
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        top = QHBoxLayout()
        top.addWidget(QLabel("Report:"))
        top.addWidget(self.report_combo, 1)
        lay.addLayout(top)
        lay.addWidget(self._splitter, 1)
        save = QHBoxLayout()
        save.addWidget(QLabel("Save as:"))
        save.addWidget(self.save_field, 1)
        save.addWidget(self.save_button)
        save.addWidget(self.load_button)
        lay.addLayout(save)
        lay.addWidget(self.save_status)

        self.report_combo.currentIndexChanged.connect(self._show_report)
        self.save_button.clicked.connect(lambda: self.save(load=False))
        self.load_button.clicked.connect(lambda: self.save(load=True))
        self.wz.when_charts_ready(self._build_roc)

    def _build_roc(self) -> None:
        from cxrviewer.gui.roc_panel import RocPanel

        self.roc = RocPanel()
        self.roc.choose.setMinimumWidth(140)
        inner = self.roc.findChild(QSplitter)
        if inner is not None:  # the wizard is wider than the viewer's dock: room for the table
            inner.setSizes([520, 560])
        self._splitter.replaceWidget(0, self.roc)
        self._roc_placeholder.deleteLater()
        if self.outcome is not None:
            self._show_report()

    # ---- showing the report --------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        o = self.wz.outcome
        self.outcome = o
        self.saved_path = None
        self.save_status.setText("")
        self.load_button.setVisible(self.wz.viewer_available)
        card = o.card
        t = card.training
        m = card.metrics
        val, test = m.get("validation_mean_auroc"), m.get("test_mean_auroc")
        untrained = f" Untrained (hidden from findings): {', '.join(card.untrained_labels)}." if card.untrained_labels else ""
        self.summary.setText(
            f"<b>{card.name}</b> — {t.get('epochs')} epochs ({t.get('stopped')}), weights of epoch "
            f"{t.get('best_epoch')} (best validation AUROC); {t.get('images'):,} films of {t.get('patients'):,} "
            f"patients ({t.get('split')}). Mean AUROC: validation <b>{fmt_number(val)}</b>, test <b>{fmt_number(test)}</b>."
            f"{untrained}<br>Report files: {o.run_dir / 'report'}<br>"
            f"<span style='color:#ffb4a8'><b>{card.intended_use}</b></span>")
        self.report_combo.blockSignals(True)
        self.report_combo.clear()
        for caption, key in REPORTS:
            if key in o.reports:
                self.report_combo.addItem(caption, key)
        self.report_combo.blockSignals(False)
        if not self.save_field.text():
            self.save_field.set_text(str(self.wz.models_root / f"{safe_name(card.name)}.keras"), notify=False)
        self._show_report()

    def current_report(self):
        if self.outcome is None:
            return None
        return self.outcome.reports.get(self.report_combo.currentData() or "validation")

    def _show_report(self, *_) -> None:
        report = self.current_report()
        if report is None:
            return
        if self.roc is not None:
            self.roc.show_report(report)
        self.ops.setRowCount(len(report.classes))
        for r, c in enumerate(report.classes):
            cells = [c.label.replace("_", " "), fmt_number(c.threshold), fmt_number(c.tp), fmt_number(c.fp), fmt_number(c.fn), fmt_number(c.tn),
                     fmt_number(c.sensitivity), fmt_number(c.specificity), fmt_number(c.precision), fmt_number(c.f1)]
            set_class_row(self.ops, r, cells, c)
        mc = report.multiclass
        if mc is not None:
            head = "true \\ called: " + " | ".join(mc.labels)
            rows = "; ".join(f"{lab}: " + " ".join(str(v) for v in row) for lab, row in zip(mc.labels, mc.confusion))
            acc = "n/a" if mc.accuracy is None else f"{mc.accuracy:.3f}"
            self.matrix_label.setText(f"Confusion matrix (arg-max call), {head} — {rows}. Accuracy {acc} on {mc.n} films.")
        else:
            self.matrix_label.setText("A film is called positive for a finding when its probability is at or above "
                                      "the threshold; TP/FP/FN/TN count films of this split.")

    # ---- saving ------------------------------------------------------------------------------
    def save(self, load: bool = False) -> None:
        if self.outcome is None or self.outcome.model_path is None:
            return
        if self.confirm_box is not None:
            return  # a question is already open
        target = Path(self.save_field.text()).expanduser()
        if not self.save_field.text() or target.suffix != ".keras":
            self.save_status.setText("<span style='color:#ef6a5a'>Give a file name ending in .keras.</span>")
            return
        if self.saved_path is not None and target == self.saved_path and target.exists():
            self._saved(target, load)  # already saved there by this page: just load it
            return
        if target.exists() or card_path_for(target).exists():
            box = QMessageBox(QMessageBox.Icon.Question, "Replace model?",
                              f"{target.name} (or its card) already exists in {target.parent}.\n\n"
                              "Replace it with the model just trained? The old model and card will be lost.",
                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
            box.setDefaultButton(QMessageBox.StandardButton.No)
            box.buttonClicked.connect(lambda button, t=target: self._confirmed(box, button, t, load))
            self.confirm_box = box
            box.open()
            self.wz.job_done.emit("confirm")
            return
        self._write(target, overwrite=False, load=load)

    def _confirmed(self, box: QMessageBox, button, target: Path, load: bool) -> None:
        self.confirm_box = None
        if box.standardButton(button) == QMessageBox.StandardButton.Yes:
            self._write(target, overwrite=True, load=load)
        else:
            self.save_status.setText(f"Not saved: {target.name} was left as it was. Choose another name.")
            self.wz.job_done.emit("save-declined")

    def _write(self, target: Path, *, overwrite: bool, load: bool) -> None:
        from cxrviewer.training.export import publish_model

        self.save_button.setEnabled(False)
        self.load_button.setEnabled(False)
        self.save_status.setText(f"Saving {target.name}…")
        source = self.outcome.model_path

        def job(_j):
            target.parent.mkdir(parents=True, exist_ok=True)
            return publish_model(source, target, overwrite=overwrite)

        self.wz.submit(job, on_result=lambda path: self._saved(Path(path), load),
                       on_error=self._save_failed)

    def _saved(self, path: Path, load: bool) -> None:
        self.saved_path = path
        self.save_button.setEnabled(True)
        self.load_button.setEnabled(True)
        self.save_status.setText(f"Saved {path.name} and {card_path_for(path).name} in {path.parent}."
                                 + (" Loading it into the viewer…" if load else ""))
        self.wz.model_saved.emit(path)
        if load:
            self.wz.load_requested.emit(path)

    def _save_failed(self, reason: str) -> None:
        self.save_button.setEnabled(True)
        self.load_button.setEnabled(True)
        self.save_status.setText(f"<span style='color:#ef6a5a'>Not saved: {reason}</span>")
        self.wz.job_done.emit("error")
