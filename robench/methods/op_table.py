"""The augmentation op table of the learned-augmentation work (methods.md §7), batched for 2-D slices.

Each op has a few magnitude levels (mildest first), a uniform jitter around a level, and, where
the table says so, a random sign or inversion (factor f or 1/f). Per sample, a policy decides
which ops are applied and at which level; `apply_ops` then applies them to a batch at once, on
the data's device, with every random number from the caller's generator.

Adapting the 3-D table to 2-D slices:

* rotations: only the in-plane one (the two out-of-plane rotation groups need a volume);
* mirrors: the first two axes become horizontal and vertical flips, the third (slice) axis is dropped;
* magnitudes that are intensities (brightness shift, noise σ) are fractions of the slice's range,
  since the table's values were set for z-scored volumes and our slices are min-max normalised;
* order: geometry first, composed into one resampling (scale · rotation · flips, like the paper's
  policy in `augment.py`), then intensity ops in table order, then per-slice min-max.

Interpolation: image bilinear, labels by bilinear warping of their one-hot maps and argmax
(never mixes classes; outside the slice is background), zero padding, like `augment.py`.
Every intensity op works on the slice rescaled to [0, 1] and clips where the table says
"clipped"; the final per-slice min-max that every training image gets makes a pure shift or a
pure down-scaling of intensities a no-op, so brightness and contrast act through what they clip
(saturation), as in the paper's own brightness/contrast step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from robench.imageops import centre_crop, minmax_per_slice


@dataclass(frozen=True)
class Op:
    name: str
    levels: tuple[float, ...]  # magnitude centres, mildest first
    jitter: float = 0.0  # magnitude ~ U(level − jitter, level + jitter)
    geometric: bool = False


OPS: tuple[Op, ...] = (
    Op("scale", (0.05, 0.15, 0.25, 0.35, 0.45), 0.05, True),  # zoom 1+δ or 1/(1+δ)
    Op("rotate", (5.0, 15.0, 25.0, 90.0), 5.0, True),  # ±δ degrees; the last level is a 90° or 270° turn
    Op("flip_h", (1.0,), geometric=True),
    Op("flip_v", (1.0,), geometric=True),
    Op("gamma", (0.1, 0.3, 0.5), 0.1),  # x^γ, γ = 1+δ or 1/(1+δ)
    Op("inverse_gamma", (0.1, 0.3, 0.5), 0.1),  # 1 − (1−x)^γ
    Op("brightness_add", (0.05, 0.15, 0.25), 0.05),  # x ± δ, clipped
    Op("brightness_mul", (0.05, 0.15, 0.25)),  # x·f, f = 1+δ or 1/(1+δ), clipped
    Op("contrast", (0.05, 0.15, 0.25)),  # mean + f·(x − mean), clipped
    Op("blur", (0.5, 0.7, 0.9), 0.1),  # Gaussian σ (px)
    Op("sharpen", (0.9, 0.7, 0.5)),  # x − σ²·Δ(G_σ ∗ x): unsharp masking by a scale-normalised LoG
    Op("noise", (0.025, 0.075, 0.125), 0.025),  # additive Gaussian, σ
    Op("low_resolution", (0.9, 0.7, 0.5), 0.1),  # nearest downsampling by z, bilinear back up
)
INDEX = {op.name: i for i, op in enumerate(OPS)}
MAX_LEVELS = max(len(op.levels) for op in OPS)


@dataclass(frozen=True)
class Group:
    """One categorical of a policy: with `probability`, one of `options` ((op name, level index)) uniformly."""

    probability: float
    options: tuple[tuple[str, int], ...]


def _levels(name: str) -> tuple[tuple[str, int], ...]:
    return tuple((name, i) for i in range(len(OPS[INDEX[name]].levels)))


# The 2-D variants of the learned-augmentation code's 15 groups (its two out-of-plane rotations and
# the slice-axis mirror need a volume): (group name, its non-identity options, mildest first).
GROUP_OPTIONS: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (
    ("scale", _levels("scale")),
    ("rotate", _levels("rotate")),
    ("flip_h", _levels("flip_h")),
    ("flip_v", _levels("flip_v")),
    ("gamma", _levels("gamma")),
    ("inverse_gamma", _levels("inverse_gamma")),
    ("brightness_add", _levels("brightness_add")),
    ("brightness_mul", _levels("brightness_mul")),
    ("contrast", _levels("contrast")),
    ("blur_sharpen", _levels("blur") + _levels("sharpen")),
    ("noise", _levels("noise")),
    ("low_resolution", _levels("low_resolution")),
)
GEOMETRIC_GROUPS = frozenset(name for name, options in GROUP_OPTIONS if OPS[INDEX[options[0][0]]].geometric)

# P(non-identity) per group of the code's initialisation presets (`--org`), in GROUP_OPTIONS order.
PRESET_PROBABILITIES: dict[str, tuple[float, ...]] = {
    # preset 2, nnU-Net-like
    "nnunet": (0.2, 0.1, 0.5, 0.5, 0.3, 0.1, 0.05, 0.15, 0.15, 0.2, 0.1, 0.1),
    # preset 3, DeepMedic-like (mirrors 0.5 / 0.05 / 0.05 in 3-D: the slice-axis one is dropped)
    "deepmedic": (0.2, 0.2, 0.5, 0.05, 0.05, 0.05, 0.15, 0.05, 0.05, 0.05, 0.05, 0.05),
}

# Preset 3 ("DeepMedic-like") as a fixed policy on 2-D slices: P(non-identity) per group, every
# non-identity option of a group equally likely (the preset's init).
DEEPMEDIC_PRESET: tuple[Group, ...] = tuple(
    Group(p, options) for p, (_, options) in zip(PRESET_PROBABILITIES["deepmedic"], GROUP_OPTIONS)
)


def group_selection(n: int, groups: tuple[Group, ...], *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per-sample (selected (n, ops) bool, level (n, ops) int64) from independent groups."""
    u = torch.rand(n, len(groups), 2, generator=generator, device=generator.device)
    sizes = torch.tensor([len(group.options) for group in groups], device=generator.device)
    option = (u[..., 1] * sizes).long().clamp_max(sizes - 1)
    choices = torch.where(u[..., 0] < torch.tensor([g.probability for g in groups], device=u.device), option + 1, 0)
    return choice_selection(choices, tuple(group.options for group in groups))


def choice_selection(choices: Tensor, groups: tuple[tuple[tuple[str, int], ...], ...] | None = None) -> tuple[Tensor, Tensor]:
    """(selected, level) for apply_ops from per-group choices (n, groups): 0 = identity, j = the group's option j.

    `groups` are the groups' options (default: those of GROUP_OPTIONS, the learned policy's)."""
    groups = groups if groups is not None else tuple(options for _, options in GROUP_OPTIONS)
    n, dev = choices.shape[0], choices.device
    selected = torch.zeros(n, len(OPS), dtype=torch.bool, device=dev)
    level = torch.zeros(n, len(OPS), dtype=torch.long, device=dev)
    for g, options in enumerate(groups):
        table = torch.tensor([[INDEX[name], lv] for name, lv in options], device=dev)  # (K, 2): op, level
        choice = table[(choices[:, g] - 1).clamp_min(0)]
        hit = F.one_hot(choice[:, 0], len(OPS)).bool() & (choices[:, g] > 0)[:, None]
        selected |= hit
        level = torch.where(hit, choice[:, 1:2], level)
    return selected, level


def rand_augment_selection(n: int, num_ops: int, magnitude: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`num_ops` distinct ops per sample, uniformly; every op at level `magnitude` (1 = mildest), capped at its last level."""
    if not 0 <= num_ops <= len(OPS):
        raise ValueError(f"RandAugment needs 0 <= N <= {len(OPS)}, got {num_ops}")
    if magnitude < 1:
        raise ValueError(f"RandAugment magnitude M counts levels from 1, got {magnitude}")
    dev = generator.device
    rank = torch.rand(n, len(OPS), generator=generator, device=dev).argsort(1).argsort(1)
    caps = torch.tensor([len(op.levels) - 1 for op in OPS], device=dev)
    return rank < num_ops, (magnitude - 1 + torch.zeros_like(rank)).clamp_max(caps)


# ---- the ops ---------------------------------------------------------------------------------------------


def _gaussian_kernels(sigma: Tensor, radius: int) -> Tensor:
    """(n, 2r+1) normalised 1-D Gaussians, one per σ."""
    t = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    k = torch.exp(-0.5 * (t / sigma.clamp_min(1e-3)[:, None]) ** 2)
    return k / k.sum(1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int = 3) -> Tensor:
    """Separable Gaussian blur of (n,1,H,W) slices with per-sample σ (n,), replicate padding.

    The default radius is 3σ for the table's largest σ (1 px), so one kernel size serves the batch.
    """
    n, _, h, w = x.shape
    k = _gaussian_kernels(sigma.to(x.dtype), radius)
    y = F.pad(x.reshape(1, n, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(n, 1, 1, -1), groups=n)
    y = F.conv2d(y, k.view(n, 1, -1, 1), groups=n)
    return y.reshape(n, 1, h, w)


def laplacian(x: Tensor) -> Tensor:
    """5-point discrete Laplacian, replicate padding."""
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel[None, None])


def _zoom_grid(z: Tensor, like: Tensor) -> Tensor:
    """Sampling grid x_in = z·x_out + (z − 1) (normalised coords): pixel centre i ↦ (i + ½)·z − ½, per sample."""
    n = z.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=like.dtype, device=like.device)
    theta[:, 0, 0] = theta[:, 1, 1] = z
    theta[:, :, 2] = (z - 1)[:, None]
    return F.affine_grid(theta, list(like.shape), align_corners=False)


def low_resolution(x: Tensor, zoom: Tensor) -> Tensor:
    """Simulated low resolution with a per-sample zoom z < 1: nearest sampling every 1/z pixels, bilinear back up.

    Both steps are zoom grids on the full canvas (the coarse image occupies its top-left z·H × z·W
    pixels), so samples with different z share one `grid_sample` call per step.
    """
    z = zoom.to(x.dtype)
    coarse = F.grid_sample(x, _zoom_grid(1 / z, x), mode="nearest", padding_mode="border", align_corners=False)
    return F.grid_sample(coarse, _zoom_grid(z, x), mode="bilinear", padding_mode="border", align_corners=False)


def _warp(images: Tensor, labels: Tensor, lin: Tensor, crop: int) -> tuple[Tensor, Tensor]:
    """Resample images and labels with per-sample sampling matrices `lin` (n,2,2, pixel units, about the centre)."""
    n, _, h, w = images.shape
    scale = torch.tensor([2.0 / w, 2.0 / h], device=images.device, dtype=lin.dtype)
    theta = torch.cat([scale[:, None] * lin / scale[None, :], torch.zeros(n, 2, 1, device=lin.device, dtype=lin.dtype)], -1)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    ch, cw = min(crop, h), min(crop, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    grid = grid[:, top : top + ch, left : left + cw].to(images.dtype)
    n_cls = int(labels.max()) + 1 if labels.numel() else 1
    planes = torch.cat([images, F.one_hot(labels.long(), n_cls).permute(0, 3, 1, 2).to(images.dtype)], 1)
    warped = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # outside the slice every one-hot plane is 0 and argmax picks the first: background
    return centre_crop(warped[:, :1], crop), centre_crop(warped[:, 1:].argmax(1), crop)


@torch.no_grad()
def apply_ops(
    images: Tensor, labels: Tensor, selected: Tensor, level: Tensor, *, crop: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Apply the selected ops (per sample, at the given level index) to padded slices; return crops in [0, 1].

    images (n,1,P,P) float, labels (n,P,P) int, selected (n, len(OPS)) bool, level (n, len(OPS)) int.
    Every sample consumes the same random numbers whatever is selected, so a seed fixes the batch.
    """
    n = images.shape[0]
    dev, pdt = images.device, torch.float32
    table = torch.tensor([list(op.levels) + [op.levels[-1]] * (MAX_LEVELS - len(op.levels)) for op in OPS], device=dev, dtype=pdt)
    jitter = torch.tensor([op.jitter for op in OPS], device=dev, dtype=pdt)
    u = torch.rand(n, len(OPS), 2, generator=generator, device=dev, dtype=pdt)
    caps = torch.tensor([len(op.levels) - 1 for op in OPS], device=dev)
    lv = level.long().clamp(min=0).clamp_max(caps)
    delta = table[torch.arange(len(OPS), device=dev), lv] + jitter * (2 * u[..., 0] - 1)  # (n, ops)
    invert = u[..., 1] < 0.5  # random sign / inversion

    def on(name: str) -> Tensor:
        return selected[:, INDEX[name]]

    def factor(name: str) -> Tensor:
        i = INDEX[name]
        f = 1 + delta[:, i]
        return torch.where(selected[:, i], torch.where(invert[:, i], 1 / f, f), torch.ones_like(f))

    def magnitude(name: str) -> Tensor:
        return delta[:, INDEX[name]]

    # ---- geometry: one sampling matrix per sample (flips · rotation · zoom, about the centre) -------------
    i_rot = INDEX["rotate"]
    turn = torch.where(invert[:, i_rot], 90.0, 270.0)
    signed = torch.where(invert[:, i_rot], -magnitude("rotate"), magnitude("rotate"))
    degrees = torch.where(lv[:, i_rot] == len(OPS[i_rot].levels) - 1, turn, signed)
    angle = torch.deg2rad(torch.where(on("rotate"), degrees, torch.zeros_like(degrees)))
    c, s = torch.cos(angle), torch.sin(angle)
    c, s = torch.where(c.abs() < 1e-6, 0.0, c), torch.where(s.abs() < 1e-6, 0.0, s)  # exact quarter turns
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    flips = torch.stack([1 - 2 * on("flip_h").to(pdt), 1 - 2 * on("flip_v").to(pdt)], -1)
    lin = flips[:, :, None] * rot * factor("scale")[:, None, None]
    x, y = _warp(images.to(pdt), labels, lin, crop)

    # ---- intensity, on the slice rescaled to [0, 1] ----------------------------------------------------------
    noise = torch.randn(x.shape, generator=generator, device=dev, dtype=pdt)
    x = minmax_per_slice(x)

    def where(name: str, new: Tensor, old: Tensor) -> Tensor:
        return torch.where(on(name).view(-1, 1, 1, 1), new, old)

    def per_sample(v: Tensor) -> Tensor:
        return v.view(-1, 1, 1, 1)

    x = where("gamma", x.clamp(0, 1) ** per_sample(factor("gamma")), x)
    x = where("inverse_gamma", 1 - (1 - x.clamp(0, 1)) ** per_sample(factor("inverse_gamma")), x)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    x = where("contrast", (mean + per_sample(factor("contrast")) * (x - mean)).clamp(0, 1), x)
    x = where("brightness_mul", (x * per_sample(factor("brightness_mul"))).clamp(0, 1), x)
    shift = torch.where(invert[:, INDEX["brightness_add"]], -magnitude("brightness_add"), magnitude("brightness_add"))
    x = where("brightness_add", (x + per_sample(shift)).clamp(0, 1), x)
    x = where("blur", gaussian_blur(x, magnitude("blur")), x)
    sigma = magnitude("sharpen")
    x = where("sharpen", x - per_sample(sigma**2) * laplacian(gaussian_blur(x, sigma)), x)
    x = where("low_resolution", low_resolution(x, magnitude("low_resolution")), x)
    x = where("noise", x + per_sample(magnitude("noise")) * noise, x)
    return minmax_per_slice(x).to(images.dtype), y
