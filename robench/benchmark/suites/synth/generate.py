"""Generate the `cardiac-synth` suite on disk, and cache it.

Why per-subject seeds: every subject is drawn from its own generator seeded by
(generator version, seed, site, subject index), so the output does not depend on the number
of worker processes or their scheduling, and a single subject can be regenerated alone.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from robench.benchmark.suites.synth.anatomy import sample_subject
from robench.benchmark.suites.generated import ensure_generated, remove_abandoned
from robench.home import robench_home
from robench.benchmark.suites.synth.imaging import render_subject
from robench.benchmark.suites.synth.parameters import (
    GENERATOR_VERSION,
    GROUP_PARAMETERS,
    GROUPS,
    SITE_INDEX,
    SITE_PARAMETERS,
)
from robench.benchmark.suites.synth.writers import write_acdc_subject, write_mnms_info, write_mnms_subject

TRAINING_SITE = "A"
CROSS_SITES = ("B", "C", "D")
MANIFEST = "cardiac_synth.json"
_ANATOMY_STREAM, _CODE_STREAM = 0, 1
_FRAME_SECONDS = 0.03


@dataclass(frozen=True)
class _Job:
    site: str
    index: int  # subject index within the site
    name: str  # patientNNN (site A) or the M&Ms external code
    seed: int
    out: str


def subject_rng(seed: int, site: str, index: int, stream: int = _ANATOMY_STREAM) -> np.random.Generator:
    """The generator of one subject: a function of (version, seed, site, subject index) only."""
    return np.random.default_rng(np.random.SeedSequence([GENERATOR_VERSION, seed, SITE_INDEX[site], index, stream]))


def subject_group(index: int) -> str:
    """Groups cycle through NOR, DCM, HCM, MINF, ARV, so every split is balanced like ACDC."""
    return GROUPS[index % len(GROUPS)]


def generate_cardiac_synth(
    root: Path,
    *,
    seed: int = 0,
    n_train: int = 10,
    n_val: int = 5,
    n_test: int = 20,
    n_cross: int = 20,
    workers: int | None = None,
) -> Path:
    """Write site A in the ACDC layout under `root/siteA` and sites B-D in the M&Ms layout
    under `root/mnms`; returns `root`. `workers` defaults to min(2, CPU count)."""
    if seed < 0 or min(n_train, n_val, n_test, n_cross) < 0:
        raise ValueError("seed and subject counts must be non-negative")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n_a = n_train + n_val + n_test
    site_a = [_Job("A", i, f"patient{i + 1:03d}", seed, str(root / "siteA" / "training")) for i in range(n_a)]
    codes = _mnms_codes(seed, n_cross)
    labelled = str(root / "mnms" / "Training" / "Labeled")
    cross = [_Job(site, i, codes[site, i], seed, labelled) for site in CROSS_SITES for i in range(n_cross)]
    results = _run(cross + site_a, workers)  # the larger 4-D jobs first balances the workers

    names = [job.name for job in site_a]
    (root / "siteA").mkdir(parents=True, exist_ok=True)
    splits = {"train": names[:n_train], "val": names[n_train:n_train + n_val], "test": names[n_train + n_val:]}
    (root / "siteA" / "splits.json").write_text(json.dumps(splits, indent=1) + "\n")
    (root / "mnms").mkdir(parents=True, exist_ok=True)
    rows = [
        {"External code": job.name, "VendorName": SITE_PARAMETERS[job.site].vendor_name, "Vendor": job.site,
         "Centre": SITE_PARAMETERS[job.site].centre, "ED": result["ed"], "ES": result["es"]}
        for job, result in zip(cross + site_a, results) if job.site != TRAINING_SITE
    ]
    write_mnms_info(root / "mnms" / "mnms_dataset_info.csv", rows)
    manifest = {
        "generator": "cardiac-synth",
        "version": GENERATOR_VERSION,
        **_size_key(seed, n_train, n_val, n_test, n_cross),
        "subjects": [{"site": job.site, "name": job.name, **result} for job, result in zip(cross + site_a, results)],
        "sites": {name: asdict(site) for name, site in SITE_PARAMETERS.items()},
        "groups": {name: asdict(group) for name, group in GROUP_PARAMETERS.items()},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, default=list) + "\n")
    return root


def ensure_cardiac_synth(
    cache_dir: Path | None = None,
    *,
    seed: int = 0,
    n_train: int = 10,
    n_val: int = 5,
    n_test: int = 20,
    n_cross: int = 20,
    workers: int | None = None,
) -> Path:
    """Return the generated suite, generating it first if the cache lacks it.

    The folder name holds the generator version and a hash of every parameter, so a changed
    parameter never reuses stale data. Generation writes into a hidden temporary sibling
    that is renamed into place only when complete: an interrupted run never leaves a folder
    that looks finished.
    """
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = cache_name(seed=seed, n_train=n_train, n_val=n_val, n_test=n_test, n_cross=n_cross)
    return ensure_generated(base, name, MANIFEST, lambda folder: generate_cardiac_synth(
        folder, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test, n_cross=n_cross, workers=workers),
        family="cardiac-synth")


def remove_abandoned_generations(base: Path) -> list[Path]:
    """Delete temporary generation folders whose writer died (kill -9 leaves ~64 MB each)."""
    return remove_abandoned(base, "cardiac-synth")


def default_cache_dir() -> Path:
    """`$ROBENCH_HOME/synth`, with ROBENCH_HOME defaulting to ~/.cache/robench."""
    return robench_home() / "synth"


def cache_name(*, seed: int, n_train: int, n_val: int, n_test: int, n_cross: int) -> str:
    key = {
        **_size_key(seed, n_train, n_val, n_test, n_cross),
        "sites": {name: asdict(site) for name, site in SITE_PARAMETERS.items()},
        "groups": {name: asdict(group) for name, group in GROUP_PARAMETERS.items()},
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()[:12]
    return f"cardiac-synth-v{GENERATOR_VERSION}-{digest}"


def _size_key(seed: int, n_train: int, n_val: int, n_test: int, n_cross: int) -> dict[str, int]:
    return {"seed": seed, "n_train": n_train, "n_val": n_val, "n_test": n_test, "n_cross": n_cross}


def _mnms_codes(seed: int, n_cross: int) -> dict[tuple[str, int], str]:
    """Six-character M&Ms-style codes (letter, digit, letter, digit, letter, digit), unique."""
    letters, digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"
    codes: dict[tuple[str, int], str] = {}
    used: set[str] = set()
    for site in CROSS_SITES:
        for index in range(n_cross):
            rng = subject_rng(seed, site, index, _CODE_STREAM)
            code = ""
            while not code or code in used:
                code = "".join(rng.choice(list(letters if i % 2 == 0 else digits)) for i in range(6))
            used.add(code)
            codes[site, index] = code
    return codes


def _run(jobs: list[_Job], workers: int | None) -> list[dict[str, object]]:
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(jobs) <= 1:
        return [_generate_subject(job) for job in jobs]
    # fork, like torch's DataLoader on Linux: children only run numpy/scipy/nibabel code.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        return list(pool.map(_generate_subject, jobs, chunksize=1))


def _generate_subject(job: _Job) -> dict[str, object]:
    """Sample, render and write one subject; return what the index files need."""
    site = SITE_PARAMETERS[job.site]
    rng = subject_rng(job.seed, job.site, job.index)
    group = subject_group(job.index)
    subject = sample_subject(rng, group, site)
    spacing = (site.pixel_spacing, site.pixel_spacing, site.slice_spacing)
    summary: dict[str, object] = {"group": group, "n_slices": len(subject.depths)}
    if job.site == TRAINING_SITE:
        (ed_image, ed_label), (es_image, es_label) = render_subject(subject, site, rng, [0.0, 1.0])
        info = {"ED": 1, "ES": subject.es_frame, "Group": group, "Height": subject.height,
                "NbFrame": subject.nb_frames, "Weight": subject.weight}
        frames = {1: (ed_image, ed_label), subject.es_frame: (es_image, es_label)}
        write_acdc_subject(Path(job.out) / job.name, job.name, frames, spacing, info)
        return {**summary, "ed": 1, "es": subject.es_frame}
    n_frames = site.cine_frames
    es = int(rng.integers(2, n_frames - 1))
    rendered = render_subject(subject, site, rng, _cine_phases(n_frames, es))
    write_mnms_subject(Path(job.out) / job.name, job.name, [image for image, _ in rendered],
                       {0: rendered[0][1], es: rendered[es][1]}, spacing, _FRAME_SECONDS)
    return {**summary, "ed": 0, "es": es}


def _cine_phases(n_frames: int, es: int) -> list[float]:
    """Contraction per frame: 0 at ED (frame 0), 1 at ES, relaxing afterwards."""
    phases = []
    for t in range(n_frames):
        if t <= es:
            phases.append(float(np.sin(0.5 * np.pi * t / es) ** 2))
        else:
            phases.append(float(1.0 - 0.75 * (t - es) / (n_frames - 1 - es)))
    return phases
