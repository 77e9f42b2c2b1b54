"""Slice-level tensor operations shared by training augmentation and test-time pre-processing.

Training crops and test-time crops must agree pixel for pixel, so both use these functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _offsets(n: int, size: int) -> tuple[int, int, int]:
    """(source start, destination start, length) along one axis for a centre fit of n → size."""
    if n >= size:
        return (n - size) // 2, 0, size
    return 0, (size - n) // 2, n


def centre_crop(x: Tensor, size: int, fill: float = 0.0) -> Tensor:
    """Centre crop (or pad with `fill`) the last two dims to ``size × size``.

    An odd surplus puts the extra row/column on the high side (start = (n - size) // 2).
    """
    if size <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    (sy, dy, ly), (sx, dx, lx) = _offsets(x.shape[-2], size), _offsets(x.shape[-1], size)
    x = x[..., sy : sy + ly, sx : sx + lx]
    if ly == size and lx == size:
        return x
    return F.pad(x, (dx, size - lx - dx, dy, size - ly - dy), value=fill)


def uncrop(x: Tensor, shape: tuple[int, int], fill: Tensor | float = 0.0) -> Tensor:
    """Inverse of `centre_crop`: put a (…, S, S) map back on a (…, H, W) canvas filled with `fill`.

    `fill` may be a per-channel vector (e.g. background probability 1) broadcast over the canvas.
    """
    size = x.shape[-1]
    h, w = shape
    canvas = torch.empty((*x.shape[:-2], h, w), dtype=x.dtype, device=x.device)
    canvas[...] = fill.view(*fill.shape, 1, 1) if isinstance(fill, Tensor) else fill
    (dy, sy, ly), (dx, sx, lx) = _offsets(h, size), _offsets(w, size)
    canvas[..., dy : dy + ly, dx : dx + lx] = x[..., sy : sy + ly, sx : sx + lx]
    return canvas


def minmax_per_slice(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Rescale each slice (over the last two dims) to [0, 1]; a constant slice (range <= eps) becomes all zeros.

    The range is clamped rather than offset by eps, so every non-constant slice hits exactly 0 and exactly 1.
    """
    flat = x.flatten(-2)
    lo = flat.amin(-1, keepdim=True).unsqueeze(-1)
    hi = flat.amax(-1, keepdim=True).unsqueeze(-1)
    return (x - lo) / (hi - lo).clamp_min(eps)
