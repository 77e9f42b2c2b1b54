"""Augmentation baselines of the learned-augmentation work (methods.md §7): the training augmentation is the only change.

All three keep the dual network and the standard losses of `standard` and override `augment()`,
which produces the augmented half of every batch (the other half stays the centre-cropped
originals). Ops, levels and the 2-D adaptation are in `op_table`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robench.errors import ConfigError
from robench.imageops import centre_crop, minmax_per_slice
from robench.methods.base import register_method
from robench.methods.op_table import DEEPMEDIC_PRESET, OPS, apply_ops, group_selection, rand_augment_selection
from robench.methods.standard import StandardTraining

JCS_REFERENCE = "Li et al., Joint Optimization of Class-Specific Training- and Test-Time Data Augmentation in Segmentation, TMI 2023"


@register_method
class NoAugmentation(StandardTraining):
    """No augmentation: the 'augmented' half is the centre crop, min-max normalised per slice like augmented slices are."""

    name = "no-aug"
    description = "Standard training without augmentation (centre crop + per-slice min-max)"
    reference = f"{JCS_REFERENCE} (no-augmentation baseline)"

    def augment(self, images: Tensor, labels: Tensor, *, crop: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return minmax_per_slice(centre_crop(images, crop)), centre_crop(labels, crop)


@register_method
class HeuristicAugmentation(StandardTraining):
    """A fixed DeepMedic-style policy: preset 3 of the learned-augmentation code, adapted to 2-D slices.

    Per slice and independently: scale 0.2, in-plane rotation 0.2, horizontal flip 0.5, vertical
    flip 0.05, additive brightness 0.15, and 0.05 each for gamma, inverse gamma, multiplicative
    brightness, contrast, blur/sharpen, noise and low resolution; within an op, each magnitude level
    equally likely (`op_table.DEEPMEDIC_PRESET`).
    """

    multichannel = False  # its ops (random convolutions, the op table) act on one channel
    name = "heuristic"
    description = "Fixed DeepMedic-like augmentation policy (preset 3 of the op table)"
    reference = f"{JCS_REFERENCE} (heuristic baseline); Kamnitsas et al., DeepMedic, MedIA 2017"

    def augment(self, images: Tensor, labels: Tensor, *, crop: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        selected, level = group_selection(len(images), DEEPMEDIC_PRESET, generator=generator)
        return apply_ops(images, labels, selected, level, crop=crop, generator=generator)


@register_method
class RandAugment(StandardTraining):
    """RandAugment on the op table: per slice, `num_ops` distinct ops drawn uniformly, all at level `magnitude`.

    `magnitude` counts the table's levels from 1 (mildest) and is capped at each op's last level
    (rotation's level 4 is a quarter turn; flips have one level). N = 2, M = 2 are this
    benchmark's choice: the spec gives no values for this baseline.
    """

    multichannel = False  # its ops (random convolutions, the op table) act on one channel
    name = "rand-augment"
    description = "RandAugment: N random ops of the op table at magnitude level M per slice"
    reference = f"Cubuk et al., RandAugment, CVPR Workshops 2020 (baseline in {JCS_REFERENCE})"
    hparams = {**StandardTraining.hparams, "num_ops": 2, "magnitude": 2}

    def __init__(self, hparams, *, num_classes, device, seed, in_channels=1):
        super().__init__(hparams, num_classes=num_classes, device=device, seed=seed, in_channels=in_channels)
        n, m = self.hp["num_ops"], self.hp["magnitude"]
        if not (0 <= n <= len(OPS) and m >= 1):
            raise ConfigError(f"method {self.name!r}: needs 0 <= num_ops <= {len(OPS)} and magnitude >= 1; got {n}, {m}")

    def augment(self, images: Tensor, labels: Tensor, *, crop: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        selected, level = rand_augment_selection(len(images), self.hp["num_ops"], self.hp["magnitude"], generator=generator)
        return apply_ops(images, labels, selected, level, crop=crop, generator=generator)
