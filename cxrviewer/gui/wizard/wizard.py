"""The training wizard: Data → Checks → Model → Training → Results.

The pages write their choices into one ``WizardPlan``; the plan becomes a recipe and the
recipe runs through ``cxrviewer.training.run.run_training`` in a ``TrainingWorker``
thread. Short background jobs (reading the CSV, the preview, the readability check and
split, the time estimate, saving) go to a one-thread task pool, so the GUI thread only
draws. pyqtgraph is imported in the background when the wizard opens (the viewer has
usually done so already) and the charts appear when it arrives.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QWizard

from cxrviewer.gui.wizard import analysis, gcpace
from cxrviewer.gui.wizard.checks_page import ChecksPage
from cxrviewer.gui.wizard.data_page import DataPage
from cxrviewer.gui.wizard.model_page import ModelPage
from cxrviewer.gui.wizard.plan import WizardPlan
from cxrviewer.gui.wizard.results_page import ResultsPage
from cxrviewer.gui.wizard.training_page import TrainingPage
from cxrviewer.gui.workers import IOPool, lower_thread_priority

log = logging.getLogger("cxrviewer.gui")

CHARTS_MODULE = "cxrviewer.gui.wizard.charts"


class _ImportRelay(QObject):
    done = Signal(str)  # "" when the chart modules imported, else the error


def _import_charts(relay: _ImportRelay) -> None:
    """Background thread: import pyqtgraph and the wizard's charts."""
    try:
        import cxrviewer.gui.roc_panel  # noqa: F401
        import cxrviewer.gui.wizard.charts  # noqa: F401
    except Exception as exc:  # the wizard still works; the charts say why they are missing
        relay.done.emit(f"{type(exc).__name__}: {exc}")
        return
    relay.done.emit("")


class TrainingWizard(QWizard):
    DATA, CHECKS, MODEL, TRAINING, RESULTS = range(5)

    job_done = Signal(str)  # a background job's result is on screen: "csv", "preview", "checks", "estimate"...
    charts_ready = Signal()
    training_started = Signal(object)  # TrainingWorker
    training_finished = Signal(object)  # TrainingOutcome (also when cancelled), None when it failed
    model_saved = Signal(object)  # Path of the saved .keras (card beside it)
    load_requested = Signal(object)  # Path: the viewer should load this model

    def __init__(self, parent=None, *, loaded_model: Path | None = None, loaded_name: str = "",
                 viewer_available: bool = False, runs_root: Path | None = None, models_root: Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("Train a model — cxrviewer")
        self.setObjectName("trainingWizard")
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.resize(1150, 860)
        # Worker threads run Python too; a short GIL switch interval lets the GUI thread
        # back in sooner (the viewer's main window sets the same).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))

        self.plan = WizardPlan()
        self.loaded_model = Path(loaded_model) if loaded_model else None
        self.loaded_name = loaded_name
        self.viewer_available = viewer_available
        self.runs_root = Path(runs_root) if runs_root else Path.home() / "cxrviewer-runs"
        self.models_root = Path(models_root) if models_root else Path.home() / "cxrviewer-models"
        self._tasks = IOPool(1, self)  # one background job at a time, in order
        self.preview: analysis.DataPreview | None = None
        self.preview_key = ""
        self.checked_paths: set[str] = set()  # films the readability check has seen
        self.unreadable_paths: dict[str, str] = {}  # path -> "file: reason"
        self.accepted: set[str] = set()  # problem keys the user chose to keep
        self.checks: analysis.SplitCheck | None = None
        self.recipe = None
        self.resume_request: tuple | None = None  # (recipe, run_dir) to continue
        self.worker = None
        self.outcome = None
        self._charts_ok: bool | None = None
        self._charts_waiting: list = []
        self._closing = False

        self.data_page = DataPage(self)
        self.checks_page = ChecksPage(self)
        self.model_page = ModelPage(self)
        self.training_page = TrainingPage(self)
        self.results_page = ResultsPage(self)
        for pid, page in ((self.DATA, self.data_page), (self.CHECKS, self.checks_page), (self.MODEL, self.model_page),
                          (self.TRAINING, self.training_page), (self.RESULTS, self.results_page)):
            self.setPage(pid, page)
        self.setStartId(self.DATA)

        self._import_relay = _ImportRelay(self)
        self._import_relay.done.connect(self._charts_imported)
        if CHARTS_MODULE in sys.modules:
            self._charts_imported("")
        else:
            threading.Thread(target=_import_charts, args=(self._import_relay,), name="cxrviewer-import-charts",
                             daemon=True).start()

    # ---- charts (pyqtgraph) ----------------------------------------------------------------
    def when_charts_ready(self, build) -> None:
        """Run ``build`` on the GUI thread once pyqtgraph is imported (now if it is)."""
        if self._charts_ok:
            build()
        elif self._charts_ok is None:
            self._charts_waiting.append(build)

    def _charts_imported(self, error: str) -> None:
        if self._charts_ok is not None:
            return
        self._charts_ok = not error
        if error:
            log.error("training wizard charts unavailable: %s", error)
            return
        from cxrviewer.gui.theme import apply_plot_theme

        apply_plot_theme()
        waiting, self._charts_waiting = self._charts_waiting, []
        for build in waiting:
            build()
        self.charts_ready.emit()

    # ---- background jobs -----------------------------------------------------------------
    # Like the training thread and the viewer's inference thread, the job thread runs at a
    # lower priority (and so do the decode threads it starts): the GUI thread comes first.
    NICE = 5
    _niced = threading.local()

    def submit(self, fn, *args, **callbacks):
        """Run ``fn(job, *args)`` on the task pool; ``on_result``/``on_error``/``on_progress``
        are called on the GUI thread (``IOPool.submit``)."""
        def job(j, *a):
            if not getattr(TrainingWizard._niced, "done", False):
                lower_thread_priority(self.NICE)
                TrainingWizard._niced.done = True
            with gcpace.no_full_collections():  # e.g. a 112,120-row CSV, freed by refcount after
                return fn(j, *a)

        return self._tasks.submit(job, *args, **callbacks)

    # ---- shared state --------------------------------------------------------------------
    @staticmethod
    def data_key(plan: WizardPlan) -> str:
        """What the dataset depends on: a new key means a new preview."""
        return json.dumps([plan.source_table(), plan.labels, plan.task], sort_keys=True)

    def check_key(self, plan: WizardPlan) -> str:
        """What the checks depend on: the data plus the split and the user's decisions."""
        return json.dumps([self.data_key(plan), plan.split_method, list(plan.fractions), plan.seed,
                           plan.films_as_patients, sorted(self.accepted)])

    def set_preview(self, preview, key: str) -> None:
        self.preview, self.preview_key = preview, key
        self.checks = None

    def drop_label(self, label: str) -> None:
        """Leave ``label`` out of the model (a way forward for a class that cannot be learnt)."""
        if label in self.plan.labels:
            self.plan.labels.remove(label)
        page = self.data_page
        for i in range(page.label_list.count()):
            item = page.label_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == label:
                page._filling = True
                item.setCheckState(Qt.CheckState.Unchecked)
                page._filling = False
        # The preview's dataset no longer matches: the checks rebuild it from the plan.
        page.preview_key = ""

    def start_models(self) -> list[tuple[str, Path]]:
        """(caption, path) of models a run can start from: the viewer's, the shipped one."""
        from cxrviewer.resources import default_model_path

        out = []
        if self.loaded_model is not None and self.loaded_model.exists():
            out.append((f"The model loaded in the viewer: {self.loaded_name or self.loaded_model.name}",
                        self.loaded_model))
        shipped = default_model_path()
        if shipped.exists() and shipped != self.loaded_model:
            out.append((f"The shipped model: {shipped.name}", shipped))
        return out

    # ---- resume ----------------------------------------------------------------------------
    def request_resume(self, run_dir: Path) -> str:
        """Prepare to continue the run in ``run_dir``; '' when it can, else why not."""
        from cxrviewer.training.recipe import RecipeError, load_recipe

        run_dir = Path(run_dir)
        state = analysis.checkpoint_state(run_dir)
        if state is None:
            return f"{run_dir} holds no checkpoint to resume from"
        try:
            recipe = load_recipe(run_dir / "recipe.toml")
        except RecipeError as exc:
            return str(exc)
        self.resume_request = (recipe, run_dir)
        self.recipe = recipe
        return ""

    def nextId(self) -> int:  # noqa: N802
        if self.resume_request is not None and self.currentId() in (self.DATA, self.MODEL):
            return self.TRAINING
        return super().nextId()

    # ---- closing ---------------------------------------------------------------------------
    @property
    def training_running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def shutdown(self, wait_ms: int = 120_000) -> None:
        """Stop background work: cancel a running training (its checkpoint stays) and wait."""
        if self._closing:
            return
        self._closing = True
        if self.worker is not None:
            self.worker.cancel()
            if not self.worker.wait(wait_ms):  # e.g. evaluating: it cannot stop by itself
                self.worker.terminate_child()
                self.worker.wait(10_000)
        self._tasks.shutdown()

    def done(self, result: int) -> None:  # Cancel, Finish, Escape, window close
        if self.training_running and not self._closing:
            from PySide6.QtWidgets import QMessageBox

            answer = QMessageBox.question(
                self, "Stop training?", "Training is still running. Stop it and close the wizard?\n\n"
                "Every finished epoch stays in the run folder's checkpoint: Resume an interrupted run… "
                "continues it later.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
            # Close once the run has stopped at its next batch, without blocking the viewer.
            self.worker.cancel()
            self.hide()
            self.worker.finished.connect(lambda: self.done(result))
            return
        self.shutdown()
        super().done(result)
