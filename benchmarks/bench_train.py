"""Training speed of `standard` on CPU at the quick and paper settings (iterations per second).

One iteration = augmentation of half a batch + one `update` (forward/backward of FTN and
STN, five optimiser steps), exactly what the training loop does.
"""

from __future__ import annotations

import pytest
import torch

from robench.benchmark.config import get_budget
from robench.imageops import centre_crop
from robench.methods import Batch, get_method
from robench.methods.augment import augment_batch


@pytest.mark.parametrize("budget_name", ["quick", "paper"])
def test_standard_iteration(benchmark, budget_name):
    budget = get_budget(budget_name)
    cls = get_method("standard")
    method = cls(cls.hparams, num_classes=4, device=torch.device("cpu"), seed=0)
    half = budget.batch_size // 2
    g = torch.Generator().manual_seed(0)
    images = torch.rand(half, 1, budget.pad, budget.pad, generator=g)
    labels = torch.randint(0, 4, (half, budget.pad, budget.pad), generator=g)

    def iteration():
        aug_x, aug_y = augment_batch(images, labels, crop=budget.crop, generator=g)
        batch = Batch(
            torch.cat([aug_x, centre_crop(images, budget.crop)]),
            torch.cat([aug_y, centre_crop(labels, budget.crop)]),
            half,
        )
        return method.update(batch)

    rounds = 10 if budget_name == "quick" else 3
    benchmark.group = "training iteration (CPU)"
    benchmark.extra_info["batch"] = budget.batch_size
    benchmark.extra_info["crop"] = budget.crop
    benchmark.pedantic(iteration, rounds=rounds, warmup_rounds=1)
    benchmark.extra_info["iterations_per_second"] = 1.0 / benchmark.stats.stats.mean
