"""Tiny cardiac-like volumes written in the official layouts, for reader and runner tests."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np


def heart_volume(rng: np.random.Generator, shape=(6, 40, 36), scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(Z, Y, X) image and ACDC-convention label: LV disc, MYO ring, RV blob beside it."""
    z, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    image = rng.normal(0.2, 0.02, shape).astype(np.float32)
    label = np.zeros(shape, np.int16)
    cy, cx = h / 2 + rng.uniform(-2, 2), w / 2 + rng.uniform(-2, 2)
    for k in range(z):
        r = (6 - 3 * k / z) * scale
        d = np.hypot(yy - cy, xx - cx)
        label[k][d < r + 3 * scale] = 2
        label[k][d < r] = 3
        label[k][(np.hypot(yy - cy, xx - (cx - r - 7 * scale)) < 3.5 * scale) & (label[k] == 0)] = 1
        image[k][label[k] == 3] = 0.9
        image[k][label[k] == 1] = 0.8
        image[k][label[k] == 2] = 0.4
    return image, label


def write_acdc_nifti(root: Path, subjects: list[str], seed: int = 0, spacing=(1.5, 1.5, 8.0)) -> Path:
    """Official ACDC layout: patientNNN/patientNNN_frameFF[_gt].nii.gz + Info.cfg."""
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    for subject in subjects:
        folder = root / "training" / subject
        folder.mkdir(parents=True, exist_ok=True)
        frames = {"ED": 1, "ES": 9}
        for frame, number in frames.items():
            image, label = heart_volume(rng, scale=1.0 if frame == "ED" else 0.8)
            stem = folder / f"{subject}_frame{number:02d}"
            nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), affine), f"{stem}.nii.gz")
            nib.save(nib.Nifti1Image(label.transpose(2, 1, 0).astype(np.uint8), affine), f"{stem}_gt.nii.gz")
        (folder / "Info.cfg").write_text("ED: 1\nES: 9\nGroup: NOR\nHeight: 180.0\nNbFrame: 20\nWeight: 80.0\n")
    return root


def write_acdc_hdf5(root: Path, subjects: list[str], seed: int = 0, spacing=(1.5, 1.5, 8.0)) -> Path:
    """SSL4MIS layout: patientNNN_frame01/02.h5 with image/label, spacing in info.csv."""
    import h5py

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "info.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["patient", "group", "height", "weight", "ed", "es", "nbframe", "spacing_x", "spacing_y", "spacing_z"])
        for subject in subjects:
            writer.writerow([subject, "NOR", 180, 80, 1, 9, 20, *spacing])
    for subject in subjects:
        for number in (1, 2):
            image, label = heart_volume(rng)
            with h5py.File(root / f"{subject}_frame{number:02d}.h5", "w") as f:
                f["image"] = image
                f["label"] = label.astype(np.uint8)
    return root


def write_mnms(root: Path, codes: list[str], vendor: str = "B", seed: int = 0, spacing=(1.3, 1.3, 9.0)) -> Path:
    """Official M&Ms layout: 4-D <code>_sa.nii.gz + _sa_gt.nii.gz (labels 1 LV, 2 MYO, 3 RV) and the info CSV."""
    rng = np.random.default_rng(seed)
    acdc_to_mnms = np.array([0, 3, 2, 1], np.uint8)
    rows = []
    for code in codes:
        folder = root / "Training" / "Labeled" / code
        folder.mkdir(parents=True, exist_ok=True)
        ed_img, ed_lab = heart_volume(rng)
        es_img, es_lab = heart_volume(rng, scale=0.8)
        image = np.stack([ed_img, ed_img, es_img], axis=-1).transpose(2, 1, 0, 3)
        gt = np.stack([acdc_to_mnms[ed_lab], np.zeros_like(ed_lab, np.uint8), acdc_to_mnms[es_lab]], axis=-1)
        affine = np.diag([*spacing, 1.0])
        nib.save(nib.Nifti1Image(image, affine), str(folder / f"{code}_sa.nii.gz"))
        nib.save(nib.Nifti1Image(gt.transpose(2, 1, 0, 3), affine), str(folder / f"{code}_sa_gt.nii.gz"))
        rows.append([code, f"Vendor{vendor}", vendor, 2, 0, 2])
    with (root / "mnms_info.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["External code", "VendorName", "Vendor", "Centre", "ED", "ES"])
        writer.writerows(rows)
    return root
