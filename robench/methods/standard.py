"""Standard training (methods.md §1b): the cooperative dual network with its standard losses only.

The paper's baseline is the same FTN + STN as the proposed method without latent-space
masking: L = CE(FTN) + 0.5·MSE(reconstruction) + CE(STN on one-hot GT) + CE(STN on the
tempered FTN softmax). The STN gives a second prediction mode, `ftn+stn`, as in the paper's
"Avg (FTN+STN)" column.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import Tensor
from torch.nn import functional as F

from robench.methods.base import Batch, Method, register_method
from robench.methods.nets import DualNet, one_hot

SUBNETS = ("encoder", "decoupler", "image_decoder", "seg_decoder", "stn")


@dataclass
class StandardPass:
    """The standard forward pass of a batch: its losses and the tensors other methods reuse."""

    losses: dict[str, Tensor]
    logits: Tensor  # FTN segmentation logits of the noisy input
    noisy: Tensor  # x̃ = clip(x + σ·N(0,1), 0, 1)
    z_i: Tensor  # image code
    z_s: Tensor  # shape code


class DualNetMethod(Method):
    """Shared machinery of every method built on the dual network: losses, optimisers, prediction modes."""

    hparams = {"lr": 1e-4, "input_noise": 0.05, "rec_weight": 0.5, "stn_temperature": 2.0}
    prediction_modes = ("ftn", "ftn+stn")
    primary_mode = "ftn"
    selection_mode = "ftn+stn"
    multichannel = True  # the network takes one input channel per image channel; subclasses say when they do not

    def __init__(self, hparams, *, num_classes, device, seed, in_channels=1):
        super().__init__(hparams, num_classes=num_classes, device=device, seed=seed, in_channels=in_channels)
        torch.manual_seed(seed)
        self.net = DualNet(in_channels=in_channels, num_classes=num_classes).to(device)
        # Five Adam optimisers (one per sub-network) as in the paper; stepped together they are
        # equivalent to one Adam, but separate ones keep sub-network-specific schedules possible.
        self._optimisers = {
            name: torch.optim.Adam(getattr(self.net, name).parameters(), lr=self.hp["lr"]) for name in SUBNETS
        }

    def modules(self) -> Mapping[str, torch.nn.Module]:
        return {"net": self.net}

    def optimisers(self) -> Mapping[str, torch.optim.Optimizer]:
        return self._optimisers

    @contextlib.contextmanager
    def search_mode(self) -> Iterator[None]:
        """Eval mode (BN running statistics, no updates) for the duration of a perturbation search."""
        self.net.eval()
        try:
            yield
        finally:
            self.net.train()

    def noisy(self, x: Tensor) -> Tensor:
        """Input noise of the denoising FTN: clip(x + σ·N(0,1), 0, 1)."""
        noise = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        return (x + self.hp["input_noise"] * noise).clamp(0.0, 1.0)

    def standard_losses(self, x: Tensor, y: Tensor) -> "StandardPass":
        """Steps 2–3 of methods.md §1: the named losses plus what methods build on (logits, noisy input, codes)."""
        net, t = self.net, self.hp["stn_temperature"]
        noisy = self.noisy(x)
        z_i, z_s = net.encode(noisy)
        logits = net.seg_decoder(z_s)
        losses = {
            **self.segmentation_losses(logits, y),
            "rec": self.hp["rec_weight"] * F.mse_loss(net.image_decoder(z_i).float(), x.float()),
            "stn_gt": F.cross_entropy(net.stn(one_hot(y, self.num_classes)), y),
            "stn_pred": F.cross_entropy(net.refine(logits, t), y),
        }
        return StandardPass(losses, logits, noisy, z_i, z_s)

    def segmentation_losses(self, logits: Tensor, y: Tensor) -> dict[str, Tensor]:
        """The FTN's segmentation term(s) of the standard losses: CE here; the class-imbalance family replaces it."""
        return {"seg": F.cross_entropy(logits, y)}

    def step(self, losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Backward and step on the sum; the losses come back detached (the trainer checks them for NaN)."""
        total = sum(losses.values())
        for opt in self._optimisers.values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in self._optimisers.values():
            opt.step()
        out = {k: v.detach().float() for k, v in losses.items()}
        out["total"] = total.detach().float()
        return out

    def predict(self, images: Tensor, mode: str | None = None) -> Tensor:
        return self.predict_modes(images, (self.check_mode(mode),))[self.check_mode(mode)]

    def predict_modes(self, images: Tensor, modes) -> dict[str, Tensor]:
        """The FTN runs once; `ftn+stn` refines its logits (evaluating both modes costs one FTN pass)."""
        modes = [self.check_mode(m) for m in modes]
        out = {}
        with self.autocast():
            logits = self.net.segment(images)
            for mode in modes:
                out[mode] = (self.net.refine(logits, self.hp["stn_temperature"]) if mode == "ftn+stn" else logits).float()
        return out


@register_method
class StandardTraining(DualNetMethod):
    name = "standard"
    description = "Standard training of the FTN+STN dual network with the paper's augmentation"
    reference = "Chen et al., Cooperative Training and Latent Space Data Augmentation, MICCAI 2021 (baseline)"

    def update(self, batch: Batch) -> dict[str, Tensor]:
        self.train()
        with self.autocast():
            losses = self.standard_losses(batch.images, batch.labels).losses
        return self.step(losses)
