"""Adv Bias: the B-spline field (bounds, smoothness, geometry) and the adversarial step on its control points."""

from __future__ import annotations

import functools

import math

import pytest
import torch

from tests.toys import briefly_trained, build_method, divergence_of, gen, toy_batch
from robench.methods import Batch, get_method
from robench.methods.bias_field import BiasFieldGrid, bspline_kernel_1d, clamp_log_params
from robench.methods.hard_examples import l2_normalise

EPS = 0.4


make = functools.partial(build_method, "adv-bias")


def max_step(field: torch.Tensor) -> float:
    """Largest change of the field between neighbouring pixels."""
    return max(field.diff(dim=-1).abs().max().item(), field.diff(dim=-2).abs().max().item())


def test_grid_follows_the_reference_geometry():
    g = BiasFieldGrid(192, 192)
    assert g.low_size == (96, 96) and g.spacing == (48, 48) and g.shape == (4, 4)
    assert BiasFieldGrid(96, 96).spacing == (24, 24)
    assert BiasFieldGrid(192, 192, downscale=4).shape == (4, 4)  # δ = 24 at 48²
    k = bspline_kernel_1d(48)
    assert k.numel() == 4 * 47 + 1 and k.max().item() == pytest.approx(2 / 3, abs=1e-3)  # cubic B-spline peak


@pytest.mark.parametrize("size", [96, 192])
def test_field_is_within_bounds_and_smooth(size):
    grid = BiasFieldGrid(size, size)
    phi = grid.init(8, EPS, generator=gen())
    field = grid.field(phi, EPS)
    assert field.shape == (8, 1, size, size)
    assert field.min() >= 1 - EPS - 1e-6 and field.max() <= 1 + EPS + 1e-6
    # |∂ log B / ∂x| <= max|φ| / δ per control interval (cubic B-spline slopes sum to <= 1),
    # δ = spacing·downscale full-resolution pixels; exp adds a factor <= 1 + ε
    bound = (1 + EPS) * phi.abs().max().item() / (grid.spacing[0] * grid.downscale)
    assert max_step(field) <= 1.1 * bound
    # a field with the same range but independent pixels is far from that bound: the check can fail
    rough = 1 + EPS * (2 * torch.rand(field.shape, generator=gen(1)) - 1)
    assert max_step(rough) > 20 * bound
    # extreme control points are clipped into [1 − ε, 1 + ε] too
    wild = grid.field(5 * torch.randn(phi.shape, generator=gen(2)), EPS)
    assert wild.min() >= 1 - EPS - 1e-6 and wild.max() <= 1 + EPS + 1e-6


def test_constant_control_points_give_a_constant_field_inside():
    grid = BiasFieldGrid(96, 96)
    c = math.log(1.2)
    field = grid.field(torch.full((1, 1, *grid.shape), c), EPS)
    centre = field[..., 32:64, 32:64]
    torch.testing.assert_close(centre, torch.full_like(centre, 1.2), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def trained():
    """A briefly trained method, its batch and the reference prediction of a standard pass."""
    return briefly_trained(make(lr=1e-3), toy_batch())


def divergence_at(method, x, reference, phi):
    return divergence_of(method, method.biased(x, phi), reference)


def test_adversarial_step_raises_the_divergence_more_than_random_steps(trained):
    method, batch, reference = trained
    x = batch.images
    g = gen(10)
    phi0 = method.grid(x).init(len(x), EPS, generator=g)
    state = {k: v.clone() for k, v in method.net.state_dict().items()}
    grads = [p.grad.clone() for p in method.net.parameters()]  # left by the last update
    phi1 = method.search(x, reference, phi0)
    assert all(torch.equal(state[k], v) for k, v in method.net.state_dict().items())  # eval-mode search
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, method.net.parameters()))  # no gradient into weights
    assert phi1.min() >= math.log(1 - EPS) - 1e-6 and phi1.max() <= math.log(1 + EPS) + 1e-6
    d0, d1 = divergence_at(method, x, reference, phi0), divergence_at(method, x, reference, phi1)
    random = [
        divergence_at(method, x, reference, clamp_log_params(phi0 + l2_normalise(torch.randn(phi0.shape, generator=g)), EPS))
        for _ in range(10)
    ]
    assert d1 > d0
    assert d1 > max(random), (d1, max(random))


def test_update_adds_consistency_and_hard_example_losses_and_contour_term_matters():
    batch = toy_batch()
    out = make().update(batch)
    assert {"adv_cons", "adv_seg", "adv_rec", "adv_stn"} <= set(out)
    assert all(math.isfinite(v) for v in out.values())
    no_contour = make(contour_weight=0.0).update(batch)
    assert no_contour["adv_cons"] < out["adv_cons"]
