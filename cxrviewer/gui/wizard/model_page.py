"""Model page: architecture, starting weights, the two phases' settings, the run folder and a
time per epoch measured on a few real batches (in the background)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWizard,
    QWizardPage,
)

from cxrviewer.gui.wizard import analysis
from cxrviewer.gui.wizard.plan import BACKBONE_DEFAULTS, SCRATCH, default_run_dir, safe_name
from cxrviewer.gui.wizard.widgets import PathField
from cxrviewer.training.progress import format_duration

FILE = "file"


def _lr_spin(value: float) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setDecimals(6)
    s.setRange(1e-6, 1.0)
    s.setSingleStep(1e-4)
    s.setValue(value)
    return s


def _int_spin(lo: int, hi: int, value: int, tip: str = "") -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    if tip:
        s.setToolTip(tip)
    return s


class ModelPage(QWizardPage):
    def __init__(self, wizard):
        super().__init__()
        self.wz = wizard
        self.setTitle("Model")
        self.setSubTitle("Architecture, starting weights and the settings of both training phases. The time "
                         "estimate is measured on a few batches of your films on this computer.")
        self.setButtonText(QWizard.WizardButton.NextButton, "Start training")
        self.estimate: analysis.TimeEstimate | None = None
        self.estimate_key = ""
        self._gen = 0
        self._card_error = ""
        self._last_start: str | None = None  # epochs/rates get defaults only when this changes
        self._auto_run_dir = ""  # the run folder we proposed (follows the name until edited)

        self.name_edit = QLineEdit("clinic-model")
        self.start_combo = QComboBox()
        self.start_field = PathField("file", "Model to start from", "Keras model (*.keras)")
        self.start_field.hide()
        self.start_note = QLabel("")
        self.start_note.setWordWrap(True)
        self.start_note.setStyleSheet("color: #8a96a3;")
        self.backbone = QComboBox()
        for b in BACKBONE_DEFAULTS:
            self.backbone.addItem(b, b)
        self.size_spin = _int_spin(16, 1024, 224, "input size in pixels (films are resized to a square)")
        self.size_spin.setSingleStep(16)
        self.batch_spin = _int_spin(1, 512, 16, "films per training batch")
        self.head_epochs = _int_spin(0, 200, 0, "phase 1: only the output layer learns (backbone frozen)")
        self.head_lr = _lr_spin(1e-3)
        self.fine_epochs = _int_spin(0, 500, 10, "phase 2: every layer learns")
        self.fine_lr = _lr_spin(1e-3)
        self.patience = _int_spin(1, 100, 3, "epochs without a better validation AUROC before a phase stops")
        self.augment = QCheckBox("Augmentation (small rotation, shift, zoom, brightness/contrast; no flips)")
        self.augment.setChecked(True)
        self.bootstrap = _int_spin(0, 10000, 1000, "bootstrap resamples for the 95% confidence intervals")
        self.run_field = PathField("dir", "Run folder (checkpoints, reports, model)")
        self.resume_label = QLabel("")
        self.resume_label.setWordWrap(True)
        self.resume_label.setStyleSheet("color: #e3a72f;")
        self.resume_button = QPushButton("Resume that run")
        self.resume_button.hide()
        self.new_folder_button = QPushButton("Use a new folder")
        self.new_folder_button.hide()
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        self.measure_button = QPushButton("Measure")
        self.measure_button.setToolTip("Build the model and time a few training batches of your films (in the background)")
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #ef6a5a;")

        arch = QGroupBox("Model")
        fa = QFormLayout(arch)
        fa.addRow("Name:", self.name_edit)
        fa.addRow("Start from:", self.start_combo)
        fa.addRow("", self.start_field)
        fa.addRow("", self.start_note)
        row = QHBoxLayout()
        row.addWidget(self.backbone)
        row.addWidget(QLabel("input size"))
        row.addWidget(self.size_spin)
        row.addStretch(1)
        fa.addRow("Backbone:", row)
        train = QGroupBox("Training")
        ft = QFormLayout(train)
        r1 = QHBoxLayout()
        r1.addWidget(self.head_epochs)
        r1.addWidget(QLabel("epochs at learning rate"))
        r1.addWidget(self.head_lr)
        r1.addStretch(1)
        ft.addRow("Phase 1, head only:", r1)
        r2 = QHBoxLayout()
        r2.addWidget(self.fine_epochs)
        r2.addWidget(QLabel("epochs at learning rate"))
        r2.addWidget(self.fine_lr)
        r2.addStretch(1)
        ft.addRow("Phase 2, all layers:", r2)
        r3 = QHBoxLayout()
        r3.addWidget(self.batch_spin)
        r3.addWidget(QLabel("early stopping patience"))
        r3.addWidget(self.patience)
        r3.addWidget(QLabel("bootstrap resamples"))
        r3.addWidget(self.bootstrap)
        r3.addStretch(1)
        ft.addRow("Batch size:", r3)
        ft.addRow("", self.augment)
        out = QGroupBox("Run")
        fo = QFormLayout(out)
        fo.addRow("Run folder:", self.run_field)
        rr = QHBoxLayout()
        rr.addWidget(self.resume_label, 1)
        rr.addWidget(self.resume_button)
        rr.addWidget(self.new_folder_button)
        fo.addRow(rr)
        er = QHBoxLayout()
        er.addWidget(self.measure_button)
        er.addStretch(1)
        fo.addRow("Time per epoch:", er)
        fo.addRow(self.estimate_label)
        lay = QVBoxLayout(self)
        lay.addWidget(arch)
        lay.addWidget(train)
        lay.addWidget(out)
        lay.addWidget(self.error_label)
        lay.addStretch(1)

        self.start_combo.currentIndexChanged.connect(self._start_changed)
        self.start_field.changed.connect(lambda _: self._start_changed())
        self.backbone.currentIndexChanged.connect(self._backbone_changed)
        self.run_field.changed.connect(lambda _: self._check_run_folder())
        self.measure_button.clicked.connect(self.start_estimate)
        self.resume_button.clicked.connect(self._resume_clicked)
        self.new_folder_button.clicked.connect(self._new_folder)
        for w in (self.size_spin, self.batch_spin):
            w.valueChanged.connect(self._settings_changed)
        for w in (self.head_epochs, self.fine_epochs):
            w.valueChanged.connect(self._show_estimate)
        self.name_edit.editingFinished.connect(self._name_changed)

    # ---- choices ---------------------------------------------------------------------
    def _fill_start_choices(self) -> None:
        current = self.start_combo.currentData()
        self.start_combo.blockSignals(True)
        self.start_combo.clear()
        self.start_combo.addItem("Random weights (from scratch)", SCRATCH)
        for caption, path in self.wz.start_models():
            self.start_combo.addItem(caption, str(path))
        self.start_combo.addItem("A model file…", FILE)
        idx = self.start_combo.findData(current) if current else 0
        self.start_combo.setCurrentIndex(max(0, idx))
        self.start_combo.blockSignals(False)

    def start_path(self) -> str:
        data = self.start_combo.currentData()
        if data == FILE:
            return self.start_field.text() or SCRATCH
        return data or SCRATCH

    def select_start(self, path_or_scratch: str) -> None:
        """Choose the starting weights (the loaded or shipped model's path, a file, or scratch)."""
        idx = self.start_combo.findData(str(path_or_scratch))
        if idx < 0:
            self.start_combo.setCurrentIndex(self.start_combo.findData(FILE))
            self.start_field.set_text(str(path_or_scratch))
        else:
            self.start_combo.setCurrentIndex(idx)
        self._start_changed()

    def _start_changed(self, *_) -> None:
        self.start_field.setVisible(self.start_combo.currentData() == FILE)
        start = self.start_path()
        new_start = start != self._last_start
        self._last_start = start
        self._card_error = ""
        locked = False
        if start == SCRATCH:
            self.start_note.setText("Every layer starts from random weights: train both phases as one "
                                    "(phase 1 has nothing to adapt).")
            if new_start:
                self.head_epochs.setValue(0)
                self.fine_epochs.setValue(10)
                self.fine_lr.setValue(1e-3)
        else:
            from cxrviewer.model.card import ModelCard, ModelCardError, card_path_for

            try:
                card = ModelCard.load(card_path_for(start))  # a few KB of JSON
            except (ModelCardError, OSError, ValueError) as exc:
                self._card_error = f"Cannot start from {Path(start).name}: {exc}"
            else:
                backbone = card.architecture.get("backbone")
                if backbone not in BACKBONE_DEFAULTS:
                    self._card_error = (f"Cannot start from {card.name}: its card does not name a backbone "
                                        "this version can rebuild")
                else:
                    self.backbone.blockSignals(True)
                    self.backbone.setCurrentIndex(self.backbone.findData(backbone))
                    self.backbone.blockSignals(False)
                    self.size_spin.setValue(card.input_size)
                    self.wz.plan.channels = card.input_channels
                    locked = True
                    same = list(card.labels) == list(self.wz.plan.labels) and card.task == self.wz.plan.task
                    self.start_note.setText(
                        f"{card.name}: {backbone}, {card.input_size} px. "
                        + ("Same labels: its output layer is kept." if same else
                           "Other labels: a new output layer is trained first (phase 1), then every layer.")
                        + " Its input normalisation is kept.")
                    if new_start:
                        self.head_epochs.setValue(2)
                        self.fine_epochs.setValue(5)
                        self.head_lr.setValue(1e-3)
                        self.fine_lr.setValue(1e-4)
        if not locked:
            self.wz.plan.channels = 3
        if self._card_error:
            self.start_note.setText(self._card_error)
        self.backbone.setEnabled(not locked)
        self.size_spin.setEnabled(not locked)
        self._settings_changed()
        self.completeChanged.emit()

    def _backbone_changed(self, *_) -> None:
        d = BACKBONE_DEFAULTS[self.backbone.currentData()]
        self.size_spin.setValue(d["input_size"])
        self.batch_spin.setValue(d["batch_size"])
        self._settings_changed()

    def _propose_run_dir(self) -> None:
        self._auto_run_dir = str(default_run_dir(self.name_edit.text().strip() or "model", self.wz.runs_root))
        self.run_field.set_text(self._auto_run_dir, notify=False)

    def _name_changed(self) -> None:
        self.wz.plan.name = self.name_edit.text().strip() or "model"
        if self.run_field.text() == self._auto_run_dir:  # not chosen by the user: follow the name
            self._propose_run_dir()
        self._check_run_folder()

    def apply_to_plan(self, plan) -> None:
        plan.name = self.name_edit.text().strip() or "model"
        plan.start = self.start_path()
        plan.backbone = self.backbone.currentData()
        plan.input_size = self.size_spin.value()
        plan.batch_size = self.batch_spin.value()
        plan.head_epochs = self.head_epochs.value()
        plan.head_lr = self.head_lr.value()
        plan.finetune_epochs = self.fine_epochs.value()
        plan.finetune_lr = self.fine_lr.value()
        plan.patience = self.patience.value()
        plan.augment = self.augment.isChecked()
        plan.bootstrap = self.bootstrap.value()
        plan.run_dir = self.run_field.text()

    # ---- run folder and resume ---------------------------------------------------------
    def _check_run_folder(self) -> bool:
        """True when the run folder can take a new run; otherwise says why and offers resume."""
        text = self.run_field.text()
        self.resume_button.hide()
        self.new_folder_button.hide()
        self.resume_label.setText("")
        if not text:
            self.resume_label.setText("Choose a run folder.")
            return False
        run_dir = Path(text)
        state = analysis.checkpoint_state(run_dir)
        if state is not None or (run_dir / "checkpoints" / "latest.json").exists():
            epoch = state.get("epoch", "?") if state else "?"
            self.resume_label.setText(f"{run_dir.name} holds a run with a checkpoint after epoch {epoch}. "
                                      "Resume it from there, or train in a new folder.")
            self.resume_button.show()
            self.new_folder_button.show()
            return False
        name = safe_name(self.name_edit.text())
        if (run_dir / "model" / f"{name}.keras").exists():
            self.resume_label.setText(f"{run_dir.name} already holds a model named {name}; choose a new folder.")
            self.new_folder_button.show()
            return False
        return True

    def _resume_clicked(self) -> None:
        reason = self.wz.request_resume(Path(self.run_field.text()))
        if reason:
            self.resume_label.setText(f"Cannot resume: {reason}")
            return
        self.wz.next()

    def _new_folder(self) -> None:
        self._propose_run_dir()
        self._check_run_folder()

    # ---- time estimate --------------------------------------------------------------------
    def _estimate_settings(self) -> str:
        return json.dumps([self.start_path(), self.backbone.currentData(), self.size_spin.value(),
                           self.batch_spin.value(), self.wz.check_key(self.wz.plan)])

    def _settings_changed(self, *_) -> None:
        self._show_estimate()

    def start_estimate(self) -> None:
        checks = self.wz.checks
        if checks is None or checks.usable is None:
            return
        plan = copy.deepcopy(self.wz.plan)
        self.apply_to_plan(plan)
        key = self._estimate_settings()
        self._gen += 1
        gen = self._gen
        self.measure_button.setEnabled(False)
        self.estimate_label.setText(f"Measuring a few training batches of {plan.backbone} at {plan.input_size} px… "
                                    "(the first includes building the model)")
        def job(j):
            # TensorFlow (model build, graph tracing) in a child process, as for training.
            from cxrviewer.gui.wizard.child import ChildRun

            return ChildRun("estimate", (plan, checks.usable)).result(cancelled=lambda: j.cancelled)

        self.wz.submit(job,
                       on_result=lambda est: self._estimated(gen, key, est),
                       on_error=lambda reason: self._estimate_failed(gen, reason))

    def _estimated(self, gen: int, key: str, est: analysis.TimeEstimate) -> None:
        if gen != self._gen:
            return
        self.estimate, self.estimate_key = est, key
        self.measure_button.setEnabled(True)
        self._show_estimate()
        self.wz.job_done.emit("estimate")

    def _estimate_failed(self, gen: int, reason: str) -> None:
        if gen != self._gen:
            return
        self.measure_button.setEnabled(True)
        self.estimate_label.setText(f"<span style='color:#ef6a5a'>Could not measure: {reason}</span>")
        self.wz.job_done.emit("error")

    def _show_estimate(self, *_) -> None:
        est = self.estimate
        if est is None:
            return
        epochs = self.head_epochs.value() + self.fine_epochs.value()
        stale = self.estimate_key != self._estimate_settings()
        text = (f"{est.step_seconds:.2f} s per batch → about <b>{format_duration(est.epoch_seconds)} per epoch</b> "
                f"({est.steps_per_epoch} batches of {est.train_films:,} training films + validation of "
                f"{est.validation_films:,}); {epochs} epochs ≈ <b>{format_duration(est.total_seconds(epochs))}</b> "
                f"(early stopping may end sooner; evaluation comes on top). Measured on {est.device}.")
        if stale:
            text = "<span style='color:#8a96a3'>(measured for other settings; press Measure)</span> " + text
        self.estimate_label.setText(text)

    # ---- QWizardPage ------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        plan = self.wz.plan
        self._fill_start_choices()
        if not self.name_edit.text().strip():
            self.name_edit.setText(plan.name)
        if not self.run_field.text():
            self._propose_run_dir()
        self._check_run_folder()
        self._start_changed()
        if self.estimate is None:
            self.estimate_label.setText("Press Measure to time a few training batches of your films with these "
                                        "settings (about a minute for DenseNet121 at 224 px on a CPU).")

    def isComplete(self) -> bool:  # noqa: N802
        return not self._card_error and bool(self.run_field.text())

    def validatePage(self) -> bool:  # noqa: N802
        from cxrviewer.training.recipe import RecipeError

        if self.wz.resume_request is not None:  # "Resume that run": its own recipe goes on
            return True
        self.error_label.setText("")
        if not self._check_run_folder():
            return False
        plan = self.wz.plan
        self.apply_to_plan(plan)
        if plan.total_epochs < 1:
            self.error_label.setText("Train at least one epoch (phase 1 or phase 2).")
            return False
        try:
            self.wz.recipe = plan.to_recipe()
        except (RecipeError, ValueError) as exc:
            self.error_label.setText(str(exc))
            return False
        self.wz.resume_request = None
        return True
