"""RandConv (methods.md §4), benchmark version (MaxStyle): random-filter views with a consistency loss.

Each view convolves the noisy input with a freshly drawn random filter (size from {1,3,5,7},
weights N(0, 1/(C·k²)), no bias), mixes it with the input (x_rc = α·x + (1−α)·conv(x), one α and
one filter per batch and view), and min-max rescales each sample. Random linear filters change
local texture and contrast while keeping shapes, so agreement across views teaches shape over
texture. The views are not supervised with labels; they train reconstruction of the clean image
and the JS-like agreement of FTN and STN predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from robench.errors import ConfigError
from robench.methods.base import Batch, register_method
from robench.methods.divergences import js_consistency
from robench.methods.hard_examples import rescale
from robench.methods.standard import DualNetMethod

KERNEL_SIZES = (1, 3, 5, 7)


@dataclass(frozen=True)
class RandConvDraw:
    """One random filter and mixing weight, shared by the whole batch."""

    weight: Tensor  # (C, C, k, k)
    alpha: Tensor  # scalar in [0, 1): weight of the *original* image

    @property
    def kernel_size(self) -> int:
        return self.weight.shape[-1]

    def __call__(self, x: Tensor) -> Tensor:
        """α·x + (1−α)·conv(x), zero padding k//2 (same size), in x's dtype."""
        k = self.kernel_size
        out = F.conv2d(x, self.weight.to(x.dtype), padding=k // 2)
        a = self.alpha.to(x.dtype)
        return a * x + (1 - a) * out


def draw_rand_conv(channels: int, generator: torch.Generator, kernel_sizes: tuple[int, ...] = KERNEL_SIZES) -> RandConvDraw:
    """k uniform from `kernel_sizes`, Kaiming-normal (gain 1, fan-in C·k²) weights, α ~ U(0, 1); all from `generator`."""
    dev = generator.device
    u = torch.rand(2, generator=generator, device=dev)
    # the kernel size sets the weight tensor's shape, so it is read back (one scalar per view)
    k = kernel_sizes[min(int(u[0] * len(kernel_sizes)), len(kernel_sizes) - 1)]
    weight = torch.randn(channels, channels, k, k, generator=generator, device=dev) / (channels * k * k) ** 0.5
    return RandConvDraw(weight, u[1])


@register_method
class RandConv(DualNetMethod):
    """RandConv-mix as trained in the benchmark: 3 views, λ = 10 on the FTN and STN consistency terms.

    The views are built from the noisy input x̃ of the standard pass; each is trained with 0.5·MSE
    reconstruction of the clean x, and the per-view losses are averaged over the views. View passes
    are plain train-mode forwards (BN running statistics updated), like the benchmark code's.
    At short budgets λ = 10 outweighs the task loss while the network is untrained and learning
    stalls (measured in docs/methods.md); `consistency_weight` is the knob, the paper's value the default.
    """

    multichannel = False  # its ops (random convolutions, the op table) act on one channel
    name = "rand-conv"
    description = "Random-convolution views (k in {1,3,5,7}, mixed with the input) with JS consistency of FTN and STN predictions"
    reference = "Xu et al., Robust and Generalizable Visual Representation Learning via Random Convolutions, ICLR 2021"
    hparams = {**DualNetMethod.hparams, "views": 3, "consistency_weight": 10.0}

    def __init__(self, hparams, *, num_classes, device, seed, in_channels=1):
        super().__init__(hparams, num_classes=num_classes, device=device, seed=seed, in_channels=in_channels)
        if self.hp["views"] < 1:
            raise ConfigError(f"method {self.name!r}: views={self.hp['views']}; expected at least 1")

    def update(self, batch: Batch) -> dict[str, Tensor]:
        self.train()
        x, y = batch.images, batch.labels
        with self.autocast():
            standard = self.standard_losses(x, y)
        losses, noisy = standard.losses, standard.noisy  # views differ from the standard pass's x̃ only by the filter
        net, t, n = self.net, self.hp["stn_temperature"], self.hp["views"]
        rec, ftn, stn = [], [], []
        with self.autocast():
            for _ in range(n):
                view = rescale(draw_rand_conv(x.shape[1], self.generator)(noisy))
                z_i, z_s = net.encode(view)
                logits = net.seg_decoder(z_s)
                rec.append(F.mse_loss(net.image_decoder(z_i).float(), x.float()))
                ftn.append(torch.softmax(logits.float(), dim=1))
                stn.append(torch.softmax(net.refine(logits, t).float(), dim=1))
        lam = self.hp["consistency_weight"]
        losses["rc_rec"] = self.hp["rec_weight"] * torch.stack(rec).mean()
        losses["rc_cons"] = lam * js_consistency(ftn)
        losses["rc_stn_cons"] = lam * js_consistency(stn)
        return self.step(losses)
