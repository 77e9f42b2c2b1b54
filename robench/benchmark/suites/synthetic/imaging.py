"""Image formation of the synthetic sites: bSSFP-like contrast, partial volume, PSF, bias, gamma, Rician noise.

Every site is a `SiteParameters` record, so the domain shifts between sites are explicit
and documented. Site A is the training site; B, C and D each move several parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from robench.benchmark.suites.synthetic import anatomy as A


@dataclass(frozen=True)
class SiteParameters:
    name: str
    description: str
    pixel_spacing: float  # mm, in-plane
    fov: float  # mm, square field of view
    slice_thickness_ratio: float  # slice thickness / slice spacing (through-plane partial volume)
    intensities: dict[int, float]  # tissue id → mean signal (before bias, gamma, noise)
    texture: float  # relative amplitude of smooth tissue texture
    psf_sigma_px: float  # Gaussian PSF in pixels
    bias_strength: float  # log-amplitude of the smooth multiplicative bias field
    gamma: float  # intensity nonlinearity applied to the normalised signal
    snr: float  # blood signal / noise standard deviation (Rician)
    dtype: str  # stored data type
    scale: float  # stored value of signal 1.0
    vendor_code: str = ""
    centre: int = 0


def _intensities(**over: float) -> dict[int, float]:
    base = {
        A.AIR: 0.0, A.BODY_FAT: 0.85, A.MUSCLE: 0.28, A.LUNG: 0.06, A.LIVER: 0.38, A.SPINE: 0.55, A.AORTA: 0.95,
        A.PERICARDIAL_FAT: 0.8, A.MYO: 0.27, A.LV_BLOOD: 0.95, A.RV_BLOOD: 0.9, A.PAPILLARY: 0.3, A.RV_WALL: 0.3,
        A.SOFT: 0.45,
    }
    names = {"fat": [A.BODY_FAT, A.PERICARDIAL_FAT], "blood": [A.LV_BLOOD, A.RV_BLOOD, A.AORTA],
             "myo": [A.MYO, A.PAPILLARY, A.RV_WALL, A.MUSCLE], "soft": [A.SOFT, A.LIVER]}
    for name, value in over.items():
        for tissue in names[name]:
            base[tissue] = value
    return base


SITES: dict[str, SiteParameters] = {
    "A": SiteParameters(
        "A", "training site: good contrast and SNR, 1.5 mm", 1.5, 330.0, 0.8, _intensities(), 0.05, 0.5, 0.15,
        1.0, 30.0, "int16", 1000.0, "A", 1,
    ),
    "B": SiteParameters(
        "B", "low blood/myocardium contrast and low SNR", 1.4, 320.0, 0.8,
        _intensities(blood=0.62, myo=0.40, soft=0.48), 0.08, 0.9, 0.15, 1.0, 7.0, "int16", 1500.0, "B", 2,
    ),
    "C": SiteParameters(
        "C", "strong bias field and gamma", 1.6, 340.0, 0.8, _intensities(), 0.05, 0.6, 0.75, 2.0, 25.0,
        "uint16", 4000.0, "C", 3,
    ),
    "D": SiteParameters(
        "D", "coarse 2.1 mm pixels, thick slices, bright fat and darker blood", 2.1, 340.0, 1.0,
        _intensities(fat=1.0, blood=0.72, myo=0.2, soft=0.5), 0.05, 0.7, 0.2, 1.0, 20.0, "float32", 0.5, "D", 4,
    ),
}

SUPERSAMPLE = 2  # in-plane render factor for partial volume
THROUGH_PLANE_SAMPLES = 2


def _grid(site: SiteParameters, factor: int) -> tuple[np.ndarray, np.ndarray, int]:
    n = int(round(site.fov / site.pixel_spacing))
    step = site.pixel_spacing / factor
    coords = (np.arange(n * factor) - (n * factor - 1) / 2) * step
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    return yy, xx, n


def render_frame(subject: A.Subject, site: SiteParameters, contraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(Z, Y, X) stored-scale image and (Z, Y, X) labels of one cardiac phase."""
    yy, xx, n = _grid(site, SUPERSAMPLE)
    cy, cx, _ = _grid(site, 1)
    lut = np.array([site.intensities[t] for t in range(len(site.intensities))], np.float32)
    images, labels = [], []
    thickness = site.slice_thickness_ratio / subject.n_slices
    for k in range(subject.n_slices):
        level = k / max(subject.n_slices - 1, 1)
        offsets = np.linspace(-thickness / 2, thickness / 2, THROUGH_PLANE_SAMPLES)
        fine = np.mean([lut[A.tissue_map(subject, yy, xx, np.clip(level + o, 0, 1), contraction)] for o in offsets], axis=0)
        signal = fine.reshape(n, SUPERSAMPLE, n, SUPERSAMPLE).mean(axis=(1, 3))
        labels.append(A.labels_of(A.tissue_map(subject, cy, cx, level, contraction)))
        texture = gaussian_filter(rng.standard_normal((n, n)), 3.0)
        signal = signal * (1 + site.texture * texture / (texture.std() + 1e-8))
        images.append(gaussian_filter(signal, site.psf_sigma_px))
    image = np.stack(images)
    image = image * _bias_field(image.shape, site.bias_strength, rng)
    image = np.clip(image / max(float(image.max()), 1e-6), 0, None) ** site.gamma
    sigma = site.intensities[A.LV_BLOOD] ** site.gamma / site.snr
    noisy = np.sqrt((image + rng.normal(0, sigma, image.shape)) ** 2 + rng.normal(0, sigma, image.shape) ** 2)
    return (noisy * site.scale).astype(np.float32), np.stack(labels)


def _bias_field(shape: tuple[int, int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field exp(strength · low-order polynomial), shared by all slices of a volume."""
    _, h, w = shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    c = rng.uniform(-1, 1, 6)
    poly = c[0] * x + c[1] * y + c[2] * x * y + c[3] * x**2 + c[4] * y**2 + c[5] * (x**2 - y**2)
    poly = poly / (np.abs(poly).max() + 1e-8)
    return np.exp(strength * poly)[None]


def store(image: np.ndarray, site: SiteParameters) -> np.ndarray:
    if site.dtype == "float32":
        return image.astype(np.float32)
    info = np.iinfo(site.dtype)
    return np.clip(np.round(image), info.min, info.max).astype(site.dtype)
