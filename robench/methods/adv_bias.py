"""Adversarial bias field ("Adv Bias", methods.md §2), as trained in the benchmark code (MaxStyle).

Per iteration: the standard losses give the reference prediction p_ref (softmax of the FTN
logits, detached); a random log-space control grid φ is pushed one normalised gradient-ascent
step towards a larger KL + 0.5·contour divergence between p_ref and the prediction on B(φ) ⊙ x
(eval-mode BN), clamped back to [log(1−ε), log(1+ε)]; the network then trains (train-mode BN)
on x_adv = B(φ) ⊙ x with the consistency loss and the hard-example losses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robench.errors import ConfigError
from robench.methods.base import Batch, register_method
from robench.methods.bias_field import BiasFieldGrid, clamp_log_params
from robench.methods.divergences import segmentation_divergence
from robench.methods.hard_examples import HardExampleMethod, l2_normalise, rescale


@register_method
class AdvBias(HardExampleMethod):
    """Adv Bias with the benchmark's values (MaxStyle): ε 0.4, spacing H/2, downscale 2, one step of size 1.

    `norm_image` (default false, as the benchmark code's bias solver): whether the search and the
    consistency term see B ⊙ x min-max rescaled per sample; the hard-example losses always do.
    """

    name = "adv-bias"
    description = "Adversarial B-spline bias field (one normalised ascent step on KL+contour) with consistency and hard-example losses"
    reference = (
        "Chen et al., Realistic Adversarial Data Augmentation for MR Image Segmentation, MICCAI 2020; "
        "Chen et al., Enhancing MR Image Segmentation with Realistic Adversarial Data Augmentation, MedIA 2022"
    )
    hparams = {
        **HardExampleMethod.hparams,
        "eps": 0.4,
        "spacing_fraction": 0.5,
        "downscale": 2,
        "step_size": 1.0,
        "kl_weight": 1.0,
        "contour_weight": 0.5,
        "cons_weight": 1.0,
        "norm_image": False,
    }

    def __init__(self, hparams, *, num_classes, device, seed, in_channels=1):
        super().__init__(hparams, num_classes=num_classes, device=device, seed=seed, in_channels=in_channels)
        hp = self.hp
        if not (0 < hp["eps"] < 1 and hp["spacing_fraction"] > 0 and hp["downscale"] >= 1):
            raise ConfigError(
                f"method {self.name!r}: needs 0 < eps < 1, spacing_fraction > 0, downscale >= 1; got eps={hp['eps']}, "
                f"spacing_fraction={hp['spacing_fraction']}, downscale={hp['downscale']}"
            )

    def grid(self, x: Tensor) -> BiasFieldGrid:
        return BiasFieldGrid(x.shape[-2], x.shape[-1], self.hp["spacing_fraction"], self.hp["downscale"])

    def divergence(self, reference: Tensor, logits: Tensor) -> Tensor:
        return segmentation_divergence(reference, logits, self.hp["kl_weight"], self.hp["contour_weight"])

    def biased(self, x: Tensor, phi: Tensor) -> Tensor:
        """B(φ) ⊙ x (no intensity clamp: the field is already bounded)."""
        return self.grid(x).field(phi.float(), self.hp["eps"]).to(x.dtype) * x

    def model_input(self, x_biased: Tensor) -> Tensor:
        return rescale(x_biased) if self.hp["norm_image"] else x_biased

    def search(self, x: Tensor, reference: Tensor, phi: Tensor) -> Tensor:
        """One step φ ← clamp(φ + η·∇φD/‖∇φD‖₂) per sample, with BN on running statistics; returns detached φ."""
        phi = phi.detach().requires_grad_(True)
        with self.search_mode(), self.autocast():
            logits = self.net.segment(self.model_input(self.biased(x, phi)))
        grad, = torch.autograd.grad(self.divergence(reference, logits), phi)
        return clamp_log_params(phi.detach() + self.hp["step_size"] * l2_normalise(grad), self.hp["eps"])

    def update(self, batch: Batch) -> dict[str, Tensor]:
        self.train()
        x, y = batch.images, batch.labels
        with self.autocast():
            standard = self.standard_losses(x, y)
        losses = standard.losses
        reference = torch.softmax(standard.logits.detach().float(), dim=1)
        phi = self.search(x, reference, self.grid(x).init(len(x), self.hp["eps"], generator=self.generator))
        with torch.no_grad():
            x_adv = self.biased(x, phi)
        losses.update(
            self.adversarial_losses(
                x_adv, x, y, reference, self.divergence, weight=self.hp["cons_weight"], norm_image=self.hp["norm_image"]
            )
        )
        return self.step(losses)
