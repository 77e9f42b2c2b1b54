"""Regularisers under class imbalance (methods.md §6; Li, Kamnitsas & Glocker, TMI 2020): ten methods, one class.

With little training data the test-time logits of a rare class drift towards and across the
decision boundary while the background stays put; the paper's remedy is to apply each
regulariser to the rare class(es) only. Every method here is `ImbalanceMethod` with its own
defaults: a technique is off at its neutral value (margin 0, γ 0, ε 0, α 0, p_bg 1), and the
combination turns all of them on. The asymmetric variants take `rare_classes` (default: all
foreground classes); the symmetric counterparts apply the technique to every class.

What the rare-class mask r means per technique (the reference code's `asy`):

* margin: subtracted from the true-class logit where the true class is rare (symmetric: all);
* focal: the down-weighting applies to the classes that are *not* rare, rare ones keep factor 1
  (symmetric: every class is down-weighted — so the symmetric variant is the asymmetric one with
  no class rare, not with every class rare);
* adversarial: the objective, and here the direction, live on rare-class voxels (symmetric: all);
* mixup: a rare label survives the mix, fractional voxels are dropped (symmetric: soft targets
  kept, mixup margin 0 as the reference's "vanilla mixup"); with every class rare, the asymmetric
  target is the symmetric one without the voxels whose two labels differ;
* augmentation: slices holding a rare class are always augmented, the others with probability
  p_bg (every slice holds background, so with every class rare every slice is augmented).

All build on the dual network of `standard` (FTN + STN, the same reconstruction and STN terms):
only the FTN's segmentation term changes, from CE to the reference's CE + Dice, and the
adversarial and mixup steps are extra optimiser steps on the FTN's segmentation loss alone.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from robench.errors import ConfigError
from robench.imageops import centre_crop, minmax_per_slice
from robench.methods.base import Batch, register_method
from robench.methods.imbalance_losses import (
    adversarial_normalise,
    mixup_lambda,
    mixup_target,
    rare_voxel_loss,
    regularised_loss,
)
from robench.methods.nets import one_hot
from robench.methods.standard import DualNetMethod

REFERENCE = "Li, Kamnitsas & Glocker, Analyzing Overfitting under Class Imbalance in Neural Networks for Image Segmentation, IEEE TMI 2020"
NNUNET_PATCH_VOXELS = 128**3  # the reference's ε = 10 is an L2 radius over an nnU-Net 3-D patch (BraTS: 128³)

MARGIN = {"margin": 0.2}  # the BraTS-10 % configuration; 0.2–2.0 recommended
FOCAL = {"gamma": 4.0}  # the BraTS and KiTS one-sided configurations; 2–6 recommended
ADVERSARIAL = {"eps": 10.0, "xi": 1e-5, "eps_reference_voxels": NNUNET_PATCH_VOXELS, "mask_direction": True}
MIXUP = {"alpha": 0.2, "mixup_margin": 0.2}  # the U-Net defaults
AUGMENTATION = {"p_bg": 0.5}  # the paper's value is not given (methods.md: UNVERIFIED); this benchmark's choice
EXTRA_STEPS = {"raw": True}  # adversarial and mixup steps on the un-augmented half (the reference README's --raw)


class ImbalanceMethod(DualNetMethod):
    """CE + Dice on the dual network with margin, focal, adversarial, mixup and augmentation regularisers.

    Steps per update: the normal batch (all standard losses, segmentation term regularised by the
    margin and focal factors) → an adversarial batch when ε > 0 → a mixup batch when α > 0, each
    its own optimiser step (the reference's `run_iterationRAW`). Hyperparameters a method does not
    declare are at their neutral value.
    """

    symmetric: ClassVar[bool] = False
    hparams = {**DualNetMethod.hparams, "dice_weight": 1.0}

    def __init__(self, hparams, *, num_classes, device, seed, in_channels=1):
        super().__init__(hparams, num_classes=num_classes, device=device, seed=seed, in_channels=in_channels)
        hp = self.hp
        self.margin, self.gamma = float(hp.get("margin", 0.0)), float(hp.get("gamma", 0.0))
        self.eps, self.alpha = float(hp.get("eps", 0.0)), float(hp.get("alpha", 0.0))
        self.p_bg, self.mixup_margin = float(hp.get("p_bg", 1.0)), float(hp.get("mixup_margin", 0.0))
        self._check_hparams()
        everything = torch.ones(num_classes, dtype=torch.bool, device=device)
        self.rare = everything if self.symmetric else parse_rare_classes(str(hp["rare_classes"]), num_classes).to(device)
        self.margin_on = self.rare
        self.focal_on = everything if self.symmetric else ~self.rare
        self.mixup_rare = None if self.symmetric else self.rare

    def _check_hparams(self) -> None:
        checks = {
            "margin >= 0": self.margin >= 0, "gamma >= 0": self.gamma >= 0, "eps >= 0": self.eps >= 0,
            "alpha >= 0": self.alpha >= 0, "0 <= p_bg <= 1": 0 <= self.p_bg <= 1,
            "0 <= mixup_margin < 1": 0 <= self.mixup_margin < 1, "xi > 0": self.hp.get("xi", 1.0) > 0,
            "eps_reference_voxels >= 0": self.hp.get("eps_reference_voxels", 0) >= 0,
            "dice_weight >= 0": self.hp["dice_weight"] >= 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ConfigError(f"method {self.name!r}: needs {', '.join(failed)}; got {self.hp}")

    # the segmentation loss ----------------------------------------------------------------------
    def regularised(self, logits: Tensor, target: Tensor, keep: Tensor | None = None) -> dict[str, Tensor]:
        return regularised_loss(
            logits, target, margin_on=self.margin_on, margin=self.margin, focal_on=self.focal_on, gamma=self.gamma,
            keep=keep, dice_weight=self.hp["dice_weight"],
        )

    def segmentation_losses(self, logits: Tensor, y: Tensor) -> dict[str, Tensor]:
        return self.regularised(logits, one_hot(y, self.num_classes))

    # the update ---------------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, Tensor]:
        self.train()
        with self.autocast():
            losses = self.standard_losses(batch.images, batch.labels).losses
        out = self.step(losses)
        x, y = self.extra_step_batch(batch)
        if self.eps > 0:
            r_adv = self.adversarial_perturbation(x, y)
            with self.autocast():
                adversarial = self.segmentation_losses(self.net.segment(x + r_adv.to(x.dtype)), y)
            out.update({f"adv_{k}": v for k, v in self.step(adversarial).items()})
        if self.alpha > 0:
            out.update({f"mix_{k}": v for k, v in self.step(self.mixup_losses(x, y)).items()})
        return out

    def extra_step_batch(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The images the adversarial and mixup steps use: the un-augmented half when `raw`, else the whole batch."""
        if self.hp.get("raw", False) and batch.n_augmented < len(batch.images):
            return batch.images[batch.n_augmented :], batch.labels[batch.n_augmented :]
        return batch.images, batch.labels

    # adversarial training -----------------------------------------------------------------------
    def radius(self, x: Tensor) -> Tensor:
        """Per-sample L2 radius: ε in units of the image's standard deviation (the reference z-scores its
        inputs), scaled from an nnU-Net patch to this image's size (`eps_reference_voxels=0`: ε as given)."""
        ref = self.hp["eps_reference_voxels"]
        scale = math.sqrt(x[0].numel() / ref) if ref > 0 else 1.0
        return self.eps * scale * x.float().flatten(1).std(1).view(-1, *([1] * (x.dim() - 1)))

    def adversarial_direction(self, x: Tensor, y: Tensor) -> Tensor:
        """normalise(∇_d L_rare(x + d)) at d = ξ·normalise(N(0, I)), BN on running statistics.

        L_rare is CE + Dice on rare-class voxels only. With `mask_direction` (default) the gradient
        is also kept on rare-class voxels only, so the perturbation touches the rare structure and
        nothing else; the reference leaves it unmasked (it then spreads over the receptive field).
        """
        noise = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=torch.float32)
        d = (self.hp["xi"] * adversarial_normalise(noise)).requires_grad_(True)
        with self.search_mode(), self.autocast():
            logits = self.net.segment(x.float() + d)
        grad, = torch.autograd.grad(rare_voxel_loss(logits, one_hot(y, self.num_classes), self.rare), d)
        if self.hp["mask_direction"]:
            grad = grad * self.rare[y][:, None]
        return adversarial_normalise(grad.detach().float())

    def adversarial_perturbation(self, x: Tensor, y: Tensor) -> Tensor:
        return self.radius(x) * self.adversarial_direction(x, y)

    # mixup --------------------------------------------------------------------------------------
    def mixup_losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """The regularised loss on λ·x + (1 − λ)·x_reversed against the (a)symmetric mixed target."""
        lam = mixup_lambda(self.alpha, self.mixup_margin, self.generator)
        target, keep = mixup_target(y, y.flip(0), lam, self.num_classes, rare=self.mixup_rare, mixup_margin=self.mixup_margin)
        with self.autocast():
            logits = self.net.segment(lam * x + (1 - lam) * x.flip(0))
        return self.regularised(logits, target, keep)

    # augmentation -------------------------------------------------------------------------------
    def augment(self, images: Tensor, labels: Tensor, *, crop: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The paper's augmentation; with p_bg < 1, slices without a rare class keep it only with probability p_bg
        (the others get the un-augmented centre crop, min-max normalised as augmented slices are)."""
        aug_images, aug_labels = super().augment(images, labels, crop=crop, generator=generator)
        if self.p_bg >= 1:
            return aug_images, aug_labels
        keep = self.augmented_slices(labels, generator)
        plain_images, plain_labels = minmax_per_slice(centre_crop(images, crop)), centre_crop(labels, crop)
        return (
            torch.where(keep[:, None, None, None], aug_images, plain_images),
            torch.where(keep[:, None, None], aug_labels, plain_labels),
        )

    def augmented_slices(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        """Which slices are augmented: every rare-class-centred one, each other one with probability p_bg."""
        rare_centred = self.rare[labels].flatten(1).any(1)
        draw = torch.rand(len(labels), generator=generator, device=labels.device)
        return rare_centred | (draw < self.p_bg)


def parse_rare_classes(text: str, num_classes: int) -> Tensor:
    """`foreground` | `all` | `none` | comma-separated label values → (C,) bool mask."""
    text = text.strip().lower()
    mask = torch.zeros(num_classes, dtype=torch.bool)
    if text in ("foreground", "fg"):
        mask[1:] = True
    elif text == "all":
        mask[:] = True
    elif text != "none":
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or any(not 0 <= v < num_classes for v in values):
            raise ConfigError(
                f"rare_classes={text!r}: expected foreground, all, none or label values in 0..{num_classes - 1} "
                "separated by commas (e.g. rare_classes=2)"
            )
        mask[values] = True
    return mask


ASYMMETRIC = {"rare_classes": "foreground"}


def _imbalance_method(name: str, description: str, symmetric: bool, **hparams) -> type[ImbalanceMethod]:
    cls = type(
        "".join(part.capitalize() for part in name.split("-")),
        (ImbalanceMethod,),
        {
            "name": name, "description": description, "reference": REFERENCE, "symmetric": symmetric,
            "hparams": {**ImbalanceMethod.hparams, **({} if symmetric else ASYMMETRIC), **hparams},
            "__module__": __name__, "__doc__": f"{description} (methods.md §6).",
        },
    )
    return register_method(cls)


_imbalance_method("margin", "Large-margin CE + Dice: margin m on the true-class logit of every class", True, **MARGIN)
_imbalance_method("asym-margin", "Asymmetric large margin: margin m on the true-class logit of rare classes only", False, **MARGIN)
_imbalance_method("focal", "Focal CE + Dice: every class's loss down-weighted by (1 - p)^gamma", True, **FOCAL)
_imbalance_method("asym-focal", "Asymmetric focal: only the non-rare classes' loss down-weighted by (1 - p)^gamma", False, **FOCAL)
_imbalance_method("adv", "Label-based adversarial training (extra step on x + r_adv) on every voxel", True, **ADVERSARIAL, **EXTRA_STEPS)
_imbalance_method("asym-adv", "Asymmetric adversarial training: direction from the rare-class voxels' loss only", False, **ADVERSARIAL, **EXTRA_STEPS)
_imbalance_method("mixup", "Mixup (extra step on lambda x_A + (1 - lambda) x_B, soft targets)", True, alpha=MIXUP["alpha"], mixup_margin=0.0, **EXTRA_STEPS)
_imbalance_method("asym-mixup", "Asymmetric mixup: rare labels survive the mix, fractional voxels dropped", False, **MIXUP, **EXTRA_STEPS)
_imbalance_method("asym-aug", "Asymmetric augmentation: rare-class slices always augmented, others with probability p_bg", False, **AUGMENTATION)
_imbalance_method(
    "asym-combo", "All five asymmetric regularisers together (up to three optimiser steps per update)", False,
    margin=0.2, gamma=2.0, **ADVERSARIAL, **MIXUP, **AUGMENTATION, **EXTRA_STEPS,
)
