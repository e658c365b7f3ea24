"""Header and size checks that turn doubtful films into warnings a reader must see."""

from __future__ import annotations

from cxrviewer.io.film import FilmMeta

MIN_SIDE = 256  # px; below this a chest film has too little detail for the model or a reader

# CR and DX are the DICOM modalities of projection radiographs; "DR" is not a DICOM
# modality but some exporters write it for digital radiography.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR"})
# Substrings: "PORTABLE CHEST", "CHEST_THORAX", "THORAX PA" all count as chest.
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG")
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT", "XTABLE LATERAL"})
# PatientPosition (0018,5100) defined terms (PS3.3 C.7.3.1.1.2) plus the projection and
# posture words radiography exporters put there (the NIH DICOMs use PA/AP).
PLAUSIBLE_PATIENT_POSITIONS = frozenset(
    {
        "HFP", "HFS", "HFDR", "HFDL", "FFP", "FFS", "FFDR", "FFDL",
        "LFP", "LFS", "RFP", "RFS", "AFDR", "AFDL", "PFDR", "PFDL",
        "PA", "AP", "LL", "RL", "LAT", "LATERAL",
        "ERECT", "UPRIGHT", "STANDING", "SITTING", "SEMI-ERECT", "SUPINE", "PRONE",
        "DECUBITUS", "LLD", "RLD",
    }
)  # fmt: skip
MODALITY_NAMES = {
    "CT": "computed tomography",
    "MR": "magnetic resonance",
    "US": "ultrasound",
    "NM": "nuclear medicine",
    "PT": "PET",
    "MG": "mammography",
    "XA": "angiography",
    "RF": "fluoroscopy",
    "OT": "other",
    "SC": "secondary capture",
}


def _norm(value: str | None) -> str:
    return " ".join((value or "").replace("_", " ").upper().split())


def film_warnings(meta: FilmMeta) -> list[str]:
    """Warnings for a film's header and size; empty when nothing is doubtful.

    Each warning is one line, phrased for the reader, saying what is wrong and why it
    matters for the findings shown beside the film.
    """
    warnings: list[str] = []
    modality = _norm(meta.modality)
    if modality and modality not in RADIOGRAPH_MODALITIES:
        kind = f" ({MODALITY_NAMES[modality]})" if modality in MODALITY_NAMES else ""
        warnings.append(
            f"modality {modality}{kind} is not a chest radiograph (CR/DX): "
            "findings are not meaningful for it"
        )
    body_part = _norm(meta.body_part)
    if body_part and not any(part in body_part for part in CHEST_BODY_PARTS):
        warnings.append(
            f"body part is {meta.body_part.strip()}, not chest: "
            "the model was trained on chest films only"
        )
    view = _norm(meta.view_position)
    position = _norm(meta.patient_position)
    if _is_lateral(view) or (not view and _is_lateral(position)):
        shown = view or position
        warnings.append(
            f"lateral view ({shown}): the model reads frontal (PA/AP) chest films only"
        )
    if position and position not in PLAUSIBLE_PATIENT_POSITIONS:
        warnings.append(
            f"implausible patient position {meta.patient_position.strip()!r}: "
            "header may be wrong, check orientation and projection"
        )
    if min(meta.rows, meta.columns) < MIN_SIDE:
        warnings.append(
            f"image is only {meta.columns}x{meta.rows} px (under {MIN_SIDE} px): "
            "too little detail for reliable findings"
        )
    return warnings


def _is_lateral(value: str) -> bool:
    return bool(value) and (value in LATERAL_VIEWS or "LATERAL" in value)
