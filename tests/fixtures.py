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


def write_mnms(root: Path, codes: list[str], vendor: str | list[str] = "B", seed: int = 0, spacing=(1.3, 1.3, 9.0)) -> Path:
    """Official M&Ms layout: 4-D <code>_sa.nii.gz + _sa_gt.nii.gz (labels 1 LV, 2 MYO, 3 RV) and the info CSV.

    `vendor`: one vendor for every code, or one per code."""
    vendors = [vendor] * len(codes) if isinstance(vendor, str) else list(vendor)
    rng = np.random.default_rng(seed)
    acdc_to_mnms = np.array([0, 3, 2, 1], np.uint8)
    rows = []
    for code, vendor in zip(codes, vendors):
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



SUNNYBROOK_BOXES = {"ED": (9.5, 5.5, 19.5, 11.5), "ES": (11.5, 6.5, 17.5, 10.5), "epi": (6.5, 2.5, 22.5, 14.5)}


def _rectangle_contour(x0: float, y0: float, x1: float, y1: float, per_side: int = 4) -> str:
    """A Sunnybrook contour file's text: one 'x y' point per line, x = column, y = row."""
    t = np.linspace(0, 1, per_side, endpoint=False)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 - (y1 - y0) * t])
    return "".join(f"{x:.2f} {y:.2f}\n" for x, y in zip(xs, ys))


def _write_cine_dicom(path: Path, series: tuple[str, int, str], instance: int, location: int, trigger: float,
                      lv_box, shape) -> None:
    """One GE-like cine frame; the pixels inside `lv_box` (x0, y0, x1, y1, pixel centres) are 1000, the rest 100."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer = "MR", "GE MEDICAL SYSTEMS"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series
    ds.InstanceNumber, ds.TriggerTime = instance, f"{trigger:.3f}"
    ds.SliceLocation, ds.ImagePositionPatient = f"{-30.0 - 10 * location:.3f}", [0.0, 0.0, -30.0 - 10 * location]
    ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = [1.25, 1.5], "8", "10"
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    pixels = np.full(shape, 100, np.int16)
    if lv_box is not None:
        x0, y0, x1, y1 = (int(v + 0.5) for v in lv_box)
        pixels[y0:y1, x0:x1] = 1000
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_sunnybrook(
    root: Path, layout: str = "original",
    subjects: tuple[tuple[str, str], ...] = (("SCD0000101", "SC-HF-I-1"), ("SCD0000201", "SC-HF-I-2")),
    id_table: bool = True, shape=(32, 40), phases: int = 4, locations: int = 3,
) -> Path:
    """Sunnybrook cine DICOMs with rectangular contours, in the `original` or `redistributed` layout.

    original: SCD_DeidentifiedImages/<SCD id>/CINESAX_300/IM-0003-NNNN.dcm (every frame) beside a decoy
    CINELAX_301 series with the same instance numbers, SCD_ManualContours/<SC-HF-I-01>/contours-manual/
    IRCCI-expert/ (plus an ignored p1 contour), scd_patientdata.csv.
    redistributed: dicoms/<SCD id>/<n>.dcm (contoured frames only), contourfiles/<SC-HF-I-1>/{i,o}-contours/,
    link.csv.
    Instance = location * phases + frame + 1. ED is the last frame (as in the real data), ES frame 1; the
    last location (apex) has endocardium only, at both phases. ED LV: columns 10-19, rows 6-11 (60 px);
    epicardium: columns 7-22, rows 3-14 (192 px, so MYO 132); ES LV: columns 12-17, rows 7-10 (24 px).
    """
    from pydicom.uid import generate_uid

    frames = {phases - 1: "ED", 1: "ES"}
    for subject, original in subjects:
        group, number = original.rsplit("-", 1)
        if layout == "original":
            image_dir = root / "SCD_DeidentifiedImages" / subject / "CINESAX_300"
            folder = root / "SCD_ManualContours" / f"{group}-{int(number):02d}" / "contours-manual" / "IRCCI-expert"
            contour_dirs = {"i": folder, "o": folder}
        else:
            image_dir = root / "dicoms" / subject
            contour_dirs = {k: root / "contourfiles" / original / f"{k}-contours" for k in "io"}
        sax = (generate_uid(), 300, "CINESAX")
        for location in range(locations):
            for frame in range(phases):
                instance, phase = location * phases + frame + 1, frames.get(frame)
                trigger = frame * 700 / phases + location
                name = f"IM-0003-{instance:04d}.dcm" if layout == "original" else f"{instance}.dcm"
                if layout == "original" or phase is not None:
                    _write_cine_dicom(image_dir / name, sax, instance, location, trigger, SUNNYBROOK_BOXES.get(phase), shape)
                if phase is None:
                    continue
                contours = {"i": SUNNYBROOK_BOXES[phase]}
                if phase == "ED" and location < locations - 1:
                    contours["o"] = SUNNYBROOK_BOXES["epi"]
                if layout == "original" and phase == "ED":
                    contours["p1"] = (12.5, 7.5, 13.5, 8.5)
                for kind, box in contours.items():
                    folder = contour_dirs.get(kind, contour_dirs["i"])
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / f"IM-0001-{instance:04d}-{kind}contour-manual.txt").write_text(_rectangle_contour(*box))
        if layout == "original":
            lax = (generate_uid(), 301, "CINELAX")
            for instance in range(1, phases * locations + 1):
                path = image_dir.parent / "CINELAX_301" / f"IM-0004-{instance:04d}.dcm"
                _write_cine_dicom(path, lax, instance, 0, 0.0, None, shape)
    if id_table:
        header, name = (("PatientID", "OriginalID"), "scd_patientdata.csv") if layout == "original" else (("patient_id", "original_id"), "link.csv")
        with (root / name).open("w", newline="") as f:
            csv.writer(f).writerows([header, *subjects])
    return root


def blob_volume(rng: np.random.Generator, shape=(32, 28, 6), classes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) file-order image and label: a bright head-like disc with `classes` small blobs in it."""
    x, y, z = shape
    xx, yy = np.mgrid[:x, :y]
    label = np.zeros(shape, np.uint8)
    for c in range(1, classes + 1):
        cx, cy = rng.uniform(0.35, 0.65) * x, rng.uniform(0.35, 0.65) * y
        blob = np.hypot(xx - cx, yy - cy) < 3 + c
        for k in range(1, z - 1):
            label[..., k][blob & (label[..., k] == 0)] = c
    head = (np.hypot(xx - x / 2, yy - y / 2) < min(x, y) / 2.2).astype(np.float32)
    image = 100 * head[..., None] + 60 * label + rng.normal(0, 5, shape)
    return image.astype(np.float32), label


def _nifti(data: np.ndarray, path: Path, spacing=(1.0, 1.0, 1.0)) -> None:
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))


def write_nnunet_v2(root: Path, cases: list[str], channels=("T1",), labels=None, seed: int = 0, spacing=(1.0, 1.0, 1.0),
                    shape=(32, 28, 6)) -> Path:
    """An nnU-Net v2 raw data set: dataset.json, imagesTr/<case>_000c.nii.gz per channel, labelsTr/<case>.nii.gz."""
    import json

    labels = labels or {"background": 0, "lesion": 1}
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    for case in cases:
        image, label = blob_volume(rng, shape, classes=len(labels) - 1)
        for c in range(len(channels)):
            _nifti(image * (1 + c), root / "imagesTr" / f"{case}_{c:04d}.nii.gz", spacing)
        _nifti(label, root / "labelsTr" / f"{case}.nii.gz", spacing)
    spec = {"channel_names": {str(i): n for i, n in enumerate(channels)}, "labels": labels,
            "numTraining": len(cases), "file_ending": ".nii.gz", "name": root.name}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def write_msd(root: Path, cases: list[str], modalities=("MRI",), seed: int = 0, shape=(32, 28, 6)) -> Path:
    """An MSD (nnU-Net v1) data set; several modalities make 4-D images (X, Y, Z, C)."""
    import json

    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    for case in cases:
        image, label = blob_volume(rng, shape, classes=2)
        data = image if len(modalities) == 1 else np.stack([image * (1 + c) for c in range(len(modalities))], -1)
        _nifti(data, root / "imagesTr" / f"{case}.nii.gz")
        _nifti(label, root / "labelsTr" / f"{case}.nii.gz")
    spec = {"name": root.name, "modality": {str(i): m for i, m in enumerate(modalities)},
            "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}, "numTraining": len(cases),
            "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases]}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root
