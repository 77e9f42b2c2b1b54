"""The paper-grid pipeline that turns a source case and a parameter record into an artefact case.

The paper generated ACDC-C on its pre-processed grid, not on the scanner grid: volume
2–98 percentile clip and rescale, in-plane resampling to 1.36719 mm, per-slice min-max,
centre crop 192², one TorchIO transform on the (1, S, 192, 192) stack, per-slice min-max
again, and padding back to the resampled size. Artefact cases therefore live on that grid
(spacing (z, 1.36719, 1.36719) mm, label resampled with nearest neighbours and otherwise
unchanged) and their metrics are computed there; they are not mapped back to the scanner
grid, since the paper's corrupted images never existed on it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torchio as tio

from robench.benchmark.config import CARDIAC_GEOMETRY, Geometry
from robench.benchmark.preprocess import PreparedVolume, prepare
from robench.benchmark.suites.base import Case
from robench.corruptions.recipe import Recipe, replay
from robench.imageops import centre_crop, minmax_per_slice, uncrop

def paper_grid(source: Case, geometry: Geometry = CARDIAC_GEOMETRY) -> tuple[PreparedVolume, torch.Tensor]:
    """The volume resampled to the suite's paper grid and its network-view stack: (Z, crop, crop), each
    slice min-max to [0, 1] (cardiac: 1.367 mm, 192², as the paper generated ACDC-C)."""
    volume = prepare(source, geometry.spacing_mm)
    return volume, minmax_per_slice(centre_crop(volume.image, geometry.crop))


def grid_affine(shape: tuple[int, ...], spacing: tuple[float, float, float], physical: bool) -> np.ndarray:
    """Affine of the TorchIO image of a (Z, Y, X) stack.

    ACDC-C keeps the identity of a bare tensor, as the paper called TorchIO. Graded sets get
    the true spacing with the origin at the stack centre: TorchIO's Motion rotates about the
    world origin, and only there does a rotation stay a rotation of the heart.
    """
    if not physical:
        return np.eye(4)
    spacing_arr = np.asarray(spacing, np.float64)
    affine = np.diag([*spacing_arr, 1.0])
    affine[:3, 3] = -spacing_arr * (np.asarray(shape[-3:], np.float64) - 1) / 2
    return affine


def run_transform(recipe: Recipe, parameters: Mapping[str, Any], stack: torch.Tensor, spacing: tuple[float, float, float]) -> torch.Tensor:
    """Apply a recipe's deterministic transform to a (Z, Y, X) stack; returns (Z, Y, X) float32.

    The replay leaves torch's global generator alone (`recipe.replay`): the caller's RNG stream
    (training, sampling) stays exactly where it was, and evaluation workers may corrupt cases
    side by side.
    """
    image = tio.ScalarImage(tensor=stack[None].float(), affine=grid_affine(tuple(stack.shape), spacing, recipe.physical_grid))
    return replay(recipe.transform(parameters), image).data[0].float()


def corrupt_case(
    source: Case, recipe: Recipe, record: Mapping[str, Any], *, case_id: str, copy: int,
    grid: tuple[PreparedVolume, torch.Tensor] | None = None, geometry: Geometry = CARDIAC_GEOMETRY,
) -> Case:
    """One artefact case on the suite's paper grid from its source and its (frozen) parameter record.

    `grid` is `paper_grid(source, geometry)` when the caller already made it (every copy of a volume shares it)."""
    volume, stack = grid if grid is not None else paper_grid(source, geometry)
    spacing = (float(source.spacing[0]), geometry.spacing_mm, geometry.spacing_mm)
    corrupted = minmax_per_slice(run_transform(recipe, record["parameters"], stack, spacing))
    image = uncrop(corrupted, tuple(volume.image.shape[-2:]), 0.0).numpy().astype(np.float32)
    label = None
    if volume.label is not None and source.label is not None:
        label = volume.label.numpy().astype(source.label.dtype)
    meta = {
        **source.meta,
        **{key: source.meta.get(key, "") for key in ("subject", "frame", "site", "vendor")},
        "corruption": recipe.corruption, "severity": recipe.severity, "copy": copy, "family": recipe.family,
        "set": recipe.name, "source_case": source.case_id, "grid": f"paper ({geometry.spacing_mm:g} mm in-plane)",
        "corruption_record": dict(record),
    }
    return Case(case_id, image, label, spacing, meta, paper_grid_affine(source, tuple(image.shape), geometry.spacing_mm))


def paper_grid_affine(source: Case, shape: tuple[int, int, int], spacing_mm: float = CARDIAC_GEOMETRY.spacing_mm) -> np.ndarray:
    """(X, Y, Z) voxel-to-world affine of the resampled grid: the source's field-of-view centre, exact paper spacing."""
    z, y, x = source.spacing
    base = source.affine if source.affine is not None else np.diag([x, y, z, 1.0])
    old = np.asarray(source.image.shape[::-1], np.float64)  # (X, Y, Z)
    new = np.asarray(shape[::-1], np.float64)
    scale = np.array([spacing_mm / x, spacing_mm / y, 1.0])
    to_old = np.diag([*scale, 1.0])
    to_old[:3, 3] = (old - 1) / 2 - scale * (new - 1) / 2  # centre voxel maps to centre voxel
    return np.asarray(base, np.float64) @ to_old
