"""Synthetic subjects: sample a heart and its surroundings, then paint them on a grid.

Why analytic shapes: every structure is a closed-form function of polar coordinates around
the LV axis, so labels are exact, volumes and ejection fractions are set on purpose, and
painting a whole stack is a handful of vectorised numpy expressions (cheap enough to
generate the suite on first use).

Conventions: image coordinates in mm, x to the right, y downwards, origin at the centre of
the field of view; `depth` is the distance below the ED base plane of the LV, in mm. Heart
angles are measured from the septal direction (LV centre towards the RV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from robench.benchmark.suites.synth.grid import Grid
from robench.benchmark.suites.synth.parameters import GROUP_PARAMETERS, SiteParameters, Tissue

LV, MYO, RV = 3, 2, 1  # ACDC label convention
_THETA = np.linspace(-np.pi, np.pi, 180, endpoint=False)
_BASE_FAT = 1.2  # mm of epicardial fat everywhere around the heart


@dataclass(frozen=True)
class Heart:
    """Shape and motion of the ventricles; lengths in mm at end-diastole (ED)."""

    centre: tuple[float, float]  # LV axis at the ED base plane, image mm
    tilt: tuple[float, float]  # in-plane drift of the LV axis per mm of depth
    septal_angle: float  # image angle (rad) of the direction LV centre -> RV
    length: float  # LV cavity, base to apex
    radius: float  # LV cavity radius at the base
    shape: tuple[tuple[int, float, float], ...]  # endocardial harmonics (order, amplitude, phase)
    wall: float
    apex_wall: float
    septal_hypertrophy: float
    infarct: tuple[float, float, float, float, float] | None  # angle, width, thinning, depth range
    radial_es: float  # endocardial radius factor at end-systole (ES)
    long_es: float  # long-axis length factor at ES (the base descends, the apex stays)
    papillary: tuple[tuple[float, float], ...]  # (angle, radius mm)
    rv_width: float  # RV cavity thickness at its middle, base
    rv_half_angle: float  # half the angle the RV wraps around the LV, base
    rv_length: float  # depth where the RV ends
    rv_wall: float
    rv_es: float  # RV width factor at ES
    fat: tuple[tuple[float, float, float], ...]  # pericardial fat bumps (angle, width, thickness mm)


@dataclass(frozen=True)
class Surroundings:
    """Body, lungs, liver, spine and aorta; positions in image mm."""

    body_centre: tuple[float, float]
    body_axes: tuple[float, float]
    body_angle: float
    body_shape: tuple[float, float, float, float]  # 2nd and 3rd harmonic: amplitude, phase
    fat_thickness: float
    muscle_thickness: float
    liver_angle: float  # image angle from the LV axis towards the liver
    liver_gap: float  # mm of lung between heart and liver
    liver_axes: tuple[float, float]  # along the heart surface, radial
    aorta_centre: tuple[float, float]
    aorta_radius: float
    spine_centre: tuple[float, float]
    vertebra_radius: float
    mediastinum_centre: tuple[float, float]
    mediastinum_axes: tuple[float, float]


@dataclass(frozen=True)
class Warp:
    """Smooth elastic displacement of the heart: separable sine products, a few mm at most."""

    terms_x: tuple[tuple[float, ...], ...]  # amplitude, then (angular frequency, phase) for x, y, depth
    terms_y: tuple[tuple[float, ...], ...]

    def displace(self, x: np.ndarray, y: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def field(terms):
            total = 0.0
            for amp, wx, px, wy, py, wz, pz in terms:
                total = total + (amp * np.sin(wx * x + px)) * np.sin(wy * y + py) * np.cos(wz * depth + pz)
            return total

        return x + field(self.terms_x), y + field(self.terms_y)

    @property
    def reach(self) -> float:
        return sum(t[0] for t in self.terms_x + self.terms_y)


@dataclass(frozen=True)
class Subject:
    group: str
    height: float
    weight: float
    nb_frames: int
    es_frame: int  # 1-based, as in ACDC Info.cfg
    depths: tuple[float, ...]  # slice centres below the ED base, base to apex
    heart: Heart
    surroundings: Surroundings
    warp: Warp


# ---------------------------------------------------------------------------------------
# Heart geometry. Angles enter only through cos/sin of the angle from the septal direction,
# so no angle wrapping is needed and every profile is a few multiply-adds.


@dataclass(frozen=True)
class _Angles:
    cos: np.ndarray
    sin: np.ndarray
    abs: np.ndarray  # |angle| in [0, pi]

    @classmethod
    def of(cls, theta) -> "_Angles":
        theta = np.asarray(theta)
        return cls(np.cos(theta), np.sin(theta), np.abs(theta))

    def cos_from(self, angle: float):
        """cos(theta - angle)."""
        return self.cos * np.float32(math.cos(angle)) + self.sin * np.float32(math.sin(angle))


def _bump(a: _Angles, centre: float, width: float):
    """Smooth angular bump (von Mises): 1 at `centre`, about exp(-1/2) at `width` rad off."""
    return np.exp((a.cos_from(centre) - 1.0) / np.float32(width * width))


def _window(x, start: float, stop: float, soft: float):
    """Smooth 0-1 window, 1 on [start, stop], with cosine ramps of width `soft` outside."""
    rise = np.clip((x - start + soft) / soft, 0.0, 1.0)
    fall = np.clip((stop + soft - x) / soft, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))


def _shape(h: Heart, a: _Angles):
    """Endocardial radius factor: an ellipse (2nd harmonic) with a little 3rd harmonic."""
    c2, s2 = a.cos * a.cos - a.sin * a.sin, 2 * a.cos * a.sin
    c3, s3 = a.cos * c2 - a.sin * s2, a.sin * c2 + a.cos * s2
    (_, a2, p2), (_, a3, p3) = h.shape
    return (1.0 + np.float32(a2 * math.cos(p2)) * c2 + np.float32(a2 * math.sin(p2)) * s2
            + np.float32(a3 * math.cos(p3)) * c3 + np.float32(a3 * math.sin(p3)) * s3)


def _wall(h: Heart, a: _Angles):
    """ED wall thickness before infarct thinning; hypertrophy is asymmetric, septal."""
    return h.wall * (1.0 + h.septal_hypertrophy * np.maximum(a.cos, 0.0) ** 2)


def _infarct_angle(h: Heart, a: _Angles):
    return None if h.infarct is None else _bump(a, h.infarct[0], h.infarct[1])


def _fat(h: Heart, a: _Angles):
    return _BASE_FAT + sum(t * _bump(a, centre, width) for centre, width, t in h.fat)


def _material_depth(h: Heart, phase: float, depth):
    """Depth in the ED heart of the tissue seen at `depth`: the base descends in systole."""
    b = 1.0 - phase * (1.0 - h.long_es)
    return np.maximum(h.length - (h.length - depth) / b, 0.0), b


def _endo_profile(h: Heart, material_depth):
    return np.sqrt(np.clip(1.0 - (material_depth / h.length) ** 2, 0.0, None))


def _lv_radii(h: Heart, phase: float, depth, radius_shape, wall_ed, infarct_angle):
    """Endo- and epicardial radii; the wall thickens in systole so that its area is kept."""
    zm, b = _material_depth(h, phase, depth)
    prof_epi = np.sqrt(np.clip(1.0 - (zm / (h.length + h.apex_wall)) ** 2, 0.0, None))
    prof_endo = _endo_profile(h, zm)
    if infarct_angle is None:
        wall, radial = wall_ed, 1.0 - phase * (1.0 - h.radial_es)
    else:
        _, _, thinning, z0, z1 = h.infarct
        infarct = infarct_angle * _window(zm, z0, z1, 10.0)
        wall = wall_ed * (1.0 - thinning * infarct)
        radial = 1.0 - phase * (1.0 - h.radial_es) * (1.0 - 0.8 * infarct)  # the infarct barely moves
    endo_ed = radius_shape * prof_endo
    epi_ed = (radius_shape + wall) * prof_epi
    endo = radial * endo_ed
    epi = np.sqrt(endo * endo + (epi_ed * epi_ed - endo_ed * endo_ed) * np.float32(1.0 / b))
    return endo, epi, zm, radial


def _crescent(u):
    """Crescent profile over the normalised angle u: 1 in the middle, 0 at the tips (u >= 1);
    the square root gives a blunt middle and sharp tips, like the RV in short axis."""
    return np.sqrt(np.maximum(np.cos(np.float32(0.5 * np.pi) * np.minimum(u, 1.0)), 0.0))


def _rv_profile(h: Heart, phase: float, material_depth, abs_theta):
    """RV cavity width and RV outer extent (cavity + free wall) beyond the LV epicardium."""
    along = np.clip(material_depth / h.rv_length, 0.0, 1.0)
    width = h.rv_width * np.sqrt(1.0 - along**2) * (1.0 - phase * (1.0 - h.rv_es))
    half = h.rv_half_angle * (1.0 - 0.25 * along) * (1.0 - 0.1 * phase)
    half_outer = half + h.rv_wall / (h.radius + h.wall)
    cavity = width * _crescent(abs_theta * (1.0 / half))
    wall = np.minimum(width / 3.0, 1.0) * h.rv_wall
    outer = (width + wall) * _crescent(abs_theta * (1.0 / half_outer))
    return cavity, outer


def lv_volume(h: Heart, phase: float, depths, thickness: float, spacing: float) -> float:
    """LV cavity volume (ml) as the slice stack sees it: mean area over each slab x spacing."""
    offsets = (np.arange(4) + 0.5) / 4 - 0.5
    depth = (np.asarray(depths)[:, None] + thickness * offsets[None, :])[..., None]
    a = _Angles.of(_THETA)
    endo = _lv_radii(h, phase, depth, h.radius * _shape(h, a), _wall(h, a), _infarct_angle(h, a))[0]
    area = np.pi * np.mean(endo**2, axis=-1)
    return float(area.mean(axis=1).sum() * spacing / 1000.0)


def heart_extent(h: Heart, angles, depth) -> np.ndarray:
    """Distance (mm) from the LV axis to the outside of the heart and its fat at ED, for image
    angles `angles` at depths `depth` (broadcast against each other)."""
    a = _Angles.of((np.asarray(angles, np.float64) - h.septal_angle + np.pi) % (2 * np.pi) - np.pi)
    _, epi, zm, _ = _lv_radii(h, 0.0, np.asarray(depth, np.float64), h.radius * _shape(h, a), _wall(h, a),
                              _infarct_angle(h, a))
    _, outer = _rv_profile(h, 0.0, zm, a.abs)
    return epi + outer + 1.2 * _fat(h, a)


class HeartPainter:
    """Paints ventricles, walls and pericardial fat for any phase of the cardiac cycle.

    Polar coordinates and angle-only profiles are computed once per subject inside the
    window that can hold the heart; a phase (0 = ED, 1 = ES) then only changes radii, so
    cine frames cost little. Masks are combined arithmetically (no fancy indexing): this is
    the hot loop of the generator.
    """

    def __init__(self, subject: Subject, grid: Grid):
        h = self.heart = subject.heart
        self.rows, self.cols = _heart_window(subject, grid)
        self.depth = grid.depth()
        x, y = subject.warp.displace(grid.x(self.cols), grid.y(self.rows), self.depth)
        dx = x - (h.centre[0] + h.tilt[0] * self.depth)
        dy = y - (h.centre[1] + h.tilt[1] * self.depth)
        self.r = np.sqrt(dx * dx + dy * dy)
        inv_r = 1.0 / np.maximum(self.r, np.float32(1e-3))
        cs, sn = np.float32(math.cos(h.septal_angle)), np.float32(math.sin(h.septal_angle))
        cos = np.clip((dx * cs + dy * sn) * inv_r, -1.0, 1.0)
        self.angles = _Angles(cos, (dy * cs - dx * sn) * inv_r, np.arccos(cos))
        self.radius_shape = h.radius * _shape(h, self.angles)
        self.wall = _wall(h, self.angles)
        self.infarct_angle = _infarct_angle(h, self.angles)
        self.fat = _fat(h, self.angles)
        self.papillary_cos = [self.angles.cos_from(angle) for angle, _ in h.papillary]

    def paint(self, phase: float, tissue: np.ndarray) -> np.ndarray:
        """Paint the heart at `phase` into the window `tissue` (in place); return ACDC labels."""
        h, r = self.heart, self.r
        endo, epi, material_depth, radial = _lv_radii(
            h, phase, self.depth, self.radius_shape, self.wall, self.infarct_angle
        )
        rv_width, rv_outer = _rv_profile(h, phase, material_depth, self.angles.abs)
        fat_width = self.fat * (np.clip(1.2 - 0.6 * material_depth / h.length, 0.5, 1.2) * (epi > 3.0))

        within_epi = r < epi
        lv = r < endo
        rv = ~within_epi & (r < epi + rv_width)
        blood = rv | (lv & ~self._papillary(phase, material_depth, radial))
        within_heart = r < epi + rv_outer
        within_fat = r < epi + rv_outer + fat_width
        # fat, then myocardium (LV and RV walls, papillary muscles), then blood; uint8 wraps.
        u8 = np.uint8
        heart = (u8(Tissue.FAT) + within_heart.view(u8) * u8(Tissue.MYOCARDIUM - Tissue.FAT)
                 - blood.view(u8) * u8(Tissue.MYOCARDIUM - Tissue.BLOOD))
        tissue += within_fat.view(u8) * (heart - tissue)
        return rv.view(u8) + within_epi.view(u8) * u8(MYO) + lv.view(u8)

    def _papillary(self, phase: float, material_depth, radial) -> np.ndarray:
        """Papillary muscles: dark blobs in the cavity near the free wall (labelled LV)."""
        h = self.heart
        mask = np.zeros(self.r.shape, bool)
        window = _window(material_depth, 0.22 * h.length, 0.72 * h.length, 0.12 * h.length)
        if np.ndim(radial) == self.r.ndim:  # an infarct makes the contraction vary in-plane
            radial = radial.mean(axis=(1, 3), keepdims=True)
        for (angle, size), cos_delta in zip(h.papillary, self.papillary_cos):
            endo_at = radial * (h.radius * float(_shape(h, _Angles.of(angle)))) * _endo_profile(h, material_depth)
            distance = (0.62 + 0.1 * phase) * endo_at
            radius = np.minimum(size * (1 + 0.25 * phase) * window, 0.3 * endo_at)
            # |p - c|^2 = r^2 + d^2 - 2 r d cos(delta) < radius^2
            mask |= self.r * (self.r - 2.0 * distance * cos_delta) < radius * radius - distance * distance
        return mask


def _heart_window(subject: Subject, grid: Grid) -> tuple[slice, slice]:
    """Pixel rows and columns that can hold heart or pericardial fat in any slice and phase."""
    h = subject.heart
    angles = np.linspace(-np.pi, np.pi, 72, endpoint=False)
    extent = heart_extent(h, angles, 0.0) + subject.warp.reach + 2.0
    depths = np.asarray(subject.depths + (subject.depths[-1] + grid.thickness,))
    cx = h.centre[0] + h.tilt[0] * depths
    cy = h.centre[1] + h.tilt[1] * depths
    xs, ys = extent * np.cos(angles), extent * np.sin(angles)
    x0, x1 = cx.min() + xs.min(), cx.max() + xs.max()
    y0, y1 = cy.min() + ys.min(), cy.max() + ys.max()
    rows = grid.window(0.0, 0.5 * (y0 + y1), 0.5 * (y1 - y0))[0]
    cols = grid.window(0.5 * (x0 + x1), 0.0, 0.5 * (x1 - x0))[1]
    return rows, cols


# ---------------------------------------------------------------------------------------
# Surroundings


def paint_surroundings(s: Surroundings, heart: Heart, grid: Grid) -> np.ndarray:
    """Tissue of everything but the heart, shape (slices, rows, k, cols, k).

    Body, fat, chest wall, mediastinum, aorta and spine run along the long axis (painted
    once, then repeated for every slice); the liver rises towards the apex.
    """
    plane = np.zeros((1, grid.rows, grid.k, grid.cols, grid.k), np.uint8)
    x, y = grid.x(), grid.y()
    ca, sa = np.float32(np.cos(s.body_angle)), np.float32(np.sin(s.body_angle))
    bx, by = x - np.float32(s.body_centre[0]), y - np.float32(s.body_centre[1])
    u = (ca * bx + sa * by) / np.float32(s.body_axes[0])
    v = (ca * by - sa * bx) / np.float32(s.body_axes[1])
    radius = np.hypot(u, v) + np.float32(1e-6)
    c1, s1 = u / radius, v / radius
    c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
    c3, s3 = c1 * c2 - s1 * s2, s1 * c2 + c1 * s2
    a2, p2, a3, p3 = s.body_shape
    outline = 1.0 + a2 * (c2 * math.cos(p2) + s2 * math.sin(p2)) + a3 * (c3 * math.cos(p3) + s3 * math.sin(p3))
    rho = radius / outline
    mean_axis = 0.5 * sum(s.body_axes)
    fat_edge = 1.0 - s.fat_thickness / mean_axis
    muscle_edge = fat_edge - s.muscle_thickness / mean_axis
    layer = (rho >= muscle_edge).astype(np.uint8) + (rho >= fat_edge) + (rho >= 1.0)
    plane[:] = np.array([Tissue.LUNG, Tissue.MUSCLE, Tissue.FAT, Tissue.AIR], np.uint8)[layer]

    _ellipse(plane, grid, s.mediastinum_centre, s.mediastinum_axes, 0.0, Tissue.SOFT_TISSUE, only=Tissue.LUNG)
    _disc(plane, grid, s.aorta_centre, s.aorta_radius + 1.5, Tissue.SOFT_TISSUE)
    _disc(plane, grid, s.aorta_centre, s.aorta_radius, Tissue.BLOOD)
    sx, sy = s.spine_centre
    back = np.array([sx - heart.centre[0], sy - heart.centre[1]])
    back /= np.linalg.norm(back)
    side = np.array([-back[1], back[0]])
    canal = (sx + back[0] * (s.vertebra_radius + 9.0), sy + back[1] * (s.vertebra_radius + 9.0))
    back_angle = float(np.arctan2(back[1], back[0]))
    for sign in (-1, 1):
        centre = np.asarray(canal) + 26.0 * sign * side + 6.0 * back
        _ellipse(plane, grid, tuple(centre), (15.0, 20.0), back_angle, Tissue.MUSCLE, only=None)
    _disc(plane, grid, canal, 9.0, Tissue.BONE)
    _disc(plane, grid, canal, 6.5, Tissue.CSF)
    _disc(plane, grid, s.spine_centre, s.vertebra_radius, Tissue.BONE)
    _disc(plane, grid, s.spine_centre, s.vertebra_radius - 2.0, Tissue.MARROW)

    tissue = np.repeat(plane, len(grid.depths), axis=0)
    _paint_liver(tissue, s, heart, grid)
    return tissue


def _paint_liver(tissue: np.ndarray, s: Surroundings, heart: Heart, grid: Grid) -> None:
    """Liver below the heart, following the heart's outline towards the apex (the diaphragm);
    it only replaces lung, so it stays inside the chest wall."""
    depth = grid.depth()
    liver_distance = (heart_extent(heart, s.liver_angle, depth) + s.liver_gap + s.liver_axes[1]).astype(np.float32)
    ca, sa = np.float32(np.cos(s.liver_angle)), np.float32(np.sin(s.liver_angle))
    cx = heart.centre[0] + heart.tilt[0] * depth + liver_distance * ca
    cy = heart.centre[1] + heart.tilt[1] * depth + liver_distance * sa
    reach = max(s.liver_axes) + abs(np.ptp(cx) + 1j * np.ptp(cy))
    rows, cols = grid.window(float(cx.mean()), float(cy.mean()), reach)
    lx, ly = grid.x(cols) - cx, grid.y(rows) - cy
    radial, along = ca * lx + sa * ly, ca * ly - sa * lx
    inside = (along / np.float32(s.liver_axes[0])) ** 2 + (radial / np.float32(s.liver_axes[1])) ** 2 < 1.0
    window = tissue[:, rows, :, cols, :]
    window[inside & (window == Tissue.LUNG)] = Tissue.LIVER


def _disc(plane: np.ndarray, grid: Grid, centre, radius: float, value: int) -> None:
    rows, cols = grid.window(centre[0], centre[1], radius)
    dx, dy = grid.x(cols) - np.float32(centre[0]), grid.y(rows) - np.float32(centre[1])
    window = plane[:, rows, :, cols, :]
    window[(dx * dx + dy * dy < radius * radius) & (window != Tissue.AIR)] = value


def _ellipse(plane: np.ndarray, grid: Grid, centre, axes, angle: float, value: int, only: int | None) -> None:
    rows, cols = grid.window(centre[0], centre[1], max(axes))
    dx, dy = grid.x(cols) - np.float32(centre[0]), grid.y(rows) - np.float32(centre[1])
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    a, b = (ca * dx + sa * dy) / np.float32(axes[0]), (ca * dy - sa * dx) / np.float32(axes[1])
    window = plane[:, rows, :, cols, :]
    allowed = window != Tissue.AIR if only is None else window == only
    window[(a * a + b * b < 1.0) & allowed] = value


# ---------------------------------------------------------------------------------------
# Sampling


def sample_subject(rng: np.random.Generator, group: str, site: SiteParameters) -> Subject:
    """Draw one subject of `group`; the slice positions follow `site`'s slice spacing."""
    g = GROUP_PARAMETERS[group]
    u = rng.uniform
    edv, ef = u(*g.lv_edv), u(*g.lv_ef)
    wall = u(*g.wall)
    apex_wall = float(np.clip(0.8 * wall, 5.0, 10.0))
    spacing = site.slice_spacing
    first = u(1.0, 4.0)
    length = min(u(*g.length), 12 * spacing - first - apex_wall - 2.0)
    n_slices = int(np.ceil((length + apex_wall - first) / spacing)) + int(rng.integers(0, 2))
    depths = tuple(float(first + spacing * i) for i in range(int(np.clip(n_slices, 8, 12))))

    infarct = None
    if g.infarct:  # on the free wall, never the septum
        infarct = (np.pi + u(-1.2, 1.2), u(0.5, 0.9), u(0.4, 0.6), u(0.15, 0.4) * length, u(0.75, 1.0) * length)
    rv_scale = u(*g.rv_scale)
    rv_half = u(1.3, 1.55) + 0.15 * (rv_scale - 1.0)
    fat = [(rv_half * side + u(-0.2, 0.2), u(0.25, 0.45), u(2.0, 5.0)) for side in (-1, 1)]
    fat += [(u(-np.pi, np.pi), u(0.3, 0.7), u(1.0, 4.0)) for _ in range(int(rng.integers(1, 4)))]
    offset_r, offset_a = 12.0 * np.sqrt(u()), u(-np.pi, np.pi)
    heart = Heart(
        centre=(float(offset_r * np.cos(offset_a)), float(offset_r * np.sin(offset_a))),
        tilt=(u(-0.08, 0.08), u(-0.08, 0.08)),
        septal_angle=np.pi + u(-0.6, 0.6),
        length=length,
        radius=1.0,
        shape=((2, u(0.03, 0.08), u(0, 2 * np.pi)), (3, u(0.0, 0.03), u(0, 2 * np.pi))),
        wall=wall,
        apex_wall=apex_wall,
        septal_hypertrophy=u(*g.septal_hypertrophy),
        infarct=infarct,
        radial_es=1.0,
        long_es=u(0.93, 0.98) if ef < 0.45 else u(0.88, 0.94),
        papillary=((np.pi - u(0.55, 0.85), u(2.5, 4.0)), (np.pi + u(0.55, 0.85), u(2.5, 4.0))),
        rv_width=u(22.0, 28.0) * rv_scale,
        rv_half_angle=rv_half,
        rv_length=u(0.75, 0.88) * length,
        rv_wall=u(2.5, 3.5),
        rv_es=(1.0 - u(*g.rv_ef)) ** 0.85,
        fat=tuple(fat),
    )
    heart = _calibrate(heart, edv, ef, depths, site)
    height = float(round(u(155, 195)))
    weight = float(round(u(19, 30) * (height / 100) ** 2))
    return Subject(
        group=group,
        height=height,
        weight=weight,
        nb_frames=int(rng.integers(25, 31)),
        es_frame=int(rng.integers(10, 15)),
        depths=depths,
        heart=heart,
        surroundings=_sample_surroundings(rng, heart),
        warp=_sample_warp(rng),
    )


def _calibrate(heart: Heart, edv: float, ef: float, depths, site: SiteParameters) -> Heart:
    """Scale the LV to the sampled ED volume, then find the ES radius factor for the EF."""

    def volume(h: Heart, phase: float) -> float:
        return lv_volume(h, phase, depths, site.slice_thickness, site.slice_spacing)

    heart = replace(heart, radius=float(np.sqrt(edv / volume(heart, 0.0))))
    target = edv * (1.0 - ef)
    low, high = 0.2, 1.0
    for _ in range(30):
        mid = 0.5 * (low + high)
        if volume(replace(heart, radial_es=mid), 1.0) < target:
            low = mid
        else:
            high = mid
    return replace(heart, radial_es=0.5 * (low + high))


def _sample_surroundings(rng: np.random.Generator, heart: Heart) -> Surroundings:
    """Aorta and spine below-lateral of the heart and clear of it, the liver below, then a
    body whose chest wall sits close to the heart but never cuts into it."""
    u = rng.uniform
    cx, cy = heart.centre
    aorta_angle = u(0.45, 1.1)
    aorta_radius = u(10.0, 13.0)
    aorta_distance = float(heart_extent(heart, aorta_angle, 0.0)) + u(6.0, 14.0) + aorta_radius
    aorta = (cx + aorta_distance * math.cos(aorta_angle), cy + aorta_distance * math.sin(aorta_angle))
    vertebra = u(14.0, 18.0)
    spine_angle = aorta_angle + u(0.2, 0.5)
    spine_distance = aorta_radius + vertebra + u(5.0, 9.0)
    spine = (aorta[0] + spine_distance * math.cos(spine_angle), aorta[1] + spine_distance * math.sin(spine_angle))
    body_angle = u(-0.12, 0.12)
    fat, muscle = u(6.0, 16.0), u(10.0, 18.0)
    angles = np.linspace(-np.pi, np.pi, 48, endpoint=False)
    reach = heart_extent(heart, angles, 0.0) + 6.0
    outline = np.stack([cx + reach * np.cos(angles), cy + reach * np.sin(angles)], axis=1)
    # The chest wall lies a little above the heart, the back a little behind the spine.
    top = outline[:, 1].min() - fat - muscle - u(2.0, 12.0)
    bottom = spine[1] + vertebra + u(45.0, 55.0)
    body_centre = (cx + u(-10.0, 10.0), 0.5 * (top + bottom))
    axes = np.array([u(135.0, 155.0), 0.5 * (bottom - top)])
    aorta_back = (aorta[0] + (aorta_radius + 3.0) * math.cos(spine_angle),
                  aorta[1] + (aorta_radius + 3.0) * math.sin(spine_angle))
    in_cavity = np.concatenate([outline, [aorta_back]])
    back = np.array([spine[0] - cx, spine[1] - cy]) / math.hypot(spine[0] - cx, spine[1] - cy)
    in_body = np.array(spine) + (vertebra + 40.0) * back
    for _ in range(8):  # widen or heighten the body until the heart, aorta and spine fit
        cavity_edge = 1.0 - (fat + muscle) / axes.mean()
        worst = None
        for points, edge in ((in_cavity, cavity_edge), (in_body[None], 1.0)):
            u_, v_ = _body_coordinates(points, body_centre, axes, body_angle)
            rho = 1.08 * np.hypot(u_, v_)  # margin for the outline's harmonics
            i = int(rho.argmax())
            if rho[i] > edge and (worst is None or rho[i] / edge > worst[0]):
                worst = (rho[i] / edge, abs(u_[i]) > abs(v_[i]))
        if worst is None:
            break
        axes[0 if worst[1] else 1] *= worst[0] * 1.01
    return Surroundings(
        body_centre=body_centre,
        body_axes=(float(axes[0]), float(axes[1])),
        body_angle=body_angle,
        body_shape=(u(0.0, 0.04), u(0, 2 * np.pi), u(0.0, 0.03), u(0, 2 * np.pi)),
        fat_thickness=fat,
        muscle_thickness=muscle,
        liver_angle=float(np.pi / 2 + u(0.35, 0.8)),
        liver_gap=u(5.0, 12.0),
        liver_axes=(u(80.0, 100.0), u(45.0, 60.0)),
        aorta_centre=(float(aorta[0]), float(aorta[1])),
        aorta_radius=aorta_radius,
        spine_centre=(float(spine[0]), float(spine[1])),
        vertebra_radius=vertebra,
        mediastinum_centre=(float(0.5 * (cx + aorta[0]) + u(-5, 5)), float(0.5 * (cy + aorta[1]) + u(-5, 5))),
        mediastinum_axes=(u(22.0, 32.0), u(14.0, 22.0)),
    )


def _body_coordinates(points: np.ndarray, centre, axes, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Points (n, 2) in the body ellipse's normalised frame (the outline is the unit circle)."""
    dx, dy = points[:, 0] - centre[0], points[:, 1] - centre[1]
    ca, sa = math.cos(angle), math.sin(angle)
    return (ca * dx + sa * dy) / axes[0], (ca * dy - sa * dx) / axes[1]


def _sample_warp(rng: np.random.Generator) -> Warp:
    u = rng.uniform

    def terms():
        return tuple(
            (u(0.7, 1.4), 2 * np.pi / u(60.0, 140.0), u(0, 2 * np.pi), 2 * np.pi / u(60.0, 140.0),
             u(0, 2 * np.pi), 2 * np.pi / u(100.0, 250.0), u(0, 2 * np.pi))
            for _ in range(3)
        )

    return Warp(terms_x=terms(), terms_y=terms())
