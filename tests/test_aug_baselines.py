"""Augmentation baselines and the batched op table: policies draw what they claim, ops do what they claim."""

from __future__ import annotations

import math

import pytest
import torch

from tests.toys import build_method, gen
from robench.imageops import centre_crop, minmax_per_slice
from robench.methods import get_method, resolve_hparams
from robench.methods.op_table import (
    DEEPMEDIC_PRESET,
    INDEX,
    OPS,
    apply_ops,
    group_selection,
    low_resolution,
    rand_augment_selection,
)

P, CROP = 56, 48
N = 20000


make = build_method


def padded_slices(n=8):
    """Label maps with three structures and an image that is a function of the label (plus texture)."""
    g = gen()
    labels = torch.zeros(n, P, P, dtype=torch.int64)
    for i in range(n):
        r, c = 14 + i % 5, 12 + i % 7
        labels[i, r : r + 22, c : c + 18] = 2
        labels[i, r + 5 : r + 15, c + 4 : c + 12] = 3
        labels[i, r + 2 : r + 18, c + 20 : c + 28] = 1
    lookup = torch.tensor([0.0, 0.4, 0.7, 1.0])
    images = (lookup[labels] + 0.02 * torch.rand(n, P, P, generator=g))[:, None]
    return images, labels


def only(name: str, n: int, level: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    selected = torch.zeros(n, len(OPS), dtype=torch.bool)
    selected[:, INDEX[name]] = True
    return selected, torch.full((n, len(OPS)), level)


def within(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_no_aug_is_centre_crop_and_per_slice_minmax():
    images, labels = padded_slices()
    x, y = make("no-aug").augment(images, labels, crop=CROP, generator=gen())
    torch.testing.assert_close(x, minmax_per_slice(centre_crop(images, CROP)))
    assert torch.equal(y, centre_crop(labels, CROP))


def test_nothing_selected_is_the_identity_and_rand_augment_with_zero_ops_equals_no_aug():
    images, labels = padded_slices()
    none = torch.zeros(len(images), len(OPS), dtype=torch.bool)
    x, y = apply_ops(images, labels, none, torch.zeros_like(none, dtype=torch.long), crop=CROP, generator=gen())
    torch.testing.assert_close(x, minmax_per_slice(centre_crop(images, CROP)), atol=1e-5, rtol=0)
    assert torch.equal(y, centre_crop(labels, CROP))
    ra = make("rand-augment", num_ops=0).augment(images, labels, crop=CROP, generator=gen())
    torch.testing.assert_close(ra[0], x, atol=1e-5, rtol=0)


def test_flips_and_quarter_turns_are_pixel_exact_on_image_and_labels():
    images, labels = padded_slices(6)
    ref_x, ref_y = minmax_per_slice(centre_crop(images, CROP)), centre_crop(labels, CROP)
    x, y = apply_ops(images, labels, *only("flip_h", 6), crop=CROP, generator=gen())
    torch.testing.assert_close(x, ref_x.flip(-1), atol=1e-5, rtol=0)
    assert torch.equal(y, ref_y.flip(-1))
    x, y = apply_ops(images, labels, *only("rotate", 6, level=3), crop=CROP, generator=gen())
    for i in range(6):
        turns = [k for k in (1, 3) if torch.equal(y[i], ref_y[i].rot90(k, (-2, -1)))]
        assert len(turns) == 1, i
        torch.testing.assert_close(x[i], ref_x[i].rot90(turns[0], (-2, -1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, level", [("scale", 4), ("rotate", 2), ("flip_v", 0)])
def test_geometric_ops_move_image_and_labels_together(name, level):
    images, labels = padded_slices()
    x, y = apply_ops(images, labels, *only(name, len(images), level), crop=CROP, generator=gen(2))
    assert not torch.equal(y, centre_crop(labels, CROP))  # the op did move things
    lookup = torch.tensor([0.0, 0.4, 0.7, 1.0])
    agree = ((x[:, 0] - lookup[y]).abs() < 0.08).float().mean()
    assert agree > 0.95, float(agree)
    # a label map that did not move with the image disagrees badly: the check can fail
    stale = ((x[:, 0] - lookup[centre_crop(labels, CROP)]).abs() < 0.08).float().mean()
    assert stale < agree - 0.03, (float(stale), float(agree))


@pytest.mark.parametrize("name", [op.name for op in OPS if not op.geometric])
def test_intensity_ops_change_images_only_when_selected_and_never_labels(name):
    images, labels = padded_slices(16)
    base_x, base_y = apply_ops(images, labels, *only(name, 16, level=2), crop=CROP, generator=gen(3))
    none = torch.zeros(16, len(OPS), dtype=torch.bool)
    ref_x, _ = apply_ops(images, labels, none, torch.full((16, len(OPS)), 2), crop=CROP, generator=gen(3))
    assert torch.equal(base_y, centre_crop(labels, CROP))
    assert base_x.min() >= 0 and base_x.max() <= 1
    changed = ((base_x - ref_x).abs().amax(dim=(1, 2, 3)) > 1e-3)
    if name in ("brightness_mul", "contrast"):  # a factor < 1 is undone by the final min-max (module docstring)
        assert changed.any()
    else:
        assert changed.all(), changed


def test_low_resolution_removes_fine_detail_and_keeps_coarse_content():
    x = torch.rand(4, 1, 48, 48, generator=gen())
    out = low_resolution(x, torch.tensor([0.9, 0.7, 0.5, 0.5]))
    roughness = lambda t: t.diff(dim=-1).abs().mean(dim=(1, 2, 3))  # noqa: E731
    assert (roughness(out) < roughness(x)).all()
    assert roughness(out)[2] < roughness(out)[0]  # coarser for smaller zoom
    smooth = torch.linspace(0, 1, 48).expand(1, 1, 48, 48)
    torch.testing.assert_close(low_resolution(smooth, torch.tensor([0.5])), smooth, atol=0.05, rtol=0)


def test_heuristic_policy_applies_each_op_with_the_presets_probability():
    selected, level = group_selection(N, DEEPMEDIC_PRESET, generator=gen())
    freq = selected.sum(0)
    for group in DEEPMEDIC_PRESET:
        names = sorted({name for name, _ in group.options})
        for name in names:
            share = sum(1 for n, _ in group.options if n == name) / len(group.options)
            assert within(int(freq[INDEX[name]]), N, group.probability * share), (name, int(freq[INDEX[name]]))
    # levels within a group are equally likely
    picked = level[selected[:, INDEX["scale"]], INDEX["scale"]]
    counts = torch.bincount(picked, minlength=5)
    assert all(within(int(c), len(picked), 0.2) for c in counts), counts


def test_rand_augment_draws_n_distinct_ops_uniformly_at_magnitude_m():
    selected, level = rand_augment_selection(N, 3, 4, generator=gen())
    assert (selected.sum(1) == 3).all()
    assert all(within(int(c), N, 3 / len(OPS)) for c in selected.sum(0))
    caps = torch.tensor([len(op.levels) - 1 for op in OPS])
    assert torch.equal(level[0], torch.clamp(torch.full_like(caps, 3), max=caps))  # level 4 (index 3) or the op's last
    with pytest.raises(ValueError):
        rand_augment_selection(2, len(OPS) + 1, 1, generator=gen())


def test_rand_augment_hyperparameters_are_overridable_and_change_the_augmentation():
    cls = get_method("rand-augment")
    hp = resolve_hparams(cls, {"num_ops": "4", "magnitude": "3"})
    assert hp["num_ops"] == 4 and hp["magnitude"] == 3
    images, labels = padded_slices()
    a = make("rand-augment").augment(images, labels, crop=CROP, generator=gen())
    b = make("rand-augment", magnitude=5).augment(images, labels, crop=CROP, generator=gen())
    assert not torch.allclose(a[0], b[0])


@pytest.mark.parametrize("name", ["heuristic", "rand-augment"])
def test_policies_are_reproducible_from_the_generator(name):
    images, labels = padded_slices()
    method = make(name)
    a = method.augment(images, labels, crop=CROP, generator=gen(7))
    b = method.augment(images, labels, crop=CROP, generator=gen(7))
    c = method.augment(images, labels, crop=CROP, generator=gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (len(images), 1, CROP, CROP) and a[1].shape == (len(images), CROP, CROP)
