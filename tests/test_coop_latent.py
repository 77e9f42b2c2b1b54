"""Cooperative training with latent masking: the masks, the BN handling of the hard pass, the STN, the methods."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.toys import build_method, gen, toy_batch
from robench.errors import ConfigError
from robench.methods import Batch, get_method
from robench.methods.coop_latent import batch_statistics_only
from robench.methods.latent_masking import (
    MASK_TYPES,
    channel_dropout,
    channel_mask,
    channel_scores,
    code_gradient,
    perturb_code,
    spatial_mask,
    top_k_soft_mask,
)
from robench.methods.nets import ShapeNet, init_weights, one_hot

FROZEN = ("encoder", "decoupler", "seg_decoder", "stn")


def make(name="coop-latent", seed=0, **hp):
    return build_method(name, seed, **hp)


def bn_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def codes(method, batch):
    with torch.no_grad():
        return method.net.encode(batch.images)


# ---- mask generators -------------------------------------------------------------------------------


def distinct_channel_gradient(n=3, c=16, h=2, w=2):
    """g whose per-channel means are a distinct random permutation per sample."""
    means = torch.stack([torch.randperm(c, generator=gen(i)).float() for i in range(n)])
    g = means[:, :, None, None] + 0.01 * torch.randn(n, c, h, w, generator=gen(9))
    g = g - g.mean((2, 3), keepdim=True) + means[:, :, None, None]  # means exactly as chosen
    return g, means


@pytest.mark.parametrize("p", [0.25, 0.3, 0.49])
def test_channel_mask_hits_exactly_the_top_k_channels(p):
    g, means = distinct_channel_gradient()
    z = torch.rand(g.shape, generator=gen(1)) + 0.5
    masked, mask = channel_mask(z, g, p, gen(2))
    k = math.floor(16 * p)
    assert mask.shape == (3, 16, 1, 1)
    for n in range(3):
        top = set(means[n].topk(k).indices.tolist())
        hit = set((mask[n, :, 0, 0] < 1).nonzero().flatten().tolist())
        assert hit == top  # the (k+1)-th largest is the threshold and stays unmasked
    assert torch.allclose(masked, z * mask)


def test_spatial_mask_hits_exactly_the_top_k_positions():
    n, c, h, w = 2, 8, 4, 4
    score = torch.stack([torch.randperm(h * w, generator=gen(i)).float() for i in range(n)]).view(n, 1, h, w)
    g = score.expand(n, c, h, w) + 0.01 * torch.randn(n, c, h, w, generator=gen(5))
    g = g - g.mean(1, keepdim=True) + score  # channel means exactly as chosen
    z = torch.rand(n, c, h, w, generator=gen(1)) + 0.5
    masked, mask = spatial_mask(z, g, 0.3, gen(2))
    k = math.floor(h * w * 0.3)
    assert mask.shape == (n, 1, h, w)
    for i in range(n):
        top = set(score[i].flatten().topk(k).indices.tolist())
        assert set((mask[i].flatten() < 1).nonzero().flatten().tolist()) == top
    assert torch.allclose(masked, z * mask)


def test_soft_factors_lie_in_zero_to_half():
    scores = torch.randn(64, 128, generator=gen())
    mask = top_k_soft_mask(scores, 0.5, gen(1))
    factors = mask[mask < 1]
    assert factors.numel() == 64 * 64
    assert factors.min() >= 0 and factors.max() < 0.5
    assert factors.max() > 0.45 and factors.min() < 0.05 and abs(factors.mean() - 0.25) < 0.02  # U(0, 0.5)
    assert torch.all(mask[mask >= 0.5] == 1)


def test_p_zero_masks_nothing_even_with_tied_scores():
    z = torch.rand(2, 8, 3, 3, generator=gen())
    for g in (torch.randn(2, 8, 3, 3, generator=gen(1)), torch.ones(2, 8, 3, 3)):
        assert torch.equal(channel_mask(z, g, 0.0, gen())[0], z)
        assert torch.equal(spatial_mask(z, g, 0.0, gen())[0], z)
    assert torch.equal(channel_dropout(z, 0.0, gen())[0], z)
    for kind in ("channel", "spatial"):  # p = p_max·U(0,1) with p_max = 0
        out = perturb_code(z, kind, decoder=nn.Identity(), target=torch.zeros_like(z), loss_fn=F.mse_loss,
                           p_max=0.0, dropout_p=0.5, score="signed", generator=gen())
        assert torch.equal(out, z)


def test_p_one_masks_everything():
    scores = torch.randn(3, 10, generator=gen())
    assert (top_k_soft_mask(scores, 1.0, gen()) < 0.5).all()


def test_dropout_drops_about_half_the_channels_and_doubles_survivors():
    z = torch.rand(64, 128, 3, 3, generator=gen()) + 0.1
    out, mask = channel_dropout(z, 0.5, gen(1))
    assert set(mask.unique().tolist()) == {0.0, 2.0}
    assert torch.allclose(out, 2 * z * (mask > 0))
    assert abs((mask == 0).float().mean().item() - 0.5) < 0.03
    assert ((out == 0).all(dim=(2, 3)) == (mask[:, :, 0, 0] == 0)).all()  # whole channels


def test_saliency_ranks_by_abs_gradient_times_code():
    # channel 0: large positive g, tiny code; channel 1: large negative g, large code; channel 2: small g
    g = torch.tensor([5.0, -4.0, 1.0, 0.5]).view(1, 4, 1, 1).expand(1, 4, 2, 2).clone()
    z = torch.tensor([0.01, 3.0, 1.0, 0.1]).view(1, 4, 1, 1).expand(1, 4, 2, 2).clone()
    assert channel_scores(g, z, "signed").argmax() == 0
    assert channel_scores(g, z, "saliency").argmax() == 1
    _, signed = channel_mask(z, g, 0.25, gen(), "signed")
    _, saliency = channel_mask(z, g, 0.25, gen(), "saliency")
    assert (signed.flatten() < 1).nonzero().flatten().tolist() == [0]
    assert (saliency.flatten() < 1).nonzero().flatten().tolist() == [1]
    with pytest.raises(ValueError, match="unknown mask score"):
        channel_scores(g, z, "absolute")


def test_code_gradient_is_the_loss_gradient_and_updates_running_stats_as_coded():
    decoder = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    decoder.train()
    z, target = torch.randn(3, 4, 2, 2, generator=gen()), torch.randn(3, 2, 2, 2, generator=gen(1))
    before = bn_buffers(decoder)
    g = code_gradient(z, decoder, target, F.mse_loss)
    assert all(p.grad is None for p in decoder.parameters())  # no gradient into the decoder
    after = bn_buffers(decoder)
    leaf = z.clone().requires_grad_(True)
    with batch_statistics_only(decoder):
        F.mse_loss(decoder(leaf), target).backward()
    assert torch.allclose(g, leaf.grad, atol=1e-6)
    assert after["0.num_batches_tracked"] == before["0.num_batches_tracked"] + 1  # one extra update
    with torch.no_grad():  # works even when called from a no-grad context
        assert torch.allclose(code_gradient(z, decoder, target, F.mse_loss), g, atol=1e-6)


def test_mask_type_is_uniform_over_the_three_types():
    method = make()
    counts = {k: 0 for k in MASK_TYPES}
    for _ in range(600):
        counts[method.pick_mask_type()] += 1
    assert all(150 < c < 250 for c in counts.values()), counts
    assert make(mask_type="spatial").pick_mask_type() == "spatial"


# ---- hard examples and the BN handling of the hard pass ---------------------------------------------


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_hard_examples_differ_from_the_originals(kind):
    # 64² → 4×4 codes; p_max = 1 so that k = floor(16·p) ≥ 1 for the drawn p (at 2×2, k is often 0)
    method = make(mask_type=kind, p_max=1.0, seed=1)
    method.train()
    batch = toy_batch(size=64)
    z_i, z_s = codes(method, batch)
    hard = method.generate(batch.images, batch.labels, z_i, z_s)
    with torch.no_grad(), batch_statistics_only(method.net):
        plain_image = method.net.image_decoder(z_i)
        plain_logits = method.net.seg_decoder(z_s)
    assert hard["hard_images"].shape == batch.images.shape and hard["image_mask"] == kind
    assert not hard["hard_images"].requires_grad and not hard["corrupted_logits"].requires_grad
    assert (hard["hard_images"] - plain_image).abs().max() > 1e-3
    assert (hard["hard_images"] - batch.images).abs().mean() > 1e-2
    assert (hard["corrupted_logits"] - plain_logits).abs().max() > 1e-3


def test_hard_examples_for_plotting_leave_no_trace():
    method = make()
    batch = toy_batch()
    method.eval()
    weights = {k: v.clone() for k, v in method.net.state_dict().items()}
    generator = method.generator.get_state()
    out = method.hard_examples(batch)
    assert set(out) == {"images", "labels", "hard_images", "image_mask", "corrupted_shapes", "shape_mask"}
    assert out["hard_images"].shape == batch.images.shape
    assert out["corrupted_shapes"].shape == batch.labels.shape and out["corrupted_shapes"].dtype == torch.int64
    assert not method.net.training
    assert same(weights, method.net.state_dict())
    assert torch.equal(generator, method.generator.get_state())
    assert "corrupted_shapes" not in make("coop-latent-x").hard_examples(batch)


def test_generation_touches_running_stats_only_in_the_saliency_pass():
    batch = toy_batch()
    for kind, changed in (("dropout", set()), ("channel", {"image_decoder", "seg_decoder"})):
        method = make(mask_type=kind)
        method.train()
        z_i, z_s = codes(method, batch)
        before = {name: bn_buffers(getattr(method.net, name)) for name in (*FROZEN, "image_decoder")}
        method.generate(batch.images, batch.labels, z_i, z_s)
        moved = {name for name, b in before.items() if not same(b, bn_buffers(getattr(method.net, name)))}
        assert moved == changed, kind


def test_hard_pass_freezes_running_stats_except_in_the_image_decoder():
    method = make()
    method.train()
    batch = toy_batch()
    z_i, z_s = codes(method, batch)
    hard = method.generate(batch.images, batch.labels, z_i, z_s)
    before = {name: bn_buffers(getattr(method.net, name)) for name in (*FROZEN, "image_decoder")}
    losses = method.hard_losses(batch.images, batch.labels, hard)
    assert set(losses) == {"seg_hard", "rec_hard", "stn_pred_hard", "stn_corrupted"}
    for name in FROZEN:
        assert same(before[name], bn_buffers(getattr(method.net, name))), name
    assert not same(before["image_decoder"], bn_buffers(method.net.image_decoder))


def test_hard_losses_give_no_gradient_to_frozen_bn_affine_parameters():
    method = make()
    method.train()
    batch = toy_batch()
    z_i, z_s = codes(method, batch)
    hard = method.generate(batch.images, batch.labels, z_i, z_s)
    sum(method.hard_losses(batch.images, batch.labels, hard).values()).backward()
    for name in FROZEN:
        sub = getattr(method.net, name)
        bns = [m for m in sub.modules() if isinstance(m, nn.BatchNorm2d)]
        convs = [m for m in sub.modules() if isinstance(m, nn.Conv2d)]
        assert bns and all(m.weight.grad is None and m.bias.grad is None for m in bns), name
        assert any(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in convs), name
    decoder_bns = [m for m in method.net.image_decoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.weight.grad is not None for m in decoder_bns)  # not wrapped, as in the public code
    assert not any("forward" in m.__dict__ for m in method.net.modules())  # every BN forward restored


# ---- the STN --------------------------------------------------------------------------------------


def discs(n, size, g):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = size / 2 + (torch.rand(n, 2, generator=g) - 0.5) * size * 0.3
    radius = size * (0.18 + 0.12 * torch.rand(n, generator=g))
    dist = ((yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2).sqrt()
    return (dist < radius[:, None, None]).long()


def corrupt(masks, g):
    """Erase an 8×8 chunk, add a 6×6 spurious blob, flip 5% of the pixels."""
    out = masks.clone()
    size = masks.shape[-1]
    for i in range(len(masks)):
        a, b = torch.randint(0, size - 8, (2,), generator=g).tolist()
        out[i, a : a + 8, b : b + 8] = 0
        a, b = torch.randint(0, size - 6, (2,), generator=g).tolist()
        out[i, a : a + 6, b : b + 6] = 1
    return torch.where(torch.rand(masks.shape, generator=g) < 0.05, 1 - out, out)


def dice(a, b):
    inter = (a * b).sum((1, 2)).float()
    return (2 * inter / (a.sum((1, 2)) + b.sum((1, 2))).clamp_min(1)).mean().item()


def test_stn_improves_a_corrupted_mask_after_a_short_fit():
    torch.manual_seed(0)
    g = gen()
    stn = ShapeNet(2)
    init_weights(stn)
    opt = torch.optim.Adam(stn.parameters(), lr=1e-3)
    clean = discs(16, 32, g)
    corrupted = corrupt(clean, g)

    def refined_dice():
        stn.eval()
        with torch.no_grad():
            pred = stn(one_hot(corrupted, 2)).argmax(1)
        stn.train()
        return dice(pred, clean)

    before = refined_dice()
    for _ in range(100):
        target = discs(8, 32, g)
        loss = F.cross_entropy(stn(one_hot(corrupt(target, g), 2)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = refined_dice()
    assert after > before + 0.2
    assert after > dice(corrupted, clean) + 0.05  # the refined mask beats the corrupted input


# ---- the methods ----------------------------------------------------------------------------------


def test_update_reports_eight_losses_for_coop_latent_and_seven_for_image_only():
    batch = toy_batch()
    standard = {"seg", "rec", "stn_gt", "stn_pred"}
    hard = {"seg_hard", "rec_hard", "stn_pred_hard"}
    full = make("coop-latent").update(batch)
    assert set(full) == standard | hard | {"stn_corrupted", "total"}
    assert math.isclose(full["total"], sum(v for k, v in full.items() if k != "total"), rel_tol=1e-5)
    assert set(make("coop-latent-x").update(batch)) == standard | hard | {"total"}
    assert set(make("coop-latent", mask_scope="shape").update(batch)) == standard | {"stn_corrupted", "total"}


def test_same_seed_same_losses():
    batch = toy_batch()
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    first = a.update(batch)
    assert first == b.update(batch)
    assert a.update(batch) == b.update(batch)
    assert c.update(batch) != first


def test_coop_standard_is_standard_training():
    batch = toy_batch()
    assert make("coop-standard", seed=2).update(batch) == make("standard", seed=2).update(batch)
    assert get_method("coop-standard").prediction_modes == ("ftn", "ftn+stn")


def test_invalid_hyperparameters_are_rejected():
    for bad in ({"mask_scope": "both"}, {"mask_score": "abs"}, {"p_max": 1.5}, {"dropout_p": 1.0},
                {"mask_type": "cutout"}):
        with pytest.raises(ConfigError):
            make(**bad)


def test_smoke_run_through_the_runner_records_both_modes(tiny_acdc, tmp_path):
    from robench.benchmark.runner import RunRequest, execute
    from robench.benchmark.suites import SuiteOptions

    result = execute(
        RunRequest(suite="cardiac", method="coop-latent", budget="smoke", out=tmp_path,
                   options=SuiteOptions(data_root=tiny_acdc, cval=0), progress=False),
        log=lambda m: None,
    )
    records = result.records
    assert set(records["mode"]) == {"ftn", "ftn+stn"}
    assert records["dice"].between(0, 1).all()
    assert result.folder.done()["iterations"] == 12
