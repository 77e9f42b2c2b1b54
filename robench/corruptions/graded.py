"""Graded MR corruptions (ImageNet-C style): nine types × five severities from fixed tables.

Each type splits into a per-case draw (which axis, which noise realisation, which spike
position, the signs and shape of the bias field...) and a severity table that fixes only
the magnitude. The draw is seeded per case and shared by all five severities, so for a
given case severity 3 is severity 2 made stronger, never a different artefact. The levels
were calibrated on real ACDC test volumes (docs/corruptions.md) so that 1 is mild, 5 severe,
and image quality falls monotonically.

TorchIO's deterministic transforms are used wherever TorchIO models the corruption
(BiasField, Ghosting, Motion, Spike, Blur, Gamma, Resample pairs as in RandomAnisotropy).
Rician noise and k-space undersampling are written here because TorchIO has neither:
its RandomNoise is additive Gaussian, which ignores that MR magnitude images are the
modulus of complex data, and it has no sampling-mask transform.

Parameters are in the units of the paper grid (graded sets run on a TorchIO image with
spacing (z, 1.367, 1.367) mm and its origin at the stack centre): intensities are fractions
of the per-slice [0, 1] range, lengths are mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torchio as tio

from robench.benchmark.config import PAPER_SPACING_MM
from robench.corruptions.pipeline import run_transform
from robench.corruptions.recipe import ImageTransform, Recipe, replay
from robench.errors import ConfigError

SEVERITIES = (1, 2, 3, 4, 5)
BIAS_ORDER = 3
_BIAS_TERMS = math.comb(BIAS_ORDER + 3, 3)  # monomials x^i y^j z^k with i + j + k <= order
_IN_PLANE = (1, 2)  # axes of the (Z, Y, X) stack that a 2-D acquisition encodes


@dataclass(frozen=True)
class GradedCorruption:
    """A corruption type: its severity table and how a per-case draw becomes transform parameters."""

    name: str
    description: str
    implementation: str
    levels: tuple[Mapping[str, float], ...]  # severity 1..5
    label_format: str  # a level as short text, e.g. "σ={sigma:g}"
    draw: Callable[[np.random.Generator], dict[str, Any]]
    parameters: Callable[[Mapping[str, float], Mapping[str, Any]], dict[str, Any]]
    transform: Callable[[Mapping[str, Any]], ImageTransform]

    def level(self, severity: int) -> Mapping[str, float]:
        check_severity(severity)
        return self.levels[severity - 1]

    def label(self, severity: int) -> str:
        return self.label_format.format(**self.level(severity))

    def apply(self, stack: np.ndarray, severity: int, *, seed: int = 0) -> np.ndarray:
        return apply_corruption(stack, self.name, severity, seed=seed)


def _on_data(fn: Callable[[torch.Tensor], torch.Tensor]) -> ImageTransform:
    """Wrap a tensor function of the (C, Z, Y, X) data as an image transform."""

    def apply(image: tio.ScalarImage) -> tio.ScalarImage:
        return tio.ScalarImage(tensor=fn(image.data.float()), affine=image.affine)

    return apply


# ---- hand-written: TorchIO has neither -------------------------------------------------


def rician_noise(data: torch.Tensor, sigma: float, noise_seed: int) -> torch.Tensor:
    """|x + σ(n₁ + i n₂)|: the magnitude of the image plus complex Gaussian noise.

    The realisation comes from numpy's PCG64 seeded with `noise_seed`, so the parameter file
    stores a seed, not a volume of noise. One realisation scaled by σ serves all severities.
    """
    rng = np.random.Generator(np.random.PCG64(noise_seed))
    real = torch.from_numpy(rng.standard_normal(tuple(data.shape), dtype=np.float32))
    imag = torch.from_numpy(rng.standard_normal(tuple(data.shape), dtype=np.float32))
    return torch.sqrt((data + sigma * real) ** 2 + (sigma * imag) ** 2)


def sampling_mask(n: int, acceleration: int, centre_fraction: float, offset: int) -> torch.Tensor:
    """Cartesian phase-encode lines kept: a fully sampled centre block plus every R-th line."""
    lines = torch.arange(n)
    centre = int(round(centre_fraction * n))
    start = (n - centre) // 2
    return ((lines - offset) % acceleration == 0) | ((lines >= start) & (lines < start + centre))


def kspace_undersample(data: torch.Tensor, axis: int, acceleration: int, centre_fraction: float, offset: int) -> torch.Tensor:
    """Zero-filled magnitude reconstruction of each slice from an equispaced Cartesian mask.

    `axis` (1 = rows, 2 = columns of the (Z, Y, X) stack) is the phase-encode direction;
    dropping lines along it folds copies of the anatomy FOV/R apart (aliasing), the
    artefact of accelerated cine acquisitions without a parallel-imaging reconstruction.
    """
    dim = data.ndim - 3 + axis  # (C, Z, Y, X): axis 1 → Y, 2 → X
    k = torch.fft.fftshift(torch.fft.fft2(data), dim=(-2, -1))
    mask = sampling_mask(data.shape[dim], acceleration, centre_fraction, offset)
    shape = [1] * data.ndim
    shape[dim] = -1
    k = k * mask.view(shape)
    return torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))).abs().float()


# ---- the nine types ----------------------------------------------------------------------


def _bias() -> GradedCorruption:
    return GradedCorruption(
        name="bias",
        description="smooth multiplicative intensity inhomogeneity (coil sensitivity): exp of a 3rd-order polynomial",
        implementation="torchio.BiasField",
        levels=tuple({"coefficient": c} for c in (0.15, 0.3, 0.45, 0.6, 0.8)),
        label_format="c={coefficient:g}",
        draw=lambda rng: {"unit": rng.uniform(-1.0, 1.0, _BIAS_TERMS).tolist()},
        parameters=lambda level, d: {"coefficients": [level["coefficient"] * u for u in d["unit"]], "order": BIAS_ORDER},
        transform=lambda p: tio.BiasField(coefficients=list(p["coefficients"]), order=int(p["order"])),
    )


def _ghosting() -> GradedCorruption:
    return GradedCorruption(
        name="ghosting",
        description="periodic k-space line errors (pulsatile flow, breathing): faint copies along the phase-encode axis",
        implementation="torchio.Ghosting",
        levels=tuple({"intensity": s} for s in (0.1, 0.25, 0.45, 0.7, 1.0)),
        label_format="I={intensity:g}",
        draw=lambda rng: {"num_ghosts": int(rng.integers(4, 11)), "axis": int(rng.choice(_IN_PLANE))},
        parameters=lambda level, d: {"num_ghosts": d["num_ghosts"], "axis": d["axis"], "intensity": level["intensity"], "restore": None},
        transform=lambda p: tio.Ghosting(num_ghosts=int(p["num_ghosts"]), axis=int(p["axis"]), intensity=float(p["intensity"]), restore=p["restore"]),
    )


def _motion_draw(rng: np.random.Generator, movements: int = 3, perturbation: float = 0.3) -> dict[str, Any]:
    step = 1.0 / (movements + 1)  # TorchIO's timing: evenly spaced movements, jittered
    times = [step * (i + 1) + rng.uniform(-step * perturbation, step * perturbation) for i in range(movements)]
    return {"rotation": rng.uniform(-1, 1, movements).tolist(), "shift": rng.uniform(-1, 1, (movements, 2)).tolist(), "times": times}


def _motion() -> GradedCorruption:
    return GradedCorruption(
        name="motion",
        description="in-plane rigid motion during acquisition: k-space segments from moved copies (Shaw et al. 2019)",
        implementation="torchio.Motion",
        levels=tuple({"degrees": d, "translation_mm": t} for d, t in ((0.3, 0.3), (0.7, 0.7), (1.5, 1.5), (3.0, 3.0), (8.0, 8.0))),
        label_format="{degrees:g}°, {translation_mm:g} mm",
        draw=_motion_draw,
        parameters=lambda level, d: {
            # rotation about the slice axis and shifts within the slice: 2-D cine moves in-plane
            "degrees": [[level["degrees"] * r, 0.0, 0.0] for r in d["rotation"]],
            "translation": [[0.0, level["translation_mm"] * sy, level["translation_mm"] * sx] for sy, sx in d["shift"]],
            "times": d["times"], "image_interpolation": "linear",
        },
        transform=lambda p: tio.Motion(
            degrees=np.asarray(p["degrees"], np.float64), translation=np.asarray(p["translation"], np.float64),
            times=np.asarray(p["times"], np.float64), image_interpolation=str(p["image_interpolation"]),
        ),
    )


def _spike() -> GradedCorruption:
    return GradedCorruption(
        name="spike",
        description="a k-space spike (RF interference): herringbone stripes over the whole image",
        implementation="torchio.Spike",
        levels=tuple({"intensity": s} for s in (0.05, 0.1, 0.2, 0.4, 0.8)),
        label_format="I={intensity:g}",
        draw=lambda rng: {"spikes_positions": rng.uniform(0.0, 1.0, (1, 3)).tolist()},
        parameters=lambda level, d: {"spikes_positions": d["spikes_positions"], "intensity": level["intensity"]},
        transform=lambda p: tio.Spike(spikes_positions=np.asarray(p["spikes_positions"], np.float64).reshape(-1, 3), intensity=float(p["intensity"])),
    )


def _noise() -> GradedCorruption:
    return GradedCorruption(
        name="noise",
        description="Rician noise: magnitude of the image plus complex Gaussian noise (low SNR)",
        implementation="hand-written (TorchIO's RandomNoise is additive Gaussian)",
        levels=tuple({"sigma": s} for s in (0.01, 0.025, 0.05, 0.08, 0.12)),
        label_format="σ={sigma:g}",
        draw=lambda rng: {"noise_seed": int(rng.integers(0, 2**63 - 1))},
        parameters=lambda level, d: {"sigma": level["sigma"], "noise_seed": d["noise_seed"]},
        transform=lambda p: _on_data(lambda x: rician_noise(x, float(p["sigma"]), int(p["noise_seed"]))),
    )


def _blur() -> GradedCorruption:
    return GradedCorruption(
        name="blur",
        description="in-plane Gaussian blur (reduced effective resolution, filtering)",
        implementation="torchio.Blur",
        levels=tuple({"std_mm": s} for s in (1.0, 1.5, 2.0, 2.75, 3.5)),
        label_format="σ={std_mm:g} mm",
        draw=lambda rng: {},
        parameters=lambda level, d: {"std": [0.0, level["std_mm"], level["std_mm"]]},
        transform=lambda p: tio.Blur(std=tuple(float(s) for s in p["std"])),
    )


def _gamma() -> GradedCorruption:
    return GradedCorruption(
        name="gamma",
        description="contrast change: intensities raised to γ = exp(±g), brighter or darker per case",
        implementation="torchio.Gamma",
        levels=tuple({"log_gamma": g} for g in (0.2, 0.4, 0.6, 0.85, 1.1)),
        label_format="|log γ|={log_gamma:g}",
        draw=lambda rng: {"sign": int(rng.choice((-1, 1)))},
        parameters=lambda level, d: {"gamma": math.exp(d["sign"] * level["log_gamma"])},
        transform=lambda p: tio.Gamma(gamma=float(p["gamma"])),
    )


def _anisotropic(axis: int, factor: float) -> ImageTransform:
    """Nearest downsampling of one axis by `factor`, linear back: TorchIO's RandomAnisotropy, made deterministic."""

    def apply(image: tio.ScalarImage) -> tio.ScalarImage:
        spacing = [float(s) for s in image.spacing]
        spacing[axis] *= factor
        low = replay(tio.Resample(tuple(spacing), image_interpolation="nearest"), image)
        return replay(tio.Resample((image.spatial_shape, image.affine), image_interpolation="linear"), low)

    return apply


def _lowres() -> GradedCorruption:
    return GradedCorruption(
        name="lowres",
        description="anisotropic low resolution: one in-plane axis acquired with thicker voxels, then interpolated back",
        implementation="torchio.Resample ×2 (as RandomAnisotropy)",
        levels=tuple({"factor": f} for f in (2.0, 3.5, 5.0, 7.0, 10.0)),
        label_format="×{factor:g}",
        draw=lambda rng: {"axis": int(rng.choice(_IN_PLANE))},
        parameters=lambda level, d: {"axis": d["axis"], "factor": level["factor"]},
        transform=lambda p: _anisotropic(int(p["axis"]), float(p["factor"])),
    )


# R ∈ {2, 4, 8} with offset = line mod R and shrinking centre blocks: every level's lines are a
# subset of the previous level's, so a case loses k-space monotonically with severity.
KSPACE_LEVELS = ((2, 0.3), (2, 0.15), (4, 0.15), (4, 0.08), (8, 0.05))


def _kspace() -> GradedCorruption:
    return GradedCorruption(
        name="kspace",
        description="Cartesian k-space undersampling: centre lines plus every R-th phase-encode line, zero-filled (aliasing)",
        implementation="hand-written (TorchIO has no sampling-mask transform)",
        levels=tuple({"acceleration": r, "centre_fraction": c} for r, c in KSPACE_LEVELS),
        label_format="R={acceleration:g}, centre {centre_fraction:.0%}",
        draw=lambda rng: {"axis": int(rng.choice(_IN_PLANE)), "line": int(rng.integers(0, 8))},
        parameters=lambda level, d: {
            "axis": d["axis"], "acceleration": int(level["acceleration"]), "centre_fraction": level["centre_fraction"],
            "offset": d["line"] % int(level["acceleration"]),
        },
        transform=lambda p: _on_data(
            lambda x: kspace_undersample(x, int(p["axis"]), int(p["acceleration"]), float(p["centre_fraction"]), int(p["offset"]))
        ),
    )


CORRUPTIONS: dict[str, GradedCorruption] = {
    c.name: c for c in (_bias(), _ghosting(), _motion(), _spike(), _noise(), _blur(), _gamma(), _lowres(), _kspace())
}


def get_corruption(name: str) -> GradedCorruption:
    try:
        return CORRUPTIONS[name]
    except KeyError:
        raise ConfigError(f"unknown corruption {name!r}; valid corruptions: {', '.join(CORRUPTIONS)}") from None


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ConfigError(f"severity must be one of {', '.join(map(str, SEVERITIES))}, got {severity!r}")
    return int(severity)


def set_name(corruption: str, severity: int) -> str:
    return f"{corruption}@{severity}"


def graded_parameters(name: str, severity: int, seed: int) -> dict[str, Any]:
    """The transform parameters of one case: its draw (from `seed`) at this severity's magnitude."""
    corruption = get_corruption(name)
    return corruption.parameters(corruption.level(severity), corruption.draw(np.random.default_rng(seed)))


def graded_recipe(name: str, severity: int) -> Recipe:
    corruption = get_corruption(name)
    level = corruption.level(severity)
    return Recipe(
        name=set_name(name, severity), family="graded", corruption=name, severity=int(severity), copies=1, stream=name,
        distribution={"implementation": corruption.implementation, "level": dict(level)},
        draw=lambda seed: graded_parameters(name, severity, seed), transform=corruption.transform, physical_grid=True,
    )


def graded_recipes() -> tuple[Recipe, ...]:
    return tuple(graded_recipe(name, s) for name in CORRUPTIONS for s in SEVERITIES)


def apply_corruption(
    stack: np.ndarray, name: str, severity: int, *, seed: int = 0,
    spacing: tuple[float, float, float] = (10.0, PAPER_SPACING_MM, PAPER_SPACING_MM),
) -> np.ndarray:
    """Corrupt a (Z, Y, X) slice stack in [0, 1] with one graded type at one severity.

    The plain-array entry point (notebooks, augmentation): no paper-grid pipeline, no
    parameter file. `seed` is the per-case seed; a test set derives it from (corruption
    seed, type, case, copy) with `derive_seed`.
    """
    check_severity(severity)
    recipe = graded_recipe(name, severity)
    data = torch.as_tensor(np.asarray(stack, np.float32))
    return run_transform(recipe, recipe.draw(seed), data, spacing).numpy()
