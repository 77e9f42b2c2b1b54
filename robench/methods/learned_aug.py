"""Learned augmentation (methods.md §7; Li et al., TMI 2023): the sampling policy trained by meta-gradients.

The dual network, its losses and the batch layout of `standard` stay; what changes is who picks
the augmentation of the batch's augmented half. A policy of independent categoricals over the op
table's 12 two-dimensional groups (`op_table.GROUP_OPTIONS`, identity first, 50 logits) draws one
option per group and slice by Gumbel-max. Every `augupdate` updates, a meta step asks whether
training on these augmented slices would lower the loss on validation slices (a one-step
look-ahead θ' = θ − α∇θ L_tr on a functional copy, α the current segmentation learning rate, and
the finite-difference Hessian-vector product of `aug_policy`), and Adam moves the policy's logits;
then the ordinary segmentation step runs on the same batch, unweighted.

Choices of this benchmark, where the 3-D reference does something a 2-D slice pipeline cannot:

* L_tr is CE + soft Dice (foreground classes, per slice) of the FTN on the augmented slices,
  without the FTN's input noise (the finite difference compares two passes on the same input);
  L_val is soft Dice over the batch (`meta_loss`), on validation slices that hold foreground
  (a Dice of an empty slice is no signal), drawn with the method's generator;
* options are drawn per batch with the current policy (the reference draws a whole epoch's at its
  start); the meta step always runs in fp32 — a radius-0.01 finite difference in bf16 is noise;
* a slice counts as foreground-centred when it holds any foreground class (the reference centres
  patches on a voxel); with `class_specific`, those slices get their own policy.

The policy, its Adam state, the update counter and the trajectory of probabilities are part of the
checkpoint, so a resumed run continues the same policy; the trajectory is written to the run
folder as `policy.parquet` (see `robench plot policy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from robench.errors import ConfigError, RunStateError
from robench.methods.aug_baselines import JCS_REFERENCE
from robench.methods.aug_policy import FD_RADIUS, AugmentationPolicy, policy_meta_step
from robench.methods.base import Batch, register_method
from robench.methods.nets import one_hot
from robench.methods.op_table import GROUP_OPTIONS, OPS, PRESET_PROBABILITIES, apply_ops, choice_selection, INDEX
from robench.methods.standard import StandardTraining

INITS = ("uniform", "identity", "nnunet", "deepmedic")  # the reference's --org presets 0, 1, 2, 3
META_LOSSES = ("ce", "dice", "ce+dice")  # the reference's --softdsc 0, 1, 2
POLICY_NAMES = {1: ("all",), 2: ("background", "foreground")}
DICE_SMOOTH = 1e-5


def soft_dice_loss(logits: Tensor, y: Tensor, num_classes: int, *, per_sample: bool) -> Tensor:
    """1 − mean foreground soft Dice (smooth 1e-5), per slice (B,) or over the batch (scalar)."""
    probs, target = torch.softmax(logits.float(), 1), one_hot(y, num_classes).float()
    dims = (2, 3) if per_sample else (0, 2, 3)
    tp = (probs * target).sum(dims)
    dice = (2 * tp + DICE_SMOOTH) / (probs.sum(dims) + target.sum(dims) + DICE_SMOOTH)
    return 1 - dice[..., 1:].mean(-1)


def option_labels() -> list[list[str]]:
    """Per group, a readable name of each option (identity first)."""
    out = []
    for _, options in GROUP_OPTIONS:
        labels = ["identity"]
        for name, level in options:
            value = OPS[INDEX[name]].levels[level]
            labels.append(name if name.startswith("flip") else f"{name} {value:g}")
        out.append(labels)
    return out


@dataclass
class Drawn:
    """What `augment` drew for the batch it produced, for the `update` that follows."""

    choices: Tensor  # (n, groups) option index per slice and group
    owner: Tensor  # (n,) which policy drew it
    foreground: Tensor  # (n,) the slice holds a foreground class


class SegmentationPath(nn.Module):
    """The FTN's segmentation path (encoder → decoupler → segmentation decoder) as one module, for
    `functional_call` on a parameter dictionary; it holds the dual network's own sub-modules."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.encoder, self.decoupler, self.seg_decoder = net.encoder, net.decoupler, net.seg_decoder

    def forward(self, x: Tensor) -> Tensor:
        return self.seg_decoder(self.decoupler(self.encoder(x)))


@register_method
class LearnedAugmentation(StandardTraining):
    name = "learned-aug"
    description = "Augmentation sampling policy learned by meta-gradients (look-ahead + finite-difference HVP)"
    reference = JCS_REFERENCE
    multichannel = False  # the op table acts on one channel
    hparams = {
        **StandardTraining.hparams,
        "policy_lr": 1e-3,  # Adam on the logits (DeepMedic setting); the budget's lr multiplier applies
        "init": "deepmedic",  # preset 3, the `heuristic` baseline's policy: learning starts where it stays
        "class_specific": False,
        "augupdate": 1,
        "meta_loss": "dice",  # the DeepMedic runs' --softdsc 1
        "temperature": 1.0,
        "fd_radius": FD_RADIUS,
        "record_every": 10,  # updates between two rows of the policy trajectory
    }

    def __init__(self, hparams, *, num_classes, device, seed, in_channels=1):
        super().__init__(hparams, num_classes=num_classes, device=device, seed=seed, in_channels=in_channels)
        hp = self.hp
        problems = [
            f"init must be one of {', '.join(INITS)}" if hp["init"] not in INITS else "",
            f"meta_loss must be one of {', '.join(META_LOSSES)}" if hp["meta_loss"] not in META_LOSSES else "",
            "augupdate must be >= 1" if hp["augupdate"] < 1 else "",
            "policy_lr must be > 0" if hp["policy_lr"] <= 0 else "",
            "temperature must be > 0" if hp["temperature"] <= 0 else "",
            "fd_radius must be > 0" if hp["fd_radius"] <= 0 else "",
            "record_every must be >= 1" if hp["record_every"] < 1 else "",
        ]
        if any(problems):
            raise ConfigError(f"method {self.name!r}: {'; '.join(p for p in problems if p)}; got {hp}")
        sizes = [len(options) + 1 for _, options in GROUP_OPTIONS]
        p_augment = {"uniform": None, "identity": [0.5] * len(sizes)}.get(hp["init"], PRESET_PROBABILITIES.get(hp["init"]))
        self.policies = nn.ModuleList(
            AugmentationPolicy(sizes, p_augment, hp["temperature"]) for _ in range(2 if hp["class_specific"] else 1)
        ).to(device)
        self._policy_optimiser = torch.optim.Adam(self.policies.parameters(), lr=hp["policy_lr"], betas=(0.9, 0.999))
        self._path = SegmentationPath(self.net)
        self._val: tuple[Tensor, Tensor] | None = None
        self._drawn: Drawn | None = None
        self._meta_losses: dict[str, Tensor] = {}
        self.updates = 0
        self.trajectory: list[list[float]] = []  # rows: [update, policy index, *probabilities]
        self._record()

    # the trainer's view ---------------------------------------------------------------------
    def modules(self) -> Mapping[str, nn.Module]:
        return {"net": self.net, "policy": self.policies}

    def optimisers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {**self._optimisers, "policy": self._policy_optimiser}

    def begin_training(self, train: Any, val: Any) -> None:
        """Keep the validation slices the meta step scores the look-ahead on (those holding foreground)."""
        holds = val.labels.flatten(1).gt(0).any(1)
        if not holds.any():
            raise ConfigError(f"method {self.name!r} needs validation slices with foreground; this split's validation cases have none")
        self._val = (val.images[holds], val.labels[holds])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "learned_aug": {"updates": self.updates, "trajectory": self.trajectory}}

    def load_state_dict(self, state: Mapping[str, Any], *, weights_only: bool = False) -> None:
        super().load_state_dict(state, weights_only=weights_only)
        if not weights_only:
            self.updates = int(state["learned_aug"]["updates"])
            self.trajectory = [list(row) for row in state["learned_aug"]["trajectory"]]

    # sampling ---------------------------------------------------------------------------------
    def augment(self, images: Tensor, labels: Tensor, *, crop: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        foreground = labels.flatten(1).gt(0).any(1)
        owner = foreground.long() if self.hp["class_specific"] else torch.zeros_like(foreground, dtype=torch.long)
        choices = torch.zeros(len(images), len(GROUP_OPTIONS), dtype=torch.long, device=images.device)
        for index, policy in enumerate(self.policies):
            # every policy draws for every slice, so the random stream does not depend on the labels
            drawn = policy.sample(len(images), generator).to(images.device)
            choices = torch.where((owner == index)[:, None], drawn, choices)
        self._drawn = Drawn(choices, owner, foreground)
        selected, level = choice_selection(choices)
        return apply_ops(images, labels, selected, level, crop=crop, generator=generator)

    # the update -------------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, Tensor]:
        drawn, self._drawn = self._drawn, None
        if drawn is None or len(drawn.choices) != batch.n_augmented:
            raise RunStateError(f"method {self.name!r}: update() needs the batch its own augment() just produced")
        if self.updates % self.hp["augupdate"] == 0:  # the first update always is one
            self._meta_losses = self.meta_step(batch.images[: batch.n_augmented], batch.labels[: batch.n_augmented], drawn)
        self.updates += 1
        if self.updates % self.hp["record_every"] == 0:
            self._record()
        self.train()
        with self.autocast():
            losses = self.standard_losses(batch.images, batch.labels).losses
        # the trainer wants the same names every update: the meta losses are those of the last meta step
        return {**self.step(losses), **self._meta_losses}

    def meta_step(self, x: Tensor, y: Tensor, drawn: Drawn) -> dict[str, Tensor]:
        if self._val is None:
            raise RunStateError(f"method {self.name!r}: no validation slices; the trainer calls begin_training() first")
        vx, vy = self._val_batch(len(x))
        self.train()  # batch statistics in every pass, as the reference; the buffers are copies
        params = dict(self._path.named_parameters())

        def buffers() -> dict[str, Tensor]:
            return {k: b.clone() for k, b in self._path.named_buffers()}

        def sample_loss(theta: dict[str, Tensor]) -> Tensor:
            logits = functional_call(self._path, {**theta, **buffers()}, (x.float(),))
            ce = F.cross_entropy(logits.float(), y, reduction="none").mean((1, 2))
            return ce + soft_dice_loss(logits, y, self.num_classes, per_sample=True)

        def val_loss(theta: dict[str, Tensor]) -> Tensor:
            logits = functional_call(self._path, {**theta, **buffers()}, (vx.float(),))
            kind = self.hp["meta_loss"]
            ce = F.cross_entropy(logits.float(), vy) if "ce" in kind else 0.0
            return ce + (soft_dice_loss(logits, vy, self.num_classes, per_sample=False) if "dice" in kind else 0.0)

        alpha = self._optimisers["encoder"].param_groups[0]["lr"]
        self._policy_optimiser.zero_grad(set_to_none=True)
        step = policy_meta_step(
            list(self.policies), drawn.owner, drawn.choices, drawn.foreground, sample_loss, val_loss, params,
            alpha=alpha, generator=self.generator, radius=self.hp["fd_radius"],
        )
        self._policy_optimiser.step()
        return step.losses

    def _val_batch(self, n: int) -> tuple[Tensor, Tensor]:
        images, labels = self._val
        idx = torch.randint(len(images), (n,), generator=self.generator, device=self.generator.device).to(images.device)
        return images[idx], labels[idx]

    # the trajectory ---------------------------------------------------------------------------
    def _current_rows(self) -> list[list[float]]:
        """[update, policy index, *probabilities] of every policy now."""
        return [
            [float(self.updates), float(index), *torch.cat(policy.probabilities()).detach().float().cpu().tolist()]
            for index, policy in enumerate(self.policies)
        ]

    def _record(self) -> None:
        self.trajectory += self._current_rows()

    def artifacts(self) -> dict[str, pd.DataFrame]:
        """`policy`: one row per (recorded update, policy, group, option) with its probability."""
        names = POLICY_NAMES[len(self.policies)]
        labels = option_labels()
        trajectory = list(self.trajectory)
        if int(trajectory[-1][0]) != self.updates:  # the final policy, between two recorded rows
            trajectory += self._current_rows()
        rows = []
        for update, index, *probs in trajectory:
            offset = 0
            for (group, _), group_labels in zip(GROUP_OPTIONS, labels):
                for option, label in enumerate(group_labels):
                    rows.append((int(update), names[int(index)], group, option, label, probs[offset + option]))
                offset += len(group_labels)
        return {"policy": pd.DataFrame(rows, columns=["update", "policy", "group", "option", "label", "probability"])}
