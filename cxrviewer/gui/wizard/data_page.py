"""Data page: which films, which labels, which task; counts previewed in the background."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizardPage,
)

from cxrviewer.gui.wizard import analysis
from cxrviewer.gui.wizard.plan import CSV, FOLDERS
from cxrviewer.gui.wizard.widgets import PathField

AUTO = ""  # combo data: let the label reader detect the column
TASKS = [("Multi-label: findings can occur together (one sigmoid per finding)", "multilabel"),
         ("Multi-class: exactly one class per film (softmax)", "multiclass")]


class DataPage(QWizardPage):
    def __init__(self, wizard):
        super().__init__()
        self.wz = wizard
        self.setTitle("Data")
        self.setSubTitle("Labelled films to train on: a labels CSV (NIH Data_Entry layout, a findings "
                         "column, or one 0/1 column per label) with its image folder, or a folder per class.")
        self.csv_info: analysis.CsvInfo | None = None
        self.folder_info: analysis.FolderInfo | None = None
        self.preview: analysis.DataPreview | None = None
        self.preview_key = ""
        self.error = ""
        self._gen = 0  # preview requests
        self._inspect_gen = 0  # CSV / folder reads (separate: a preview must not orphan them)
        self._filling = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self.start_preview)

        # -- source
        self.csv_radio = QRadioButton("Labels CSV + image folder")
        self.folders_radio = QRadioButton("A folder per class (e.g. NORMAL/, PNEUMONIA/, optionally under train/ val/ test/)")
        self.csv_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.csv_radio)
        group.addButton(self.folders_radio)
        self.csv_field = PathField("file", "Labels CSV", "CSV files (*.csv *.csv.gz *.txt *.tsv);;All files (*)")
        self.images_field = PathField("dir", "Image folder (searched recursively)")
        self.image_col = QComboBox()
        self.patient_col = QComboBox()
        self.split_col = QComboBox()
        for combo in (self.image_col, self.patient_col, self.split_col):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.csv_box = QGroupBox()
        f = QFormLayout(self.csv_box)
        f.addRow("Labels CSV:", self.csv_field)
        f.addRow("Image folder:", self.images_field)
        cols = QHBoxLayout()
        for text, combo in (("Image column", self.image_col), ("Patient column", self.patient_col),
                            ("Split column", self.split_col)):
            cols.addWidget(QLabel(text))
            cols.addWidget(combo)
        cols.addStretch(1)
        f.addRow(cols)

        self.folders_field = PathField("dir", "Folder with one sub-folder per class")
        self.pattern_edit = QLineEdit()
        self.pattern_edit.setPlaceholderText(r"patient ID in file names, e.g. ^(person\d+|IM-\d+) — empty: each film is its own patient")
        self.folders_box = QGroupBox()
        f2 = QFormLayout(self.folders_box)
        f2.addRow("Class folders:", self.folders_field)
        f2.addRow("Patient pattern:", self.pattern_edit)

        # -- labels and task
        self.task_combo = QComboBox()
        for text, value in TASKS:
            self.task_combo.addItem(text, value)
        self.label_list = QListWidget()
        self.label_list.setMaximumHeight(150)
        self.label_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.all_button = QPushButton("All")
        self.none_button = QPushButton("None")
        self.map_table = QTableWidget(0, 2)
        self.map_table.setHorizontalHeaderLabels(["Folder", "Finding it means (empty: negative for every finding)"])
        self.map_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.map_table.verticalHeader().hide()
        self.map_table.setMaximumHeight(130)
        self.labels_hint = QLabel("")
        self.labels_hint.setWordWrap(True)

        # -- patients
        self.patients_warning = QLabel("")
        self.patients_warning.setWordWrap(True)
        self.patients_warning.setStyleSheet("color: #e3a72f;")
        self.films_as_patients = QCheckBox("Treat each film as its own patient (I accept the leakage risk)")

        # -- preview
        self.status = QLabel("Choose the data.")
        self.status.setWordWrap(True)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: #8a96a3;")
        self.counts = QTableWidget(0, 4)
        self.counts.setHorizontalHeaderLabels(["Finding", "Positive", "Negative", "Unknown"])
        self.counts.verticalHeader().hide()
        self.counts.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.counts.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.resume_button = QPushButton("Resume an interrupted run…")
        self.resume_button.setToolTip("Continue a run folder that holds a checkpoint (cancelled, crashed or "
                                      "interrupted), from its last finished epoch")

        lay = QVBoxLayout(self)
        src = QHBoxLayout()
        src.addWidget(self.csv_radio)
        src.addWidget(self.folders_radio)
        src.addStretch(1)
        src.addWidget(self.resume_button)
        lay.addLayout(src)
        lay.addWidget(self.csv_box)
        lay.addWidget(self.folders_box)
        task_row = QHBoxLayout()
        task_row.addWidget(QLabel("Task:"))
        task_row.addWidget(self.task_combo, 1)
        lay.addLayout(task_row)
        labels_row = QHBoxLayout()
        labels_row.addWidget(QLabel("Labels:"))
        labels_row.addWidget(self.labels_hint, 1)
        labels_row.addWidget(self.all_button)
        labels_row.addWidget(self.none_button)
        lay.addLayout(labels_row)
        lay.addWidget(self.label_list)
        lay.addWidget(self.map_table)
        lay.addWidget(self.patients_warning)
        lay.addWidget(self.films_as_patients)
        lay.addWidget(self.status)
        lay.addWidget(self.counts, 1)
        lay.addWidget(self.notes)

        self.csv_radio.toggled.connect(self._source_changed)
        self.csv_field.changed.connect(self._csv_changed)
        self.images_field.changed.connect(lambda _: self.schedule_preview())
        self.folders_field.changed.connect(self._folders_changed)
        self.pattern_edit.editingFinished.connect(self.schedule_preview)
        for combo in (self.image_col, self.patient_col, self.split_col):
            combo.currentIndexChanged.connect(lambda _: self.schedule_preview())
        self.task_combo.currentIndexChanged.connect(self._task_changed)
        self.label_list.itemChanged.connect(lambda _: self.schedule_preview())
        self.map_table.itemChanged.connect(lambda _: self.schedule_preview())
        self.all_button.clicked.connect(lambda: self._check_all(True))
        self.none_button.clicked.connect(lambda: self._check_all(False))
        self.films_as_patients.toggled.connect(self._patients_toggled)
        self.resume_button.clicked.connect(self._choose_resume)
        self._source_changed()

    # ---- what the widgets say ------------------------------------------------------
    @property
    def kind(self) -> str:
        return CSV if self.csv_radio.isChecked() else FOLDERS

    @property
    def task(self) -> str:
        return self.task_combo.currentData()

    def checked_labels(self) -> list[str]:
        out = []
        for i in range(self.label_list.count()):
            item = self.label_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(item.data(Qt.ItemDataRole.UserRole))
        return out

    def label_map(self) -> dict[str, str]:
        out = {}
        for r in range(self.map_table.rowCount()):
            folder = self.map_table.item(r, 0).text()
            item = self.map_table.item(r, 1)
            out[folder] = (item.text() if item else "").strip()
        return out

    def apply_to_plan(self, plan) -> None:
        plan.source_kind = self.kind
        plan.csv_path = self.csv_field.text()
        plan.images_dir = self.images_field.text()
        plan.folders_dir = self.folders_field.text()
        plan.image_column = self.image_col.currentData() or ""
        plan.patient_column = self.patient_col.currentData() or ""
        plan.split_column = self.split_col.currentData() or ""
        plan.patient_regex = self.pattern_edit.text().strip()
        plan.task = self.task
        plan.films_as_patients = self.films_as_patients.isChecked()
        if self.kind == CSV:
            plan.labels = self.checked_labels()
            plan.label_map = {}
        elif self.task == "multiclass":
            plan.labels = list(self.folder_info.classes) if self.folder_info else []
            plan.label_map = {}
        else:
            plan.label_map = self.label_map()
            plan.labels = list(dict.fromkeys(v for v in plan.label_map.values() if v))
        if plan.split_method == "given" and not self.given_split_available():
            plan.split_method = "patients"

    def given_split_available(self) -> bool:
        if self.kind == CSV:
            return bool(self.split_col.currentData())
        return bool(self.folder_info and self.folder_info.split_folders)

    def _inputs_problem(self, plan) -> str:
        """Why there is nothing to preview yet ('' when the choices are complete)."""
        if plan.source_kind == CSV:
            if not plan.csv_path:
                return "Choose a labels CSV."
            if not Path(plan.csv_path).is_file():
                return f"{Path(plan.csv_path).name}: file not found."
            if self.csv_info is None:
                return self.error or "Reading the CSV…"
            if not plan.images_dir:
                return "Choose the image folder."
            if not Path(plan.images_dir).is_dir():
                return f"{plan.images_dir}: folder not found."
        else:
            if not plan.folders_dir:
                return "Choose the folder that holds one sub-folder per class."
            if self.folder_info is None:
                return self.error or "Reading the class folders…"
            if plan.patient_regex:
                try:
                    re.compile(plan.patient_regex)
                except re.error as exc:
                    return f"The patient pattern is not a valid regular expression: {exc}."
        if not plan.labels:
            return "Choose at least one label." if plan.task == "multilabel" else "Choose the classes."
        if plan.task == "multiclass" and len(plan.labels) < 2:
            return "A multi-class model needs at least two classes."
        return ""

    # ---- reacting -------------------------------------------------------------------
    def _source_changed(self) -> None:
        csv = self.kind == CSV
        self.csv_box.setVisible(csv)
        self.folders_box.setVisible(not csv)
        if not csv and self.task == "multilabel" and self.folder_info is None:
            self.task_combo.setCurrentIndex(1)  # a folder per class is usually one class per film
        self._task_changed()

    def _task_changed(self) -> None:
        folders_multilabel = self.kind == FOLDERS and self.task == "multilabel"
        self.map_table.setVisible(folders_multilabel)
        self.label_list.setVisible(not folders_multilabel)
        self.all_button.setVisible(self.kind == CSV)
        self.none_button.setVisible(self.kind == CSV)
        if self.kind == FOLDERS:
            self._fill_folder_labels()
        self.labels_hint.setText(
            "map each class folder to a finding; findings no folder names are unknown (left out of the loss)"
            if folders_multilabel else ("every class folder is a class" if self.kind == FOLDERS else
                                        "untick labels to leave them out of the model"))
        self.schedule_preview()

    def _check_all(self, on: bool) -> None:
        self._filling = True
        for i in range(self.label_list.count()):
            self.label_list.item(i).setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self._filling = False
        self.schedule_preview()

    def _patients_toggled(self, on: bool) -> None:
        self.wz.plan.films_as_patients = on
        self.completeChanged.emit()

    def _csv_changed(self, text: str) -> None:
        self.csv_info = None
        self.error = ""
        path = Path(text) if text else None
        if path is None or not path.is_file():
            self.schedule_preview()
            return
        self.status.setText(f"Reading {path.name}…")
        self._inspect_gen += 1
        gen = self._inspect_gen
        self.wz.submit(lambda job, p: analysis.inspect_csv(p), path,
                       on_result=lambda info: self._csv_read(gen, info),
                       on_error=lambda reason: self._inspect_failed(gen, reason))

    def _csv_read(self, gen: int, info: analysis.CsvInfo) -> None:
        if gen != self._inspect_gen:
            return
        self.csv_info = info
        self._filling = True
        self.image_col.clear()
        self.image_col.addItem(f"(detected: {info.image_column})" if info.image_column else "(none found)", AUTO)
        for c in info.columns:
            self.image_col.addItem(c, c)
        self.patient_col.clear()
        if info.patient_column:
            self.patient_col.addItem(f"(detected: {info.patient_column})", AUTO)
        else:
            self.patient_col.addItem("(none: each film is its own patient)", AUTO)
        for c in info.columns:
            self.patient_col.addItem(c, c)
        self.split_col.clear()
        self.split_col.addItem("(none: split by patient)", "")
        for c in info.columns:
            self.split_col.addItem(c + ("  (train/val/test values)" if c in info.split_columns else ""), c)
        self.label_list.clear()
        for lab in info.labels:
            item = QListWidgetItem(lab.replace("_", " "))
            item.setData(Qt.ItemDataRole.UserRole, lab)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.label_list.addItem(item)
        self._filling = False
        layout = {"nih": "NIH Data_Entry layout", "findings": "a findings column",
                  "columns": "one column per label"}.get(info.layout, info.layout)
        self.labels_hint.setText(f"{len(info.labels)} labels in {info.path.name} ({layout}, {info.rows:,} rows); "
                                 "untick labels to leave them out of the model")
        self.schedule_preview()
        self.wz.job_done.emit("csv")

    def _folders_changed(self, text: str) -> None:
        self.folder_info = None
        self.error = ""
        if not text or not Path(text).is_dir():
            self.schedule_preview()
            return
        self.status.setText(f"Reading {Path(text).name}…")
        self._inspect_gen += 1
        gen = self._inspect_gen
        self.wz.submit(lambda job, p: analysis.inspect_folders(p), Path(text),
                       on_result=lambda info: self._folders_read(gen, info),
                       on_error=lambda reason: self._inspect_failed(gen, reason))

    def _folders_read(self, gen: int, info: analysis.FolderInfo) -> None:
        if gen != self._inspect_gen:
            return
        self.folder_info = info
        self.map_table.setRowCount(0)
        self._fill_folder_labels()
        splits = f"; split folders: {', '.join(info.split_folders)}" if info.split_folders else ""
        self.labels_hint.setText(", ".join(f"{c}: {n} films" for c, n in info.films.items()) + splits)
        self.schedule_preview()
        self.wz.job_done.emit("folders")

    def _fill_folder_labels(self) -> None:
        info = self.folder_info
        if info is None:
            return
        self._filling = True
        self.label_list.clear()
        for c in info.classes:
            item = QListWidgetItem(c)
            item.setData(Qt.ItemDataRole.UserRole, c)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.label_list.addItem(item)
        if self.map_table.rowCount() != len(info.classes):
            mapping = analysis.default_label_map(info.classes)
            self.map_table.setRowCount(len(info.classes))
            for r, c in enumerate(info.classes):
                folder = QTableWidgetItem(c)
                folder.setFlags(Qt.ItemFlag.ItemIsEnabled)
                self.map_table.setItem(r, 0, folder)
                self.map_table.setItem(r, 1, QTableWidgetItem(mapping[c]))
        self._filling = False

    def _inspect_failed(self, gen: int, reason: str) -> None:
        if gen == self._inspect_gen:
            self._show_error(reason)

    def _failed(self, gen: int, reason: str) -> None:
        if gen == self._gen:
            self._show_error(reason)

    def _show_error(self, reason: str) -> None:
        self.error = reason
        self.preview = None
        self.status.setText(f"<span style='color:#ef6a5a'>{reason}</span>")
        self.completeChanged.emit()
        self.wz.job_done.emit("error")

    def schedule_preview(self) -> None:
        if self._filling:
            return
        self._timer.start()
        self.completeChanged.emit()

    def start_preview(self) -> None:
        plan = self.wz.plan
        self.apply_to_plan(plan)
        problem = self._inputs_problem(plan)
        self._gen += 1
        gen = self._gen
        self.preview = None
        if problem:
            self.status.setText(problem)
            self.counts.setRowCount(0)
            self.completeChanged.emit()
            return
        self.status.setText("Counting films and labels…")
        key = self.wz.data_key(plan)
        snapshot = copy.deepcopy(plan)
        self.wz.submit(lambda job, p: analysis.preview_data(p), snapshot,
                       on_result=lambda pv: self._previewed(gen, key, pv),
                       on_error=lambda reason: self._failed(gen, reason))

    def _previewed(self, gen: int, key: str, pv: analysis.DataPreview) -> None:
        if gen != self._gen:
            return
        self.preview, self.preview_key, self.error = pv, key, ""
        self.wz.set_preview(pv, key)
        where = Path(self.wz.plan.images_dir or self.wz.plan.folders_dir).name
        parts = [f"<b>{pv.films:,} films</b> found in {where}/ · {pv.patients:,} patients"]
        if self.kind == CSV:
            parts.append(f"{pv.missing_rows:,} label rows have no film here (skipped)")
            if pv.unlabelled:
                parts.append(f"{len(pv.unlabelled):,} films have no label row (skipped, e.g. "
                             + ", ".join(Path(u).name for u in pv.unlabelled[:3]) + ")")
        self.status.setText(" · ".join(parts))
        self.notes.setText("\n".join(pv.notes))
        self.counts.setRowCount(len(pv.per_label))
        for r, (lab, c) in enumerate(pv.per_label.items()):
            cells = [lab.replace("_", " "), f"{c['positive']:,}", f"{c['negative']:,}", f"{c['unknown']:,}"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if col == 1 and c["positive"] == 0:
                    item.setForeground(Qt.GlobalColor.red)
                    item.setToolTip("no positive film: nothing to learn for this label")
                self.counts.setItem(r, col, item)
        self._show_patients(pv)
        self.completeChanged.emit()
        self.wz.job_done.emit("preview")

    def _show_patients(self, pv) -> None:
        no_patients = not pv.has_patients
        self.films_as_patients.setVisible(no_patients)
        self.patients_warning.setVisible(no_patients)
        if no_patients:
            how = ("choose the patient column above if the CSV has one under another name"
                   if self.kind == CSV else "give the patient ID pattern of the file names above")
            self.patients_warning.setText(
                "⚠ No patient IDs: each film would count as its own patient, so films of one patient could "
                f"land in both training and validation and flatter the validation AUROC. Either {how}, or "
                "accept the risk below.")

    # ---- QWizardPage --------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        if self.preview is not None:
            self._show_patients(self.preview)
        else:
            self.films_as_patients.hide()
            self.patients_warning.hide()

    def isComplete(self) -> bool:  # noqa: N802
        if self.preview is None or self.error or self._timer.isActive():
            return False
        plan = copy.deepcopy(self.wz.plan)
        self.apply_to_plan(plan)
        return self.wz.data_key(plan) == self.preview_key and not self._inputs_problem(plan)

    def validatePage(self) -> bool:  # noqa: N802
        if self.wz.resume_request is None:  # resuming keeps the run's own recipe
            self.apply_to_plan(self.wz.plan)
        return True

    def _choose_resume(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Run folder to resume", str(self.wz.runs_root))
        if folder:
            self.resume_run(folder)

    def resume_run(self, folder) -> bool:
        """Continue the run in ``folder`` from its checkpoint (goes straight to training)."""
        reason = self.wz.request_resume(Path(folder))
        if reason:
            self.status.setText(f"<span style='color:#ef6a5a'>Cannot resume: {reason}</span>")
            return False
        self.wz.next()
        return True
