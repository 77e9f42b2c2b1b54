"""Tests for robench.methods.augment (the paper's batched training augmentation)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from robench.errors import ConfigError
from robench.methods.augment import (
    AugmentationPolicy,
    _gaussian_smooth,
    augment_batch,
    elastic_displacement,
)
from robench.imageops import centre_crop, minmax_per_slice

B, P, C = 8, 56, 48
IDENTITY = AugmentationPolicy.identity()


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _batch(seed: int = 0, b: int = B, p: int = P, dtype=torch.float32):
    g = _gen(seed)
    x = torch.rand(b, 1, p, p, generator=g).to(dtype)
    y = torch.randint(0, 4, (b, p, p), generator=g)
    return x, y


def _phantom(b: int = B, p: int = P):
    """Dark noisy background, a bright square labelled 1 and a mid-grey square labelled 3, off-centre."""
    g = _gen(123)
    x = 0.1 * torch.rand(b, 1, p, p, generator=g)
    y = torch.zeros(b, p, p, dtype=torch.long)
    a, s = p // 2 - p // 8, p // 4
    x[:, :, a : a + s, a : a + s] = 1.0
    y[:, a : a + s, a : a + s] = 1
    x[:, :, a + s : a + s + s // 2, a : a + s] = 0.5
    y[:, a + s : a + s + s // 2, a : a + s] = 3
    return x, y


# ---------------------------------------------------------------------------------------------------------------
# shapes, ranges, reproducibility
# ---------------------------------------------------------------------------------------------------------------


def test_shapes_dtypes_and_ranges():
    x, y = _batch()
    x0, y0 = x.clone(), y.clone()
    xo, yo = augment_batch(x, y, crop=C, generator=_gen(1))
    assert xo.shape == (B, 1, C, C) and xo.dtype == torch.float32
    assert yo.shape == (B, C, C) and yo.dtype == torch.int64
    assert set(yo.unique().tolist()) <= set(y.unique().tolist())
    assert float(xo.min()) >= 0.0 and float(xo.max()) <= 1.0
    assert torch.all(xo.amin(dim=(-2, -1)) == 0.0)
    assert torch.all(xo.amax(dim=(-2, -1)) == 1.0)
    assert torch.isfinite(xo).all()
    assert torch.equal(x, x0) and torch.equal(y, y0), "inputs must not be modified"


def test_same_seed_same_output_different_seed_different_output():
    x, y = _batch()
    a = augment_batch(x, y, crop=C, generator=_gen(7))
    b = augment_batch(x, y, crop=C, generator=_gen(7))
    c = augment_batch(x, y, crop=C, generator=_gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[1], c[1])


def test_works_under_no_grad_and_with_grad_inputs():
    x, y = _batch()
    x.requires_grad_(True)
    with torch.no_grad():
        xo, yo = augment_batch(x, y, crop=C, generator=_gen(0))
    assert not xo.requires_grad
    assert xo.shape == (B, 1, C, C) and yo.shape == (B, C, C)


# ---------------------------------------------------------------------------------------------------------------
# identity policy: the resampling path reproduces centre crop + min-max
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_identity_policy_is_crop_plus_minmax(dtype, tol):
    # float64 shows the composed grid is exactly the identity; in float32 the grid coordinates themselves carry
    # ~1e-7 relative rounding (x_norm·W/2 ~ 1e-6 px), hence the looser bound on a white-noise image.
    x, y = _batch(dtype=dtype)
    xo, yo = augment_batch(x, y, crop=C, generator=_gen(3), policy=IDENTITY)
    expected = minmax_per_slice(centre_crop(x, C))
    assert xo.dtype == dtype
    assert float((xo - expected).abs().max()) <= tol
    assert torch.equal(yo, centre_crop(y, C))


def test_identity_policy_with_crop_larger_than_slice_pads():
    x, y = _batch(p=40)
    xo, yo = augment_batch(x, y, crop=C, generator=_gen(3), policy=IDENTITY)
    assert xo.shape == (B, 1, C, C) and yo.shape == (B, C, C)
    assert float((xo - minmax_per_slice(centre_crop(x, C))).abs().max()) <= 1e-5
    assert torch.equal(yo, centre_crop(y, C))
    assert torch.all(yo[:, :4] == 0)  # padded rows are background


# ---------------------------------------------------------------------------------------------------------------
# geometry: image and labels move together; labels never mix classes
# ---------------------------------------------------------------------------------------------------------------


def test_image_and_label_stay_aligned_under_full_policy():
    x, y = _phantom(b=32)
    xo, yo = augment_batch(x, y, crop=C, generator=_gen(5))
    in1, in3, out = yo == 1, yo == 3, yo == 0
    assert in1.any(dim=(-2, -1)).all() and in3.any(dim=(-2, -1)).all(), "objects should stay in the crop"
    mean1, mean3, mean0 = xo[:, 0][in1].mean(), xo[:, 0][in3].mean(), xo[:, 0][out].mean()
    # brightness/contrast rescales grey levels, but the order bright > grey > background must survive, with margin
    assert mean1 > 0.8
    assert 0.25 < mean3 < 0.75
    assert mean0 < 0.2
    # and pixel-wise: almost every label-1 pixel is bright, almost every background pixel dark
    assert (xo[:, 0][in1] > 0.6).float().mean() > 0.95
    assert (xo[:, 0][out] < 0.4).float().mean() > 0.95


def test_labels_are_warped_without_mixing_classes():
    # only classes 0 and 3: naive interpolation of the integer map would create 1s and 2s on every edge
    g = _gen(9)
    y = torch.where(torch.rand(B, P, P, generator=g) > 0.5, 3, 0)
    y = torch.nn.functional.avg_pool2d(y[:, None].float(), 5, 1, 2)[:, 0].gt(1.5).long() * 3  # blobby
    x = y[:, None].float() / 3
    _, yo = augment_batch(x, y, crop=C, generator=_gen(10))
    assert set(yo.unique().tolist()) == {0, 3}


def test_right_angle_rotation_matches_rot90():
    x, y = _batch(p=16)
    for deg, k in [(90.0, 1), (180.0, 2), (270.0, 3)]:
        pol = dataclasses.replace(IDENTITY, discrete_rotations=(deg,))
        xo, yo = augment_batch(x, y, crop=16, generator=_gen(0), policy=pol)
        assert float((xo - minmax_per_slice(torch.rot90(x, k, (-2, -1)))).abs().max()) < 1e-5
        assert torch.equal(yo, torch.rot90(y, k, (-2, -1)))


def test_discrete_rotation_is_uniform_over_the_set():
    n, p = 2000, 8
    x, y = _batch(seed=4, b=n, p=p)
    pol = dataclasses.replace(IDENTITY, discrete_rotations=(0.0, 90.0, 180.0, 270.0))
    xo, _ = augment_batch(x, y, crop=p, generator=_gen(11), policy=pol)
    counts = []
    for k in range(4):
        ref = minmax_per_slice(torch.rot90(x, k, (-2, -1)))
        counts.append(((xo - ref).abs().amax(dim=(1, 2, 3)) < 1e-5).float().mean().item())
    assert sum(counts) == pytest.approx(1.0)  # every output is exactly one of the four
    assert all(abs(c - 0.25) < 0.04 for c in counts), counts


def test_45_degree_rotation_keeps_a_centred_disc():
    # a disc centred on the rotation centre is invariant to any rotation: 45° must not shift or scale it
    p = 33
    yy, xx = torch.meshgrid(torch.arange(p) - 16.0, torch.arange(p) - 16.0, indexing="ij")
    disc = (xx**2 + yy**2 <= 8.0**2).long()
    x, y = disc[None, None].float(), disc[None]
    pol = dataclasses.replace(IDENTITY, discrete_rotations=(45.0,))
    xo, yo = augment_batch(x, y, crop=p, generator=_gen(0), policy=pol)
    r = (xx**2 + yy**2).sqrt()
    changed = yo[0] != y[0]
    assert changed.any()  # the rotation did resample ...
    assert torch.all((r[changed] - 8.0).abs() < 1.0)  # ... but only the digitised rim can change
    assert abs(yo.sum().item() / y.sum().item() - 1) < 0.05  # area kept: no zoom
    w = xo[0, 0] / xo[0, 0].sum()
    assert abs(float((w * xx).sum())) < 0.05 and abs(float((w * yy).sum())) < 0.05  # centre kept: no shift


# ---------------------------------------------------------------------------------------------------------------
# probabilities of the random steps
# ---------------------------------------------------------------------------------------------------------------


def test_flip_frequencies_are_about_0_2_and_independent():
    n, p = 4000, 8
    x, y = _batch(seed=2, b=n, p=p)
    pol = dataclasses.replace(IDENTITY, hflip_p=0.2, vflip_p=0.2)
    xo, _ = augment_batch(x, y, crop=p, generator=_gen(12), policy=pol)

    def same(ref):
        return (xo - minmax_per_slice(ref)).abs().amax(dim=(1, 2, 3)) < 1e-5

    none, h, v, hv = same(x), same(x.flip(-1)), same(x.flip(-2)), same(x.flip(-1, -2))
    assert torch.all(none.int() + h.int() + v.int() + hv.int() == 1)
    freq_h = (h | hv).float().mean().item()
    freq_v = (v | hv).float().mean().item()
    assert abs(freq_h - 0.2) < 0.03 and abs(freq_v - 0.2) < 0.03, (freq_h, freq_v)
    assert abs(hv.float().mean().item() - 0.04) < 0.015  # independent: 0.2 * 0.2


def test_brightness_contrast_applied_about_half_the_time_and_clipped():
    n, p = 4000, 8
    x, y = _batch(seed=3, b=n, p=p)
    x = minmax_per_slice(x)  # every slice spans exactly [0, 1]
    # contrast fixed at 1.5 makes the jitter always clip at the top, so it survives the final min-max
    pol = dataclasses.replace(IDENTITY, intensity_p=0.5, contrast_range=(1.5, 1.5))
    xo, _ = augment_batch(x, y, crop=p, generator=_gen(13), policy=pol)
    changed = (xo - x).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert abs(changed.float().mean().item() - 0.5) < 0.03
    # a changed slice is the clipped jitter, min-max'd: monotone in the input, saturated at the top
    i = int(torch.nonzero(changed)[0])
    order = torch.argsort(x[i].flatten())
    assert torch.all(torch.diff(xo[i].flatten()[order]) >= -1e-6)
    assert (xo[i] == 1.0).sum() > 1


def test_elastic_applied_about_half_the_time():
    n, p = 2000, 16
    x, y = _batch(seed=5, b=n, p=p)
    pol = dataclasses.replace(IDENTITY, elastic_p=0.5)
    xo, _ = augment_batch(x, y, crop=p, generator=_gen(14), policy=pol)
    changed = (xo - minmax_per_slice(x)).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert abs(changed.float().mean().item() - 0.5) < 0.04


# ---------------------------------------------------------------------------------------------------------------
# elastic field
# ---------------------------------------------------------------------------------------------------------------


def test_elastic_field_is_smooth():
    d = elastic_displacement(8, 112, 112, generator=_gen(0))
    assert d.shape == (8, 2, 112, 112)
    biggest = d.abs().amax()
    assert biggest > 1.0  # a real deformation, several pixels
    step = torch.maximum(
        (d[..., 1:, :] - d[..., :-1, :]).abs().amax(), (d[..., :, 1:] - d[..., :, :-1]).abs().amax()
    )
    assert step < 0.15 * biggest
    assert (d[..., 1:] - d[..., :-1]).abs().mean() < 0.02 * biggest


def test_elastic_smoothing_equals_scipy_gaussian_filter():
    g = _gen(1)
    noise = torch.rand(3, 2, 40, 40, generator=g, dtype=torch.float64) * 2 - 1
    sigma = torch.tensor([3.0, 4.5, 6.0], dtype=torch.float64)
    ours = _gaussian_smooth(noise, sigma, truncate=4.0)
    for i in range(3):
        for c in range(2):
            ref = gaussian_filter(noise[i, c].numpy(), float(sigma[i]), mode="constant", cval=0.0, truncate=4.0)
            np.testing.assert_allclose(ours[i, c].numpy(), ref, atol=1e-12)


def test_elastic_deformation_is_resolution_invariant_in_relative_terms():
    # same σ/size and the α ∝ size² rule ⇒ the RMS displacement as a fraction of the image size matches
    rel = []
    for size in (56, 224):
        d = elastic_displacement(16, size, size, generator=_gen(2))
        rel.append(d.pow(2).mean().sqrt().item() / size)
    assert 0.8 < rel[0] / rel[1] < 1.25, rel
    assert 0.005 < rel[1] < 0.03  # ~2.7 px RMS on the paper's 224 grid


# ---------------------------------------------------------------------------------------------------------------
# helpers and validation
# ---------------------------------------------------------------------------------------------------------------


def test_centre_crop_crops_and_pads():
    x = torch.arange(36.0).view(6, 6)
    assert torch.equal(centre_crop(x, 2), x[2:4, 2:4])
    assert torch.equal(centre_crop(x, 3), x[1:4, 1:4])  # odd surplus: extra on the high side
    padded = centre_crop(x, 10)
    assert padded.shape == (10, 10)
    assert torch.equal(padded[2:8, 2:8], x) and padded.sum() == x.sum()
    lab = torch.ones(2, 4, 4, dtype=torch.long)
    assert centre_crop(lab, 6).dtype == torch.long and centre_crop(lab, 6)[:, 0].sum() == 0


def test_minmax_per_slice_handles_constant_slices():
    x = torch.stack([torch.full((5, 5), 3.0), torch.linspace(-2, 7, 25).view(5, 5)])[:, None]
    out = minmax_per_slice(x)
    assert torch.isfinite(out).all()
    assert torch.all(out[0] == 0)
    assert out[1].min() == 0.0 and out[1].max() == 1.0


def test_policy_defaults_are_the_papers_and_validation_rejects_nonsense():
    p = AugmentationPolicy()
    assert (p.hflip_p, p.vflip_p, p.intensity_p, p.elastic_p) == (0.2, 0.2, 0.5, 0.5)
    assert p.zoom_range == (0.8, 1.1) and p.rotation_range == (-15.0, 15.0)
    assert p.discrete_rotations == tuple(float(a) for a in range(0, 360, 45))
    with pytest.raises(ConfigError):
        AugmentationPolicy(hflip_p=1.5)
    with pytest.raises(ConfigError):
        AugmentationPolicy(zoom_range=(1.1, 0.8))
    with pytest.raises(ConfigError):
        AugmentationPolicy(discrete_rotations=())


def test_rejects_bad_shapes():
    x, y = _batch()
    with pytest.raises(ValueError):
        augment_batch(x[:, 0], y, crop=C, generator=_gen(0))
    with pytest.raises(ValueError):
        augment_batch(x, y[:, :10], crop=C, generator=_gen(0))


# ---------------------------------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path():
    x, y = _phantom(b=16)
    xc, yc = x.cuda(), y.cuda()
    a = augment_batch(xc, yc, crop=C, generator=_gen(5, "cuda"))
    b = augment_batch(xc, yc, crop=C, generator=_gen(5, "cuda"))
    assert a[0].device.type == "cuda" and a[1].device.type == "cuda"
    assert a[0].shape == (16, 1, C, C) and a[1].dtype == torch.int64
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert set(a[1].unique().tolist()) <= {0, 1, 3}
    assert a[0][:, 0][a[1] == 1].mean() > a[0][:, 0][a[1] == 0].mean() + 0.5
    # the deterministic path agrees with the CPU to float tolerance
    ident_gpu = augment_batch(xc, yc, crop=C, generator=_gen(0, "cuda"), policy=IDENTITY)
    ident_cpu = augment_batch(x, y, crop=C, generator=_gen(0), policy=IDENTITY)
    assert float((ident_gpu[0].cpu() - ident_cpu[0]).abs().max()) < 1e-5
    assert torch.equal(ident_gpu[1].cpu(), ident_cpu[1])
    with pytest.raises(ValueError):
        augment_batch(xc, yc, crop=C, generator=_gen(0))  # CPU generator, CUDA data
