"""Cooperative training with latent-space masking (methods.md §1; Chen et al., MICCAI 2021).

On top of the standard losses of the dual network (`DualNetMethod`, steps 2–3), each update
masks the detached image code z_i and/or shape code z_s (random dropout or targeted soft
masking, `latent_masking`), decodes them into hard images x_h and corrupted segmentations s_h,
and trains FTN and STN on them as well (steps 4–6), all in one backward pass.

BatchNorm follows the public code's asymmetry (step 5): the hard pass runs the encoder,
decoupler, segmentation decoder and STN on batch statistics without updating running
statistics and without gradient into BN weight/bias, while the image decoder inside that pass
is called normally. Decoding x_h and s_h also leaves running statistics untouched.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from robench.errors import ConfigError
from robench.methods.base import Batch, register_method
from robench.methods.latent_masking import MASK_TYPES, SCORES, perturb_code
from robench.methods.standard import DualNetMethod, StandardTraining

REFERENCE = (
    "Chen et al., Cooperative Training and Latent Space Data Augmentation for Robust Medical Image "
    "Segmentation, MICCAI 2021"
)
MASK_SCOPES = ("image", "shape", "image+shape")


@contextlib.contextmanager
def batch_statistics_only(*modules: nn.Module) -> Iterator[None]:
    """BatchNorm layers of `modules` normalise with batch statistics, update no running statistics
    and pass no gradient to their affine parameters (the public code's `_disable_tracking_bn_stats`,
    which also sets requires_grad=False on BN weight/bias).

    Implemented by shadowing each BN module's `forward` with `F.batch_norm(x, None, None,
    weight.detach(), bias.detach(), training=True)`; gradients still flow to the input, and the
    original forward is restored on exit.
    """
    patched: list[tuple[nn.Module, Any]] = []
    try:
        for module in modules:
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    patched.append((m, m.__dict__.get("forward")))
                    m.forward = _batch_statistics_forward(m)
        yield
    finally:
        for m, previous in reversed(patched):
            if previous is None:
                del m.forward
            else:
                m.forward = previous


def _batch_statistics_forward(bn: nn.modules.batchnorm._BatchNorm):
    def forward(x: Tensor) -> Tensor:
        weight = bn.weight.detach() if bn.weight is not None else None
        bias = bn.bias.detach() if bn.bias is not None else None
        return F.batch_norm(x, None, None, weight, bias, training=True, momentum=0.0, eps=bn.eps)

    return forward


def _image_loss(reconstruction: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(reconstruction.float(), target.float())


def _shape_loss(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits.float(), target)


class CoopLatentBase(DualNetMethod):
    """Cooperative training with latent masking of the codes named by `mask_scope`."""

    def __init__(self, hparams, *, num_classes, device, seed, in_channels=1):
        super().__init__(hparams, num_classes=num_classes, device=device, seed=seed, in_channels=in_channels)
        hp = self.hp
        checks = {
            "mask_scope": (hp["mask_scope"] in MASK_SCOPES, " | ".join(MASK_SCOPES)),
            "mask_score": (hp["mask_score"] in SCORES, " | ".join(SCORES)),
            "mask_type": (hp["mask_type"] in ("random", *MASK_TYPES), " | ".join(("random", *MASK_TYPES))),
            "p_max": (0.0 <= hp["p_max"] <= 1.0, "a number in [0, 1]"),
            "dropout_p": (0.0 <= hp["dropout_p"] < 1.0, "a number in [0, 1)"),
        }
        for key, (ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"method {self.name!r}: {key}={hp[key]!r}; expected {expected}")
        self.scope = hp["mask_scope"].split("+")

    # hard-example generation (step 4) -----------------------------------------------------------
    def pick_mask_type(self) -> str:
        """Uniform over {dropout, channel, spatial}, one draw per code per batch (or the fixed `mask_type`)."""
        if self.hp["mask_type"] != "random":
            return self.hp["mask_type"]
        index = int(torch.randint(len(MASK_TYPES), (), generator=self.generator, device=self.device))
        return MASK_TYPES[index]

    def generate(self, x: Tensor, y: Tensor, z_i: Tensor, z_s: Tensor) -> dict[str, Any]:
        """Hard images x_h = D_I(z_i') and corrupted logits s_h = D_S(z_s') from detached codes.

        Targeted masks take their gradient through the decoder called normally (one running-stat
        update, as coded); the decoding of the masked codes uses batch statistics without
        updating running statistics. Outputs are detached: hard examples carry no gradient.
        """
        net, out = self.net, {}
        common = dict(p_max=self.hp["p_max"], dropout_p=self.hp["dropout_p"], score=self.hp["mask_score"],
                      generator=self.generator)
        if "image" in self.scope:
            kind = self.pick_mask_type()
            z = perturb_code(z_i, kind, decoder=net.image_decoder, target=x, loss_fn=_image_loss, **common)
            with torch.no_grad(), batch_statistics_only(net.image_decoder):
                out["hard_images"] = net.image_decoder(z).detach()
            out["image_mask"] = kind
        if "shape" in self.scope:
            kind = self.pick_mask_type()
            z = perturb_code(z_s, kind, decoder=net.seg_decoder, target=y, loss_fn=_shape_loss, **common)
            with torch.no_grad(), batch_statistics_only(net.seg_decoder):
                out["corrupted_logits"] = net.seg_decoder(z).detach()
            out["shape_mask"] = kind
        return out

    # hard-example losses (step 5) ---------------------------------------------------------------
    def hard_losses(self, x: Tensor, y: Tensor, hard: dict[str, Any]) -> dict[str, Tensor]:
        """L_seg^h, L_rec^h, L_sh^h on hard images and L_corr^h on corrupted segmentations.

        Encoder, decoupler, segmentation decoder and STN run under `batch_statistics_only`; the
        image decoder is not wrapped, so its running statistics see hard examples and its BN
        affine parameters are trained by L_rec^h (the public code's asymmetry).
        """
        net, t = self.net, self.hp["stn_temperature"]
        losses: dict[str, Tensor] = {}
        with batch_statistics_only(net.encoder, net.decoupler, net.seg_decoder, net.stn):
            if "hard_images" in hard:
                z_i, z_s = net.encode(hard["hard_images"])
                logits = net.seg_decoder(z_s)
                losses["seg_hard"] = F.cross_entropy(logits, y)
                losses["rec_hard"] = self.hp["rec_weight"] * _image_loss(net.image_decoder(z_i), x)
                losses["stn_pred_hard"] = F.cross_entropy(net.refine(logits, t), y)
            if "corrupted_logits" in hard:
                losses["stn_corrupted"] = F.cross_entropy(net.refine(hard["corrupted_logits"], t), y)
        return losses

    # training step (steps 1–6) ------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, Tensor]:
        self.train()
        x, y = batch.images, batch.labels
        with self.autocast():
            standard = self.standard_losses(x, y)
            losses = standard.losses
            hard = self.generate(x, y, standard.z_i.detach(), standard.z_s.detach())
            losses.update(self.hard_losses(x, y, hard))
        return self.step(losses)

    def hard_examples(self, batch: Batch) -> dict[str, Any]:
        """Originals, hard images and corrupted shapes (argmax of s_h) for plotting, without training.

        Produces what the next `update(batch)` would generate from the current weights (same
        noise, mask types and masks), but leaves no trace: running statistics, the generator's
        state and the train/eval flags are restored. Keys: images, labels, and per `mask_scope`
        hard_images / image_mask and corrupted_shapes / shape_mask.
        """
        x, y = batch.images, batch.labels
        state = self.generator.get_state()
        flags = [(m, m.training) for m in self.net.modules()]
        try:
            self.train()
            with self.autocast(), batch_statistics_only(self.net):
                with torch.no_grad():
                    z_i, z_s = self.net.encode(self.noisy(x))
                hard = self.generate(x, y, z_i, z_s)
        finally:
            self.generator.set_state(state)
            for m, flag in flags:
                m.training = flag
        out: dict[str, Any] = {"images": x, "labels": y}
        if "hard_images" in hard:
            out["hard_images"] = hard["hard_images"].float()
            out["image_mask"] = hard["image_mask"]
        if "corrupted_logits" in hard:
            out["corrupted_shapes"] = hard["corrupted_logits"].argmax(1)
            out["shape_mask"] = hard["shape_mask"]
        return out


MASKING_HPARAMS = {"p_max": 0.5, "dropout_p": 0.5, "mask_score": "signed", "mask_type": "random"}


@register_method
class CoopLatent(CoopLatentBase):
    """The paper's "X,p": hard images and corrupted segmentations; all eight losses of step 6."""

    name = "coop-latent"
    description = "Cooperative training (FTN+STN) with latent-space masking of image and shape codes"
    reference = REFERENCE
    hparams = {**DualNetMethod.hparams, **MASKING_HPARAMS, "mask_scope": "image+shape"}


@register_method
class CoopLatentImageOnly(CoopLatentBase):
    """Hard images only (masked z_i): seven losses, no corrupted-shape loss L_corr^h."""

    name = "coop-latent-x"
    description = "Cooperative training (FTN+STN) with latent-space masking of the image code only"
    reference = REFERENCE
    hparams = {**DualNetMethod.hparams, **MASKING_HPARAMS, "mask_scope": "image"}


@register_method
class CoopStandard(StandardTraining):
    """The paper's "standard training" row of the cooperative dual network.

    By construction the same training as `standard` (the dual network with the standard losses
    only, methods.md §1b); registered under its own name so the paper's table row is explicit.
    """

    name = "coop-standard"
    description = "Cooperative dual network (FTN+STN) trained with the standard losses only (= standard)"
    reference = REFERENCE + " (baseline)"
