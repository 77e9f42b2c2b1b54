"""Shared machinery of the baselines that train on extra, perturbed inputs (methods.md §2, §3, §5).

The benchmark code (MaxStyle) trains every such baseline on the dual network's standard losses
plus, on the perturbed images, the "hard-example" losses of its `hard_example_training`: CE of the
FTN, 0.5·MSE reconstruction of the *clean* image, and CE of the STN refinement of the FTN
prediction. BatchNorm differs between the passes, as in that code:

* **searches** (finding an adversarial perturbation) run in eval mode: BN uses its running
  statistics and nothing about the search leaks into them (methods.md §2 pitfall);
* **consistency passes** run in plain train mode (batch statistics, running statistics updated,
  BN affine parameters trained);
* **hard-example passes** run the encoder, decoupler, segmentation decoder and STN on batch
  statistics without running-statistic updates and without gradient into BN affine parameters,
  the image decoder normally — the same asymmetry as cooperative training's hard pass
  (methods.md §1 step 5), reusing its `batch_statistics_only`.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor
from torch.nn import functional as F

from robench.imageops import minmax_per_slice
from robench.methods.coop_latent import batch_statistics_only
from robench.methods.standard import DualNetMethod


class HardExampleMethod(DualNetMethod):
    """A `DualNetMethod` with hard-example losses, a search mode and a consistency helper."""

    def hard_losses(self, hard: Tensor, clean: Tensor, labels: Tensor, prefix: str = "hard") -> dict[str, Tensor]:
        """CE + 0.5·MSE(recon, clean) + STN CE on `hard` images (no input noise), BN as described above."""
        net = self.net
        with self.autocast(), batch_statistics_only(net.encoder, net.decoupler, net.seg_decoder, net.stn):
            z_i, z_s = net.encode(hard)
            logits = net.seg_decoder(z_s)
            return {
                f"{prefix}_seg": F.cross_entropy(logits, labels),
                f"{prefix}_rec": self.hp["rec_weight"] * F.mse_loss(net.image_decoder(z_i).float(), clean.float()),
                f"{prefix}_stn": F.cross_entropy(net.refine(logits, self.hp["stn_temperature"]), labels),
            }

    def adversarial_losses(
        self,
        x_adv: Tensor,
        clean: Tensor,
        labels: Tensor,
        reference: Tensor,
        divergence: Callable[[Tensor, Tensor], Tensor],
        *,
        weight: float,
        norm_image: bool,
    ) -> dict[str, Tensor]:
        """`weight`·divergence(reference, FTN(x_adv)) in train mode, plus the hard-example losses on rescale(x_adv).

        The consistency input is x_adv, or rescale(x_adv) when `norm_image` (the reference solver's
        ``if_norm_image``); the hard-example input is always rescaled, as the benchmark code does.
        """
        with self.autocast():
            logits = self.net.segment(rescale(x_adv) if norm_image else x_adv)
        losses = {"adv_cons": weight * divergence(reference, logits)}
        losses.update(self.hard_losses(rescale(x_adv), clean, labels, prefix="adv"))
        return losses


def rescale(x: Tensor) -> Tensor:
    """Per-sample min-max to [0, 1]: perturbed images are put back on the intensity scale of the training images."""
    return minmax_per_slice(x)


def l2_normalise(d: Tensor) -> Tensor:
    """Unit L2 norm per sample; scaled by max |d| first so tiny gradients neither underflow nor divide by ~0."""
    dims = tuple(range(1, d.dim()))
    d = d / d.abs().amax(dim=dims, keepdim=True).clamp_min(1e-30)
    return d / d.pow(2).sum(dim=dims, keepdim=True).sqrt().clamp_min(1e-12)
