"""Latent-space masking (methods.md §1, step 4): the three code perturbations of cooperative training.

Pure functions on tensors, every random draw from an explicit `torch.Generator`, so a run is
reproducible and resumable and each mask can be tested in isolation:

- `channel_dropout`: random channel dropout (Dropout2d), survivors rescaled by 1/(1-p).
- `channel_mask` / `spatial_mask`: targeted soft masking. The top-k channels (or positions) by a
  gradient score are multiplied by U(0, 0.5) factors; k = floor(K·p).
- `code_gradient`: g = ∂loss/∂z through a decoder, the input of the targeted masks.
- `perturb_code`: one of the three on a code, as the training step calls it.

Masking is applied to codes the caller has detached, so hard examples carry no gradient
into any weight.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

MASK_TYPES = ("dropout", "channel", "spatial")
SCORES = ("signed", "saliency")


def channel_dropout(z: Tensor, p: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Zero whole channels of each sample with probability p, rescale survivors by 1/(1-p).

    Returns (z', mask) with mask (N, C, 1, 1) holding 0 or 1/(1-p). The paper uses p = 0.5 fixed
    (the public code passes `max_threshold` without randomising it), so survivors are doubled.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
    keep = torch.rand(z.shape[0], z.shape[1], 1, 1, generator=generator, device=z.device) >= p
    mask = keep.to(torch.float32) / (1.0 - p)
    return z * mask.to(z.dtype), mask


def channel_scores(g: Tensor, z: Tensor, score: str = "signed") -> Tensor:
    """(N, C) ranking scores of the channels of a code.

    `signed`: mean_{h,w} g, as the public code ranks (reproduced although, for the non-negative
    codes, shrinking the units with the most positive loss gradient lowers the loss to first
    order; methods.md §1 pitfalls). `saliency`: mean_{h,w} |g|·z, the first-order magnitude of a
    unit's effect on the loss, the ablation the spec suggests.
    """
    return _elementwise_score(g, z, score).mean(dim=(2, 3))


def spatial_scores(g: Tensor, z: Tensor, score: str = "signed") -> Tensor:
    """(N, h·w) ranking scores of the spatial positions of a code (mean over channels)."""
    return _elementwise_score(g, z, score).mean(dim=1).flatten(1)


def _elementwise_score(g: Tensor, z: Tensor, score: str) -> Tensor:
    if score == "signed":
        return g.float()
    if score == "saliency":
        return g.float().abs() * z.float()
    raise ValueError(f"unknown mask score {score!r}; choose one of {', '.join(SCORES)}")


def top_k_soft_mask(scores: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """(N, K) scores → (N, K) factors: U(0, 0.5) where the score exceeds τ_n, else 1.

    k = floor(K·p); τ_n is the (k+1)-th largest score of sample n (index k of the descending
    sort) and the comparison is strict, so exactly the top-k entries are masked when scores are
    distinct and p = 0 masks nothing. k ≥ K (p = 1) masks every entry.
    """
    n, size = scores.shape
    k = math.floor(size * p)
    if k >= size:
        threshold = torch.full((n, 1), -math.inf, device=scores.device)
    else:
        threshold = scores.sort(dim=1, descending=True).values[:, k : k + 1]
    factors = 0.5 * torch.rand(scores.shape, generator=generator, device=scores.device)
    return torch.where(scores > threshold, factors, torch.ones_like(factors))


def channel_mask(
    z: Tensor, g: Tensor, p: float, generator: torch.Generator, score: str = "signed"
) -> tuple[Tensor, Tensor]:
    """Targeted channel-wise soft masking: scale the top-k channels by U(0, 0.5); mask (N, C, 1, 1)."""
    mask = top_k_soft_mask(channel_scores(g, z, score), p, generator)[:, :, None, None]
    return z * mask.to(z.dtype), mask


def spatial_mask(
    z: Tensor, g: Tensor, p: float, generator: torch.Generator, score: str = "signed"
) -> tuple[Tensor, Tensor]:
    """Targeted spatial-wise soft masking: scale the top-k positions by U(0, 0.5); mask (N, 1, h, w)."""
    n, _, h, w = z.shape
    mask = top_k_soft_mask(spatial_scores(g, z, score), p, generator).view(n, 1, h, w)
    return z * mask.to(z.dtype), mask


def code_gradient(
    z: Tensor, decoder: nn.Module, target: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """g = ∂ loss_fn(decoder(z), target) / ∂z, with no gradient into the decoder's weights.

    Reproduces the public code: the decoder is called normally, so in train mode its BatchNorm
    layers use batch statistics *and update their running statistics* — one extra running-stat
    update per targeted masking call (methods.md §1 pitfalls). Only z is a differentiation input,
    so the decoder's parameters receive no gradient (the paper's "freeze D_I, D_S").
    """
    with torch.enable_grad():
        code = z.detach().float().requires_grad_(True)
        loss = loss_fn(decoder(code), target)
        (g,) = torch.autograd.grad(loss, code)
    return g


def perturb_code(
    z: Tensor,
    mask_type: str,
    *,
    decoder: nn.Module,
    target: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    p_max: float,
    dropout_p: float,
    score: str,
    generator: torch.Generator,
) -> Tensor:
    """One masking call on a detached code: dropout (no gradient needed) or a targeted mask.

    For the targeted masks p = p_max·U(0, 1) is drawn once per call, as `random_threshold=true`
    in the public code.
    """
    z = z.detach()
    if mask_type == "dropout":
        return channel_dropout(z, dropout_p, generator)[0]
    if mask_type not in ("channel", "spatial"):
        raise ValueError(f"unknown mask type {mask_type!r}; choose one of {', '.join(MASK_TYPES)}")
    g = code_gradient(z, decoder, target, loss_fn)
    p = p_max * float(torch.rand((), generator=generator, device=z.device))
    masker = channel_mask if mask_type == "channel" else spatial_mask
    return masker(z, g, p, generator, score)[0]
