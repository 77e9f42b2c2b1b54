"""ACDC readers for both layouts: the official NIfTI release and the SSL4MIS HDF5 files.

Official: `.../patientNNN/patientNNN_frameFF.nii.gz` + `_gt.nii.gz` + `Info.cfg` (ED/ES frame
numbers). HDF5: `patientNNN_frame01.h5` (ED) / `_frame02.h5` (ES) with keys `image`, `label`,
and an `info.csv` beside them for the spacing, which the HDF5 files do not carry.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from robench.benchmark.suites.base import Case, CaseRef, check_case
from robench.benchmark.suites.nifti import load_nifti, xyz_to_zyx
from robench.errors import DataError
from robench.labels import NUM_CARDIAC_CLASSES

Layout = Literal["nifti", "hdf5"]
FRAMES = ("ED", "ES")
INFO_CSV_COLUMNS = ("patient", "spacing_x", "spacing_y", "spacing_z")


@dataclass(frozen=True)
class AcdcSubject:
    subject: str  # "patient007"
    layout: Layout
    files: dict[str, tuple[Path, Path | None]]  # frame → (image file, label file or None for HDF5)
    group: str
    spacing: tuple[float, float, float] | None  # (z, y, x) when known without opening a volume


def detect_layout(root: Path) -> Layout:
    if not root.exists():
        raise DataError(f"{root}: data root does not exist; pass the folder that holds the ACDC patients")
    if next(root.glob("*.h5"), None) is not None:
        return "hdf5"
    if next(_info_cfgs(root), None) is not None:
        return "nifti"
    raise DataError(
        f"{root}: unknown ACDC layout; expected patientNNN/Info.cfg folders (official NIfTI release) "
        "or patientNNN_frame01.h5 files with an info.csv (SSL4MIS HDF5)"
    )


def _info_cfgs(root: Path):
    # the official archive nests patients under training/ and testing/ (or database/...)
    for pattern in ("patient*/Info.cfg", "*/patient*/Info.cfg", "*/*/patient*/Info.cfg"):
        yield from root.glob(pattern)


def discover_acdc(root: Path) -> dict[str, AcdcSubject]:
    """All subjects under `root`, by id, in either layout."""
    layout = detect_layout(root)
    subjects = _discover_hdf5(root) if layout == "hdf5" else _discover_nifti(root)
    if not subjects:
        raise DataError(f"{root}: no ACDC subjects found")
    return subjects


def _parse_info_cfg(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is not part of the first key
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    info = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    for key in FRAMES:
        if key not in info or not info[key].isdigit():
            raise DataError(f"{path}: missing or invalid '{key}:' line; an ACDC Info.cfg names the ED and ES frames")
    return info


def _discover_nifti(root: Path) -> dict[str, AcdcSubject]:
    subjects = {}
    for cfg in sorted(_info_cfgs(root)):
        folder = cfg.parent
        if folder.name in subjects:
            raise DataError(
                f"{root}: {folder.name} is there twice ({subjects[folder.name].files['ED'][0].parent} and {folder}); "
                "keep one copy of each patient"
            )
        info = _parse_info_cfg(cfg)
        files = {}
        for frame in FRAMES:
            stem = f"{folder.name}_frame{int(info[frame]):02d}"
            files[frame] = (folder / f"{stem}.nii.gz", folder / f"{stem}_gt.nii.gz")
        subjects[folder.name] = AcdcSubject(folder.name, "nifti", files, info.get("Group", ""), None)
    return subjects


def _read_info_csv(root: Path) -> dict[str, dict[str, str]]:
    path = root / "info.csv"
    if not path.is_file():
        raise DataError(
            f"{path}: missing. HDF5 ACDC files carry no voxel spacing; put an info.csv with columns "
            f"{','.join(INFO_CSV_COLUMNS)} beside them"
        )
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets save a byte-order mark
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__}); save it as UTF-8 CSV") from None
    missing = [c for c in INFO_CSV_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise DataError(f"{path}: needs columns {', '.join(INFO_CSV_COLUMNS)}; missing {', '.join(missing) or 'all rows'}")
    by_patient: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        patient = (row.get("patient") or "").strip()
        if patient in by_patient:
            raise DataError(f"{path}: {patient} appears twice (a second row at line {number}); keep one row per patient")
        by_patient[patient] = row
    return by_patient


def _discover_hdf5(root: Path) -> dict[str, AcdcSubject]:
    info = _read_info_csv(root)
    by_subject: dict[str, dict[str, tuple[Path, None]]] = {}
    for path in sorted(root.glob("patient*_frame0[12].h5")):
        subject, _, frame_part = path.stem.partition("_frame")
        by_subject.setdefault(subject, {})["ED" if frame_part == "01" else "ES"] = (path, None)
    subjects = {}
    for subject, files in by_subject.items():
        row = info.get(subject)
        if row is None:
            raise DataError(f"{root / 'info.csv'}: no row for {subject}; its spacing is unknown")
        try:
            spacing = (float(row["spacing_z"]), float(row["spacing_y"]), float(row["spacing_x"]))
        except ValueError:
            raise DataError(f"{root / 'info.csv'}: spacing of {subject} is not a number") from None
        subjects[subject] = AcdcSubject(subject, "hdf5", files, row.get("group", ""), spacing)
    return subjects


def case_refs(subject: AcdcSubject, meta: dict[str, object]) -> list[CaseRef]:
    """One lazy case per frame present."""
    refs = []
    for frame in FRAMES:
        if frame not in subject.files:
            continue
        case_id = f"{subject.subject}_{frame}"
        case_meta = {**meta, "subject": subject.subject, "frame": frame, "group": subject.group}
        refs.append(CaseRef(case_id, functools.partial(load_acdc_case, subject, frame, case_meta), case_meta))
    return refs


def load_acdc_case(subject: AcdcSubject, frame: str, meta: dict[str, object]) -> Case:
    image_path, label_path = subject.files[frame]
    case_id = f"{subject.subject}_{frame}"
    if subject.layout == "hdf5":
        image, label = _read_h5(image_path)
        assert subject.spacing is not None
        case = Case(case_id, image, label, subject.spacing, {**meta, "spacing_source": "info.csv"}, None)
        return check_case(case, str(image_path), NUM_CARDIAC_CLASSES, spacing_source=str(image_path.parent / "info.csv"))
    data, zooms, affine = load_nifti(image_path)
    label_data = None
    if label_path is not None and label_path.exists():
        label_data, _, _ = load_nifti(label_path)
    if data.ndim != 3:
        raise DataError(f"{image_path}: expected a 3-D volume, found shape {data.shape}")
    if label_data is not None and label_data.shape != data.shape:
        raise DataError(f"{label_path}: label shape {label_data.shape} does not match image shape {data.shape}")
    spacing = (zooms[2], zooms[1], zooms[0])
    label = None if label_data is None else _as_labels(xyz_to_zyx(label_data), label_path)
    case = Case(case_id, xyz_to_zyx(data).astype(np.float32), label, spacing, {**meta, "spacing_source": "header"}, affine)
    return check_case(case, str(image_path), NUM_CARDIAC_CLASSES, label_source=str(label_path))


def _as_labels(label: np.ndarray, path: Path | None) -> np.ndarray:
    if not np.all(np.isfinite(label)) or not np.allclose(label, np.round(label)):
        raise DataError(f"{path}: label values are not integers; is this an image rather than a segmentation?")
    return label.astype(np.int16)


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "image" not in f:
                raise DataError(f"{path}: no 'image' dataset; expected keys 'image' and 'label' (SSL4MIS layout)")
            image = np.asarray(f["image"], dtype=np.float32)
            label = np.asarray(f["label"]) if "label" in f else None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read HDF5 ({exc.__class__.__name__}: {exc}); re-download or remove this file") from None
    if label is not None and label.shape != image.shape:
        raise DataError(f"{path}: label shape {label.shape} does not match image shape {image.shape}")
    return image, None if label is None else _as_labels(label, path)
