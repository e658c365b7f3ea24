"""Checks page: unreadable films, the split and its leakage check, class balance, problems.

Everything is computed by ``analysis`` on the task pool: the readability check once per
set of films (with progress), the split, leakage check and class-frequency chart again
whenever a split setting or a fix changes the plan. Problems that block training keep
Next disabled until one of their ways forward is taken.
"""

from __future__ import annotations

import copy

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from cxrviewer.gui.wizard import analysis
from cxrviewer.gui.wizard.widgets import ProblemList
from cxrviewer.training.split import SPLITS


class ChecksPage(QWizardPage):
    def __init__(self, wizard):
        super().__init__()
        self.wz = wizard
        self.setTitle("Checks")
        self.setSubTitle("Films that cannot be read, the patient-level split with its leakage check, and the "
                         "class balance that the weighted loss corrects.")
        self.result: analysis.SplitCheck | None = None
        self.result_key = ""
        self._gen = 0
        self._syncing = False
        self.chart = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self.start_check)

        # -- films
        self.films_label = QLabel("")
        self.films_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setFormat("checking films: %v / %m")
        self.unreadable = QListWidget()
        self.unreadable.setMaximumHeight(70)
        self.unreadable.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)

        # -- split settings
        self.patient_radio = QRadioButton("By patient (random, stratified by finding)")
        self.given_radio = QRadioButton("As given (the CSV's split column or the split folders)")
        group = QButtonGroup(self)
        group.addButton(self.patient_radio)
        group.addButton(self.given_radio)
        self.fraction_spins = []
        for name in ("train", "validation", "test"):
            s = QSpinBox()
            s.setRange(0, 100)
            s.setSuffix(" %")
            s.setToolTip(f"share of patients' films in {name}")
            self.fraction_spins.append(s)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 1_000_000)
        split_box = QGroupBox("Split")
        sl = QHBoxLayout(split_box)
        sl.addWidget(self.patient_radio)
        for name, s in zip(("train", "val", "test"), self.fraction_spins):
            sl.addWidget(QLabel(name))
            sl.addWidget(s)
        sl.addWidget(QLabel("seed"))
        sl.addWidget(self.seed_spin)
        sl.addSpacing(12)
        sl.addWidget(self.given_radio)
        sl.addStretch(1)

        self.split_table = QTableWidget(0, 0)
        self.split_table.verticalHeader().hide()
        self.split_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.split_table.setMaximumHeight(120)
        self.leak_label = QLabel("")
        self.leak_label.setWordWrap(True)

        # -- class balance (pyqtgraph, once it is imported)
        self.chart_box = QGroupBox("Class balance: share of positive and negative labels per class in training, "
                                   "before and after the loss weights")
        self._chart_lay = QVBoxLayout(self.chart_box)
        self._chart_placeholder = QLabel("Loading the chart…")
        self._chart_lay.addWidget(self._chart_placeholder)
        self.weights_label = QLabel("")
        self.weights_label.setWordWrap(True)
        self.weights_label.setStyleSheet("color: #8a96a3;")
        self._chart_lay.addWidget(self.weights_label)

        # -- problems
        self.problems = ProblemList()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.problems)
        scroll.setMinimumHeight(90)
        problems_box = QGroupBox("Problems and ways forward")
        QVBoxLayout(problems_box).addWidget(scroll)

        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.films_label)
        tl.addWidget(self.progress)
        tl.addWidget(self.unreadable)
        tl.addWidget(split_box)
        tl.addWidget(self.split_table)
        tl.addWidget(self.leak_label)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(self.chart_box)
        splitter.addWidget(problems_box)
        splitter.setStretchFactor(1, 2)
        splitter.setStretchFactor(2, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(splitter)

        self.patient_radio.toggled.connect(self._split_changed)
        for s in self.fraction_spins:
            s.valueChanged.connect(self._split_changed)
        self.seed_spin.valueChanged.connect(self._split_changed)
        self.problems.fix_chosen.connect(self.apply_fix)
        self.wz.when_charts_ready(self._build_chart)

    def _build_chart(self) -> None:
        from cxrviewer.gui.wizard.charts import ContributionChart

        self.chart = ContributionChart()
        self._chart_lay.replaceWidget(self._chart_placeholder, self.chart)
        self._chart_placeholder.deleteLater()
        if self.result is not None:
            self._draw_chart(self.result)

    # ---- split settings <-> plan ------------------------------------------------------
    def _sync_from_plan(self) -> None:
        plan = self.wz.plan
        self._syncing = True
        self.given_radio.setEnabled(self.wz.data_page.given_split_available())
        (self.given_radio if plan.split_method == "given" else self.patient_radio).setChecked(True)
        for s, f in zip(self.fraction_spins, plan.fractions):
            s.setValue(round(f * 100))
        self.seed_spin.setValue(int(plan.seed))
        self._syncing = False
        self._update_split_enabled()

    def _update_split_enabled(self) -> None:
        on = self.patient_radio.isChecked()
        for s in self.fraction_spins:
            s.setEnabled(on)
        self.seed_spin.setEnabled(on)

    def _split_changed(self, *_) -> None:
        self._update_split_enabled()
        if self._syncing:
            return
        plan = self.wz.plan
        plan.split_method = "patients" if self.patient_radio.isChecked() else "given"
        values = [s.value() for s in self.fraction_spins]
        if sum(values) != 100:
            self.leak_label.setText(f"<span style='color:#ef6a5a'>The split shares add up to {sum(values)} %, "
                                    "not 100 %.</span>")
            self.result = None
            self.completeChanged.emit()
            return
        plan.fractions = tuple(v / 100 for v in values)
        plan.seed = self.seed_spin.value()
        self.result = None
        self.completeChanged.emit()
        self._timer.start()

    # ---- the check ---------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        self._sync_from_plan()
        self.start_check()

    def start_check(self) -> None:
        wz = self.wz
        plan = copy.deepcopy(wz.plan)
        key = wz.check_key(plan)
        self._gen += 1
        gen = self._gen
        self.result = None
        self.completeChanged.emit()
        dataset = wz.preview.dataset if wz.preview is not None and wz.preview_key == wz.data_key(plan) else None
        known = dict(wz.unreadable_paths)
        checked = set(wz.checked_paths)
        accepted = set(wz.accepted)
        self.progress.show()
        self.progress.setRange(0, 0)
        self.films_label.setText("Checking the films…")

        def job(j):
            ds = dataset if dataset is not None else analysis.build_plan_dataset(plan)
            todo = [i for i, p in enumerate(ds.paths) if str(p) not in checked]
            bad = {}
            if todo:
                found = analysis.find_unreadable([ds.paths[i] for i in todo], progress=lambda d, t: j.progress((d, t)),
                                                 cancelled=lambda: j.cancelled)
                bad = {str(ds.paths[todo[k]]): r for k, r in found.items()}
            all_bad = {**known, **bad}
            unreadable = {i: all_bad[str(p)] for i, p in enumerate(ds.paths) if str(p) in all_bad}
            check = analysis.check_split(plan, ds, unreadable, accepted)
            return ds, [str(ds.paths[i]) for i in todo], bad, check

        wz.submit(job, on_result=lambda r: self._checked(gen, key, *r),
                  on_error=lambda reason: self._failed(gen, reason),
                  on_progress=lambda v: self._progress(gen, v))

    def _progress(self, gen: int, value) -> None:
        if gen == self._gen:
            done, total = value
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _failed(self, gen: int, reason: str) -> None:
        if gen != self._gen:
            return
        self.progress.hide()
        self.films_label.setText(f"<span style='color:#ef6a5a'>{reason}</span>")
        self.wz.job_done.emit("error")

    def _checked(self, gen: int, key: str, dataset, todo, bad, check: analysis.SplitCheck) -> None:
        wz = self.wz
        wz.checked_paths.update(todo)  # films read once stay known, even for a stale request
        wz.unreadable_paths.update(bad)
        if gen != self._gen:
            return
        self.result, self.result_key = check, key
        wz.checks = check
        self.progress.hide()
        n_bad = len(dataset) - (len(check.usable) if check.usable is not None else 0)
        missing = ""
        if dataset.report.missing or dataset.report.unlabelled:
            missing = (f" Missing: {dataset.report.missing:,} label rows have no film, "
                       f"{len(dataset.report.unlabelled):,} films have no label row (both skipped).")
        self.films_label.setText(f"<b>{len(dataset):,} films</b>: {len(dataset) - n_bad:,} readable"
                                 + (f", <span style='color:#ef6a5a'>{n_bad} cannot be read</span> "
                                    "(left out of training, listed below)." if n_bad else ".") + missing)
        self.unreadable.clear()
        for p in dataset.paths:
            reason = wz.unreadable_paths.get(str(p))
            if reason:
                self.unreadable.addItem(reason)
        self.unreadable.setVisible(bool(n_bad))
        self._fill_split_table(check)
        if check.leakage_ok is None:
            self.leak_label.setText("")
        elif check.leakage_ok:
            self.leak_label.setText(f"<span style='color:#6fd3b4'>✔ Leakage check passed.</span> {check.leakage_text} "
                                    f"<span style='color:#8a96a3'>({check.how})</span>")
        else:
            self.leak_label.setText(f"<span style='color:#ef6a5a'>✖ Leakage check failed.</span> {check.leakage_text}")
        self._draw_chart(check)
        self.problems.set_problems(check.problems)
        self.completeChanged.emit()
        wz.job_done.emit("checks")

    def _fill_split_table(self, check: analysis.SplitCheck) -> None:
        t = self.split_table
        labels = check.labels if check.counts else []
        t.setColumnCount(3 + len(labels))
        t.setHorizontalHeaderLabels(["Split", "Films", "Patients"] + [f"{lab.replace('_', ' ')} +" for lab in labels])
        t.setRowCount(len(check.counts))
        for r, name in enumerate(s for s in SPLITS if s in check.counts):
            c = check.counts[name]
            cells = [name, f"{c['images']:,}", f"{c['patients']:,}"] + [
                f"{check.positives[name][lab]:,}" for lab in labels]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if col >= 3 and text == "0" and name != "test":
                    item.setForeground(Qt.GlobalColor.red)
                t.setItem(r, col, item)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

    def _draw_chart(self, check: analysis.SplitCheck) -> None:
        if not check.contributions:
            self.weights_label.setText("")
            return
        if check.task == "multilabel":
            w = check.weights
            self.weights_label.setText(
                "Weights (w_pos = 1 − p, w_neg = p, p = positive share in training): " + "; ".join(
                    f"{lab.replace('_', ' ')} {wp:.2f}/{wn:.2f}" for lab, wp, wn in
                    zip(check.labels, np.asarray(w["w_pos"]), np.asarray(w["w_neg"]))))
        else:
            self.weights_label.setText("Class weights (inverse frequency, mean 1 per film): " + "; ".join(
                f"{lab} {v:.2f}" for lab, v in zip(check.labels, np.asarray(check.weights["w"]))))
        if self.chart is not None:
            names = ("positive", "negative") if check.task == "multilabel" else ("this class", "other classes")
            self.chart.set_data(check.labels, check.contributions, positive_name=names[0], negative_name=names[1])

    # ---- ways forward ------------------------------------------------------------------
    def apply_fix(self, problem, fix) -> None:
        wz = self.wz
        plan = wz.plan
        if fix.action == "drop":
            wz.drop_label(fix.arg)
        elif fix.action == "keep":
            wz.accepted.add(problem.key)
        elif fix.action == "patient_split":
            plan.split_method = "patients"
            self._sync_from_plan()
        elif fix.action == "reseed":
            plan.seed = int(plan.seed) + 1
            self._sync_from_plan()
        elif fix.action == "films_as_patients":
            plan.films_as_patients = True
            wz.data_page.films_as_patients.setChecked(True)
        elif fix.action == "patient_column":
            wz.back()
            page = wz.data_page
            (page.patient_col if plan.source_kind == "csv" else page.pattern_edit).setFocus()
            return
        self.start_check()

    def isComplete(self) -> bool:  # noqa: N802
        r = self.result
        return (r is not None and self.result_key == self.wz.check_key(self.wz.plan) and r.split is not None
                and not any(p.severity in (analysis.BLOCK, analysis.DECIDE) for p in r.problems))
