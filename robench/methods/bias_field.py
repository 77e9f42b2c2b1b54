"""Smooth multiplicative bias fields from a coarse cubic B-spline control grid (methods.md §2 steps 1–4).

The field lives in log space on a few control points: φ (N,1,g_h,g_w) → transposed convolution
with a cubic B-spline kernel (stride δ) at 1/`downscale` of the image size → centre crop →
bilinear upsampling → B = exp(·) → 1 + clip(B − 1, −ε, ε). Few parameters and a smooth basis
are what make the adversarial search of Adv Bias produce MR-like intensity inhomogeneity rather
than pixel noise.

Geometry. Control points sit δ apart; the transposed convolution puts point k at output pixel
k·δ, so the output spans (g−1)·δ + 1 pixels and the image is centred in it. With the reference's
g = ceil(h/δ) + 2 points per axis (h = image size / downscale), a 192² slice at downscale 2 gets a
4×4 grid with δ = 48, and the cubic basis sums to ≥ 0.98 per axis (≥ 0.96 in 2-D) at every image
pixel (an exact partition of unity needs one more point per side; the reference does not add it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F


def bspline_kernel_1d(spacing: int, order: int = 3, *, device=None, dtype=torch.float32) -> Tensor:
    """B-spline of `order` sampled at 1/`spacing` of a control interval: (order+1)·(spacing−1)+1 taps.

    A box of `spacing` ones convolved with itself `order` times, divided by `spacing` each time, so
    shifted copies `spacing` apart sum to one: a constant φ gives a constant log-field away from the
    grid's border. The 2-D kernel is the outer product of two of these (the reference convolves a
    2-D box and divides by spacing², which is the same thing).
    """
    box = torch.ones(1, 1, spacing, dtype=torch.float64)
    k = box
    for _ in range(order):
        k = F.conv1d(k, box, padding=spacing - 1) / spacing  # full convolution (the box is symmetric)
    return k[0, 0].to(device=device, dtype=dtype)


@dataclass(frozen=True)
class BiasFieldGrid:
    """Control grid of a bias field for (height, width) images."""

    height: int
    width: int
    spacing_fraction: float = 0.5  # control spacing at full resolution, as a fraction of the size (reference: H//2)
    downscale: int = 2  # the field is interpolated at 1/downscale of the image size (reference: 2 for ACDC)
    order: int = 3

    @property
    def low_size(self) -> tuple[int, int]:
        return max(1, self.height // self.downscale), max(1, self.width // self.downscale)

    @property
    def spacing(self) -> tuple[int, int]:
        """δ per axis at the low resolution: (fraction·size) // downscale, at least 1 pixel."""
        return (
            max(1, int(self.spacing_fraction * self.height) // self.downscale),
            max(1, int(self.spacing_fraction * self.width) // self.downscale),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Control points per axis: ceil(h/δ) + 2 (one extra point outside each border)."""
        (h, w), (sy, sx) = self.low_size, self.spacing
        return math.ceil(h / sy) + 2, math.ceil(w / sx) + 2

    def init(self, n: int, eps: float, *, generator: torch.Generator, dtype=torch.float32) -> Tensor:
        """φ ~ U(log(1−ε), log(1+ε)) per control point, (n,1,g_h,g_w) on the generator's device."""
        lo, hi = math.log(1 - eps), math.log(1 + eps)
        u = torch.rand(n, 1, *self.shape, generator=generator, device=generator.device, dtype=dtype)
        return lo + (hi - lo) * u

    def field(self, phi: Tensor, eps: float) -> Tensor:
        """Multiplicative field (n,1,H,W) in [1−ε, 1+ε]; differentiable in φ."""
        sy, sx = self.spacing
        ky = bspline_kernel_1d(sy, self.order, device=phi.device, dtype=phi.dtype)
        kx = ky if sx == sy else bspline_kernel_1d(sx, self.order, device=phi.device, dtype=phi.dtype)
        kernel = torch.outer(ky, kx)[None, None]
        pad = ((kernel.shape[-2] - 1) // 2, (kernel.shape[-1] - 1) // 2)
        log_field = F.conv_transpose2d(phi, kernel, stride=(sy, sx), padding=pad)
        h, w = self.low_size
        top, left = (log_field.shape[-2] - h) // 2, (log_field.shape[-1] - w) // 2
        log_field = log_field[..., top : top + h, left : left + w]
        if (h, w) != (self.height, self.width):
            log_field = F.interpolate(log_field, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return 1 + (log_field.exp() - 1).clamp(-eps, eps)


def clamp_log_params(phi: Tensor, eps: float) -> Tensor:
    """Keep φ in [log(1−ε), log(1+ε)]: with the field clip this bounds both the field and the search's drift."""
    return phi.clamp(math.log(1 - eps), math.log(1 + eps))
