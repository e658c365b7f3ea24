"""Patient-level split: no patient in two splits, deterministic, near the fractions; leakage check."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cxrviewer.training.split import (
    LeakageError,
    SplitError,
    check_leakage,
    check_split_leakage,
    patient_token,
    split_by_patient,
    split_from_values,
)


def _cohort(n_patients=200, seed=1):
    """Patients with 1..12 films each, ~30 % with a finding, like a small NIH extract."""
    rng = np.random.default_rng(seed)
    patients, labels = [], []
    for p in range(n_patients):
        sick = rng.random() < 0.3
        for _ in range(int(rng.integers(1, 13))):
            patients.append(f"{p:08d}")
            labels.append([float(sick and rng.random() < 0.7), float(rng.random() < 0.05)])
    return patients, np.asarray(labels, dtype=np.float32)


def test_patient_split_has_no_leakage_and_is_near_the_fractions():
    patients, labels = _cohort()
    split = split_by_patient(patients, labels, (0.7, 0.15, 0.15), seed=7)
    sets = split.patient_sets(patients)
    assert not (sets["train"] & sets["validation"])
    assert not (sets["train"] & sets["test"])
    assert not (sets["validation"] & sets["test"])
    check_split_leakage(split, patients)
    n = len(patients)
    counts = split.counts(patients)
    assert sum(c["images"] for c in counts.values()) == n
    assert abs(counts["train"]["images"] / n - 0.7) < 0.05
    assert abs(counts["validation"]["images"] / n - 0.15) < 0.05
    assert abs(counts["test"]["images"] / n - 0.15) < 0.05
    # Stratified: every split has films with and without a finding.
    any_finding = labels.max(axis=1) >= 0.5
    for name in ("train", "validation", "test"):
        idx = split.indices(name)
        assert any_finding[idx].any() and (~any_finding[idx]).any()


def test_patient_split_is_deterministic_for_a_seed_and_row_order():
    patients, labels = _cohort()
    a = split_by_patient(patients, labels, seed=3)
    b = split_by_patient(patients, labels, seed=3)
    assert (a.assignment == b.assignment).all()
    c = split_by_patient(patients, labels, seed=4)
    assert (a.assignment != c.assignment).any()
    # Shuffling the rows gives each patient the same split.
    perm = np.random.default_rng(0).permutation(len(patients))
    d = split_by_patient([patients[i] for i in perm], labels[perm], seed=3)
    mapping_a = dict(zip(patients, a.assignment))
    assert all(mapping_a[patients[i]] == s for i, s in zip(perm, d.assignment))


def test_split_rejects_bad_fractions_and_missing_patient_ids():
    with pytest.raises(SplitError, match="add up"):
        split_by_patient(["a", "b"], None, (0.5, 0.2, 0.2))
    with pytest.raises(SplitError, match="no patient id"):
        split_by_patient(["a", ""], None)


def test_leakage_check_fails_loudly_on_a_user_split_with_a_shared_patient(caplog):
    patients = ["00000165", "00000165", "00000200", "00000300", "00000300"]
    split = split_from_values(["train", "Valid", "train", "test", "TEST"])
    assert split.assignment.tolist() == ["train", "validation", "train", "test", "test"]
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(LeakageError) as info:
            check_split_leakage(split, patients)
    msg = str(info.value)
    assert "1 patient(s)" in msg and "train & validation: 1" in msg
    # The ID itself is never in the message (it may end up in a log); the hash is.
    assert "00000165" not in msg and patient_token("00000165") in msg
    assert info.value.patients == ["00000165"]
    assert "00000165" not in caplog.text


def test_leakage_check_passes_a_clean_user_split_and_counts_pairs():
    check_leakage({"train": ["a", "a", "b"], "validation": ["c"], "test": ["d"]})
    with pytest.raises(LeakageError) as info:
        check_leakage({"train": ["a", "b", "c"], "validation": ["a", "b"], "test": ["a", "c"]})
    assert info.value.overlaps == {("train", "validation"): 2, ("train", "test"): 2, ("validation", "test"): 1}


def test_user_split_names_are_checked():
    with pytest.raises(SplitError, match="unknown split name 'holdin'"):
        split_from_values(["train", "holdin"])
    with pytest.raises(SplitError, match="no image is marked train"):
        split_from_values(["test", "validation"])
    s = split_from_values(["train", "", "test"])
    assert s.indices("train").tolist() == [0] and s.notes


def test_tiny_cohort_still_fills_every_split():
    split = split_by_patient(["p1", "p2", "p3", "p4", "p5", "p6"], None, seed=0)
    for name in ("train", "validation", "test"):
        assert len(split.indices(name)) > 0


def test_rare_findings_reach_every_split_when_enough_patients_have_them():
    patients, labels = _cohort(n_patients=300, seed=5)
    # A rare finding: 4 patients, 1-3 films each.
    rare = np.zeros((len(patients), 1), np.float32)
    owners = sorted(set(patients))[:4]
    rare[[i for i, p in enumerate(patients) if p in owners]] = 1.0
    y = np.concatenate([labels, rare], axis=1)
    split = split_by_patient(patients, y, (0.7, 0.15, 0.15), seed=11)
    for name in ("train", "validation", "test"):
        assert y[split.indices(name), 2].sum() > 0, name
    check_split_leakage(split, patients)
