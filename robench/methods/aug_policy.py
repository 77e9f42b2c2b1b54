"""A learnable augmentation policy and its meta-gradient (methods.md §7; Li et al., TMI 2023).

The policy is a set of independent categoricals, one per op group, index 0 = identity. Training
samples draw one option per group by Gumbel-max; the meta step gives every sample a
straight-through weight w_k = Π_g ST_{k,g} (1 in the forward pass, differentiable in the logits)
and asks how the validation loss of a one-step look-ahead model changes with w:

    θ' = θ − α ∇_θ L_tr(θ, w),   L_tr = (1/B) Σ_k w_k ℓ_k(θ)
    ∂L_val(θ')/∂w_k ≈ −α [∂_w L_tr(θ + R v) − ∂_w L_tr(θ − R v)]_k / (2R),  v = ∇_θ' L_val,  R = r/‖v‖

Since ∂L_tr/∂w_k = ℓ_k/B, the finite-difference Hessian-vector product needs only the per-sample
losses at θ ± R v: two forward passes, no backward. These gradients are centred within the
foreground- and background-centred samples, divided by how often each sample's option occurs in
its group of samples (so an option drawn often does not win by count alone), and pushed through
the straight-through weights onto the logits.

Everything here is a plain function of a parameter dictionary (`torch.func.functional_call`), so the
look-ahead never touches the model: its weights and BN statistics stay as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Params = dict[str, Tensor]
SampleLoss = Callable[[Params], Tensor]  # θ ↦ (B,) per-sample training losses
ValLoss = Callable[[Params], Tensor]  # θ ↦ scalar validation loss

FD_RADIUS = 1e-2  # r of the reference's hessian_vector_product (R = r/‖v‖)


def preset_logits(sizes: Sequence[int], p_augment: Sequence[float] | None) -> list[Tensor]:
    """The reference's initialisation: identity logit 1, the K − 1 others log(p·e / ((K − 1)(1 − p))),
    so that P(non-identity) = p in each group; `None` is the uniform preset (all logits 0)."""
    if p_augment is None:
        return [torch.zeros(k) for k in sizes]
    out = []
    for k, p in zip(sizes, p_augment, strict=True):
        if not 0 < p < 1:
            raise ValueError(f"a preset's P(non-identity) must lie in (0, 1), got {p}")
        other = math.log(p * math.e / ((k - 1) * (1 - p)))
        out.append(torch.tensor([1.0] + [other] * (k - 1)))
    return out


class AugmentationPolicy(nn.Module):
    """Independent categoricals over each group's options (identity first), as one flat vector of logits."""

    def __init__(self, sizes: Sequence[int], p_augment: Sequence[float] | None = None, temperature: float = 1.0):
        super().__init__()
        if any(k < 2 for k in sizes):
            raise ValueError(f"every group needs the identity and at least one option, got sizes {list(sizes)}")
        self.sizes = tuple(int(k) for k in sizes)
        self.temperature = float(temperature)
        self.logits = nn.Parameter(torch.cat(preset_logits(self.sizes, p_augment)))

    def group_logits(self) -> list[Tensor]:
        return list(torch.split(self.logits, self.sizes))

    def probabilities(self) -> list[Tensor]:
        return [torch.softmax(g, 0) for g in self.group_logits()]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """(n, groups) option indices by Gumbel-max, one Gumbel vector per sample and group."""
        u = torch.rand(n, len(self.logits), generator=generator, device=generator.device)
        perturbed = self.logits.detach().to(u.device) + gumbel(u)
        return torch.stack([chunk.argmax(1) for chunk in torch.split(perturbed, self.sizes, dim=1)], 1)

    def straight_through(self, choices: Tensor, generator: torch.Generator) -> Tensor:
        """(n, groups) straight-through values ST_{k,g} of the chosen options: exactly 1 forward, with the
        gradient of a temperature-τ Gumbel-softmax whose argmax is the chosen option."""
        out = []
        for g, logits in enumerate(self.group_logits()):
            soft = conditional_gumbel_softmax(logits, choices[:, g], self.temperature, generator)
            chosen = soft.gather(1, choices[:, g : g + 1]).squeeze(1)
            out.append(1.0 - chosen.detach() + chosen)
        return torch.stack(out, 1)


def gumbel(u: Tensor) -> Tensor:
    """Standard Gumbel noise from uniforms, kept off ±∞."""
    tiny = torch.finfo(u.dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))


def conditional_gumbel_softmax(logits: Tensor, choice: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """(n, K) Gumbel-softmax samples conditioned on argmax = `choice` (n,), differentiable in `logits`.

    The reference draws Gumbel vectors until one has the chosen argmax (rejection sampling); this
    draws from the same conditional law directly (top-down: the maximum ~ Gumbel(logsumexp φ), the
    others ~ Gumbel(φ_i) truncated below it), so it costs one draw whatever the probabilities.
    """
    n, k = choice.shape[0], logits.shape[0]
    u = torch.rand(n, k + 1, generator=generator, device=generator.device).to(logits.device)
    top = torch.logsumexp(logits, 0) + gumbel(u[:, :1])  # (n, 1): the maximum
    free = logits[None, :] + gumbel(u[:, 1:])  # (n, K) unconditioned perturbed logits
    below = -torch.logaddexp(-top, -free)  # truncated at the maximum
    onehot = nn.functional.one_hot(choice, k).bool()
    perturbed = torch.where(onehot, top.expand(n, k), below)
    return torch.softmax(perturbed / temperature, 1)


def weight_gradient(
    sample_loss: SampleLoss, val_loss: ValLoss, params: Params, *, alpha: float, radius: float = FD_RADIUS
) -> tuple[Tensor, dict[str, Tensor]]:
    """∂L_val(θ')/∂w at w = 1 (one value per training sample) by the look-ahead and the finite difference.

    `params` are the model's trainable tensors (detached copies are made; nothing is written back).
    Returns the gradient and the losses seen (for the log).
    """
    theta = {k: v.detach() for k, v in params.items()}
    leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    losses = sample_loss(leaves)
    train_loss = losses.mean()
    grads = torch.autograd.grad(train_loss, list(leaves.values()), allow_unused=True)
    ahead = {
        k: (theta[k] - alpha * g).requires_grad_(True) if g is not None else theta[k].clone().requires_grad_(True)
        for k, g in zip(leaves, grads)
    }
    val = val_loss(ahead)
    v = torch.autograd.grad(val, list(ahead.values()), allow_unused=True)
    v = {k: torch.zeros_like(theta[k]) if g is None else g.detach() for k, g in zip(ahead, v)}
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in v.values()))
    seen = {"meta_train": train_loss.detach().float(), "meta_val": val.detach().float()}
    if not torch.isfinite(norm) or norm == 0:
        return torch.zeros_like(losses.detach()), seen
    step = radius / float(norm)
    with torch.no_grad():
        plus = sample_loss({k: theta[k] + step * v[k] for k in theta})
        minus = sample_loss({k: theta[k] - step * v[k] for k in theta})
    hvp = (plus - minus) / (2 * step) / len(losses)  # ∂_w [v·∇_θ L_tr] by central difference
    return -alpha * hvp.detach(), seen


def centred(grad: Tensor, foreground: Tensor) -> Tensor:
    """Each gradient minus the mean of its sample group (foreground- or background-centred)."""
    out = grad.clone()
    for group in (foreground, ~foreground):
        if group.any():
            out[group] = grad[group] - grad[group].mean()
    return out


def option_counts(choices: Tensor, members: Tensor) -> Tensor:
    """(n, groups): how often each sample's option occurs in its op group among the samples of `members`
    (0 for non-members)."""
    same = (choices[:, None, :] == choices[None, :, :]) & members[None, :, None]  # (n, n, groups)
    return same.sum(1) * members[:, None]


@dataclass
class MetaStep:
    """What one meta step produced: the per-sample weight gradient (after centring) and the losses seen."""

    weight_grad: Tensor
    losses: dict[str, Tensor]


def policy_meta_step(
    policies: Sequence[AugmentationPolicy], owner: Tensor, choices: Tensor, foreground: Tensor,
    sample_loss: SampleLoss, val_loss: ValLoss, params: Params, *, alpha: float, generator: torch.Generator,
    radius: float = FD_RADIUS,
) -> MetaStep:
    """Accumulate ∇_P L_val into each policy's `logits.grad`; the caller steps the policy optimiser.

    `owner` (n,) says which policy drew each sample (one policy: all 0; class-specific: 1 for the
    foreground-centred samples); counts are taken among the samples of the same policy and class.
    """
    grad_w, losses = weight_gradient(sample_loss, val_loss, params, alpha=alpha, radius=radius)
    grad_w = centred(grad_w.float(), foreground)
    for index, policy in enumerate(policies):
        mine = owner == index
        if not mine.any():
            continue
        st = policy.straight_through(choices[mine], generator)  # (m, groups), = 1 forward
        counts = torch.zeros_like(choices, dtype=torch.float32)
        for group in (foreground, ~foreground):
            members = mine & group
            counts += option_counts(choices, members).float()
        surrogate = (grad_w[mine, None].to(st) / counts[mine].to(st) * st).sum()
        grad, = torch.autograd.grad(surrogate, policy.logits)
        policy.logits.grad = grad if policy.logits.grad is None else policy.logits.grad + grad
    return MetaStep(grad_w, losses)
