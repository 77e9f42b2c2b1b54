"""Prediction divergences of the consistency-regularised baselines (methods.md §2–§4).

All take the *reference* as probabilities (already detached by the caller: the reference is a
target, never trained towards) and the perturbed prediction as logits, and compute in float32
whatever precision the forward pass ran in, because log-probabilities of bf16 logits lose the
small differences these losses are made of.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

# Sobel responses along x (columns) and y (rows); unnormalised, as in the reference implementation.
_SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
_SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def kl_divergence(reference: Tensor, logits: Tensor) -> Tensor:
    """Mean over pixels of KL(p‖q) = Σ_c p_c (log p_c − log q_c); p = `reference` (N,C,H,W) probabilities, q = softmax(`logits`)."""
    p = reference.float()
    log_q = F.log_softmax(logits.float(), dim=1)
    return (torch.xlogy(p, p) - p * log_q).sum(1).mean()


def sobel(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel Sobel-x and Sobel-y responses of (N,C,H,W) maps, zero padding (same size out)."""
    c = maps.shape[1]
    kernels = torch.tensor([_SOBEL_X, _SOBEL_Y], dtype=maps.dtype, device=maps.device)
    weight = kernels[:, None].repeat(c, 1, 1, 1)  # (2C,1,3,3): channel i -> outputs 2i (x), 2i+1 (y)
    out = F.conv2d(maps, weight, padding=1, groups=c)
    return out[:, 0::2], out[:, 1::2]


def contour_loss(reference: Tensor, logits: Tensor) -> Tensor:
    """Boundary disagreement of foreground classes: 0.5·[MSE(Sx q, Sx p) + MSE(Sy q, Sy p)], averaged over classes 1..C−1.

    Penalises shifted or blurred contours, which a pixel-wise KL weighs by area rather than by
    shape. Every class has the same number of pixels, so the mean over all foreground channels
    equals the average of the per-class MSEs.
    """
    p = reference.float()[:, 1:]
    q = torch.softmax(logits.float(), dim=1)[:, 1:]
    if p.shape[1] == 0:
        return logits.float().sum() * 0.0
    (px, py), (qx, qy) = sobel(p), sobel(q)
    return 0.5 * (F.mse_loss(qx, px) + F.mse_loss(qy, py))


def segmentation_divergence(reference: Tensor, logits: Tensor, kl_weight: float = 1.0, contour_weight: float = 0.0) -> Tensor:
    """Weighted KL + contour divergence (Adv Bias uses 1.0 / 0.5, Adv Noise 1.0 / 0)."""
    out = kl_weight * kl_divergence(reference, logits)
    if contour_weight:
        out = out + contour_weight * contour_loss(reference, logits)
    return out


def js_consistency(probabilities: Sequence[Tensor], eps: float = 1e-7) -> Tensor:
    """RandConv's JS-like consistency (1/V) Σ_v KL(p_v ‖ p̄), p̄ = clamp(mean_v p_v, eps, 1), per-pixel mean.

    Zero iff all views agree; the clamp keeps log p̄ finite where every view gives a class zero mass.
    """
    views = [p.float() for p in probabilities]
    log_mean = torch.stack(views).mean(0).clamp(eps, 1.0).log()
    kls = [(torch.xlogy(p, p) - p * log_mean).sum(1).mean() for p in views]
    return torch.stack(kls).mean()
