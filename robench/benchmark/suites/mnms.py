"""M&Ms reader (official layout): 4-D `<code>_sa.nii.gz` + `<code>_sa_gt.nii.gz` and the information CSV.

Labels are remapped from the M&Ms order (1 LV, 2 MYO, 3 RV) to the ACDC order used inside
robench. The CSV gives vendor, centre and the 0-based ED/ES frame indices.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robench.benchmark.suites.base import Case, CaseRef, check_case
from robench.benchmark.suites.nifti import load_nifti, xyz_to_zyx
from robench.errors import DataError
from robench.labels import MNMS_TO_ACDC, NUM_CARDIAC_CLASSES

CSV_KEY = "External code"


@dataclass(frozen=True)
class MnmsSubject:
    code: str
    image: Path
    label: Path
    vendor: str
    vendor_name: str
    centre: str
    frames: dict[str, int]  # "ED"/"ES" → 0-based index into the 4th axis


def _find_info_csv(root: Path) -> Path:
    for path in sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv")):
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
        if CSV_KEY in [h.strip() for h in header]:
            return path
    raise DataError(
        f"{root}: no M&Ms information CSV (a .csv with an '{CSV_KEY}' column) found; "
        "it is part of the M&Ms release and gives vendor, centre and ED/ES frames"
    )


def discover_mnms(root: Path) -> dict[str, MnmsSubject]:
    if not root.exists():
        raise DataError(f"{root}: M&Ms root does not exist")
    csv_path = _find_info_csv(root)
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        rows = {row[CSV_KEY].strip(): {k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)}
    subjects = {}
    for image in sorted(root.rglob("*_sa.nii.gz")):
        code = image.name[: -len("_sa.nii.gz")]
        label = image.with_name(f"{code}_sa_gt.nii.gz")
        if not label.exists():
            continue  # unlabelled (e.g. the unlabelled training part): nothing to evaluate
        row = rows.get(code)
        if row is None:
            raise DataError(f"{csv_path}: no row for subject {code} ({image}); the CSV and the folders disagree")
        try:
            frames = {"ED": int(row["ED"]), "ES": int(row["ES"])}
        except (KeyError, ValueError):
            raise DataError(f"{csv_path}: ED/ES of {code} missing or not integers") from None
        subjects[code] = MnmsSubject(
            code, image, label, row.get("Vendor", ""), row.get("VendorName", ""), row.get("Centre", ""), frames
        )
    if not subjects:
        raise DataError(f"{root}: no labelled M&Ms subjects (<code>_sa.nii.gz with <code>_sa_gt.nii.gz) found")
    return subjects


def case_refs(subject: MnmsSubject, meta: dict[str, object]) -> list[CaseRef]:
    refs = []
    for frame in ("ED", "ES"):
        case_meta = {
            **meta, "subject": subject.code, "frame": frame, "vendor": subject.vendor,
            "site": subject.centre, "vendor_name": subject.vendor_name,
        }
        refs.append(CaseRef(f"{subject.code}_{frame}", functools.partial(load_mnms_case, subject, frame, case_meta), case_meta))
    return refs


@functools.lru_cache(maxsize=2)
def _load_4d(image: Path, label: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], np.ndarray]:
    data, zooms, affine = load_nifti(image)
    gt, _, _ = load_nifti(label)
    if data.ndim != 4:
        raise DataError(f"{image}: expected a 4-D cine volume (x, y, z, t), found shape {data.shape}")
    if gt.shape != data.shape:
        raise DataError(f"{label}: label shape {gt.shape} does not match image shape {data.shape}")
    return data, gt, zooms, affine


def load_mnms_case(subject: MnmsSubject, frame: str, meta: dict[str, object]) -> Case:
    data, gt, zooms, affine = _load_4d(subject.image, subject.label)
    t = subject.frames[frame]
    if not 0 <= t < data.shape[3]:
        raise DataError(f"{subject.image}: {frame} frame {t} outside the {data.shape[3]} frames of the volume")
    label = xyz_to_zyx(gt[..., t])
    if not np.allclose(label, np.round(label)):
        raise DataError(f"{subject.label}: label values are not integers")
    label = label.astype(np.int16)
    values = np.unique(label)
    if values.min() < 0 or values.max() > 3:
        raise DataError(f"{subject.label}: unexpected label values {values.tolist()}; expected 0..3")
    remap = np.array([MNMS_TO_ACDC[i] for i in range(4)], dtype=np.int16)
    spacing = (zooms[2], zooms[1], zooms[0])
    case = Case(
        f"{subject.code}_{frame}", xyz_to_zyx(data[..., t]).astype(np.float32), remap[label], spacing,
        {**meta, "spacing_source": "header"}, affine,
    )
    return check_case(case, str(subject.image), NUM_CARDIAC_CLASSES)
