"""Adv Noise: the power-iteration direction, the radius, the clipping, and what the search leaves behind."""

from __future__ import annotations

import functools

import math

import pytest
import torch

from tests.toys import briefly_trained, build_method, divergence_of, gen, toy_batch
from robench.methods import Batch, get_method
from robench.methods.hard_examples import l2_normalise


make = functools.partial(build_method, "adv-noise")


@pytest.fixture(scope="module")
def trained():
    """A briefly trained method, its batch and the reference prediction of a standard pass."""
    return briefly_trained(make(lr=1e-3), toy_batch())


def divergence_at(method, x, reference, r):
    return divergence_of(method, method.perturbed(x, r), reference)


@pytest.mark.parametrize("eps", [0.1, 2.0])  # the default radius, and a larger one
def test_found_direction_raises_the_divergence_more_than_random_directions_of_the_same_norm(trained, eps):
    method, batch, reference = trained
    method.hp["eps"] = eps
    try:
        x = batch.images
        radius = method.radius(x)
        base = divergence_at(method, x, reference, torch.zeros_like(x))
        adversarial = divergence_at(method, x, reference, radius * method.direction(x, reference)) - base
        g = gen(1)
        random = [divergence_at(method, x, reference, radius * l2_normalise(torch.randn(x.shape, generator=g))) - base for _ in range(20)]
    finally:
        method.hp["eps"] = 0.1
    assert adversarial > 0
    assert adversarial > 5 * max(random), (adversarial, max(random))


def test_direction_is_unit_per_sample_and_the_search_leaves_weights_and_bn_untouched(trained):
    method, batch, reference = trained
    state = {k: v.clone() for k, v in method.net.state_dict().items()}
    grads = [p.grad.clone() for p in method.net.parameters()]  # left by the last update
    d = method.direction(batch.images, reference)
    norms = d.flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert all(torch.equal(state[k], v) for k, v in method.net.state_dict().items())  # incl. running stats
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, method.net.parameters()))  # no gradient into weights
    assert all(m.training for m in method.net.modules())  # back in train mode


def test_radius_is_an_l2_norm_scaled_to_the_reference_image_size():
    method = make()
    assert method.radius(torch.zeros(1, 1, 192, 192)) == pytest.approx(0.1)
    assert method.radius(torch.zeros(1, 1, 96, 96)) == pytest.approx(0.05)  # same per-pixel RMS, 0.1/192
    assert make(eps_reference_size=0).radius(torch.zeros(1, 1, 96, 96)) == pytest.approx(0.1)


def test_adversarial_image_is_clipped_to_the_batch_intensity_range():
    method, x = make(), toy_batch().images
    r = torch.full_like(x, 0.3)
    out = method.perturbed(x, r)
    assert out.min() >= x.min() and out.max() <= x.max()
    inside = (x + r) <= x.max()
    torch.testing.assert_close(out[inside], (x + r)[inside])


def test_update_adds_consistency_and_hard_example_losses():
    out = make().update(toy_batch())
    assert {"adv_cons", "adv_seg", "adv_rec", "adv_stn"} <= set(out)
    assert all(math.isfinite(v) for v in out.values())
    assert out["adv_cons"] > 0
