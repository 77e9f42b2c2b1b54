"""Generation of the cardiac-synth data set in the official ACDC (site A) and M&Ms (sites B–D) layouts.

Everything follows from (GENERATOR_VERSION, seed, site, subject index); the cache folder is
keyed by version and parameters and appears atomically (generated into a temporary sibling,
renamed when complete).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from robench.benchmark.suites.synthetic import anatomy, imaging

GENERATOR_VERSION = "cardiac-synth-3"
GROUP_ORDER = tuple(anatomy.GROUPS)
MNMS_LABELS = np.array([0, 3, 2, 1], np.uint8)  # ACDC RV=1, MYO=2, LV=3 → M&Ms LV=1, MYO=2, RV=3


@dataclass(frozen=True)
class SubjectJob:
    site: str
    index: int  # subject index within the site
    seed: int
    folder: Path


def _rng(seed: int, site: str, index: int, stream: int) -> np.random.Generator:
    version = int(hashlib.sha256(GENERATOR_VERSION.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(np.random.SeedSequence([version, seed, ord(site), index, stream]))


def _subject(job: SubjectJob) -> anatomy.Subject:
    group = GROUP_ORDER[job.index % len(GROUP_ORDER)]
    return anatomy.sample_subject(_rng(job.seed, job.site, job.index, 0), group)


def mnms_code(seed: int, site: str, index: int) -> str:
    digest = hashlib.sha256(f"{GENERATOR_VERSION}:{seed}:{site}:{index}".encode()).hexdigest().upper()
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return "".join(alphabet[int(digest[2 * i : 2 * i + 2], 16) % len(alphabet)] for i in range(6))


def _affine(site: imaging.SiteParameters, subject: anatomy.Subject) -> np.ndarray:
    return np.diag([site.pixel_spacing, site.pixel_spacing, subject.slice_spacing, 1.0])


def _xyz(volume: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0) if volume.ndim == 3 else (2, 1, 0, 3)))


def _render_phases(job: SubjectJob) -> tuple[anatomy.Subject, imaging.SiteParameters, list, list]:
    subject, site = _subject(job), imaging.SITES[job.site]
    rng = _rng(job.seed, job.site, job.index, 1)
    images, labels = [], []
    for contraction in (0.0, 1.0):
        image, label = imaging.render_frame(subject, site, contraction, rng)
        images.append(imaging.store(image, site))
        labels.append(label)
    return subject, site, images, labels


def write_acdc_subject(job: SubjectJob) -> None:
    """Official ACDC layout: patientNNN_frameFF[_gt].nii.gz for ED and ES, and Info.cfg."""
    subject, site, images, labels = _render_phases(job)
    rng = _rng(job.seed, job.site, job.index, 2)
    name = f"patient{job.index + 1:03d}"
    folder = job.folder / "training" / name
    folder.mkdir(parents=True, exist_ok=True)
    es, nb = int(rng.integers(10, 15)), int(rng.integers(25, 31))
    affine = _affine(site, subject)
    for frame, image, label in ((1, images[0], labels[0]), (es, images[1], labels[1])):
        stem = folder / f"{name}_frame{frame:02d}"
        nib.save(nib.Nifti1Image(_xyz(image), affine), f"{stem}.nii.gz")
        nib.save(nib.Nifti1Image(_xyz(label), affine), f"{stem}_gt.nii.gz")
    height, weight = rng.uniform(155, 195), rng.uniform(55, 110)
    (folder / "Info.cfg").write_text(
        f"ED: 1\nES: {es}\nGroup: {subject.group}\nHeight: {height:.1f}\nNbFrame: {nb}\nWeight: {weight:.1f}\n"
    )


def write_mnms_subject(job: SubjectJob) -> list[str]:
    """Official M&Ms layout: 4-D cine (ED, mid-systole, ES) labelled at ED and ES; returns the CSV row."""
    subject, site, images, labels = _render_phases(job)
    code = mnms_code(job.seed, job.site, job.index)
    folder = job.folder / "Training" / "Labeled" / code
    folder.mkdir(parents=True, exist_ok=True)
    mid = imaging.store((images[0].astype(np.float32) + images[1].astype(np.float32)) / 2, site)
    cine = np.stack([images[0], mid, images[1]], axis=-1)
    gt = np.stack([MNMS_LABELS[labels[0]], np.zeros_like(labels[0]), MNMS_LABELS[labels[1]]], axis=-1)
    affine = _affine(site, subject)
    nib.save(nib.Nifti1Image(_xyz(cine), affine), str(folder / f"{code}_sa.nii.gz"))
    nib.save(nib.Nifti1Image(_xyz(gt), affine), str(folder / f"{code}_sa_gt.nii.gz"))
    return [code, f"Synth{job.site}", site.vendor_code, str(site.centre), "0", "2"]


def generate_cardiac_synth(root: Path, *, seed: int = 0, n_train: int = 10, n_val: int = 5, n_test: int = 20,
                           n_cross: int = 20, workers: int = 2) -> Path:
    """Write the whole suite under `root` (site A in ACDC layout, sites B–D in one M&Ms folder)."""
    root = Path(root)
    site_a = root / "siteA"
    mnms = root / "mnms"
    n_a = n_train + n_val + n_test
    jobs_a = [SubjectJob("A", i, seed, site_a) for i in range(n_a)]
    jobs_m = [SubjectJob(s, i, seed, mnms) for s in ("B", "C", "D") for i in range(n_cross)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(write_acdc_subject, jobs_a))
        rows = list(pool.map(write_mnms_subject, jobs_m))
    ids = [f"patient{i + 1:03d}" for i in range(n_a)]
    splits = {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}
    (site_a / "splits.json").write_text(json.dumps(splits, indent=1))
    mnms.mkdir(parents=True, exist_ok=True)
    with (mnms / "mnms_dataset_info.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["External code", "VendorName", "Vendor", "Centre", "ED", "ES"])
        writer.writerows(rows)
    (root / "generator.json").write_text(json.dumps(
        {"version": GENERATOR_VERSION, "seed": seed, "n_train": n_train, "n_val": n_val, "n_test": n_test,
         "n_cross": n_cross}, indent=1))
    return root


def robench_home() -> Path:
    return Path(os.environ.get("ROBENCH_HOME", Path.home() / ".cache" / "robench")).expanduser()


def ensure_cardiac_synth(cache_dir: Path | None = None, *, seed: int = 0, n_train: int = 10, n_val: int = 5,
                         n_test: int = 20, n_cross: int = 20) -> Path:
    """The cached suite folder, generated first if absent. Safe against interruption and concurrent callers."""
    params = dict(seed=seed, n_train=n_train, n_val=n_val, n_test=n_test, n_cross=n_cross)
    key = hashlib.sha256(json.dumps([GENERATOR_VERSION, params], sort_keys=True).encode()).hexdigest()[:10]
    base = Path(cache_dir) if cache_dir is not None else robench_home() / "synth"
    final = base / f"{GENERATOR_VERSION}-{key}"
    if final.exists():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".{final.name}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        generate_cardiac_synth(tmp, **params)
        os.replace(tmp, final)
    except OSError:
        if not final.exists():  # another process finishing first is fine; anything else is not
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
