"""Random multi-window masking ("Rand MWM", methods.md §5): Models-Genesis in-/out-painting as a corruption.

Per image, windows are drawn like the reference code: before each of up to `max_windows` windows
continue with probability `continue_prob` (so P(K = k) = p^k·(1−p) for k < max, P(K = max) = p^max),
window size U_int[h//6, h//3] × U_int[w//6, w//3], top-left U_int[3, h − size − 3] (bounds
inclusive). In-painting fills the windows with U(0, 1) noise; out-painting keeps only the windows
and fills the rest with noise. Drawing all windows at once and filling their union from one
noise image is the same distribution as the reference's sequential overwrites, since the noise is
i.i.d. per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robench.errors import ConfigError
from robench.methods.base import Batch, register_method
from robench.methods.hard_examples import HardExampleMethod

LOSSES = ("hard", "ce")


@dataclass(frozen=True)
class Windows:
    """`max_windows` candidate rectangles per image, of which the first `counts[i]` are used."""

    counts: Tensor  # (N,) int64
    top: Tensor  # (N, K) int64, row of the top-left corner
    left: Tensor  # (N, K)
    height: Tensor  # (N, K)
    width: Tensor  # (N, K)

    def mask(self, h: int, w: int) -> Tensor:
        """(N,1,h,w) bool: union of each image's active windows."""
        k = self.top.shape[1]
        active = torch.arange(k, device=self.counts.device)[None] < self.counts[:, None]  # (N, K)
        rows = torch.arange(h, device=self.top.device)
        cols = torch.arange(w, device=self.top.device)
        in_r = (rows >= self.top[..., None]) & (rows < (self.top + self.height)[..., None])  # (N, K, h)
        in_c = (cols >= self.left[..., None]) & (cols < (self.left + self.width)[..., None])  # (N, K, w)
        inside = active[..., None, None] & in_r[..., :, None] & in_c[..., None, :]
        return inside.any(1, keepdim=True)


def _randint(u: Tensor, low: Tensor | int, high: Tensor | int) -> Tensor:
    """Uniform integers in [low, high] (inclusive) from uniforms u in [0, 1)."""
    span = high - low
    return low + (u * (span + 1)).long().clamp_max(span)  # u·(span+1) can round up to span+1


def draw_windows(n: int, h: int, w: int, *, generator: torch.Generator, max_windows: int = 5, continue_prob: float = 0.95) -> Windows:
    """Window counts and rectangles for `n` images of size h×w, all from `generator`."""
    if min(h - h // 3, w - w // 3) < 6:  # the top-left range [3, size − window − 3] must not be empty
        raise ValueError(f"random window masking needs images of at least 8×8 pixels, got {h}×{w}")
    u = torch.rand(n, max_windows, 5, generator=generator, device=generator.device, dtype=torch.float64)
    counts = (u[..., 0] < continue_prob).long().cumprod(1).sum(1)
    height = _randint(u[..., 1], h // 6, h // 3)
    width = _randint(u[..., 2], w // 6, w // 3)
    top = _randint(u[..., 3], 3, h - height - 3)
    left = _randint(u[..., 4], 3, w - width - 3)
    return Windows(counts, top, left, height, width)


def mask_windows(images: Tensor, windows: Windows, inpaint: Tensor, noise: Tensor) -> Tensor:
    """In-paint (noise inside the windows) where `inpaint` (N,) is true, out-paint (noise outside) elsewhere."""
    inside = windows.mask(*images.shape[-2:])
    noise_where = torch.where(inpaint.view(-1, 1, 1, 1), inside, ~inside)
    return torch.where(noise_where, noise.to(images.dtype), images)


@register_method
class RandMWM(HardExampleMethod):
    """Rand MWM trained like the benchmark's other corruption baselines: standard losses + hard-example losses.

    The masked copy of each clean slice (labels unchanged) gets CE, 0.5·MSE reconstruction of the
    clean slice (the Models-Genesis restoration task, here through the FTN's image decoder) and the
    STN CE (`loss=hard`), or CE alone (`loss=ce`). UNVERIFIED in the spec, chosen here: in- vs
    out-painting 50/50 per image (`inpaint_prob`), every slice masked (`apply_prob` 1.0), and
    `loss=hard`, the loss the benchmark code trains its other corruption baselines with.
    """

    name = "rand-mwm"
    description = "Random multi-window in-/out-painting with U(0,1) noise; hard-example losses on the masked slices"
    reference = (
        "Zhou et al., Models Genesis, MICCAI 2019 / MedIA 2021 (as the Rand MWM baseline in Chen et al., MICCAI 2021)"
    )
    hparams = {
        **HardExampleMethod.hparams,
        "max_windows": 5,
        "continue_prob": 0.95,
        "inpaint_prob": 0.5,
        "apply_prob": 1.0,
        "loss": "hard",
    }

    def __init__(self, hparams, *, num_classes, device, seed, in_channels=1):
        super().__init__(hparams, num_classes=num_classes, device=device, seed=seed, in_channels=in_channels)
        hp = self.hp
        probs = ("continue_prob", "inpaint_prob", "apply_prob")
        if hp["loss"] not in LOSSES or hp["max_windows"] < 0 or not all(0 <= hp[k] <= 1 for k in probs):
            raise ConfigError(
                f"method {self.name!r}: needs loss in {' | '.join(LOSSES)}, max_windows >= 0 and probabilities in "
                f"[0, 1]; got {({k: hp[k] for k in ('loss', 'max_windows', *probs)})}"
            )

    def corrupt(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Windows]:
        """Masked images, the labels as they are, and the windows drawn."""
        n, _, h, w = images.shape
        g = self.generator
        windows = draw_windows(n, h, w, generator=g, max_windows=self.hp["max_windows"], continue_prob=self.hp["continue_prob"])
        u = torch.rand(n, 2, generator=g, device=g.device)
        noise = torch.rand(images.shape, generator=g, device=g.device)
        masked = mask_windows(images, windows, u[:, 0] < self.hp["inpaint_prob"], noise)
        masked = torch.where((u[:, 1] < self.hp["apply_prob"]).view(-1, 1, 1, 1), masked, images)
        return masked, labels, windows

    def update(self, batch: Batch) -> dict[str, Tensor]:
        self.train()
        x, y = batch.images, batch.labels
        with self.autocast():
            losses = self.standard_losses(x, y).losses
        masked, labels, _ = self.corrupt(x, y)
        hard = self.hard_losses(masked, x, labels, prefix="mwm")
        losses.update(hard if self.hp["loss"] == "hard" else {"mwm_seg": hard["mwm_seg"]})
        return self.step(losses)
