"""The metrics of `robench.benchmark.metrics` for label maps that live on a CUDA device.

Why: with inference on a GPU, copying every prediction to the host and scoring it on one
CPU core would make the metrics the slowest part of evaluation. The same definitions are
computed with torch ops on the maps' device: the one-pass boundary by shifted comparisons,
nearest border distances by exact brute force (`torch.cdist` in float64 without the
matrix-product shortcut, which loses ~1e-7 mm, in chunks), and
percentiles with `torch.quantile`'s linear interpolation, numpy's default. Values match the
NumPy path to float rounding (tests run this path on CPU tensors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from robench.benchmark.metrics import _check_shapes_and_spacing, _diagonal_mm, _empty_policy, _finish

CHUNK_PAIRS = 2**26  # distance matrix entries per chunk (512 MiB in float64)


def _boundary(labels: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(labels, dtype=torch.bool)
    if labels.numel() == 0:
        return out
    for axis in range(labels.ndim):
        n = labels.shape[axis]
        if n > 1:
            differs = labels.narrow(axis, 0, n - 1) != labels.narrow(axis, 1, n - 1)
            out.narrow(axis, 0, n - 1).logical_or_(differs)
            out.narrow(axis, 1, n - 1).logical_or_(differs)
        out.select(axis, 0).fill_(True)
        out.select(axis, n - 1).fill_(True)
    return out


def _nearest(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distance from each source point to its nearest target point (exact)."""
    if len(source) == 0:
        return source.new_zeros(0)
    rows = max(1, CHUNK_PAIRS // max(len(target), 1))
    return torch.cat([torch.cdist(source[i : i + rows], target, compute_mode="donot_use_mm_for_euclid_dist").amin(1) for i in range(0, len(source), rows)])


def _bbox(mask: torch.Tensor, pad: int = 1) -> tuple[slice, ...] | None:
    index = mask.nonzero()
    if len(index) == 0:
        return None
    lo = (index.amin(0) - pad).clamp_min(0).tolist()
    hi = (index.amax(0) + 1 + pad).tolist()
    return tuple(slice(a, min(b, n)) for a, b, n in zip(lo, hi, mask.shape))


def case_metrics_modes_torch(
    preds: Mapping[str, torch.Tensor], ref: torch.Tensor, spacing: Sequence[float], labels: Mapping[str, int], *,
    hd95_variant: str,
) -> dict[str, list[dict]]:
    ref = torch.as_tensor(ref)
    preds = {mode: torch.as_tensor(p, device=ref.device) for mode, p in preds.items()}
    sp: tuple[float, ...] = ()
    for pred in preds.values():
        if tuple(pred.shape) != tuple(ref.shape):
            raise ValueError(f"pred and ref must have the same shape, got {tuple(pred.shape)} and {tuple(ref.shape)}")
        sp = _check_shapes_and_spacing(_Shape(pred.shape), _Shape(ref.shape), spacing)
    full_shape = tuple(ref.shape)
    if any(label == 0 for label in labels.values()):
        box = tuple(slice(None) for _ in full_shape)
    else:
        foreground = ref != 0
        for pred in preds.values():
            foreground |= pred != 0
        box = _bbox(foreground) or (slice(0, 0),) * ref.ndim
    scale = torch.tensor(sp, dtype=torch.float64, device=ref.device)
    ref_c = ref[box]
    ref_boundary = _boundary(ref_c)
    out = {}
    for mode, pred in preds.items():
        pred_c = pred[box]
        pred_boundary = _boundary(pred_c)
        rows = []
        for name, label in labels.items():
            p, r = pred_c == label, ref_c == label
            n_pred, n_ref = int(p.sum()), int(r.sum())
            if n_pred == 0 or n_ref == 0:
                values = _empty_policy(n_pred, n_ref, _diagonal_mm(full_shape, sp))
            else:
                n_inter = int((p & r).sum())
                p_pts = (pred_boundary & p).nonzero().double() * scale
                r_pts = (ref_boundary & r).nonzero().double() * scale
                d_pr, d_rp = _nearest(p_pts, r_pts), _nearest(r_pts, p_pts)
                pooled = torch.cat((d_pr, d_rp))
                if hd95_variant == "max_directed":
                    hd95 = max(_percentile95(d_pr), _percentile95(d_rp))
                else:
                    hd95 = _percentile95(pooled)
                values = dict(
                    dice=2.0 * n_inter / (n_pred + n_ref), hd95=hd95, assd=float(pooled.mean()),
                    sensitivity=n_inter / n_ref, precision=n_inter / n_pred,
                    missed=False, false_positive=False, both_empty=False,
                )
            rows.append({"class": name, **_finish(values, hd95_variant)})
        out[mode] = rows
    return out


def _percentile95(values: torch.Tensor) -> float:
    if values.numel() > 2**24:  # torch.quantile's input limit: sort instead (same linear interpolation)
        ordered = values.sort().values
        position = 0.95 * (len(ordered) - 1)
        lo = math.floor(position)
        hi = min(lo + 1, len(ordered) - 1)
        return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo))
    return float(torch.quantile(values, 0.95, interpolation="linear"))


class _Shape:
    """Just enough of an array for the shared shape/spacing check."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)
