"""The two hand-written corruptions behave as their physics says."""

from __future__ import annotations

import math

import pytest
import torch

from robench.corruptions.graded import kspace_undersample, rician_noise, sampling_mask


def test_rician_noise_of_zero_signal_has_the_rayleigh_mean_and_is_reproducible():
    zeros = torch.zeros(1, 4, 64, 64)
    out = rician_noise(zeros, sigma=0.1, noise_seed=7)
    assert out.min() >= 0  # a magnitude image
    assert float(out.mean()) == pytest.approx(0.1 * math.sqrt(math.pi / 2), rel=0.03)
    assert torch.equal(out, rician_noise(zeros, sigma=0.1, noise_seed=7))
    assert not torch.equal(out, rician_noise(zeros, sigma=0.1, noise_seed=8))


def test_rician_noise_on_bright_signal_is_nearly_gaussian_and_unbiased():
    ones = torch.ones(1, 4, 64, 64)
    out = rician_noise(ones, sigma=0.02, noise_seed=1)
    assert abs(float(out.mean()) - 1.0) < 1e-3 and abs(float(out.std()) - 0.02) < 2e-3


def test_sampling_mask_keeps_the_centre_and_every_rth_line():
    mask = sampling_mask(32, acceleration=4, centre_fraction=0.25, offset=1)
    assert mask[12:20].all()  # 8 centre lines
    outer = torch.cat([torch.arange(0, 12), torch.arange(20, 32)])
    assert torch.equal(torch.nonzero(mask[outer]).flatten(), torch.nonzero((outer - 1) % 4 == 0).flatten())


def test_full_sampling_is_the_identity_and_r2_folds_a_copy_half_a_field_of_view_away():
    image = torch.zeros(1, 1, 32, 32)
    image[..., 10:14, 4:8] = 1.0
    assert torch.allclose(kspace_undersample(image, axis=1, acceleration=1, centre_fraction=0.0, offset=0), image, atol=1e-5)
    folded = kspace_undersample(image, axis=1, acceleration=2, centre_fraction=0.0, offset=0)
    assert torch.allclose(folded[..., 10:14, 4:8], torch.full((1, 1, 4, 4), 0.5), atol=1e-5)
    assert torch.allclose(folded[..., 26:30, 4:8], torch.full((1, 1, 4, 4), 0.5), atol=1e-5)  # the alias, along Y only
    assert float(folded[..., :, 16:].abs().max()) < 1e-5
