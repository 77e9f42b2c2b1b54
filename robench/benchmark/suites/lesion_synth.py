"""`lesion-synth`: embedded brain-like images with small lesions, for the class-imbalance methods.

Why: the real imbalanced data sets are licensed downloads, and tests of methods for rare
classes need rare classes. Each subject is an ellipsoidal "head" (skull rim, white and grey
matter, ventricles) with lesion blobs whose total volume is a set fraction of the head (the
foreground fraction, 1:100 to 1:2000), rendered by synthetic sites that differ in contrast,
bias and noise. It is written in the nnU-Net v2 raw layout and read back by `suites.nnunet`,
so the suite exercises the real reader. Train on site A; test on held-out A (intra) and on
sites B and C (cross-site).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from robench.benchmark.suites.base import SuiteData, SuiteOptions, TestSet, nested_subset, register_suite
from robench.benchmark.suites.generated import ensure_generated
from robench.benchmark.suites.nnunet import case_refs, fingerprint, header_geometry, read_dataset
from robench.errors import ConfigError
from robench.home import robench_home

GENERATOR_VERSION = 1
SHAPE = (96, 96, 12)  # file (X, Y, Z) at 2 × 2 × 5 mm
SPACING = (2.0, 2.0, 5.0)
MANIFEST = "lesion_synth.json"
TRAIN, VAL, TEST, CROSS = 12, 4, 10, 10


@dataclass(frozen=True)
class LesionSite:
    grey: float  # tissue intensities, white matter = 1
    csf: float
    lesion: float
    noise: float  # Gaussian noise σ, relative to white matter
    bias: float  # amplitude of a smooth multiplicative field


SITES = {
    "A": LesionSite(grey=0.75, csf=0.25, lesion=1.45, noise=0.04, bias=0.05),
    "B": LesionSite(grey=0.85, csf=0.35, lesion=1.30, noise=0.08, bias=0.15),
    "C": LesionSite(grey=0.65, csf=0.15, lesion=1.60, noise=0.12, bias=0.25),
}


def _rng(seed: int, site: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([GENERATOR_VERSION, seed, ord(site), index]))


def _inside(grid: np.ndarray, centre: np.ndarray, semi_axes: np.ndarray) -> np.ndarray:
    """Voxels (of a (3, X, Y, Z) mm grid) inside the ellipsoid."""
    return ((((grid - centre[:, None, None, None]) / semi_axes[:, None, None, None]) ** 2).sum(0)) < 1


def render_subject(rng: np.random.Generator, site: LesionSite, foreground_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) float32 image and uint8 lesion label of one subject."""
    grid = np.stack(np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(SHAPE, SPACING)], indexing="ij"))
    axes = np.array([rng.uniform(70, 80), rng.uniform(85, 92), rng.uniform(34, 40)])  # head semi-axes in mm
    radius = np.sqrt(((grid / axes[:, None, None, None]) ** 2).sum(0))  # 1 on the head's surface
    image = np.where(radius < 1, 1.0, 0.0)
    image[(radius > 0.93) & (radius < 1)] = 0.55  # skull rim
    image[(radius > 0.78) & (radius <= 0.93)] = site.grey  # cortex
    ventricles = _inside(grid, np.zeros(3), np.array([14.0, 26.0, 18.0]))
    image[ventricles] = site.csf
    brain = (radius < 0.78) & ~ventricles
    label = np.zeros(SHAPE, np.uint8)
    candidates = np.flatnonzero(brain)
    target = foreground_fraction * (radius < 1).sum()
    while label.sum() < target:  # blobs until the lesion volume reaches the fraction (the last may overshoot)
        centre = grid.reshape(3, -1)[:, rng.choice(candidates)]
        size = rng.uniform(2.0, 7.0)
        label[_inside(grid, centre, np.array([size, size, max(size, 5.5)])) & brain] = 1
    image = np.where(label > 0, site.lesion, image)
    field = 1 + site.bias * np.cos(grid[0] / 60 + rng.uniform(0, 6)) * np.cos(grid[1] / 70 + rng.uniform(0, 6))
    image = image * field + rng.normal(0, site.noise, SHAPE)
    return (100 * image).astype(np.float32), label


def generate(root: Path, seed: int, foreground_fraction: float) -> None:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    counts = {"A": TRAIN + VAL + TEST, "B": CROSS, "C": CROSS}
    affine = np.diag([*SPACING, 1.0])
    for site, n in counts.items():
        for index in range(n):
            image, label = render_subject(_rng(seed, site, index), SITES[site], foreground_fraction)
            case = f"site{site}_{index:03d}"
            nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / f"{case}_0000.nii.gz"))
            nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / f"{case}.nii.gz"))
    spec = {"name": "lesion-synth", "channel_names": {"0": "T2w"}, "labels": {"background": 0, "lesion": 1},
            "numTraining": sum(counts.values()), "file_ending": ".nii.gz",
            "description": f"synthetic brain-like volumes, lesion fraction {foreground_fraction:g} of the head"}
    (root / "dataset.json").write_text(json.dumps(spec, indent=1))
    (root / MANIFEST).write_text(json.dumps({"version": GENERATOR_VERSION, "seed": seed, "foreground_fraction": foreground_fraction,
                                             "sites": {k: asdict(v) for k, v in SITES.items()}}, indent=1))


FOREGROUND_RANGE = (1 / 2000, 1 / 100)
DEFAULT_FOREGROUND = 1 / 500


def ensure_lesion_synth(cache_dir: Path | None = None, *, seed: int = 0, foreground_fraction: float = DEFAULT_FOREGROUND) -> Path:
    low, high = FOREGROUND_RANGE
    if not low <= foreground_fraction <= high:
        raise ConfigError(f"lesion-synth foreground fraction must be in [1/2000, 1/100], got {foreground_fraction:g}")
    key = {"version": GENERATOR_VERSION, "seed": seed, "fraction": foreground_fraction, "shape": SHAPE, "spacing": SPACING,
           "sites": {k: asdict(v) for k, v in SITES.items()}, "sizes": [TRAIN, VAL, TEST, CROSS]}
    name = f"lesion-synth-v{GENERATOR_VERSION}-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}"
    base = Path(cache_dir) / "lesion-synth" if cache_dir is not None else robench_home() / "lesion-synth"
    return ensure_generated(base, name, MANIFEST, lambda folder: generate(folder, seed, foreground_fraction), family="lesion-synth")


class LesionSynthSuite:
    name = "lesion-synth"
    description = "Embedded brain-like volumes with small lesions (1:500 of the head): train on site A; test A (intra), B, C (cross-site)"
    source = "generated on first use into $ROBENCH_HOME/lesion-synth, in the nnU-Net v2 raw layout (read back by the nnunet reader)"

    def build(self, options: SuiteOptions) -> SuiteData:
        from robench.corruptions.testsets import suite_artefact_sets  # corruptions import the suites: here, not at the top

        if options.cval != 0:
            raise ConfigError(f"lesion-synth has one split (cval 0), got --cval {options.cval}; vary --seed instead")
        root = ensure_lesion_synth(options.cache_dir)
        dataset = read_dataset(root)
        by_site: dict[str, list] = {}
        for raw in dataset.cases:
            by_site.setdefault(raw.case_id[4], []).append(raw)
        site_a = by_site["A"]
        pool, val, test = site_a[:TRAIN], site_a[TRAIN : TRAIN + VAL], site_a[TRAIN + VAL :]
        train_ids = set(nested_subset([r.case_id for r in pool], options.train_fraction))

        def refs(cases):
            return case_refs(dataset, cases, options.slice_axis, lambda raw: {"site": raw.case_id[4], "vendor": ""})

        intra = TestSet("SiteA", "intra", refs(test), {"site": "A"})
        geometry = header_geometry(dataset, dataset.cases, options.slice_axis)
        data_fingerprint = fingerprint(dataset, options, generator=GENERATOR_VERSION)
        test_sets = (intra, *(TestSet(f"Site{s}", "cross-site", refs(by_site[s]), {"site": s}) for s in ("B", "C")),
                     *suite_artefact_sets(intra, options, self.name, data_fingerprint, geometry))
        train = [r for r in pool if r.case_id in train_ids]
        return SuiteData(
            self.name, refs(train), refs(val), test_sets, dataset.classes, data_fingerprint,
            ("synthetic stand-in: lesion fraction 1:500 of the head, three sites of other contrast and noise",),
            geometry=geometry,
            splits={"train": tuple(sorted(train_ids)), "train_pool": tuple(r.case_id for r in pool),
                    "val": tuple(r.case_id for r in val), "test": tuple(r.case_id for r in test)},
            channels=dataset.channels, training_slices="all", oversample_foreground=1 / 3,
        )


register_suite(LesionSynthSuite())
