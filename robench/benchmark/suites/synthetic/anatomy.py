"""Synthetic short-axis cardiac anatomy: subject parameters and tissue maps on any grid.

Shapes are evaluated analytically on (elastically warped) millimetre coordinates, so the
same subject can be rendered at any pixel spacing and super-sampled for partial volume.
Labels follow ACDC: 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity (papillary
muscles inside the cavity are labelled LV, as in ACDC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

# tissue ids of the rendered scene (labels are derived from them)
AIR, BODY_FAT, MUSCLE, LUNG, LIVER, SPINE, AORTA, PERICARDIAL_FAT, MYO, LV_BLOOD, RV_BLOOD, PAPILLARY, RV_WALL, SOFT = range(14)
TISSUE_TO_LABEL = np.zeros(14, np.uint8)
TISSUE_TO_LABEL[[LV_BLOOD, PAPILLARY]] = 3
TISSUE_TO_LABEL[MYO] = 2
TISSUE_TO_LABEL[RV_BLOOD] = 1


@dataclass(frozen=True)
class GroupProfile:
    """Typical ACDC-like ranges of a pathology group (radii and thickness in mm)."""

    lv_radius: tuple[float, float]  # ED endocardial radius at the base
    wall: tuple[float, float]  # ED wall thickness
    ef: tuple[float, float]  # LV ejection fraction
    rv_scale: tuple[float, float]  # RV size relative to normal
    infarct: bool = False


GROUPS: dict[str, GroupProfile] = {
    "NOR": GroupProfile((22.0, 26.0), (7.0, 9.0), (0.55, 0.70), (0.9, 1.1)),
    "DCM": GroupProfile((29.0, 34.0), (5.5, 7.0), (0.12, 0.35), (0.9, 1.1)),
    "HCM": GroupProfile((18.0, 22.0), (12.0, 16.0), (0.62, 0.80), (0.8, 1.0)),
    "MINF": GroupProfile((25.0, 30.0), (7.0, 9.0), (0.20, 0.45), (0.9, 1.1), infarct=True),
    "ARV": GroupProfile((21.0, 25.0), (7.0, 8.5), (0.45, 0.65), (1.35, 1.6)),
}


# Short-axis views are planned the same way on every scanner: the RV lies anterior and to the
# patient's right of the LV, i.e. up and left in the image; subjects vary around that (±0.5 rad).
RV_DIRECTION = float(np.arctan2(-0.6, -1.0))


@dataclass(frozen=True)
class Subject:
    group: str
    n_slices: int
    slice_spacing: float  # mm
    lv_radius: float
    wall: float
    ef: float
    rv_scale: float
    orientation: float  # radians: direction from LV centre to the RV (septal side)
    centre: tuple[float, float]  # heart centre offset from the FOV centre (mm)
    shape_harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) of the endocardial outline
    papillary: tuple[tuple[float, float], ...]  # (angle, radius mm) of the papillary muscles
    infarct_sector: tuple[float, float] | None  # (centre angle, half width) where the wall is thinned
    body: tuple[float, float]  # body semi-axes (mm)
    warp_seed: int
    warp_mm: float


def sample_subject(rng: np.random.Generator, group: str) -> Subject:
    g = GROUPS[group]
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    harmonics = tuple((float(rng.uniform(0.02, 0.07)), float(rng.uniform(0, 2 * np.pi))) for _ in range(2))
    papillary = tuple((float(a), float(rng.uniform(2.0, 3.0))) for a in rng.uniform(-0.6, 0.6, 2) + np.array([2.3, 3.9]))
    infarct = (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.4, 0.7))) if g.infarct else None
    return Subject(
        group=group, n_slices=int(rng.integers(8, 13)), slice_spacing=u((8.0, 10.0)), lv_radius=u(g.lv_radius),
        wall=u(g.wall), ef=u(g.ef), rv_scale=u(g.rv_scale), orientation=RV_DIRECTION + float(np.clip(rng.normal(0, 0.25), -0.5, 0.5)),
        centre=(float(rng.uniform(-12, 12)), float(rng.uniform(-12, 12))), shape_harmonics=harmonics,
        papillary=papillary, infarct_sector=infarct, body=(u((135.0, 160.0)), u((100.0, 120.0))),
        warp_seed=int(rng.integers(2**31)), warp_mm=u((1.5, 3.5)),
    )


def _smooth_field(seed: int, shape: tuple[int, int], sigma: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def tissue_map(subject: Subject, yy: np.ndarray, xx: np.ndarray, level: float, contraction: float) -> np.ndarray:
    """Tissue ids on the millimetre grid (yy, xx) of one slice.

    level: 0 at the base, 1 at the apex. contraction: 0 at ED, 1 at ES.
    """
    s = subject
    # elastic deformation of the whole scene (smooth, a few mm), fixed per subject
    h, w = yy.shape
    step = max(1, int(round(h / 64)))
    coarse = (h // step + 1, w // step + 1)
    dy = _smooth_field(s.warp_seed, coarse, 4.0)
    dx = _smooth_field(s.warp_seed + 1, coarse, 4.0)
    iy = np.minimum(np.arange(h) // step, coarse[0] - 1)
    ix = np.minimum(np.arange(w) // step, coarse[1] - 1)
    y = yy + s.warp_mm * dy[np.ix_(iy, ix)]
    x = xx + s.warp_mm * dx[np.ix_(iy, ix)]

    out = np.full(yy.shape, AIR, np.uint8)
    # body, subcutaneous fat and its inner soft tissue
    body = (y / s.body[1]) ** 2 + (x / s.body[0]) ** 2
    out[body < 1] = BODY_FAT
    inner = (y / (s.body[1] - 10)) ** 2 + (x / (s.body[0] - 10)) ** 2
    out[inner < 1] = SOFT
    out[(inner < 1) & (y < -s.body[1] + 30)] = MUSCLE  # anterior chest wall
    # lungs, liver, spine, aorta
    for side in (-1, 1):
        lung = ((y + 5) / 65) ** 2 + ((x - side * 75) / 48) ** 2
        out[(lung < 1) & (inner < 1)] = LUNG
    liver = ((y - 25) / 70) ** 2 + ((x + 55) / 75) ** 2
    out[(liver < 1) & (inner < 1) & (level > 0.55)] = LIVER
    out[((y - s.body[1] + 35) / 14) ** 2 + (x / 16) ** 2 < 1] = SPINE
    out[((y - s.body[1] + 62) / 11) ** 2 + ((x - 18) / 11) ** 2 < 1] = AORTA

    # the heart is drawn only inside a window around it (most of the field of view is not heart)
    cy, cx = s.centre
    reach = 2.6 * s.lv_radius * max(s.rv_scale, 1.0) + s.wall + 4 * s.warp_mm + 10
    rows = np.nonzero(np.abs(yy[:, 0] - cy) < reach)[0]
    cols = np.nonzero(np.abs(xx[0] - cx) < reach)[0]
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    out[window] = _heart(s, y[window], x[window], out[window], level, contraction)
    return out


def _heart(s: Subject, y: np.ndarray, x: np.ndarray, out: np.ndarray, level: float, contraction: float) -> np.ndarray:
    """Draw myocardium, cavities, RV and pericardial fat over the tissues `out` of a window."""
    out = out.copy()
    # heart, in its own rotated frame; "up" of that frame points to the RV
    cy, cx = s.centre
    ry, rx = y - cy, x - cx
    c, si = np.cos(s.orientation), np.sin(s.orientation)
    u, v = rx * c + ry * si, -rx * si + ry * c  # u: towards the RV
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    taper = np.sqrt(max(1.0 - (0.9 * level) ** 2, 0.05))
    r_endo_ed = s.lv_radius * taper * (0.6 + 0.4 * (1 - level))
    r_endo = r_endo_ed * np.sqrt(1 - s.ef * contraction)
    r_epi_ed = r_endo_ed + s.wall
    r_epi = np.sqrt(r_endo**2 + (r_epi_ed**2 - r_endo_ed**2))  # myocardial area (mass) is kept
    outline = 1 + sum(a * np.cos((k + 2) * theta - p) for k, (a, p) in enumerate(s.shape_harmonics))
    endo = r_endo * outline
    epi = r_epi * outline
    if s.infarct_sector is not None:
        centre_angle, half = s.infarct_sector
        d = np.angle(np.exp(1j * (theta - centre_angle)))
        thin = np.clip(1 - np.abs(d) / half, 0, 1)
        epi = epi - 0.55 * (epi - endo) * thin
    heart_outer = epi + 2.5
    # pericardial fat: a patchy band around the heart
    patch = np.cos(3 * theta + s.orientation) > 0.2
    out[(r < heart_outer + 3) & patch & (r > epi)] = PERICARDIAL_FAT
    out[(r < heart_outer) & (r >= epi)] = SOFT
    # RV: a crescent on the septal side, missing towards the apex
    if level < 0.78:
        rv_a = (s.lv_radius * 1.15 * s.rv_scale) * (1 - 0.6 * level) * np.sqrt(1 - 0.35 * contraction)
        rv_b = (s.lv_radius * 0.85 * s.rv_scale) * (1 - 0.5 * level) * np.sqrt(1 - 0.35 * contraction)
        rv_centre = r_epi * 0.55 + rv_a * 0.55
        rv = ((u - rv_centre) / rv_a) ** 2 + (v / (rv_b * 1.25)) ** 2
        rv_outer = ((u - rv_centre) / (rv_a + 3)) ** 2 + (v / (rv_b * 1.25 + 3)) ** 2
        outside_lv = r > epi
        out[(rv_outer < 1) & outside_lv] = RV_WALL
        out[(rv < 1) & (r > epi + 0.01)] = RV_BLOOD
    out[r < epi] = MYO
    out[r < endo] = LV_BLOOD
    # papillary muscles: small dark blobs inside the cavity, against the wall (labelled LV)
    if level < 0.7:
        for angle, radius in s.papillary:
            py, px = 0.72 * r_endo * np.sin(angle), 0.72 * r_endo * np.cos(angle)
            blob = ((u - px) ** 2 + (v - py) ** 2) < (radius * (1 + 0.3 * contraction)) ** 2
            out[blob & (r < endo)] = PAPILLARY
    return out


def labels_of(tissues: np.ndarray) -> np.ndarray:
    return TISSUE_TO_LABEL[tissues]
