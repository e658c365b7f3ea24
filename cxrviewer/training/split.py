"""Patient-level train/validation/test splits and the check that no patient is in two.

A patient's films look alike (same ribs, same devices, same heart), so a model scored on a
patient it trained on looks better than it is. Splits are therefore made over patients,
never over images, and every split (ours or the user's) goes through ``check_leakage``
before training.

Patient IDs are identifiers: messages give counts, split names and short hashes, never
the IDs themselves. ``LeakageError.patients`` holds the raw IDs for a UI that shows them
on the user's explicit request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "validation", "test")
_ALIASES = {
    "train": "train", "training": "train", "trn": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "tune": "validation",
    "test": "test", "testing": "test", "tst": "test", "holdout": "test",
}


class SplitError(ValueError):
    """A split cannot be made or read (bad fractions, unknown split names, empty train)."""


class LeakageError(SplitError):
    """At least one patient has films in more than one split."""

    def __init__(self, overlaps: dict[tuple[str, str], int], patients: list[str]):
        self.overlaps = dict(overlaps)
        self.patients = list(patients)  # raw IDs: for explicit display only, never log them
        pairs = ", ".join(f"{a} & {b}: {n}" for (a, b), n in sorted(self.overlaps.items()))
        shown = ", ".join(patient_token(p) for p in self.patients[:5])
        more = f" and {len(self.patients) - 5} more" if len(self.patients) > 5 else ""
        super().__init__(
            f"patient leakage: {len(self.patients)} patient(s) have films in more than one split "
            f"({pairs}); hashed patient ids {shown}{more}. Split by patient so each patient's "
            "films are in exactly one split."
        )


def patient_token(patient_id: str) -> str:
    """A short stable hash that lets a user match a patient without the ID being logged."""
    return "#" + hashlib.sha256(str(patient_id).encode("utf-8")).hexdigest()[:10]


def normalise_split_name(value) -> str | None:
    """'Valid', 'VAL', 'validation' -> 'validation'; blank -> None; unknown -> SplitError."""
    text = "" if value is None else str(value).strip().lower()
    if text in ("", "nan", "none"):
        return None
    try:
        return _ALIASES[text]
    except KeyError:
        raise SplitError(
            f"unknown split name '{value}' (use train, validation or test)"
        ) from None


@dataclass
class Split:
    """Which split each image of a dataset belongs to ('' = left out)."""

    assignment: np.ndarray  # (n,) object array of split names or ''
    how: str  # one line for reports, e.g. "patient-level, seed 42, 70/15/15, stratified"
    notes: list[str] = field(default_factory=list)

    def indices(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.assignment == name)

    def patient_sets(self, patients: Sequence[str]) -> dict[str, set[str]]:
        pats = np.asarray(patients, dtype=object)
        return {name: set(pats[self.indices(name)].tolist()) for name in SPLITS}

    def counts(self, patients: Sequence[str]) -> dict[str, dict[str, int]]:
        sets = self.patient_sets(patients)
        return {name: {"images": int(len(self.indices(name))), "patients": len(sets[name])}
                for name in SPLITS}

    def subset(self, keep: np.ndarray) -> "Split":
        """The same split for a dataset reduced to the rows ``keep`` (bool mask or indices)."""
        return Split(self.assignment[keep], self.how, list(self.notes))


def check_leakage(splits: Mapping[str, Iterable[str]]) -> None:
    """Raise LeakageError when a patient ID appears under two split names.

    ``splits`` maps a split name to the patient IDs of its images (repeats are fine).
    """
    owners: dict[str, list[str]] = {}
    for name, patients in splits.items():
        for p in set(patients):
            owners.setdefault(p, []).append(name)
    leaked = sorted(p for p, names in owners.items() if len(names) > 1)
    if not leaked:
        return
    overlaps: dict[tuple[str, str], int] = {}
    for p in leaked:
        names = sorted(owners[p], key=lambda n: SPLITS.index(n) if n in SPLITS else 99)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                overlaps[(a, b)] = overlaps.get((a, b), 0) + 1
    raise LeakageError(overlaps, leaked)


def check_split_leakage(split: Split, patients: Sequence[str]) -> None:
    check_leakage(split.patient_sets(patients))


def _validated_fractions(fractions) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or fr[0] <= 0:
        raise SplitError("split fractions need three non-negative numbers (train, validation, test) with train > 0")
    total = sum(fr)
    if abs(total - 1.0) > 1e-6:
        raise SplitError(f"split fractions add up to {total:g}, not 1")
    return fr  # type: ignore[return-value]


def split_by_patient(
    patients: Sequence[str],
    labels: np.ndarray | None = None,
    fractions=(0.7, 0.15, 0.15),
    seed: int = 0,
    stratify: bool = True,
) -> Split:
    """Assign every patient (with all their films) to train, validation or test.

    Deterministic for a seed and independent of the row order. With ``stratify``, patients
    with a finding are placed first, rarest finding first, each into the split furthest
    below its share of that finding's positive films; then the patients without a finding
    (and those with no known label) are shuffled and placed by their share of films. Image
    counts land near the fractions even when some patients have dozens of films.
    """
    fr = _validated_fractions(fractions)
    pats = np.asarray([str(p) for p in patients], dtype=object)
    if len(pats) == 0:
        raise SplitError("no images to split")
    if any(p == "" for p in pats):
        raise SplitError("some images have no patient id; a patient-level split needs one for every image")
    uniq, inverse = np.unique(pats, return_inverse=True)  # sorted: row order does not matter
    n_images = np.bincount(inverse, minlength=len(uniq))

    rng = np.random.default_rng(seed)
    fr_arr = np.asarray(fr)
    assigned = np.full(len(uniq), -1, dtype=np.int64)
    stratum = np.zeros(len(uniq), dtype=np.int64)
    if stratify and labels is not None:
        y = np.asarray(labels, dtype=np.float64).reshape(len(pats), -1)
        positive = (np.nan_to_num(y) >= 0.5).astype(np.float64)
        pos_img = np.zeros((len(uniq), y.shape[1]))
        np.add.at(pos_img, inverse, positive)  # positive films per patient and finding
        # Iterative stratification (Sechidis et al. 2011) over patients: the rarest finding
        # first, its patients spread over the splits by that finding's deficit, so a
        # finding with a handful of patients still reaches validation and test.
        n_pat_pos = (pos_img > 0).sum(axis=0)
        have_img = np.zeros(3)
        for j in sorted(np.flatnonzero(n_pat_pos), key=lambda c: (n_pat_pos[c], c)):
            members = rng.permutation(np.flatnonzero((pos_img[:, j] > 0) & (assigned < 0)))
            target = fr_arr * pos_img[:, j].sum()
            have = np.array([pos_img[assigned == k, j].sum() for k in range(3)])
            for m in members:
                img_deficit = fr_arr * n_images.sum() - have_img
                k = int(np.argmax((target - have) + 1e-6 * img_deficit))
                assigned[m] = k
                have[k] += pos_img[m, j]
                have_img[k] += n_images[m]
        known = np.zeros(len(uniq), dtype=bool)
        np.logical_or.at(known, inverse, ~np.all(np.isnan(y), axis=1))
        # The rest: 0 = no finding, 2 = nothing known about this patient.
        stratum = np.where(known, 0, 2)

    for s_ in np.unique(stratum[assigned < 0]):
        members = rng.permutation(np.flatnonzero((stratum == s_) & (assigned < 0)))
        target = fr_arr * n_images[members].sum()
        have = np.zeros(3)
        for m in members:
            k = int(np.argmax(target - have))
            assigned[m] = k
            have[k] += n_images[m]
    patient_split = np.asarray(SPLITS, dtype=object)[assigned]

    split = Split(
        patient_split[inverse].astype(object),
        f"patient-level, seed {seed}, {round(fr[0] * 100)}/{round(fr[1] * 100)}/{round(fr[2] * 100)}"
        + (", stratified by finding" if stratify and labels is not None else ""),
    )
    for name, f in zip(SPLITS, fr):
        if f > 0 and len(split.indices(name)) == 0:
            split.notes.append(f"{name} split is empty: only {len(uniq)} patient(s) to share")
    check_split_leakage(split, pats)  # by construction; a cheap guard against future edits
    return split


def split_from_values(values: Sequence, how: str = "user-supplied split column") -> Split:
    """A split given per image by the user (CSV column or folder name); blank = left out.

    The names are normalised (valid/val -> validation) and the result is NOT trusted:
    callers run ``check_split_leakage`` on it like on any other split.
    """
    names = [normalise_split_name(v) for v in values]
    assignment = np.asarray([n or "" for n in names], dtype=object)
    split = Split(assignment, how)
    if len(split.indices("train")) == 0:
        raise SplitError(f"{how}: no image is marked train")
    left_out = int(np.sum(assignment == ""))
    if left_out:
        split.notes.append(f"{left_out} image(s) have no split value and are left out")
    return split
