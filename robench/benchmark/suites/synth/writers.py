"""Write generated subjects in the official ACDC and M&Ms file layouts.

Why the real layouts: the `cardiac` suite's own readers then load the synthetic data, so
real and synthetic suites share one code path (and the readers get exercised on every
machine, data or not).
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np

ACDC_TO_MNMS = np.array([0, 3, 2, 1], np.uint8)  # ACDC RV=1, MYO=2, LV=3 -> M&Ms LV=1, MYO=2, RV=3
MNMS_INFO_COLUMNS = ("External code", "VendorName", "Vendor", "Centre", "ED", "ES")


def _nifti(array_zyx: np.ndarray, spacing_xyz: tuple[float, float, float], frame_seconds: float | None = None):
    """(Z, Y, X[, T]) array -> NIfTI stored (X, Y, Z[, T]) with affine diag(sx, sy, sz, 1)."""
    axes = (2, 1, 0) if array_zyx.ndim == 3 else (2, 1, 0, 3)
    data = np.ascontiguousarray(np.transpose(array_zyx, axes))
    image = nib.Nifti1Image(data, np.diag([*spacing_xyz, 1.0]))
    zooms = tuple(spacing_xyz) + ((frame_seconds,) if data.ndim == 4 else ())
    image.header.set_zooms(zooms)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_data_dtype(data.dtype)
    return image


def write_acdc_subject(
    folder: Path,
    name: str,
    frames: dict[int, tuple[np.ndarray, np.ndarray]],
    spacing_xyz: tuple[float, float, float],
    info: dict[str, object],
) -> None:
    """`frames` maps the 1-based frame number to (image, ACDC label), both (Z, Y, X)."""
    folder.mkdir(parents=True, exist_ok=True)
    for frame, (image, label) in frames.items():
        stem = f"{name}_frame{frame:02d}"
        nib.save(_nifti(image, spacing_xyz), folder / f"{stem}.nii.gz")
        nib.save(_nifti(label.astype(np.uint8), spacing_xyz), folder / f"{stem}_gt.nii.gz")
    lines = [f"{key}: {value}" for key, value in info.items()]
    (folder / "Info.cfg").write_text("\n".join(lines) + "\n")


def write_mnms_subject(
    folder: Path,
    code: str,
    images: list[np.ndarray],
    labels: dict[int, np.ndarray],
    spacing_xyz: tuple[float, float, float],
    frame_seconds: float,
) -> None:
    """`images`: one (Z, Y, X) volume per cine frame; `labels`: 0-based frame -> ACDC label.
    The ground truth is written in M&Ms label order and is zero at unlabelled frames."""
    folder.mkdir(parents=True, exist_ok=True)
    image = np.stack(images, axis=-1)
    gt = np.zeros(image.shape, np.uint8)
    for frame, label in labels.items():
        gt[..., frame] = ACDC_TO_MNMS[label]
    nib.save(_nifti(image, spacing_xyz, frame_seconds), folder / f"{code}_sa.nii.gz")
    nib.save(_nifti(gt, spacing_xyz, frame_seconds), folder / f"{code}_sa_gt.nii.gz")


def write_mnms_info(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MNMS_INFO_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
