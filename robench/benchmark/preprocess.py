"""The paper's pre-processing (protocol.md §2) and the inverse mapping of predictions.

Volume: clip to the 2nd/98th percentile, rescale to [0, 1], resample in-plane to the
budget's spacing (linear image, nearest label), keep the slice spacing. Training slices
are fitted (centre pad/crop) to the pad size; test slices to the crop size and min-max
normalised per slice. Predictions are probability maps that are un-fitted and resampled
(linearly) back to the volume's original grid before the argmax, so metrics are computed
on the grid the reference was drawn on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from robench.benchmark.suites.base import Case
from robench.imageops import centre_crop, minmax_per_slice, uncrop


def normalise_volume(image: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    lo, hi = np.percentile(image, [low, high])
    if hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    return ((np.clip(image, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def inplane_size(shape_yx: tuple[int, int], spacing_yx: tuple[float, float], target: float) -> tuple[int, int]:
    return tuple(max(1, int(round(n * s / target))) for n, s in zip(shape_yx, spacing_yx))  # type: ignore[return-value]


def resample_slices(volume: np.ndarray | torch.Tensor, size: tuple[int, int], *, labels: bool = False) -> torch.Tensor:
    """(Z, Y, X) or (Z, C, Y, X) → same with new (Y, X); linear for intensities/probabilities, nearest for labels."""
    t = torch.as_tensor(volume)
    squeeze = t.ndim == 3
    if squeeze:
        t = t[:, None]
    if labels:
        out = F.interpolate(t.float(), size=size, mode="nearest-exact").to(torch.int64)
    else:
        out = F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)
    return out[:, 0] if squeeze else out


@dataclass(frozen=True)
class PreparedVolume:
    """A volume resampled to the training resolution, before fitting."""

    image: torch.Tensor  # (Z, Y', X') or (Z, C, Y', X') float in [0, 1]
    label: torch.Tensor | None  # (Z, Y', X') int64
    original_shape: tuple[int, int, int]  # (Z, Y, X) of the case's grid


def prepare(case: Case, spacing_mm: float) -> PreparedVolume:
    """Clip/rescale, resample in-plane. Artefact copies were normalised before and after their
    corruption on the paper's grid (protocol §3), so they are only resampled: clipping them again
    would cut off the very extremes (spikes, ghosts) the corruption put there."""
    size = inplane_size(case.image.shape[-2:], case.spacing[1:], spacing_mm)
    normalised = str(case.meta.get("grid", "")).startswith("paper")
    if normalised:
        volume = case.image.astype(np.float32)
    elif case.image.ndim == 4:  # (Z, C, Y, X): each channel normalised on its own (another contrast, another range)
        volume = np.stack([normalise_volume(case.image[:, c]) for c in range(case.image.shape[1])], axis=1)
    else:
        volume = normalise_volume(case.image)
    image = resample_slices(volume, size)
    label = None if case.label is None else resample_slices(case.label.astype(np.int64), size, labels=True)
    return PreparedVolume(image, label, (case.image.shape[0], *case.image.shape[-2:]))  # type: ignore[arg-type]


def training_slices(case: Case, spacing_mm: float, pad: int, *, all_slices: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled slices of a case (every slice with `all_slices`), fitted to pad²: ((n,pad,pad) float, (n,pad,pad) int64).

    The cardiac protocol trains on labelled slices only; where the foreground is rare and often
    absent (a tumour), the network must also see slices without it, or it finds it everywhere.
    """
    vol = prepare(case, spacing_mm)
    assert vol.label is not None
    keep = torch.ones(len(vol.label), dtype=torch.bool) if all_slices else vol.label.flatten(1).amax(1) > 0
    return centre_crop(vol.image[keep], pad), centre_crop(vol.label[keep], pad)


def test_slices(vol: PreparedVolume, crop: int, norm: str = "per-slice") -> torch.Tensor:
    """(Z, C, crop, crop) network input (C = 1 for single-channel volumes): centre fit, then per-slice
    min-max, or (`norm="none"`, the public tester's normalize_2D=False) the volume's own scaling."""
    slices = centre_crop(vol.image, crop)
    if norm == "per-slice":
        slices = minmax_per_slice(slices)
    elif norm != "none":
        raise ValueError(f"unknown test normalisation {norm!r}")
    return slices[:, None] if slices.ndim == 3 else slices


def labels_on_original_grid(probs: torch.Tensor, vol: PreparedVolume) -> torch.Tensor:
    """(Z, C, crop, crop) probabilities → (Z, Y, X) int16 label map on the case's original grid, on probs' device."""
    background = torch.zeros(probs.shape[1], dtype=probs.dtype, device=probs.device)
    background[0] = 1.0
    canvas = uncrop(probs, tuple(vol.image.shape[-2:]), background)
    original = resample_slices(canvas, vol.original_shape[1:])
    # argmax over a contiguous last axis: the same labels (first maximum wins either way), ~10× faster
    # than over the strided class axis of (Z, C, Y, X)
    return original.permute(0, 2, 3, 1).contiguous().argmax(-1).to(torch.int16)


def to_original_grid(probs: torch.Tensor, vol: PreparedVolume) -> np.ndarray:
    """(Z, C, crop, crop) probabilities → (Z, Y, X) label map on the case's original grid, as a NumPy array."""
    return labels_on_original_grid(probs, vol).cpu().numpy()
