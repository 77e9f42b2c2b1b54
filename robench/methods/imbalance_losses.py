"""The losses of the class-imbalance family (methods.md §6, Li, Kamnitsas & Glocker, TMI 2020), as plain functions.

Everything here works on per-class masks over the C classes, so one function serves the
asymmetric variants (a mask selecting the rare classes) and the symmetric ones (a mask of
all classes). The methods (`robench.methods.imbalance`) decide which mask each technique gets.

* `regularised_loss`: CE + Dice of the reference U-Net. The margin m is subtracted from the
  true-class logit where the true class is in `margin_on`, *before* the softmax that both terms
  use; the focal factor (1 − p + 1e-6)^γ multiplies the CE of the classes in `focal_on` and, in
  the Dice term, only their false negatives; the Dice term leaves background out, sums over the
  batch (batch Dice: slices without a class do not divide by ~0) and uses smooth 1e-5.
* `rare_voxel_loss`: the label-based adversarial objective — CE and Dice on the voxels whose true
  class is rare only.
* `adversarial_normalise`: the U-Net's normalisation of a direction — divide by the *signed*
  maximum per sample, then by the L2 norm per sample.
* `mixup_target`: the mixed target of (a)symmetric mixup, with the voxels to keep.
"""

from __future__ import annotations

import torch
from scipy.special import betaincinv
from torch import Tensor
from torch.nn import functional as F

LOG_EPS = 1e-6  # inside every log (the reference: "without the small margin, it would lead to nan")
DICE_SMOOTH = 1e-5


def class_view(mask: Tensor) -> Tensor:
    """(C,) per-class mask → (1, C, 1, 1) so it broadcasts over (B, C, H, W)."""
    return mask.float().view(1, -1, 1, 1)


def margin_logits(logits: Tensor, target: Tensor, margin_on: Tensor, margin: float) -> Tensor:
    """ẑ = z − m·(t ⊙ r): the true-class logit lowered by m where that class is in `margin_on`."""
    if margin == 0:
        return logits
    return logits - margin * class_view(margin_on).to(logits) * target


def focal_factors(probs: Tensor, focal_on: Tensor, gamma: float) -> Tensor:
    """f_c = (1 − p_c + 1e-6)^γ for classes in `focal_on`, 1 for the others (the reference keeps f in the graph)."""
    if gamma == 0:
        return torch.ones_like(probs)
    on = class_view(focal_on).to(probs)
    return (1 - probs + LOG_EPS).pow(gamma) * on + (1 - on)


def regularised_loss(
    logits: Tensor, target: Tensor, *, margin_on: Tensor, margin: float, focal_on: Tensor, gamma: float,
    keep: Tensor | None = None, dice_weight: float = 1.0,
) -> dict[str, Tensor]:
    """{"seg_ce", "seg_dice"} of (B, C, H, W) logits against a (B, C, H, W) one-hot or soft target.

    `keep` (B, H, W) excludes voxels from the Dice term (their target must be zero for the CE
    term to ignore them too, as mixup's dropped voxels are). CE is normalised by all voxels, as
    the reference's (1/N)·Σ.
    """
    logits, target = logits.float(), target.float()
    probs = torch.softmax(margin_logits(logits, target, margin_on, margin), 1)
    factors = focal_factors(probs, focal_on, gamma)
    ce = -(target * factors * (probs + LOG_EPS).log()).sum(1).mean()
    return {"seg_ce": ce, "seg_dice": dice_weight * focal_dice(probs, target, factors, keep)}


def focal_dice(probs: Tensor, target: Tensor, factors: Tensor, keep: Tensor | None = None) -> Tensor:
    """mean over foreground c of (FP_c + Σ f·FN_c + s) / (2 TP_c + FP_c + FN_c + s), summed over the batch."""
    weight = 1.0 if keep is None else keep.float()[:, None]
    dims = (0, 2, 3)
    tp = (probs * target * weight).sum(dims)
    fp = (probs * (1 - target) * weight).sum(dims)
    fn = ((1 - probs) * target * weight).sum(dims)
    focal_fn = ((1 - probs) * target * factors * weight).sum(dims)
    per_class = (fp + focal_fn + DICE_SMOOTH) / (2 * tp + fp + fn + DICE_SMOOTH)
    return per_class[1:].mean()


def rare_voxel_loss(logits: Tensor, onehot: Tensor, rare: Tensor) -> Tensor:
    """CE + Dice restricted to the voxels whose true class is rare (the adversarial objective)."""
    target = onehot.float() * class_view(rare).to(onehot.device)
    keep = target.sum(1) > 0
    none = torch.zeros_like(rare)
    losses = regularised_loss(logits, target, margin_on=none, margin=0.0, focal_on=none, gamma=0.0, keep=keep)
    return losses["seg_ce"] + losses["seg_dice"]


def adversarial_normalise(d: Tensor) -> Tensor:
    """d / (1e-12 + max d) then / sqrt(1e-6 + Σ d²), per sample — the U-Net's *signed* maximum (methods.md §6 pitfall)."""
    dims = tuple(range(1, d.dim()))
    d = d / (1e-12 + d.amax(dim=dims, keepdim=True))
    return d / (1e-6 + d.pow(2).sum(dim=dims, keepdim=True)).sqrt()


def mixup_lambda(alpha: float, mixup_margin: float, generator: torch.Generator) -> float:
    """λ = Beta(α, α)·(1 − μ), drawn by inverting the Beta CDF at a uniform from the method's generator (resumable)."""
    u = float(torch.rand((), generator=generator, device=generator.device))
    return float(betaincinv(alpha, alpha, u)) * (1 - mixup_margin)


def mixup_target(
    labels_a: Tensor, labels_b: Tensor, lam: float, num_classes: int, *, rare: Tensor | None, mixup_margin: float,
) -> tuple[Tensor, Tensor]:
    """(target (B, C, H, W), keep (B, H, W)) of x = λ·x_A + (1 − λ)·x_B.

    Symmetric (`rare` None): t = λ·onehot(y_A) + (1 − λ)·onehot(y_B), every voxel kept.
    Asymmetric: y0 = y_A, except where y_B is rare and y_A is not (y_B's rare label); y1 likewise
    from y_B. y0 replaces y_A when λ < 1 − μ, y1 replaces y_B when 1 − λ < 1 − μ. Of the soft
    target λ·onehot(·) + (1 − λ)·onehot(·) only integral voxels stay: a fractional one (two
    different rare classes, or two different common ones) is zeroed and left out of the Dice term.
    """
    if rare is None:
        target = lam * F.one_hot(labels_a, num_classes) + (1 - lam) * F.one_hot(labels_b, num_classes)
        return target.permute(0, 3, 1, 2).float(), torch.ones_like(labels_a, dtype=torch.bool)
    is_rare = rare.to(labels_a.device)
    rare_a, rare_b = is_rare[labels_a], is_rare[labels_b]
    y0 = torch.where(rare_b & ~rare_a, labels_b, labels_a)
    y1 = torch.where(rare_a & ~rare_b, labels_a, labels_b)
    first = y0 if lam < 1 - mixup_margin else labels_a
    second = y1 if 1 - lam < 1 - mixup_margin else labels_b
    # λ·onehot(first) + (1 − λ)·onehot(second) is integral exactly where first == second (0 < λ < 1);
    # built that way rather than by flooring, which 0.3 + 0.7 = 0.99999994 would turn into a dropped voxel
    if lam <= 0 or lam >= 1:
        chosen, keep = (second if lam <= 0 else first), torch.ones_like(labels_a, dtype=torch.bool)
    else:
        chosen, keep = first, first == second
    target = F.one_hot(chosen, num_classes).permute(0, 3, 1, 2).float() * keep[:, None]
    return target, keep
