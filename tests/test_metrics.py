"""Tests of robench.benchmark.metrics: parity with medpy, brute force, hand cases, policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy import ndimage
from scipy.spatial.distance import cdist

from robench.benchmark.metrics import (
    HD95_VARIANTS,
    METRICS_VERSION,
    case_metrics,
    class_metrics,
)
from robench.labels import CARDIAC_CLASSES

TOL = 1e-6
ANISO_3D = (10.0, 1.37, 1.37)
ANISO_2D = (1.37, 0.91)
FLOAT_KEYS = ("dice", "hd95", "assd", "sensitivity", "precision")
FLAG_KEYS = ("missed", "false_positive", "both_empty")


# ---------------------------------------------------------------- fixtures / helpers


def _blob_pair(shape, seed, sigma, threshold=0.05, noise=0.35):
    """Reference = thresholded smoothed noise; prediction = a correlated perturbation of it."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    extra = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    base /= base.std()
    extra /= extra.std()
    ref = base > threshold
    pred = (base + noise * extra) > threshold
    assert ref.any() and pred.any() and (ref != pred).any()
    return pred, ref


def _sigma(ndim):
    return (0.8,) + (3.0,) * (ndim - 1) if ndim >= 3 else (3.0,) * ndim


FIXTURE_SPECS = {
    "2d": ((64, 56), ANISO_2D),
    "3d": ((8, 40, 36), ANISO_3D),
    "4d": ((3, 6, 20, 18), (2.0, 10.0, 1.37, 1.37)),
}


def _fixture(kind, seed):
    shape, spacing = FIXTURE_SPECS[kind]
    pred, ref = _blob_pair(shape, seed, _sigma(len(shape)))
    return pred, ref, spacing


def _touches_border(mask):
    return any(mask.take(0, axis=a).any() or mask.take(-1, axis=a).any() for a in range(mask.ndim))


def _border_bruteforce(mask):
    """Foreground voxels with a face neighbour that is background or outside the array.

    Written without binary_erosion so the tests do not share the implementation's code path.
    """
    padded = np.pad(mask, 1, constant_values=False)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    interior = padded[inner].copy()
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            interior &= np.roll(padded, shift, axis=axis)[inner]
    return mask & ~interior


def _directed_bruteforce(src, dst, spacing):
    """Distance (mm) from every border voxel of src to the nearest border voxel of dst."""
    a = np.argwhere(_border_bruteforce(src)) * np.asarray(spacing)
    b = np.argwhere(_border_bruteforce(dst)) * np.asarray(spacing)
    return cdist(a, b).min(axis=1)


def _medpy_reference(pred, ref, spacing):
    return dict(
        dice=medpy_binary.dc(pred, ref),
        hd95=medpy_binary.hd95(pred, ref, voxelspacing=spacing),
        assd=medpy_binary.assd(pred, ref, voxelspacing=spacing),
    )


def _assert_close_to_medpy(pred, ref, spacing):
    ours = class_metrics(pred, ref, spacing, hd95_variant="pooled")
    theirs = _medpy_reference(pred, ref, spacing)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=TOL, rel=TOL), key
    assert not (ours["missed"] or ours["false_positive"] or ours["both_empty"])
    return ours


def _same_metrics(a, b, rtol=1e-12):
    """Equality of two result dicts, NaN == NaN, up to float rounding of the EDT."""
    assert a.keys() == b.keys()
    for key in a:
        if key in FLOAT_KEYS:
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=0, equal_nan=True, err_msg=key)
        else:
            assert a[key] == b[key], key


# ---------------------------------------------------------------- parity with medpy


@pytest.mark.parametrize("kind", sorted(FIXTURE_SPECS))
@pytest.mark.parametrize("seed", range(4))
def test_matches_medpy_on_random_blobs(kind, seed):
    pred, ref, spacing = _fixture(kind, seed)
    ours = _assert_close_to_medpy(pred, ref, spacing)
    assert ours["hd95"] > 0 and 0 < ours["dice"] < 1


@pytest.mark.parametrize("seed", range(3))
def test_matches_medpy_with_objects_touching_the_border(seed):
    # A low threshold makes the blobs big enough to reach the array edges, where the
    # crop box is clipped and erosion relies on border_value=0.
    pred, ref = _blob_pair((6, 30, 26), seed, _sigma(3), threshold=-0.6)
    assert _touches_border(ref) and _touches_border(pred)
    _assert_close_to_medpy(pred, ref, ANISO_3D)


@pytest.mark.parametrize(
    "p_idx, r_idx",
    [
        ((2, 5, 7), (2, 5, 7)),  # same voxel
        ((2, 5, 7), (4, 9, 1)),  # far apart
        ((0, 0, 0), (5, 11, 9)),  # opposite corners of the array
    ],
)
def test_matches_medpy_on_single_voxels(p_idx, r_idx):
    pred = np.zeros((6, 12, 10), bool)
    ref = np.zeros_like(pred)
    pred[p_idx] = True
    ref[r_idx] = True
    ours = _assert_close_to_medpy(pred, ref, ANISO_3D)
    expected = math.dist(np.multiply(p_idx, ANISO_3D), np.multiply(r_idx, ANISO_3D))
    assert ours["hd95"] == pytest.approx(expected)
    assert ours["dice"] == (1.0 if p_idx == r_idx else 0.0)


def test_matches_medpy_single_voxel_against_blob():
    _, ref, spacing = _fixture("3d", 7)
    pred = np.zeros_like(ref)
    pred[tuple(np.argwhere(ref)[0])] = True
    ours = _assert_close_to_medpy(pred, ref, spacing)
    assert ours["precision"] == 1.0 and ours["sensitivity"] == pytest.approx(1 / ref.sum())


# ---------------------------------------------------------------- brute force


@pytest.mark.parametrize("kind", ["2d", "3d"])
@pytest.mark.parametrize("seed", range(4))
def test_distances_match_bruteforce(kind, seed):
    pred, ref, spacing = _fixture(kind, seed)
    d_pr = _directed_bruteforce(pred, ref, spacing)
    d_rp = _directed_bruteforce(ref, pred, spacing)
    both = np.concatenate([d_pr, d_rp])

    md = class_metrics(pred, ref, spacing, hd95_variant="max_directed")
    po = class_metrics(pred, ref, spacing, hd95_variant="pooled")
    assert md["hd95"] == pytest.approx(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)), abs=TOL)
    assert po["hd95"] == pytest.approx(np.percentile(both, 95), abs=TOL)
    assert md["assd"] == pytest.approx(both.mean(), abs=TOL)
    assert po["assd"] == md["assd"] and po["dice"] == md["dice"]


def test_max_directed_can_exceed_pooled_with_far_false_positive():
    # The anchors' disagreement: a small far-away false positive barely moves the pooled
    # percentile but dominates the pred->ref direction.
    ref = np.zeros((40, 40), bool)
    ref[5:25, 5:25] = True
    pred = ref.copy()
    pred[33:36, 33:36] = True
    md = class_metrics(pred, ref, (1.0, 1.0))["hd95"]
    po = class_metrics(pred, ref, (1.0, 1.0), hd95_variant="pooled")["hd95"]
    d_pr = _directed_bruteforce(pred, ref, (1.0, 1.0))
    assert md == pytest.approx(np.percentile(d_pr, 95))
    assert md > po


# ---------------------------------------------------------------- hand-computed cases


@pytest.mark.parametrize("variant", HD95_VARIANTS)
def test_identical_masks(variant):
    _, ref, spacing = _fixture("3d", 1)
    m = class_metrics(ref, ref.copy(), spacing, hd95_variant=variant)
    assert m["dice"] == 1.0 and m["sensitivity"] == 1.0 and m["precision"] == 1.0
    assert m["hd95"] == 0.0 and m["assd"] == 0.0


@pytest.mark.parametrize("variant", HD95_VARIANTS)
def test_squares_offset_by_one_voxel(variant):
    # 10x10 squares, the prediction shifted one voxel along axis 1 (spacing 0.7 mm).
    # Border rings have 36 voxels each; by symmetry both directions give 18 distances of
    # 0 (shared top/bottom rows) and 18 of one voxel step (0.7 mm).  The 95th percentile
    # is therefore 0.7 mm in both variants, ASSD = 0.35 mm, Dice = 90/100.
    spacing = (2.5, 0.7)
    ref = np.zeros((20, 24), bool)
    ref[4:14, 5:15] = True
    pred = np.zeros_like(ref)
    pred[4:14, 6:16] = True
    m = class_metrics(pred, ref, spacing, hd95_variant=variant)
    assert m["dice"] == pytest.approx(0.9)
    assert m["sensitivity"] == pytest.approx(0.9) and m["precision"] == pytest.approx(0.9)
    assert m["hd95"] == pytest.approx(0.7)
    assert m["assd"] == pytest.approx(0.35)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_parallel_lines_offset_by_k_rows(k):
    # One-voxel-thick lines are all border; every voxel is exactly k rows from the other line.
    spacing = (1.5, 0.8)
    ref = np.zeros((12, 15), bool)
    ref[2, 3:12] = True
    pred = np.zeros_like(ref)
    pred[2 + k, 3:12] = True
    for variant in HD95_VARIANTS:
        m = class_metrics(pred, ref, spacing, hd95_variant=variant)
        assert m["hd95"] == pytest.approx(1.5 * k) and m["assd"] == pytest.approx(1.5 * k)
        assert m["dice"] == 0.0 and m["sensitivity"] == 0.0 and m["precision"] == 0.0
        assert not (m["missed"] or m["false_positive"])


def test_variants_differ_on_hand_case():
    # ref: one voxel. pred: that voxel plus one D = 4 * 2.0 mm away.
    # pred->ref distances [0, D] -> q95 = 0.95 D;  ref->pred [0] -> 0.
    # max_directed = 0.95 D; pooled: [0, 0, D] -> q95 at rank 1.9 -> 0.9 D; ASSD = D / 3.
    d = 8.0
    ref = np.zeros((3, 10), bool)
    ref[1, 2] = True
    pred = ref.copy()
    pred[1, 6] = True
    spacing = (1.0, 2.0)
    md = class_metrics(pred, ref, spacing)
    po = class_metrics(pred, ref, spacing, hd95_variant="pooled")
    assert md["hd95"] == pytest.approx(0.95 * d) and md["hd95_variant"] == "max_directed"
    assert po["hd95"] == pytest.approx(0.9 * d) and po["hd95_variant"] == "pooled"
    assert md["assd"] == pytest.approx(d / 3) and po["assd"] == pytest.approx(d / 3)
    assert md["dice"] == pytest.approx(2 / 3)
    assert md["sensitivity"] == 1.0 and md["precision"] == 0.5


def test_spacing_is_applied_per_axis():
    # Same voxel offsets, spacings swapped: distances follow the axis that was shifted.
    ref = np.zeros((10, 10), bool)
    ref[2, 2] = True
    pred = np.zeros_like(ref)
    pred[5, 2] = True
    assert class_metrics(pred, ref, (2.0, 0.5))["hd95"] == pytest.approx(6.0)
    assert class_metrics(pred, ref, (0.5, 2.0))["hd95"] == pytest.approx(1.5)


def test_sensitivity_and_precision_counts():
    ref = np.zeros((10, 10), bool)
    ref[0:4, 0:5] = True  # 20 voxels
    pred = np.zeros_like(ref)
    pred[2:6, 0:5] = True  # 20 voxels, 10 shared
    pred[9, 9] = True  # 21 voxels
    m = class_metrics(pred, ref, (1.0, 1.0))
    assert m["sensitivity"] == pytest.approx(10 / 20)
    assert m["precision"] == pytest.approx(10 / 21)
    assert m["dice"] == pytest.approx(20 / 41)


# ---------------------------------------------------------------- empty-mask policy


def test_missed_structure():
    shape, spacing = (4, 5), (2.0, 3.0)  # diagonal = sqrt(8^2 + 15^2) = 17 mm
    ref = np.zeros(shape, bool)
    ref[1:3, 1:3] = True
    m = class_metrics(np.zeros(shape, bool), ref, spacing)
    assert m["dice"] == 0.0 and m["sensitivity"] == 0.0 and m["precision"] == 0.0
    assert m["hd95"] == pytest.approx(17.0) and m["assd"] == pytest.approx(17.0)
    assert (m["missed"], m["false_positive"], m["both_empty"]) == (True, False, False)


def test_false_positive_structure():
    shape, spacing = (4, 5), (2.0, 3.0)
    pred = np.zeros(shape, bool)
    pred[0, 0] = True
    m = class_metrics(pred, np.zeros(shape, bool), spacing, hd95_variant="pooled")
    assert m["dice"] == 0.0 and m["precision"] == 0.0 and math.isnan(m["sensitivity"])
    assert m["hd95"] == pytest.approx(17.0) and m["assd"] == pytest.approx(17.0)
    assert (m["missed"], m["false_positive"], m["both_empty"]) == (False, True, False)
    assert m["hd95_variant"] == "pooled"


def test_both_empty():
    m = class_metrics(np.zeros((3, 4, 5), bool), np.zeros((3, 4, 5), bool), (1.0, 1.0, 1.0))
    assert all(math.isnan(m[k]) for k in FLOAT_KEYS)
    assert (m["missed"], m["false_positive"], m["both_empty"]) == (False, False, True)


def test_diagonal_penalty_uses_full_image_not_crop():
    # A missed structure in a 3-D volume: the penalty is the image diagonal, so it does not
    # depend on where the structure is or how small it is.
    shape, spacing = (10, 256, 216), ANISO_3D
    diag = math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))
    ref = np.zeros(shape, bool)
    ref[4, 100:103, 50:52] = True
    m = class_metrics(np.zeros(shape, bool), ref, spacing)
    assert m["hd95"] == pytest.approx(diag) and m["assd"] == pytest.approx(diag)


def test_result_keys_types_and_provenance():
    pred, ref, spacing = _fixture("2d", 0)
    m = class_metrics(pred, ref, spacing)
    assert set(m) == set(FLOAT_KEYS) | set(FLAG_KEYS) | {"hd95_variant", "metric_version"}
    assert all(type(m[k]) is float for k in FLOAT_KEYS)
    assert all(type(m[k]) is bool for k in FLAG_KEYS)
    assert m["metric_version"] == METRICS_VERSION and METRICS_VERSION.startswith("robench-metrics-")
    assert m["hd95_variant"] == "max_directed"  # the documented default


# ---------------------------------------------------------------- cropping is exact


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("variant", HD95_VARIANTS)
def test_crop_equals_larger_canvas(seed, variant):
    # Border-touching objects (crop box clipped at the array edge) must give the same
    # numbers as the same objects embedded in a larger zero canvas (box padded inside),
    # since in both cases the voxels just outside are background.
    pred, ref = _blob_pair((6, 30, 26), seed, _sigma(3), threshold=-0.6)
    assert _touches_border(ref)
    small = class_metrics(pred, ref, ANISO_3D, hd95_variant=variant)
    pad = ((1, 3), (7, 0), (2, 11))
    large = class_metrics(np.pad(pred, pad), np.pad(ref, pad), ANISO_3D, hd95_variant=variant)
    _same_metrics(small, large)


def test_crop_equals_full_image_for_small_object_in_large_volume():
    # A small object in a big volume exercises a crop much smaller than the image;
    # medpy computes on the full image.
    pred, ref = _blob_pair((4, 24, 20), 3, _sigma(3))
    big_p = np.zeros((10, 120, 100), bool)
    big_r = np.zeros_like(big_p)
    big_p[3:7, 50:74, 30:50] = pred
    big_r[3:7, 50:74, 30:50] = ref
    _assert_close_to_medpy(big_p, big_r, ANISO_3D)


# ---------------------------------------------------------------- case_metrics


def _label_case():
    """ACDC-convention label maps (RV 1, MYO 2, LV 3) with a different outcome per class."""
    ref = np.zeros((4, 30, 30), np.int16)
    pred = np.zeros_like(ref)
    ref[1:3, 5:15, 5:15] = 3  # LV: predicted exactly
    pred[1:3, 5:15, 5:15] = 3
    ref[1:3, 18:25, 5:12] = 1  # RV: missed entirely
    pred[0, 20:24, 20:24] = 2  # MYO: absent in ref, predicted -> false positive
    return pred, ref


def test_case_metrics_names_and_remaps_classes():
    pred, ref = _label_case()
    spacing = ANISO_3D
    rows = case_metrics(pred, ref, spacing, CARDIAC_CLASSES)
    assert [r["class"] for r in rows] == list(CARDIAC_CLASSES)
    by_name = {r["class"]: r for r in rows}
    assert by_name["LV"]["dice"] == 1.0 and by_name["LV"]["hd95"] == 0.0
    assert by_name["RV"]["missed"] and by_name["RV"]["dice"] == 0.0
    assert by_name["MYO"]["false_positive"] and math.isnan(by_name["MYO"]["sensitivity"])
    for name, label in CARDIAC_CLASSES.items():
        expected = class_metrics(pred == label, ref == label, spacing)
        _same_metrics({k: v for k, v in by_name[name].items() if k != "class"}, expected)


def test_case_metrics_follows_the_given_mapping():
    # M&Ms convention (LV 1, RV 3) applied to the same arrays must swap the LV/RV results,
    # and the output order follows the mapping.
    pred, ref = _label_case()
    rows = case_metrics(pred, ref, ANISO_3D, {"LV": 1, "RV": 3})
    assert [r["class"] for r in rows] == ["LV", "RV"]
    assert rows[0]["missed"] and rows[1]["dice"] == 1.0


def test_case_metrics_all_background_and_background_class():
    shape = (3, 8, 9)
    zeros = np.zeros(shape, np.uint8)
    rows = case_metrics(zeros, zeros, (1.0, 1.0, 1.0), {"LV": 3})
    assert rows[0]["both_empty"] and math.isnan(rows[0]["dice"])
    # Asking for label 0 must not be broken by cropping to the foreground.
    pred, ref = _label_case()
    bg = case_metrics(pred, ref, ANISO_3D, {"BG": 0}, hd95_variant="pooled")[0]
    expected = class_metrics(pred == 0, ref == 0, ANISO_3D, hd95_variant="pooled")
    _same_metrics({k: v for k, v in bg.items() if k != "class"}, expected)
    assert bg["hd95_variant"] == "pooled"


def test_case_metrics_matches_medpy_on_blob_labels():
    # Three classes from nested thresholds of one smooth field, one touching the border.
    rng = np.random.default_rng(11)
    shape = (6, 40, 36)
    field = ndimage.gaussian_filter(rng.normal(size=shape), _sigma(3))
    field /= field.std()
    noise = ndimage.gaussian_filter(rng.normal(size=shape), _sigma(3))
    field2 = field + 0.3 * noise / noise.std()

    def labels(f):
        out = np.zeros(shape, np.int32)
        out[f > -0.8] = 1
        out[f > 0.3] = 2
        out[f > 1.0] = 3
        return out

    ref, pred = labels(field), labels(field2)
    rows = case_metrics(pred, ref, ANISO_3D, CARDIAC_CLASSES, hd95_variant="pooled")
    for row in rows:
        label = CARDIAC_CLASSES[row["class"]]
        p, r = pred == label, ref == label
        assert p.any() and r.any()
        for key, value in _medpy_reference(p, r, ANISO_3D).items():
            assert row[key] == pytest.approx(value, abs=TOL, rel=TOL)


# ---------------------------------------------------------------- input validation


def _ok():
    a = np.zeros((4, 5), bool)
    a[1, 1] = True
    return a


@pytest.mark.parametrize(
    "pred, ref, spacing, match",
    [
        (np.zeros((4, 5), bool), np.zeros((4, 6), bool), (1, 1), "same shape"),
        (_ok(), _ok(), (1.0,), "2 dimensions"),
        (_ok(), _ok(), (1.0, 1.0, 1.0), "2 dimensions"),
        (_ok(), _ok(), (1.0, 0.0), "positive"),
        (_ok(), _ok(), (1.0, -2.0), "positive"),
        (_ok(), _ok(), (1.0, float("nan")), "positive"),
        (_ok(), _ok(), 1.0, "sequence"),
        (_ok(), _ok(), ("a", "b"), "numbers"),
        (np.ones(5, bool), np.ones(5, bool), (1.0,), "at least 2"),
    ],
)
def test_invalid_inputs_raise(pred, ref, spacing, match):
    with pytest.raises(ValueError, match=match):
        class_metrics(pred, ref, spacing)


def test_unknown_variant_raises_with_the_valid_names():
    with pytest.raises(ValueError, match="max_directed.*pooled"):
        class_metrics(_ok(), _ok(), (1.0, 1.0), hd95_variant="hd95")
    with pytest.raises(ValueError, match="unknown hd95_variant"):
        case_metrics(_ok().astype(int), _ok().astype(int), (1.0, 1.0), {"LV": 1}, hd95_variant="MAX")


def test_case_metrics_invalid_inputs_raise():
    lab = _ok().astype(np.int16)
    with pytest.raises(ValueError, match="integer label map"):
        case_metrics(lab.astype(float), lab, (1.0, 1.0), {"LV": 1})
    with pytest.raises(ValueError, match="classes is empty"):
        case_metrics(lab, lab, (1.0, 1.0), {})
    with pytest.raises(ValueError, match="must be an integer"):
        case_metrics(lab, lab, (1.0, 1.0), {"LV": 1.5})
    with pytest.raises(ValueError, match="same shape"):
        case_metrics(lab, lab[:, :3], (1.0, 1.0), {"LV": 1})
