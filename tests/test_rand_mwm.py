"""Rand MWM: window counts and sizes follow the stated distributions; in-/out-painting; labels untouched."""

from __future__ import annotations

import functools

import math

import pytest
import torch

from tests.toys import build_method, gen, toy_batch
from robench.methods import Batch, get_method
from robench.methods.rand_mwm import Windows, draw_windows, mask_windows

N = 20000


make = functools.partial(build_method, "rand-mwm")


def within(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_window_counts_follow_the_continuation_rule():
    w = draw_windows(N, 48, 48, generator=gen())
    expected = [0.95**k * 0.05 for k in range(5)] + [0.95**5]
    counts = torch.bincount(w.counts, minlength=6)
    assert len(counts) == 6
    for k, p in enumerate(expected):
        assert within(int(counts[k]), N, p), (k, int(counts[k]), N * p)
    # other settings follow the same rule
    w = draw_windows(N, 48, 48, generator=gen(1), max_windows=2, continue_prob=0.5)
    counts = torch.bincount(w.counts, minlength=3)
    assert all(within(int(c), N, p) for c, p in zip(counts, (0.5, 0.25, 0.25)))


@pytest.mark.parametrize("h, w", [(48, 48), (96, 60)])
def test_window_sizes_and_corners_are_uniform_integers_in_the_stated_ranges(h, w):
    win = draw_windows(N, h, w, generator=gen())
    for size, dim in ((win.height, h), (win.width, w)):
        values = torch.arange(dim // 6, dim // 3 + 1)
        freq = torch.stack([(size == v).sum() for v in values])
        assert int(freq.sum()) == size.numel()  # nothing outside [dim//6, dim//3]
        p = 1 / len(values)
        assert all(within(int(f), size.numel(), p) for f in freq), freq
    assert (win.top >= 3).all() and (win.top <= h - win.height - 3).all()
    assert (win.left >= 3).all() and (win.left <= w - win.width - 3).all()
    assert int(win.top.min()) == 3 and bool((win.top == h - win.height - 3).any())  # both ends reached


def test_mask_is_the_union_of_the_active_windows():
    win = Windows(
        counts=torch.tensor([2, 0]),
        top=torch.tensor([[3, 10, 5], [3, 3, 3]]),
        left=torch.tensor([[4, 12, 5], [3, 3, 3]]),
        height=torch.tensor([[5, 6, 9], [5, 5, 5]]),
        width=torch.tensor([[7, 3, 9], [5, 5, 5]]),
    )
    mask = win.mask(20, 20)
    expected = torch.zeros(2, 1, 20, 20, dtype=torch.bool)
    expected[0, 0, 3:8, 4:11] = True
    expected[0, 0, 10:16, 12:15] = True  # the third window is not active; image 1 has none
    assert torch.equal(mask, expected)


def test_in_painting_fills_windows_with_noise_and_out_painting_keeps_only_windows():
    x = torch.full((2, 1, 32, 32), 0.5)
    win = draw_windows(2, 32, 32, generator=gen(4))
    win = Windows(torch.tensor([3, 3]), win.top, win.left, win.height, win.width)
    noise = torch.rand(x.shape, generator=gen(5))
    inside = win.mask(32, 32)
    out = mask_windows(x, win, torch.tensor([True, False]), noise)
    assert torch.equal(out[0][inside[0]], noise[0][inside[0]]) and torch.equal(out[0][~inside[0]], x[0][~inside[0]])
    assert torch.equal(out[1][inside[1]], x[1][inside[1]]) and torch.equal(out[1][~inside[1]], noise[1][~inside[1]])


def test_corruption_leaves_labels_untouched_and_mixes_in_and_out_painting():
    method, batch = make(), toy_batch(n=400)
    labels_before = batch.labels.clone()
    masked, labels, windows = method.corrupt(batch.images, batch.labels)
    assert labels is batch.labels and torch.equal(batch.labels, labels_before)
    inside = windows.mask(32, 32)
    changed = masked != batch.images
    only_inside = ~(changed & ~inside).any(dim=(1, 2, 3))
    only_outside = ~(changed & inside).any(dim=(1, 2, 3))
    assert (only_inside | only_outside).all()  # every slice is in- or out-painted
    inpainted = only_inside & changed.any(dim=(1, 2, 3))
    assert 150 < int(inpainted.sum()) < 230  # inpaint_prob 0.5 of the ~380 slices with windows
    assert masked.min() >= 0 and masked.max() <= 1


def test_update_trains_the_hard_example_losses_on_masked_slices():
    out = make().update(toy_batch())
    assert {"mwm_seg", "mwm_rec", "mwm_stn"} <= set(out)
    assert all(math.isfinite(v) for v in out.values())
    ce_only = make(loss="ce").update(toy_batch())
    assert "mwm_seg" in ce_only and not {"mwm_rec", "mwm_stn"} & set(ce_only)


def test_too_small_images_are_rejected():
    with pytest.raises(ValueError, match="at least 8"):
        draw_windows(1, 6, 6, generator=gen())
