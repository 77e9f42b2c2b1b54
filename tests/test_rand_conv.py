"""RandConv (benchmark version): random filters, mixing, the JS-like consistency, and the method's training terms."""

from __future__ import annotations

import functools

from collections import Counter

import torch
from torch.nn import functional as F

from tests.toys import build_method, gen, toy_batch
from robench.methods import Batch, get_method
from robench.methods.divergences import js_consistency
from robench.methods.rand_conv import KERNEL_SIZES, RandConvDraw, draw_rand_conv


make = functools.partial(build_method, "rand-conv")


def test_kernel_sizes_vary_across_draws_uniformly_over_1_3_5_7():
    g = gen()
    sizes = Counter(draw_rand_conv(1, g).kernel_size for _ in range(800))
    assert set(sizes) == set(KERNEL_SIZES)
    assert all(140 <= sizes[k] <= 260 for k in KERNEL_SIZES), sizes  # 200 expected each


def test_weights_are_kaiming_normal_with_fan_in_k_squared():
    g = gen()
    by_size: dict[int, list[torch.Tensor]] = {k: [] for k in KERNEL_SIZES}
    for _ in range(600):
        d = draw_rand_conv(1, g)
        by_size[d.kernel_size].append(d.weight.flatten())
    for k, ws in by_size.items():
        std = torch.cat(ws).std().item()
        assert abs(std - 1 / k) < 0.15 / k, (k, std)


def test_outputs_differ_per_draw_and_mix_with_the_original():
    x = toy_batch().images
    g = gen()
    outs = [draw_rand_conv(1, g)(x) for _ in range(5)]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not torch.allclose(outs[i], outs[j])
    # the mix is α·x + (1−α)·conv(x): check it against an explicit convolution
    d = draw_rand_conv(1, gen(3))
    conv = F.conv2d(x, d.weight, padding=d.kernel_size // 2)
    torch.testing.assert_close(d(x), d.alpha * x + (1 - d.alpha) * conv)
    # α = 1 gives the original image back; α = 0 the pure filter response
    w = torch.randn(1, 1, 5, 5, generator=gen(1))
    torch.testing.assert_close(RandConvDraw(w, torch.tensor(1.0))(x), x)
    torch.testing.assert_close(RandConvDraw(w, torch.tensor(0.0))(x), F.conv2d(x, w, padding=2))


def test_mixing_weight_is_in_the_unit_interval_and_spreads_over_it():
    g = gen()
    alphas = torch.stack([draw_rand_conv(1, g).alpha for _ in range(500)])
    assert alphas.min() >= 0 and alphas.max() <= 1
    assert alphas.min() < 0.05 and alphas.max() > 0.95


def test_consistency_is_zero_for_identical_views_and_positive_otherwise():
    logits = torch.randn(2, 4, 8, 8, generator=gen())
    p = torch.softmax(logits, 1)
    assert js_consistency([p, p, p]).abs() < 1e-6
    q = torch.softmax(logits + 0.5 * torch.randn(logits.shape, generator=gen(1)), 1)
    r = torch.softmax(logits + 2.0 * torch.randn(logits.shape, generator=gen(2)), 1)
    small, large = js_consistency([p, q, p]), js_consistency([p, q, r])
    assert 0 < small < large


def test_update_trains_views_with_reconstruction_and_consistency_of_ftn_and_stn():
    batch = toy_batch()
    out = make().update(batch)
    assert {"rc_rec", "rc_cons", "rc_stn_cons"} <= set(out)
    assert out["rc_cons"] > 0 and out["rc_stn_cons"] > 0  # random views disagree
    # a single view agrees with itself: the consistency terms vanish, reconstruction stays
    single = make(views=1).update(batch)
    assert single["rc_cons"] < 1e-6 and single["rc_stn_cons"] < 1e-6 and single["rc_rec"] > 0
    # λ scales both consistency terms
    half = make(consistency_weight=5.0).update(batch)
    assert abs(half["rc_cons"] - out["rc_cons"] / 2) < 1e-4 * out["rc_cons"]
