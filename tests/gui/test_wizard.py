"""The training wizard driven like a user would: real NIH and Kermany films, the real
training pipeline (tiny backbone, 32 px, one epoch per phase), the real viewer.

What is checked: the wizard trains through ``run_training`` on a worker thread, its model
loads in the viewer and its card holds the report's numbers; bad data choices are
explained with a way forward; cancel keeps a checkpoint that a later wizard resumes
(with a pause on the way); nothing is replaced without asking. Screenshots of every page
go to test-output/wizard/.
"""

from __future__ import annotations

import collections
import csv
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWizard

from cxrviewer.gui.wizard.analysis import BLOCK, DECIDE, NOTE, checkpoint_state
from cxrviewer.gui.wizard.eta import EtaEstimator
from cxrviewer.gui.wizard.plan import WizardPlan
from cxrviewer.model.card import ModelCard, card_path_for
from tests.gui.conftest import wait_model

NIH_CSV = ("nih", "Data_Entry_2017_v2020.csv.gz")
KERMANY_PATIENTS = r"^(person\d+|(?:NORMAL2-)?IM-\d+)"


# ---- data ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def nih_films(data_dir, tmp_path_factory) -> Path:
    """80 NIH films (64 px thumbnails) of 40 patients, up to three films each, in one folder."""
    root = data_dir / "nih" / "thumbs64" / "train"
    per_patient = collections.defaultdict(list)
    for p in sorted(root.glob("*/*.png"), key=lambda p: p.name):
        per_patient[p.name.split("_")[0]].append(p)
    folder = tmp_path_factory.mktemp("wizard-nih") / "images"
    folder.mkdir()
    for pid in sorted(per_patient)[::2][:40]:
        for f in per_patient[pid][:3]:
            shutil.copy2(f, folder / f.name)
    assert len(list(folder.iterdir())) == 80
    return folder


@pytest.fixture(scope="session")
def shots(test_output_dir) -> Path:
    d = test_output_dir / "wizard"
    d.mkdir(parents=True, exist_ok=True)
    return d


def nih_truth(data_dir, names) -> dict[str, tuple[str, set[str]]]:
    """file name -> (patient id, findings) from the official NIH CSV."""
    names = set(names)
    out = {}
    with gzip.open(data_dir.joinpath(*NIH_CSV), "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["Image Index"] in names:
                out[row["Image Index"]] = (row["Patient ID"], set(row["Finding Labels"].split("|")))
    return out


# ---- driving the wizard ---------------------------------------------------------------------------
@pytest.fixture
def make_wizard(qtbot, themed_app, tmp_path):
    from cxrviewer.gui.wizard import TrainingWizard

    made = []

    def make(**kwargs):
        kwargs.setdefault("runs_root", tmp_path / "runs")
        kwargs.setdefault("models_root", tmp_path / "models")
        wz = TrainingWizard(**kwargs)
        qtbot.addWidget(wz)
        wz.show()
        qtbot.waitExposed(wz)
        made.append(wz)
        return wz

    yield make
    for wz in made:
        wz.close()


def job(qtbot, wz, kind: str, action, timeout: int = 60_000) -> None:
    """Do ``action`` and wait until the background job of that kind is on screen."""
    with qtbot.waitSignal(wz.job_done, timeout=timeout, check_params_cb=lambda k: k == kind):
        action()


def next_button(wz):
    return wz.button(QWizard.WizardButton.NextButton)


def click(qtbot, button) -> None:
    assert button.isEnabled(), f"{button.text()} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def choose(combo, data) -> None:
    idx = combo.findData(data)
    assert idx >= 0, f"{data} not offered"
    combo.setCurrentIndex(idx)


def fill_csv_source(qtbot, wz, csv_path: Path, images: Path, labels) -> None:
    page = wz.data_page
    job(qtbot, wz, "csv", lambda: page.csv_field.set_text(str(csv_path)))

    def settle():
        page.images_field.set_text(str(images))
        for i in range(page.label_list.count()):
            item = page.label_list.item(i)
            on = item.data(Qt.ItemDataRole.UserRole) in labels
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    job(qtbot, wz, "preview", settle)
    assert page.isComplete()


def keep_all(qtbot, wz) -> None:
    """Take the 'keep it' way forward for every problem that asks for a decision."""
    page = wz.checks_page
    while True:
        deciding = [p for p in page.result.problems if p.severity == DECIDE]
        if not deciding:
            return
        p = deciding[0]
        caption = next(f.caption for f in p.fixes if f.action == "keep")
        job(qtbot, wz, "checks", page.problems.buttons[(p.key, caption)].click)


def set_tiny_model(page, run_dir: Path, *, head: int, finetune: int) -> None:
    choose(page.backbone, "tiny")
    page.size_spin.setValue(32)
    page.batch_spin.setValue(8)
    page.head_epochs.setValue(head)
    page.fine_epochs.setValue(finetune)
    page.fine_lr.setValue(3e-3)
    page.bootstrap.setValue(100)
    page.run_field.set_text(str(run_dir))


def shot(wz, folder: Path, name: str) -> None:
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()  # pending layouts (new problem rows, chart axes) first
    wz.grab().save(str(folder / f"{name}.png"))


# ---- end to end --------------------------------------------------------------------------------------
def test_wizard_trains_from_the_viewers_model_and_the_viewer_loads_the_result(
        qtbot, make_window, tiny_model, nih_films, data_dir, tmp_path, shots):
    win = make_window(model=tiny_model)
    wait_model(qtbot, win)
    win.act_train.trigger()  # Model ▸ Train a model…
    wz = win.training_wizard
    qtbot.waitExposed(wz)
    qtbot.waitUntil(lambda: wz.training_page.curves is not None, timeout=30_000)

    # -- Data: the NIH CSV as distributed with a folder of 80 films
    labels = ["Atelectasis", "Cardiomegaly", "Edema", "Effusion", "Infiltration"]
    fill_csv_source(qtbot, wz, data_dir.joinpath(*NIH_CSV), nih_films, labels)
    page = wz.data_page
    pv = page.preview
    assert (pv.films, pv.patients, pv.has_patients) == (80, 40, True)
    assert pv.missing_rows == 112_120 - 80
    assert pv.per_label["Edema"]["positive"] == 0 and pv.per_label["Effusion"]["positive"] >= 5
    assert "80 films" in page.status.text()
    shot(wz, shots, "1-data")

    # -- Checks: patient split passes the leakage check; a class without positives asks for a decision
    job(qtbot, wz, "checks", lambda: click(qtbot, next_button(wz)))
    cp = wz.checks_page
    result = cp.result
    assert result.leakage_ok and "Leakage check passed" in cp.leak_label.text()
    assert sum(c["images"] for c in result.counts.values()) == 80
    assert "80 readable" in cp.films_label.text() and "112,040 label rows have no film" in cp.films_label.text()
    edema = next(p for p in result.problems if p.key == "untrainable:Edema")
    assert edema.severity == DECIDE and "no positive training film" in edema.text
    assert [f.caption for f in edema.fixes] == ["Drop Edema", "Keep it, marked untrained"]
    assert not next_button(wz).isEnabled()
    chart = cp.chart
    assert chart.labels == labels
    train_pos = [result.positives["train"][lab] / result.counts["train"]["images"] for lab in labels]
    assert chart.values["positive_before"] == pytest.approx(train_pos)
    # The method's point: after weighting, positives and negatives weigh the same.
    assert chart.values["positive_after"] == pytest.approx(chart.values["negative_after"])
    shot(wz, shots, "2-checks")
    job(qtbot, wz, "checks", cp.problems.buttons[("untrainable:Edema", "Drop Edema")].click)
    assert "Edema" not in wz.plan.labels and "Edema" not in cp.result.labels
    keep_all(qtbot, wz)
    assert cp.isComplete() and next_button(wz).isEnabled()

    # -- Model: start from the model loaded in the viewer (tiny, 32 px, other labels: new head)
    click(qtbot, next_button(wz))
    mp = wz.model_page
    captions = [mp.start_combo.itemText(i) for i in range(mp.start_combo.count())]
    loaded = next(i for i, c in enumerate(captions) if c.startswith("The model loaded in the viewer"))
    mp.start_combo.setCurrentIndex(loaded)
    assert mp.backbone.currentData() == "tiny" and mp.size_spin.value() == 32
    assert not mp.backbone.isEnabled() and not mp.size_spin.isEnabled()
    assert "new output layer" in mp.start_note.text()
    set_tiny_model(mp, tmp_path / "run", head=1, finetune=1)
    mp.fine_lr.setValue(1e-3)
    mp.name_edit.setText("wizard-test")
    mp.name_edit.editingFinished.emit()
    job(qtbot, wz, "estimate", lambda: click(qtbot, mp.measure_button), timeout=120_000)
    assert mp.estimate.step_seconds > 0 and mp.estimate.steps_per_epoch == -(-mp.estimate.train_films // 8)
    assert "per epoch" in mp.estimate_label.text()
    shot(wz, shots, "3-model")

    # -- Training: in the worker thread, through run_training
    phases = []
    wz.training_started.connect(lambda w: w.phase_started.connect(lambda phase, _n: phases.append(phase)))
    with qtbot.waitSignal(wz.training_finished, timeout=240_000) as finished:
        click(qtbot, next_button(wz))
        assert not wz.button(QWizard.WizardButton.BackButton).isEnabled()  # no Back while it runs
    outcome = finished.args[0]
    assert outcome is not None and outcome.stopped == "completed", wz.training_page.failure
    assert wz.worker.child_pid not in (None, os.getpid())  # TensorFlow trained in its own process
    assert [h["phase"] for h in outcome.history] == ["head", "finetune"]
    assert phases == ["head", "finetune", "evaluate"]
    tp = wz.training_page
    assert [e["epoch"] for e in tp.curves.epochs] == [1, 2]
    assert tp.progress.value() == 1000 and "Finished" in tp.status.text()
    card = outcome.card
    assert card.training["start"]["start"] == "tiny-cxr14" and card.training["start"]["head"] == "new"
    shot(wz, shots, "4-training")

    # -- Results: the report behind the card
    click(qtbot, next_button(wz))
    rp = wz.results_page
    val = outcome.reports["validation"]
    assert rp.roc.report is val and rp.ops.rowCount() == len(card.labels) == 4
    assert "Data: split: validation; films: 9." in rp.roc.notes.text() and "?" not in rp.roc.notes.text()
    assert card.metrics["validation_auroc"] == {c.label: c.auroc for c in val.classes}
    assert card.metrics["validation_mean_auroc"] == val.mean_auroc
    for c in val.classes:
        if c.youden_threshold is not None:
            assert card.thresholds[c.label] == pytest.approx(c.youden_threshold, abs=1e-6)
    assert rp.ops.item(0, 1).text() == f"{card.thresholds[card.labels[0]]:.3f}"
    shot(wz, shots, "5-results")

    # -- Save + load into the viewer in one click
    target = tmp_path / "models" / "wizard-test.keras"
    rp.save_field.set_text(str(target), notify=False)
    with qtbot.waitSignal(wz.model_saved, timeout=30_000):
        click(qtbot, rp.load_button)
    qtbot.waitUntil(lambda: win.state.model.ready and win.state.model.info.name == "wizard-test", timeout=60_000)
    assert win.state.model.info.labels == card.active_labels
    assert win.settings.model_path == target
    saved = ModelCard.load(card_path_for(target))
    assert saved.metrics["validation_auroc"] == card.metrics["validation_auroc"]
    assert saved.thresholds == card.thresholds
    assert target.read_bytes() == outcome.model_path.read_bytes()

    # -- Never replace a model without asking
    existing = tmp_path / "models" / "existing.keras"
    shutil.copy2(tiny_model, existing)
    shutil.copy2(card_path_for(tiny_model), card_path_for(existing))
    before = existing.read_bytes()
    rp.save_field.set_text(str(existing), notify=False)
    job(qtbot, wz, "confirm", lambda: click(qtbot, rp.save_button))
    box = rp.confirm_box
    assert box.isVisible() and "existing.keras" in box.text()
    shot(wz, shots, "6-replace-question")
    job(qtbot, wz, "save-declined", lambda: click(qtbot, box.button(QMessageBox.StandardButton.No)))
    assert existing.read_bytes() == before and "Not saved" in rp.save_status.text()
    job(qtbot, wz, "confirm", lambda: click(qtbot, rp.save_button))
    with qtbot.waitSignal(wz.model_saved, timeout=30_000):
        click(qtbot, rp.confirm_box.button(QMessageBox.StandardButton.Yes))
    assert existing.read_bytes() == outcome.model_path.read_bytes()
    assert ModelCard.load(card_path_for(existing)).name == "wizard-test"
    wz.close()


# ---- cancel, resume later, pause --------------------------------------------------------------------
def test_cancel_keeps_the_checkpoint_and_a_later_wizard_resumes_it_with_a_pause(
        qtbot, make_wizard, nih_films, data_dir, tmp_path, shots):
    wz = make_wizard()
    fill_csv_source(qtbot, wz, data_dir.joinpath(*NIH_CSV), nih_films, ["Effusion", "Infiltration"])
    job(qtbot, wz, "checks", lambda: click(qtbot, next_button(wz)))
    keep_all(qtbot, wz)
    click(qtbot, next_button(wz))
    run_dir = tmp_path / "run"
    set_tiny_model(wz.model_page, run_dir, head=0, finetune=2)
    # Cancel as soon as epoch 1 is checkpointed (on the training thread, so epoch 2 has surely begun).
    wz.training_started.connect(
        lambda w: w.epoch_ended.connect(lambda *_: w.cancel(), Qt.ConnectionType.DirectConnection))
    with qtbot.waitSignal(wz.training_finished, timeout=240_000) as finished:
        click(qtbot, next_button(wz))
    outcome = finished.args[0]
    assert outcome.stopped == "cancelled" and len(outcome.history) == 1
    first_loss = outcome.history[0]["loss"]
    assert checkpoint_state(run_dir)["epoch"] == 1
    tp = wz.training_page
    assert not tp.resume_button.isHidden() and "Cancelled after epoch 1" in tp.status.text()
    assert not next_button(wz).isEnabled()
    shot(wz, shots, "7-cancelled")
    wz.close()

    # A later session: the Model page offers to resume a folder with a checkpoint...
    wz2 = make_wizard()
    wz2.model_page.run_field.set_text(str(run_dir))
    assert not wz2.model_page.resume_button.isHidden() and "after epoch 1" in wz2.model_page.resume_label.text()
    # ...and "Resume an interrupted run…" continues it. Pause it on its first batch.
    wz2.training_started.connect(
        lambda w: w.phase_started.connect(lambda *_: w.set_paused(True), Qt.ConnectionType.DirectConnection))
    with qtbot.waitSignal(wz2.training_started, timeout=10_000):
        assert wz2.data_page.resume_run(run_dir)
    assert wz2.currentId() == wz2.TRAINING
    tp2 = wz2.training_page
    assert [e["epoch"] for e in tp2.epoch_logs] == [1]  # the finished epoch, from the checkpoint
    worker = wz2.worker
    qtbot.waitUntil(lambda: worker.is_paused and tp2.pause_button.text() == "Continue", timeout=120_000)
    steps_when_paused = tp2.eta.step
    assert worker.isRunning() and not wz2.button(QWizard.WizardButton.BackButton).isEnabled()
    assert "Paused" in tp2.status.text() and "left" in tp2.eta_label.text()  # rates from the checkpoint
    shot(wz2, shots, "8-paused")
    assert tp2.eta.step == steps_when_paused  # nothing moves while paused
    with qtbot.waitSignal(wz2.training_finished, timeout=240_000) as finished:
        click(qtbot, tp2.pause_button)
    resumed = finished.args[0]
    assert resumed.stopped == "completed" and worker.paused_seconds > 0
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[0]["loss"] == first_loss  # epoch 1 was not run again
    assert resumed.model_path.exists() and next_button(wz2).isEnabled()
    assert [e["epoch"] for e in tp2.curves.epochs] == [1, 2]


# ---- bad data ---------------------------------------------------------------------------------------
def test_bad_data_choices_get_an_explanation_and_a_way_forward(qtbot, make_wizard, nih_films, data_dir,
                                                                tmp_path, shots):
    """A CSV without a patient column (under a name the reader does not know), an
    unreadable film, and a user split that leaks a patient."""
    names = sorted(p.name for p in nih_films.iterdir())[:36]
    images = tmp_path / "clinic"
    images.mkdir()
    for n in names:
        shutil.copy2(nih_films / n, images / n)
    (images / "zz-damaged.png").write_bytes((nih_films / names[0]).read_bytes()[:300])
    truth = nih_truth(data_dir, names)
    patients = sorted({truth[n][0] for n in names})
    folds = {p: ("val" if i % 4 == 0 else "test" if i % 4 == 1 else "train") for i, p in enumerate(patients)}
    table = tmp_path / "labels.csv"
    leaked = None
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "Effusion", "Infiltration", "case", "fold"])
        for n in names + ["zz-damaged.png"]:
            pid, found = truth.get(n, ("99999", set()))
            fold = folds.get(pid, "train")
            if leaked is None and fold == "train" and sum(truth[m][0] == pid for m in names) > 1:
                leaked, fold = pid, "val"  # one film of a training patient in validation
            w.writerow([n, int("Effusion" in found), int("Infiltration" in found), pid, fold])
    assert leaked is not None

    wz = make_wizard()
    page = wz.data_page
    fill_csv_source(qtbot, wz, table, images, ["Effusion", "Infiltration"])
    assert page.csv_info.patient_column is None and page.csv_info.split_columns == ["fold"]
    assert not page.preview.has_patients
    assert not page.patients_warning.isHidden() and "No patient IDs" in page.patients_warning.text()
    shot(wz, shots, "9-data-no-patients")

    job(qtbot, wz, "checks", lambda: click(qtbot, next_button(wz)))
    cp = wz.checks_page
    problems = {p.key: p for p in cp.result.problems}
    assert problems["no-patients"].severity == BLOCK and "leakage" in problems["no-patients"].text
    assert [f.caption for f in problems["no-patients"].fixes] == ["Choose the patient column…",
                                                                  "Treat each film as its own patient"]
    assert problems["unreadable"].severity == NOTE and "zz-damaged.png: " in problems["unreadable"].text
    assert [cp.unreadable.item(i).text().split(":")[0] for i in range(cp.unreadable.count())] == ["zz-damaged.png"]
    assert "1 cannot be read" in cp.films_label.text()
    assert not next_button(wz).isEnabled()
    shot(wz, shots, "10-checks-problems")

    # Way forward 1: accept each film as its own patient.
    job(qtbot, wz, "checks", cp.problems.buttons[("no-patients", "Treat each film as its own patient")].click)
    problems = {p.key: p for p in cp.result.problems}
    assert problems["no-patients"].severity == NOTE and "accepted" in problems["no-patients"].text
    assert not cp.result.blocking

    # Way forward 2: the patient column under another name, and the CSV's own split column.
    wz.plan.films_as_patients = False
    page.films_as_patients.setChecked(False)
    job(qtbot, wz, "checks", cp.start_check)
    cp.problems.buttons[("no-patients", "Choose the patient column…")].click()
    assert wz.currentId() == wz.DATA

    def columns():
        choose(page.patient_col, "case")
        choose(page.split_col, "fold")

    job(qtbot, wz, "preview", columns)
    assert page.preview.has_patients and page.patients_warning.isHidden()
    job(qtbot, wz, "checks", lambda: click(qtbot, next_button(wz)))
    assert "no-patients" not in {p.key for p in cp.result.problems}

    # The given split leaks a patient: the leakage check says so, and offers the patient split.
    assert cp.given_radio.isEnabled()
    job(qtbot, wz, "checks", cp.given_radio.click)
    problems = {p.key: p for p in cp.result.problems}
    assert problems["leakage"].severity == BLOCK and "1 patient(s) have films in more than one split" in \
        problems["leakage"].text
    assert leaked not in problems["leakage"].text  # patients are named by hash only
    assert "Leakage check failed" in cp.leak_label.text() and not next_button(wz).isEnabled()
    shot(wz, shots, "11-checks-leakage")
    job(qtbot, wz, "checks", cp.problems.buttons[("leakage", "Split by patient instead")].click)
    assert cp.patient_radio.isChecked() and cp.result.leakage_ok
    assert "leakage" not in {p.key for p in cp.result.problems}


def test_folder_per_class_tree_with_its_own_split_and_patient_pattern(qtbot, make_wizard, data_dir, tmp_path,
                                                                        shots):
    """Kermany's layout (train/ and test/ folders, one folder per class): multi-class, the
    folders' split lacks validation (explained, with the patient split as the way out)."""
    root = tmp_path / "kermany"
    for split, count in (("train", 14), ("test", 6)):
        for cls in ("NORMAL", "PNEUMONIA"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((data_dir / "kermany-pneumonia" / split / cls).iterdir())[:count]:
                shutil.copy2(f, root / split / cls / f.name)
    wz = make_wizard()
    page = wz.data_page
    page.folders_radio.setChecked(True)
    job(qtbot, wz, "folders", lambda: page.folders_field.set_text(str(root)))
    assert page.folder_info.classes == ["NORMAL", "PNEUMONIA"]
    assert page.folder_info.split_folders == ["train", "test"]
    assert page.task == "multiclass"
    qtbot.waitUntil(page.isComplete, timeout=30_000)
    assert not page.preview.has_patients and not page.patients_warning.isHidden()

    def pattern():
        page.pattern_edit.setText(KERMANY_PATIENTS)
        page.pattern_edit.editingFinished.emit()

    job(qtbot, wz, "preview", pattern)
    assert page.preview.has_patients and page.preview.films == 40
    assert page.preview.patients < 40  # Kermany has several films per patient

    job(qtbot, wz, "checks", lambda: click(qtbot, next_button(wz)))
    cp = wz.checks_page
    assert cp.result.leakage_ok and "Class weights" in cp.weights_label.text()
    job(qtbot, wz, "checks", cp.given_radio.click)
    problems = {p.key: p for p in cp.result.problems}
    assert problems["split"].severity == BLOCK and "validation split is empty" in problems["split"].text
    assert not next_button(wz).isEnabled()
    job(qtbot, wz, "checks", cp.problems.buttons[("split", "Split by patient instead")].click)
    assert cp.isComplete()
    shot(wz, shots, "12-checks-multiclass")


def test_opening_the_wizard_leaves_tensorflow_unimported(tmp_path):
    """TensorFlow is for the worker threads: the wizard's modules and pages never import it."""
    code = ("import sys\n"
            "from PySide6.QtWidgets import QApplication\n"
            "app = QApplication([])\n"
            "from cxrviewer.gui.wizard import TrainingWizard\n"
            "wz = TrainingWizard()\n"
            "wz.show(); app.processEvents()\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_the_training_process_side_imports_no_qt_and_reports_its_end(tmp_path):
    """The child process (TensorFlow's home) loads no Qt; a job it cannot run, or a child
    that dies, ends with one clear error, never a hang."""
    from cxrviewer.gui.wizard.child import ChildRun

    code = "import sys, cxrviewer.gui.wizard.child, cxrviewer.gui.wizard.analysis; print('PySide6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["False"], out.stderr
    with pytest.raises(RuntimeError, match="unknown job kind 'nonsense'"):
        ChildRun("nonsense", ()).result()
    run = ChildRun("nonsense", ())
    run.terminate()
    last = [m for m in run.messages() if m is not None][-1]
    assert last[0] == "error" and ("stopped unexpectedly" in last[1] or "unknown job kind" in last[1])


def test_no_full_collections_inside_and_restored_after():
    import gc

    from cxrviewer.gui.wizard.gcpace import NEVER, no_full_collections

    before = gc.get_threshold()
    with no_full_collections():
        with no_full_collections():  # nested (two jobs): still off
            assert gc.get_threshold() == (before[0], before[1], NEVER)
        assert gc.get_threshold()[2] == NEVER
    assert gc.get_threshold() == before


# ---- the Qt-free parts -----------------------------------------------------------------------------
def test_plan_becomes_a_recipe_that_runs_the_same_experiment_from_the_command_line(tmp_path):
    from cxrviewer.training.recipe import load_recipe

    odd = tmp_path / 'a "quoted" folder\\with back\\slash'
    plan = WizardPlan(csv_path=str(odd / "labels.csv"), images_dir=str(odd / "films"), labels=["Effusion", "Mass"],
                      patient_column="case", split_column="fold", split_method="given", seed=7,
                      name="clinic model", backbone="tiny", input_size=48, start="scratch", head_epochs=0,
                      finetune_epochs=3, finetune_lr=2e-4, augment=False, run_dir=str(tmp_path / "run"))
    recipe = plan.to_recipe()
    (tmp_path / "recipe.toml").write_text(recipe.text)
    again = load_recipe(tmp_path / "recipe.toml")  # what a resume reads from the run folder
    for r in (recipe, again):
        src = r.data.sources[0]
        assert r.data_path(src.csv) == odd / "labels.csv" and r.data_path(src.images) == odd / "films"
        assert (src.patient_column, src.split_column) == ("case", "fold")
        assert r.data.labels == ["Effusion", "Mass"] and r.split.method == "given" and r.split.seed == 7
        assert (r.model.backbone, r.model.input_size, r.model.name) == ("tiny", 48, "clinic model")
        assert (r.train.finetune_epochs, r.train.finetune_lr, r.train.augment) == (3, 2e-4, False)
        assert r.run_dir == tmp_path / "run" and r.start_model is None
    folders = WizardPlan(source_kind="folders", folders_dir=str(tmp_path / "k"), task="multilabel",
                         label_map={"PNEUMONIA": "Pneumonia", "NORMAL": ""}, labels=["Pneumonia"],
                         patient_regex=KERMANY_PATIENTS, run_dir=str(tmp_path / "r2")).to_recipe()
    assert folders.data.sources[0].label_map == {"PNEUMONIA": "Pneumonia", "NORMAL": ""}
    assert folders.data.sources[0].patient_regex == KERMANY_PATIENTS


def test_eta_counts_remaining_epochs_across_phases_and_resumes():
    now = [0.0]
    eta = EtaEstimator(head_epochs=2, finetune_epochs=3, clock=lambda: now[0])
    eta.phase_started("head", 2)
    eta.batch_ended(1, 10)  # the first batch traces the graph: not timed
    now[0] = 2.0
    eta.batch_ended(5, 10)  # 4 batches in 2 s
    s = eta.state()
    assert s.epoch == 1 and s.total_epochs == 5 and s.fraction == pytest.approx(0.5 / 5)
    assert s.seconds_left == pytest.approx(5 * 0.5 + 4 * 10 * 0.5)
    eta.epoch_ended(1, {"step_seconds": 1.0, "val_seconds": 3.0, "steps": 10})
    assert eta.state().seconds_left == pytest.approx(4 * (10 * 1.0 + 3.0))
    # A run resumed after 3 epochs (head done, one fine-tune epoch done): 2 left.
    eta.phase_started("evaluate", 0)  # after the last epoch: reports and export
    s = eta.state()
    assert s.evaluating and s.fraction == 1.0 and s.seconds_left is None
    resumed = EtaEstimator(2, 3, clock=lambda: now[0])
    resumed.seed({"epoch": 3, "step_seconds": 1.0, "val_seconds": 3.0, "steps": 10})  # from the checkpoint
    resumed.phase_started("finetune", 2)
    assert resumed.epochs_left() == 2 and resumed.state().epoch == 4
    assert resumed.state().seconds_left == pytest.approx(2 * 13.0)  # known before its first batch
