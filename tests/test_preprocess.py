"""Pre-processing and the mapping of predictions back to the original grid."""

from __future__ import annotations

import numpy as np
import torch

from robench.benchmark.preprocess import PreparedVolume, normalise_volume, prepare, to_original_grid
from robench.benchmark.preprocess import test_slices as network_inputs  # not a test
from robench.imageops import centre_crop, uncrop
from robench.benchmark.suites.base import Case
from tests.fixtures import heart_volume


def test_normalise_clips_to_percentiles():
    x = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    y = normalise_volume(x)
    assert y.min() == 0 and y.max() == 1
    assert np.isclose(y[0, 0, 0], 0) and (y == 1).sum() >= 20  # top 2 % clipped


def test_centre_crop_and_uncrop_are_inverse_for_padding_and_cropping():
    for h, w, s in ((30, 40, 32), (50, 60, 32), (20, 70, 48)):
        x = torch.arange(h * w, dtype=torch.float32).view(1, h, w)
        back = uncrop(centre_crop(x, s), (h, w), fill=-1.0)
        inside = back != -1
        assert torch.equal(back[inside], x[inside])
        assert inside.sum() == min(h, s) * min(w, s)


def _perfect_prediction(case: Case, spacing_mm: float, crop: int) -> np.ndarray:
    vol = prepare(case, spacing_mm)
    probs = torch.nn.functional.one_hot(centre_crop(vol.label, crop), 4).permute(0, 3, 1, 2).float()
    return to_original_grid(probs, vol)


def test_prediction_maps_back_exactly_at_the_native_spacing():
    image, label = heart_volume(np.random.default_rng(0), shape=(4, 60, 52), scale=2.0)
    case = Case("c", image, label, (8.0, 1.25, 1.25))
    assert np.array_equal(_perfect_prediction(case, 1.25, 64), label)


def test_prediction_maps_back_closely_from_a_coarser_grid():
    image, label = heart_volume(np.random.default_rng(0), shape=(4, 60, 52), scale=2.0)
    case = Case("c", image, label, (8.0, 1.25, 1.25))
    assert prepare(case, 2.5).image.shape[-2:] == (30, 26)
    pred = _perfect_prediction(case, 2.5, 32)
    assert pred.shape == label.shape
    for c in (1, 2, 3):  # only boundary pixels may move under 2× resampling
        dice = 2 * ((pred == c) & (label == c)).sum() / ((pred == c).sum() + (label == c).sum())
        assert dice > 0.85, (c, dice)


def test_test_slices_min_max_each_slice_by_default_and_keep_the_volume_scaling_with_none():
    image = torch.stack([torch.full((8, 8), 0.2), torch.linspace(0.1, 0.6, 64).reshape(8, 8)])
    vol = PreparedVolume(image, None, (2, 8, 8))
    per_slice, raw = network_inputs(vol, 8), network_inputs(vol, 8, "none")
    assert per_slice.shape == raw.shape == (2, 1, 8, 8)
    assert float(per_slice[1].min()) == 0.0 and float(per_slice[1].max()) == 1.0  # stretched to [0, 1]
    torch.testing.assert_close(raw[:, 0], image)  # the public tester's normalize_2D=False: untouched
    assert float(raw[1].max()) == float(image[1].max()) < 1.0
