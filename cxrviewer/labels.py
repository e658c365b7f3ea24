"""Reading ground-truth label files and matching their rows to scored films.

Three layouts are accepted, detected from the header:

* the NIH ``Data_Entry_2017`` layout as distributed (``Image Index``, ``Finding Labels``
  with ``|``-separated findings or ``No Finding``, ``Patient ID``), plain or ``.csv.gz``;
* any CSV with a findings column of ``|``-separated names (one class name per row works
  too, e.g. ``NORMAL`` / ``PNEUMONIA``);
* a plain CSV with an image column and one column per label: 1/0, true/false, yes/no,
  positive/negative; blank, ``-1``, ``unknown`` or ``uncertain`` mean "not known" (NaN).

A label the file does not annotate is NaN (unknown), never 0: a missing label must not
count as a negative case in a ROC curve. Several rows for one image (RSNA writes one row
per box) are combined with the maximum, so any positive row makes the image positive.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from cxrviewer.findings import CXR14_LABELS, NO_FINDING


class LabelFileError(ValueError):
    """A label file cannot be used; str() is ``"<file name>: <one-line reason>"``."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path.name}: {self.reason}")


# Header names compared after _norm(): lower case, letters and digits only.
# Order is priority: an explicit image path beats a bare id.
IMAGE_COLUMNS = (
    "imageindex", "path", "relativepath", "filepath", "imagepath", "file", "filename",
    "image", "imagefile", "imagename", "img", "imageid", "dicom", "dicomid", "sopinstanceuid",
    "patientid",  # RSNA pneumonia: the DICOM file is named <patientId>.dcm
)
PATIENT_COLUMNS = ("patientid", "patient", "patientnumber", "subjectid", "subject", "mrn")
FINDINGS_COLUMNS = ("findinglabels", "findings", "finding", "labels", "label", "class", "diagnosis")
NIH_IMAGE, NIH_FINDINGS, NIH_PATIENT = "Image Index", "Finding Labels", "Patient ID"

POSITIVE = frozenset({"1", "1.0", "true", "t", "yes", "y", "positive", "pos"})
NEGATIVE = frozenset({"0", "0.0", "-0", "false", "f", "no", "n", "negative", "neg"})
MISSING = frozenset({"", "-1", "-1.0", "unknown", "uncertain", "nan", "na", "n/a", "?"})


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.strip().lower())


def _label_value(text: str) -> float | None:
    """1.0 / 0.0 / NaN for a recognised cell, None for anything else."""
    t = text.strip().lower()
    if t in POSITIVE:
        return 1.0
    if t in NEGATIVE:
        return 0.0
    if t in MISSING:
        return np.nan
    return None


def _posix(key: str) -> str:
    key = key.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


@dataclass
class LabelTable:
    """Ground truth: one row per image key, one column per label, NaN where unknown."""

    source: Path
    keys: list[str]  # image identifiers as written in the file ('/' separators)
    labels: list[str]
    matrix: np.ndarray  # float64 (len(keys), len(labels)), 1/0/NaN
    patients: list[str] | None = None  # aligned to keys, when the file names patients
    layout: str = "columns"  # "nih", "findings" or "columns"
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def column(self, label: str) -> np.ndarray:
        return self.matrix[:, self.labels.index(label)]

    def select(self, labels) -> "LabelTable":
        """Columns in the order asked; a label this table lacks becomes all-NaN."""
        out = np.full((len(self.keys), len(labels)), np.nan)
        for j, lab in enumerate(labels):
            if lab in self.labels:
                out[:, j] = self.matrix[:, self.labels.index(lab)]
        return LabelTable(self.source, list(self.keys), list(labels), out, self.patients,
                          self.layout, list(self.warnings))

    def rename(self, mapping: dict[str, str]) -> "LabelTable":
        return LabelTable(self.source, list(self.keys), [mapping.get(x, x) for x in self.labels],
                          self.matrix.copy(), self.patients, self.layout, list(self.warnings))

    # ---- matching ------------------------------------------------------------------
    def _indexes(self):
        # Built once per table; a name or stem shared by two keys is ambiguous and is
        # never used to match (picking one silently could pair a film with another's labels).
        cache = getattr(self, "_index_cache", None)
        if cache is None:
            by_path, by_name, by_stem = {}, {}, {}
            for i, key in enumerate(self.keys):
                p = PurePosixPath(key)
                by_path.setdefault(key, i)
                for d, k in ((by_name, p.name), (by_stem, _stem(p.name))):
                    d[k] = -1 if (k in d and d[k] != i) else i
            cache = (by_path, by_name, by_stem)
            self._index_cache = cache
        return cache

    def match(self, paths) -> tuple[np.ndarray, np.ndarray]:
        """Label rows aligned to ``paths``: by relative path, then file name, then stem.

        Returns ``(matrix, found)``: ``matrix`` has a NaN row where a path has no label
        row (or only an ambiguous one); ``found`` is the boolean mask of matched paths.
        """
        rows = self.match_indices(paths)
        found = rows >= 0
        out = np.full((len(rows), len(self.labels)), np.nan)
        out[found] = self.matrix[rows[found]]
        return out, found

    def match_indices(self, paths) -> np.ndarray:
        """Row index in this table for each path, -1 where none matches."""
        by_path, by_name, by_stem = self._indexes()
        result = np.full(len(paths), -1, dtype=np.int64)
        for n, raw in enumerate(paths):
            key = _posix(str(raw))
            p = PurePosixPath(key)
            i = by_path.get(key, -1)
            if i < 0:
                i = by_name.get(p.name, -1)
            if i < 0:
                i = by_stem.get(_stem(p.name), -1)
            result[n] = i
        return result


def _stem(name: str) -> str:
    # "x.dcm" -> "x"; "x.nii.gz"-style double suffixes are not film formats here.
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


# ---- reading -------------------------------------------------------------------------
def _read_rows(path: Path) -> list[list[str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabelFileError(path, "file not found") from None
    except IsADirectoryError:
        raise LabelFileError(path, "is a folder, not a CSV file") from None
    except OSError as exc:
        raise LabelFileError(path, f"cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise LabelFileError(path, f"damaged gzip file ({exc})") from None
    if b"\x00" in raw[:4096]:
        raise LabelFileError(path, "not a text CSV file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # old spreadsheet exports; names stay readable
    # The delimiter is whichever of , ; tab the header line uses most (European
    # spreadsheet exports use ';'); csv.Sniffer guesses wrong on one-column files.
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count) if any(d in first_line for d in ",;\t") else ","
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if "".join(r).strip()]
    except csv.Error as exc:
        raise LabelFileError(path, f"not a readable CSV ({exc})") from None
    if not rows:
        raise LabelFileError(path, "empty file")
    if len(rows) < 2:
        raise LabelFileError(path, "has a header but no rows")
    return rows


def _find_column(header: list[str], wanted: tuple[str, ...]) -> int | None:
    normed = [_norm(h) for h in header]
    for name in wanted:
        if name in normed:
            return normed.index(name)
    return None


def _column_index(path: Path, header: list[str], name: str, what: str) -> int:
    if name in header:
        return header.index(name)
    normed = [_norm(h) for h in header]
    if _norm(name) in normed:
        return normed.index(_norm(name))
    raise LabelFileError(path, f"no {what} column '{name}' (columns: {', '.join(header)})")


def _label_lookup(names, wanted: str) -> str | None:
    """Find ``wanted`` among ``names`` exactly, else ignoring case, spaces and '_'."""
    if wanted in names:
        return wanted
    by_norm = {_norm(n): n for n in names}
    return by_norm.get(_norm(wanted))


def read_label_table(
    path: str | Path,
    labels=None,
    *,
    image_column: str | None = None,
    patient_column: str | None = None,
    findings_column: str | None = None,
    label_map: dict[str, str] | None = None,
) -> LabelTable:
    """Read a label file in any accepted layout (see the module docstring).

    ``labels``: the labels wanted, in this order (e.g. a model's active labels); a label
    the file does not annotate is all-NaN. None: every label the file has.
    ``label_map``: renames file columns or finding names to label names, e.g.
    ``{"Target": "Pneumonia"}`` for the RSNA box file.
    Raises LabelFileError (file name + one-line reason) for unusable files.
    """
    path = Path(path)
    rows = _read_rows(path)
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    label_map = dict(label_map or {})

    img = (_column_index(path, header, image_column, "image") if image_column
           else _find_column(header, IMAGE_COLUMNS))
    if img is None:
        raise LabelFileError(
            path, "no image column (expected one of: Image Index, path, image, file, filename, "
                  f"image_id, patientId); columns are: {', '.join(header)}")
    pat = (_column_index(path, header, patient_column, "patient") if patient_column
           else _find_column(header, PATIENT_COLUMNS))

    width = len(header)
    keys, patients, kept, warnings = [], [], [], []
    n_short = n_blank = 0
    for r in body:
        if len(r) < width:
            r = r + [""] * (width - len(r))
            n_short += 1
        key = _posix(r[img])
        if not key:
            n_blank += 1
            continue
        keys.append(key)
        patients.append(r[pat].strip() if pat is not None else "")
        kept.append(r)
    if n_blank:
        warnings.append(f"{n_blank} rows without an image name were skipped")
    if n_short:
        warnings.append(f"{n_short} rows had fewer cells than the header; missing cells read as unknown")
    if not keys:
        raise LabelFileError(path, f"no rows with an image name in column '{header[img]}'")

    # Layout: a findings column is one whose cells are names, not 0/1.
    fcol = None
    if findings_column:
        fcol = _column_index(path, header, findings_column, "findings")
    else:
        cand = _find_column(header, FINDINGS_COLUMNS)
        if cand is not None and cand not in (img, pat) and any(
                _label_value(r[cand]) is None for r in kept[:2000]):
            fcol = cand
    is_nih = header[img] == NIH_IMAGE and fcol is not None and header[fcol] == NIH_FINDINGS

    if fcol is not None:
        file_labels, matrix = _findings_matrix(kept, fcol, label_map, is_nih)
        layout = "nih" if is_nih else "findings"
    else:
        skip = {img, pat} - {None}
        file_labels, matrix = _columns_matrix(path, header, kept, skip, label_map, labels)
        layout = "columns"

    if labels is not None:
        labels = list(labels)
        cols = []
        for lab in labels:
            found = _label_lookup(file_labels, lab)
            cols.append(file_labels.index(found) if found is not None else -1)
        absent = [lab for lab, c in zip(labels, cols) if c < 0]
        if absent:
            warnings.append(f"not annotated in {path.name} (unknown): {', '.join(absent)}")
        out = np.full((len(keys), len(labels)), np.nan)
        for j, c in enumerate(cols):
            if c >= 0:
                out[:, j] = matrix[:, c]
        file_labels, matrix = labels, out
    if not file_labels:
        raise LabelFileError(path, f"no label columns found (columns: {', '.join(header)})")

    keys, matrix, patients = _combine_duplicates(keys, matrix, patients)
    return LabelTable(path, keys, list(file_labels), matrix,
                      patients if pat is not None else None, layout, warnings)


def _findings_matrix(rows, fcol, label_map, is_nih):
    """Findings layout: every name in the file is a label; a row lacking it is negative."""
    vocab = set(CXR14_LABELS) if is_nih else set()
    seen: dict[str, frozenset | None] = {}  # NIH has ~800 distinct cells in 112k rows
    parsed = []
    for r in rows:
        cell = r[fcol]
        names = seen.get(cell, ())
        if names == ():
            tokens = [x.strip() for x in cell.split("|")]
            names = frozenset(label_map.get(x, x) for x in tokens if x and x != NO_FINDING)
            if not cell.strip():
                names = None  # unknown: no finding list at all
            else:
                vocab |= names
            seen[cell] = names
        parsed.append(names)
    labels = sorted(vocab)
    pos = {lab: j for j, lab in enumerate(labels)}
    matrix = np.zeros((len(rows), len(labels)))
    for i, names in enumerate(parsed):
        if names is None:
            matrix[i] = np.nan
        else:
            for name in names:
                matrix[i, pos[name]] = 1.0
    return labels, matrix


def _columns_matrix(path, header, rows, skip, label_map, wanted):
    """One column per label. With ``wanted``, only those columns (after renames), and a
    cell that is not a recognised value is an error; without, every column whose cells
    all read as label values and that has at least one known value."""
    names = [label_map.get(h, h) for h in header]
    if wanted is not None:
        chosen = []
        for lab in wanted:
            found = _label_lookup([n for j, n in enumerate(names) if j not in skip], lab)
            if found is not None:
                chosen.append(names.index(found))
    else:
        chosen = [j for j in range(len(header)) if j not in skip and header[j]]
    labels, columns = [], []
    for j in chosen:
        vals = np.empty(len(rows))
        bad = None
        for i, r in enumerate(rows):
            v = _label_value(r[j])
            if v is None:
                bad = (i, r[j])
                break
            vals[i] = v
        if bad is not None:
            if wanted is not None:
                raise LabelFileError(
                    path, f"column '{header[j]}' row {bad[0] + 2}: '{bad[1].strip()}' is not a label "
                          "value (1/0, true/false, yes/no; blank, -1 or unknown for unknown)")
            continue  # not a label column (age, box coordinates, ...)
        if wanted is None and np.isnan(vals).all():
            continue
        labels.append(names[j])
        columns.append(vals)
    matrix = np.stack(columns, axis=1) if columns else np.zeros((len(rows), 0))
    return labels, matrix


def _combine_duplicates(keys, matrix, patients):
    """One row per key: the maximum over duplicate rows, ignoring unknown cells."""
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    if len(first) == len(keys):
        return keys, matrix, patients
    order = list(first.values())
    groups = np.array([first[k] for k in keys])
    _, inverse = np.unique(groups, return_inverse=True)
    out = np.full((len(order), matrix.shape[1]), -np.inf)
    np.maximum.at(out, inverse, np.where(np.isnan(matrix), -np.inf, matrix))
    out[np.isneginf(out)] = np.nan
    # np.unique sorts by first-row index, which is the order of ``order``.
    return [keys[i] for i in order], out, [patients[i] for i in order]
