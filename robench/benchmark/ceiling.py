"""The Dice a budget's grid allows at best: the ground truth passed through the evaluation pipeline.

A prediction is made on the budget's in-plane grid and mapped back to the case's own grid
before it is scored, so even a perfect network loses what the round trip loses (thin
myocardium at 2.73 mm). Feeding each case's label, one-hot, through the same resampling,
crop and map-back that predictions take, and scoring it against itself, measures that bound.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from robench.benchmark.config import Budget
from robench.benchmark.metrics import case_metrics
from robench.benchmark.preprocess import labels_on_original_grid, prepare
from robench.benchmark.suites.base import TestSet
from robench.imageops import centre_crop


def resolution_ceiling(test_set: TestSet, budget: Budget, classes: Mapping[str, int]) -> float:
    """Mean over cases of the mean over classes (both-empty skipped) of Dice(label through the pipeline, label)."""
    scores = []
    for ref in test_set.cases:
        case = ref.load()
        if case.label is None:
            continue
        vol = prepare(case, budget.spacing_mm)
        assert vol.label is not None
        fitted = centre_crop(vol.label, budget.crop)  # what the network would see, cut to its input
        one_hot = F.one_hot(fitted.long(), max(classes.values()) + 1).permute(0, 3, 1, 2).to(torch.float32)
        predicted = labels_on_original_grid(one_hot, vol).numpy()
        dice = [m["dice"] for m in case_metrics(predicted, case.label, case.spacing, classes)]
        dice = [d for d in dice if not np.isnan(d)]
        if dice:
            scores.append(float(np.mean(dice)))
    return float(np.mean(scores)) if scores else float("nan")
