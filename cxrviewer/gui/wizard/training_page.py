"""Training page: the run in its worker thread, live curves, progress with time left,
pause, cancel (the checkpoint stays) and resume."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWizardPage,
)

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.gui.wizard import analysis
from cxrviewer.gui.wizard.eta import EtaEstimator
from cxrviewer.gui.wizard.worker import TrainingWorker
from cxrviewer.training.progress import format_duration


def checkpoint_history(run_dir: Path) -> list[dict]:
    """The finished epochs' logs stored with the run's last checkpoint."""
    state = analysis.checkpoint_state(run_dir)
    return list(state.get("history", [])) if state else []


class TrainingPage(QWizardPage):
    def __init__(self, wizard):
        super().__init__()
        self.wz = wizard
        self.setTitle("Training")
        self.setSubTitle("The run goes on in the background: the viewer stays usable. Every finished epoch is "
                         "checkpointed; cancel keeps the last one and Resume continues from it.")
        self.worker: TrainingWorker | None = None
        self.recipe = None
        self.run_dir: Path | None = None
        self.outcome = None
        self.failure = ""
        self.eta: EtaEstimator | None = None
        self.curves = None
        self.epoch_logs: list[dict] = []
        self._active = False  # a run was started and has not reported its end yet

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.eta_label = QLabel("")
        self.eta_label.setObjectName("countLabel")
        self._curves_placeholder = QLabel("Loading the charts…")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setObjectName("logPanel")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Stop between two batches until you continue")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop now; the epoch in progress is discarded, finished epochs stay in the "
                                      "checkpoint")
        self.resume_button = QPushButton("Resume from checkpoint")
        self.resume_button.hide()
        disclaimer = QLabel(NOT_FOR_DIAGNOSIS)
        disclaimer.setObjectName("disclaimer")

        self._lay = lay = QVBoxLayout(self)
        lay.addWidget(self.status)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.eta_label)
        lay.addLayout(row)
        lay.addWidget(self._curves_placeholder, 3)
        lay.addWidget(self.log, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(disclaimer)
        buttons.addStretch(1)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.cancel_button)
        lay.addLayout(buttons)

        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._show_eta)
        self.wz.when_charts_ready(self._build_curves)

    def _build_curves(self) -> None:
        from cxrviewer.gui.wizard.charts import TrainingCurves

        self.curves = TrainingCurves()
        self._lay.replaceWidget(self._curves_placeholder, self.curves)
        self._curves_placeholder.deleteLater()
        for logs in self.epoch_logs:
            self.curves.add_epoch(logs)

    @property
    def running(self) -> bool:
        """From start until the run reports its end (the thread may take a moment more to exit)."""
        return self._active

    # ---- starting ---------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        wz = self.wz
        if wz.resume_request is not None:
            recipe, run_dir = wz.resume_request
            self.start(recipe, run_dir, resume=True)
        else:
            self.start(wz.recipe, wz.recipe.run_dir, resume=False)

    def cleanupPage(self) -> None:  # noqa: N802  - Back: only possible while no run is going
        self.wz.resume_request = None

    def start(self, recipe, run_dir: Path, *, resume: bool) -> None:
        self.recipe, self.run_dir = recipe, Path(run_dir)
        self.outcome, self.failure = None, ""
        self.wz.outcome = None
        if not resume:
            self.epoch_logs = []
            self.log.clear()
            if self.curves is not None:
                self.curves.clear()
        else:
            done = checkpoint_history(self.run_dir)
            known = {e.get("epoch") for e in self.epoch_logs}
            for logs in done:
                if logs.get("epoch") not in known:
                    self._add_epoch(logs)
        t = recipe.train
        self.eta = EtaEstimator(t.head_epochs, t.finetune_epochs)
        if resume and self.epoch_logs:
            self.eta.seed(max(self.epoch_logs, key=lambda e: e["epoch"]))
        w = TrainingWorker(recipe, self.run_dir, resume=resume, parent=self)
        w.phase_started.connect(self._phase_started)
        w.batch_ended.connect(self._batch_ended)
        w.epoch_ended.connect(self._epoch_ended)
        w.message.connect(self._message)
        w.paused_changed.connect(self._paused_changed)
        w.run_finished.connect(self._finished)
        w.run_failed.connect(self._failed)
        self.worker = w
        self.wz.worker = w
        self.status.setText(("Resuming" if resume else "Starting") + f" '{recipe.model.name}' in {self.run_dir} …")
        self._message(f"run folder: {self.run_dir}")
        self._set_running(True)
        self.wz.training_started.emit(w)  # before it runs: listeners see every report
        w.start()
        self._tick.start()

    def _set_running(self, on: bool) -> None:
        self._active = on
        self.pause_button.setEnabled(on)
        self.pause_button.setText("Pause")
        self.cancel_button.setEnabled(on)
        self.resume_button.setVisible(False)
        # The page before this one as a commit page keeps Back disabled while the run goes
        # on (QWizard has no other switch for it); that is the Model page, or the Data page
        # when a run is resumed from there.
        for pid in self.wz.visitedIds():
            page = self.wz.page(pid)
            if page is not self:
                page.setCommitPage(on)
        self.completeChanged.emit()

    # ---- progress -----------------------------------------------------------------------
    def _phase_started(self, phase: str, epochs: int) -> None:
        self.eta.phase_started(phase, epochs)
        if phase == "evaluate":  # no batches from here on: nothing to pause or cancel
            self.pause_button.setEnabled(False)
            self.cancel_button.setEnabled(False)
        else:
            what = "output layer only, backbone frozen" if phase == "head" else "all layers"
            self._message(f"phase {phase}: {epochs} epoch(s), {what}")
        self._show_eta()

    def _batch_ended(self, step: int, total: int) -> None:
        self.eta.batch_ended(step, total)
        self._show_eta()

    def _add_epoch(self, logs: dict) -> None:
        self.epoch_logs.append(dict(logs))
        if self.curves is not None:
            self.curves.add_epoch(logs)

    def _epoch_ended(self, epoch: int, logs: dict) -> None:
        self.eta.epoch_ended(epoch, logs)
        self._add_epoch(logs)

        def f(v):
            return "n/a" if v is None else f"{v:.4f}"

        self._message(f"epoch {epoch} ({logs.get('phase')}): loss {f(logs.get('loss'))}, validation loss "
                      f"{f(logs.get('val_loss'))}, validation AUROC {f(logs.get('val_auroc'))}"
                      + (" (best so far, saved)" if logs.get("best") else "")
                      + f" — {format_duration(logs.get('seconds', 0.0))}")
        self._show_eta()

    def _message(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _show_eta(self) -> None:
        if self.eta is None or not self.running:
            return
        s = self.eta.state()
        self.progress.setValue(round(1000 * s.fraction))
        paused = self.worker.is_paused
        phase = {"head": "phase 1 (head)", "finetune": "phase 2 (all layers)"}.get(s.phase, "preparing data")
        where = f"{phase} · epoch {s.epoch}/{s.total_epochs}"
        if s.steps:
            where += f" · batch {s.step}/{s.steps}"
        if s.evaluating:
            where = ("Training done. Evaluating on the validation and test splits and writing the model "
                     "(this part cannot be paused or cancelled)…")
        elif paused:
            where = "Paused — " + where
        elif self.worker.cancel_requested:
            where = "Cancelling after this batch… — " + where
        self.status.setText(where)
        left = "evaluating" if s.evaluating else ("…" if s.seconds_left is None
                                                   else f"~{format_duration(s.seconds_left)} left")
        self.eta_label.setText(f"{format_duration(s.elapsed)} elapsed · {left}")

    # ---- pause / cancel / resume ------------------------------------------------------------
    def toggle_pause(self) -> None:
        if self.worker is None:
            return
        want = not self.worker.pause_requested
        self.worker.set_paused(want)
        self.pause_button.setText("Continue" if want else "Pause")
        if want:
            self.status.setText("Pausing after this batch…")

    def _paused_changed(self, paused: bool) -> None:
        self.pause_button.setText("Continue" if paused else "Pause")
        self._message("paused" if paused else "continuing")
        self._show_eta()

    def cancel(self) -> None:
        if self.worker is not None and self.running:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.pause_button.setEnabled(False)
            self._show_eta()

    def resume(self) -> None:
        """Continue the cancelled run from its checkpoint, in the same folder."""
        self.start(self.recipe, self.run_dir, resume=True)

    # ---- the end --------------------------------------------------------------------------
    def _finished(self, outcome) -> None:
        self._tick.stop()
        self.outcome = outcome
        self._set_running(False)
        self.pause_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        if outcome.stopped == "cancelled":
            self.status.setText(f"Cancelled after epoch {len(outcome.history)}. The checkpoint in "
                                f"{self.run_dir} keeps every finished epoch: Resume continues from it, now or "
                                "later (Resume an interrupted run… on the first page).")
            self.resume_button.setVisible(True)
            self.progress.setValue(self.progress.value())
        else:
            self.wz.outcome = outcome
            s = outcome.summary
            mean = s.get("validation_mean_auroc")
            self.progress.setValue(1000)
            self.status.setText(
                f"Finished ({outcome.stopped}): {len(outcome.history)} epochs, best epoch {s.get('best_epoch')}, "
                f"validation mean AUROC {'n/a' if mean is None else f'{mean:.3f}'}. Next: the evaluation report.")
            self.eta_label.setText(f"{format_duration(s.get('wall_time_s', 0))} in all")
        self.completeChanged.emit()
        self.wz.training_finished.emit(outcome)

    def _failed(self, reason: str) -> None:
        self._tick.stop()
        self.failure = reason
        self._set_running(False)
        self.pause_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        self._message(f"stopped: {reason}")
        self.status.setText(f"<span style='color:#ef6a5a'>Training stopped: {reason}</span><br>Go Back to change "
                            "the data or settings." + (" Resume continues from the last checkpoint."
                                                       if checkpoint_history(self.run_dir) else ""))
        self.resume_button.setVisible(bool(checkpoint_history(self.run_dir)))
        self.completeChanged.emit()
        self.wz.training_finished.emit(None)

    def isComplete(self) -> bool:  # noqa: N802
        o = self.outcome
        return not self.running and o is not None and o.stopped != "cancelled" and o.model_path is not None
