"""Time per volume: robench ``case_metrics`` vs medpy (dc + hd95 + assd per class).

Run: ``python -m pytest benchmarks/bench_metrics.py --benchmark-only``.  The volume is an
ACDC-like short-axis stack (10 x 256 x 216, spacing 10 x 1.37 x 1.37 mm) with RV, MYO and
LV of realistic size; the prediction has a shifted, noisy boundary and one spurious RV blob
so that all distances are non-trivial.  Both sides compute the same three numbers per class
(checked before timing), so the group "metrics-per-volume" compares like with like.
The group "metrics-large-volume" does the same on a 128 x 256 x 256 brain-tumour-like volume
(three nested structures with noisy, shifted boundaries, 1 x 0.94 x 0.94 mm).
"""

from __future__ import annotations

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy import ndimage

from robench.benchmark.metrics import case_metrics
from robench.labels import CARDIAC_CLASSES

SHAPE = (10, 256, 216)
SPACING = (10.0, 1.37, 1.37)


def _cardiac_volume(rng: np.random.Generator, boundary_noise: float, shift: tuple[float, float]) -> np.ndarray:
    """ACDC-convention labels (RV 1, MYO 2, LV 3): LV disc, MYO ring, RV crescent, tapering to the apex."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")
    cy, cx = 128.0 + shift[0], 108.0 + shift[1]
    scale = np.clip(1.0 - ((z - 1.5) / 8.5) ** 2, 0.0, None)  # base (z~1) to apex (z~9)
    noise = ndimage.gaussian_filter(rng.normal(size=SHAPE), (0.5, 6, 6))
    noise *= boundary_noise / max(noise.std(), 1e-12)
    r = np.hypot(y - cy, x - cx) + noise  # in voxels
    lv_r, epi_r = 16.0 * scale, 23.0 * scale  # ~22 mm and ~32 mm radius at the base
    rv = np.hypot((y - cy) / (34.0 * scale + 1e-9), (x - cx + 30.0 * scale) / (22.0 * scale + 1e-9)) + noise / 30
    out = np.zeros(SHAPE, np.uint8)
    out[(rv < 1.0) & (r > epi_r + 1)] = 1
    out[r < epi_r] = 2
    out[r < lv_r] = 3
    out[scale == 0] = 0
    return out


@pytest.fixture(scope="module")
def volume_pair():
    rng = np.random.default_rng(0)
    ref = _cardiac_volume(rng, boundary_noise=0.5, shift=(0.0, 0.0))
    pred = _cardiac_volume(rng, boundary_noise=1.5, shift=(1.5, -1.0))
    pred[5, 40:46, 30:37] = 1  # spurious RV blob far from the heart
    counts = {name: (int((ref == lab).sum()), int((pred == lab).sum())) for name, lab in CARDIAC_CLASSES.items()}
    assert all(min(c) > 1000 for c in counts.values()), counts
    return pred, ref


LARGE_SHAPE = (128, 256, 256)
LARGE_SPACING = (1.0, 0.9375, 0.9375)


def _tumour_volume(rng: np.random.Generator, shift: float, noise_scale: float) -> np.ndarray:
    """Edema (1) around enhancing tumour (2) around necrosis (3), ~110 mm across, boundaries noisy."""
    z, y, x = np.ogrid[: LARGE_SHAPE[0], : LARGE_SHAPE[1], : LARGE_SHAPE[2]]
    r = np.sqrt(((z - 64.0 - shift) / 40.0) ** 2 + ((y - 128.0) / 60.0) ** 2 + ((x - 120.0 - shift) / 55.0) ** 2)
    noise = ndimage.zoom(rng.normal(size=(16, 32, 32)), 8, order=1) * noise_scale
    r = r + noise
    out = np.zeros(LARGE_SHAPE, np.uint8)
    out[r < 1.0] = 1
    out[r < 0.6] = 2
    out[r < 0.35] = 3
    return out


@pytest.fixture(scope="module")
def large_pair():
    rng = np.random.default_rng(1)
    return _tumour_volume(rng, 3.0, 0.08), _tumour_volume(rng, 0.0, 0.04)


def _medpy_case(pred, ref, spacing=SPACING):
    rows = []
    for name, label in CARDIAC_CLASSES.items():
        p, r = pred == label, ref == label
        rows.append(
            {
                "class": name,
                "dice": medpy_binary.dc(p, r),
                "hd95": medpy_binary.hd95(p, r, voxelspacing=spacing),
                "assd": medpy_binary.assd(p, r, voxelspacing=spacing),
            }
        )
    return rows


def test_same_numbers(volume_pair):
    pred, ref = volume_pair
    ours = case_metrics(pred, ref, SPACING, CARDIAC_CLASSES, hd95_variant="pooled")
    for a, b in zip(ours, _medpy_case(pred, ref)):
        assert a["class"] == b["class"]
        for key in ("dice", "hd95", "assd"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["class"], key)


@pytest.mark.benchmark(group="metrics-per-volume")
def test_robench_case_metrics_max_directed(benchmark, volume_pair):
    pred, ref = volume_pair
    rows = benchmark(case_metrics, pred, ref, SPACING, CARDIAC_CLASSES)
    assert len(rows) == 3


@pytest.mark.benchmark(group="metrics-per-volume")
def test_robench_case_metrics_pooled(benchmark, volume_pair):
    pred, ref = volume_pair
    rows = benchmark(case_metrics, pred, ref, SPACING, CARDIAC_CLASSES, hd95_variant="pooled")
    assert len(rows) == 3


@pytest.mark.benchmark(group="metrics-per-volume")
def test_medpy_dc_hd95_assd(benchmark, volume_pair):
    pred, ref = volume_pair
    rows = benchmark(_medpy_case, pred, ref)
    assert len(rows) == 3


def test_same_numbers_large(large_pair):
    pred, ref = large_pair
    ours = case_metrics(pred, ref, LARGE_SPACING, CARDIAC_CLASSES, hd95_variant="pooled")
    for a, b in zip(ours, _medpy_case(pred, ref, LARGE_SPACING)):
        for key in ("dice", "hd95", "assd"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["class"], key)


@pytest.mark.benchmark(group="metrics-large-volume")
def test_robench_case_metrics_large(benchmark, large_pair):
    pred, ref = large_pair
    rows = benchmark.pedantic(case_metrics, (pred, ref, LARGE_SPACING, CARDIAC_CLASSES), rounds=5, warmup_rounds=1)
    assert len(rows) == 3


@pytest.mark.benchmark(group="metrics-large-volume")
def test_medpy_dc_hd95_assd_large(benchmark, large_pair):
    pred, ref = large_pair
    rows = benchmark.pedantic(_medpy_case, (pred, ref, LARGE_SPACING), rounds=2, warmup_rounds=0)
    assert len(rows) == 3
