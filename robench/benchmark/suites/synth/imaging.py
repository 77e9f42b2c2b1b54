"""Image formation: from painted tissue to a stored bSSFP-like slice stack.

Why this order: partial volume is made where it happens physically (tissue boundaries inside
a voxel and inside the slice profile), so every pixel is the mean of a few sub-samples on a
finer grid, each at its own depth within the slice. Then the scanner chain of one site:
PSF blur, bias field, a gamma curve, Rician noise at the site's SNR, and quantisation to the
site's stored range and dtype.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from robench.benchmark.suites.synth.anatomy import HeartPainter, Subject, paint_surroundings
from robench.benchmark.suites.synth.grid import Grid
from robench.benchmark.suites.synth.parameters import SiteParameters, Tissue

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def render_subject(
    subject: Subject, site: SiteParameters, rng: np.random.Generator, phases: list[float]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Images (stored dtype) and ACDC labels, both (slices, rows, columns), one per phase."""
    rows, cols = site.matrix
    grid = Grid(rows, cols, site.pixel_spacing, site.supersampling, subject.depths, site.slice_thickness)
    tissue = paint_surroundings(subject.surroundings, subject.heart, grid)

    texture = _smooth_noise(rng, (len(subject.depths), rows, cols), site.texture_scale_mm / site.pixel_spacing)
    bias = _bias_field(rng, grid, site.bias_strength)
    means, amplitudes = _tissue_tables(site)
    static = _partial_volume(tissue, texture, means, amplitudes)

    painter = HeartPainter(subject, grid)
    box = (slice(None), painter.rows, slice(None), painter.cols, slice(None))
    window = (slice(None), painter.rows, painter.cols)
    results = []
    for phase in phases:
        tissue_box = tissue[box].copy()
        label_box = painter.paint(phase, tissue_box)
        clean = static.copy()
        clean[window] = _partial_volume(tissue_box, texture[window], means, amplitudes)
        label = np.zeros((len(subject.depths), rows, cols), np.uint8)
        label[window] = _majority(label_box)
        results.append((_acquire(clean, bias, site, rng), label))
    return results


def _tissue_tables(site: SiteParameters) -> tuple[np.ndarray, np.ndarray]:
    names = [t.name.lower() for t in Tissue]
    means = np.array([site.intensities[n] for n in names], np.float32)
    amplitudes = np.array([site.texture * site.tissue_texture.get(n, 1.0) for n in names], np.float32)
    return means, means * amplitudes


def _subsample_sum(fine: np.ndarray) -> np.ndarray:
    """Sum over each pixel's k x k sub-samples (explicit slices: far faster than sum(axis=(2, 4)))."""
    k = fine.shape[2]
    return sum(fine[:, :, i, :, j] for i in range(k) for j in range(k))


def _partial_volume(tissue: np.ndarray, texture: np.ndarray, means, amplitudes) -> np.ndarray:
    """Mean over each pixel's fine sub-samples of the textured tissue intensity."""
    k2 = np.float32(tissue.shape[2] ** 2)
    return (_subsample_sum(means[tissue]) + _subsample_sum(amplitudes[tissue]) * texture) / k2


_LABEL_CODES = (1 << (4 * np.arange(4))).astype(np.uint16)  # one 4-bit counter per label


def _majority(label: np.ndarray) -> np.ndarray:
    """Majority label per pixel; ties go to alternating diagonal sub-samples (no class bias)."""
    k = label.shape[2]
    packed = _subsample_sum(_LABEL_CODES[label])
    counts = np.stack([(packed >> (4 * c)) & 15 for c in range(4)]).astype(np.float32)
    rows, cols = label.shape[1], label.shape[3]
    checker = (np.arange(rows)[:, None] + np.arange(cols)[None, :]) % 2 == 0
    tie_break = np.where(checker, label[:, :, 0, :, 0], label[:, :, k - 1, :, k - 1])
    counts += 0.5 * (tie_break[None] == np.arange(4)[:, None, None, None])
    return counts.argmax(axis=0).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    noise = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (0, sigma_px, sigma_px), mode="wrap")
    return noise / max(float(noise.std()), 1e-6)


def _bias_field(rng: np.random.Generator, grid: Grid, strength: float) -> np.ndarray:
    """Multiplicative smooth field, like an anterior receive coil's: the exp of a linear ramp
    (brighter towards the chest wall, direction +-45 deg) plus weaker curvature, scaled so its
    largest |log gain| over the stack is `strength`."""
    half_rows, half_cols = 0.5 * grid.rows, 0.5 * grid.cols
    y = ((np.arange(grid.rows) + 0.5 - half_rows) / half_rows)[None, :, None]
    x = ((np.arange(grid.cols) + 0.5 - half_cols) / half_cols)[None, None, :]
    depths = np.asarray(grid.depths)
    z = ((depths - depths.mean()) / max(float(np.ptp(depths)), 1.0))[:, None, None]
    angle = -0.5 * np.pi + rng.uniform(-0.8, 0.8)  # y points down: -pi/2 is anterior
    ramp = np.cos(angle) * x + np.sin(angle) * y  # grows towards the coil
    curvature = rng.normal(0.0, 0.3, 3)
    poly = ramp + curvature[0] * x * x + curvature[1] * y * y + curvature[2] * x * y + rng.normal(0.0, 0.3) * z
    poly = poly - poly.mean()
    return np.exp(strength * poly / max(float(np.abs(poly).max()), 1e-6)).astype(np.float32)


def _acquire(clean: np.ndarray, bias: np.ndarray, site: SiteParameters, rng: np.random.Generator) -> np.ndarray:
    sigma_px = site.psf_fwhm_mm / _FWHM_PER_SIGMA / site.pixel_spacing
    image = gaussian_filter(clean, (0, sigma_px, sigma_px), mode="nearest") * bias
    image = np.maximum(image, 0.0) ** site.gamma
    noise_sd = site.intensities["blood"] ** site.gamma / site.snr
    real = image + noise_sd * rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = noise_sd * rng.standard_normal(image.shape, dtype=np.float32)
    return _store(np.sqrt(real * real + imaginary * imaginary), site)


def _store(image: np.ndarray, site: SiteParameters) -> np.ndarray:
    dtype = np.dtype(site.dtype)
    scaled = image * site.intensity_scale
    if dtype.kind == "f":
        if site.quantisation:
            scaled = np.rint(scaled * site.quantisation) / site.quantisation
        return scaled.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.rint(scaled), max(info.min, 0), info.max).astype(dtype)
