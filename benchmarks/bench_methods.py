"""Cost of each baseline: one training iteration vs `standard` on CPU at the quick budget (batch 5+5, 96²).

One iteration = the method's augmentation of half a batch + one `update`, as the training loop
does (bench_train.py). The group is the one of bench_train.py's `standard` rows, so the report
puts every method next to standard; `relative_to_standard` in the extra info records each
method's median time per iteration over that of `standard` measured first in this module
(medians: a shared machine's occasional stalls would dominate a ratio of means).
Rounds follow `--benchmark-min-rounds` (default 5).
"""

from __future__ import annotations

import pytest
import torch

from robench.benchmark.config import get_budget
from robench.imageops import centre_crop
from robench.methods import Batch, get_method

METHODS = ("standard", "rand-conv", "adv-noise", "adv-bias", "rand-mwm", "no-aug", "heuristic", "rand-augment")
MEDIANS: dict[str, float] = {}


@pytest.mark.parametrize("method_name", METHODS)  # standard first: the reference
def test_method_iteration(benchmark, request, method_name):
    budget = get_budget("quick")
    cls = get_method(method_name)
    method = cls(cls.hparams, num_classes=4, device=torch.device("cpu"), seed=0)
    half = budget.batch_size // 2
    g = torch.Generator().manual_seed(0)
    images = torch.rand(half, 1, budget.pad, budget.pad, generator=g)
    labels = torch.randint(0, 4, (half, budget.pad, budget.pad), generator=g)

    def iteration():
        aug_x, aug_y = method.augment(images, labels, crop=budget.crop, generator=g)
        batch = Batch(
            torch.cat([aug_x, centre_crop(images, budget.crop)]),
            torch.cat([aug_y, centre_crop(labels, budget.crop)]),
            half,
        )
        return method.update(batch)

    benchmark.group = "training iteration (CPU)"
    benchmark.extra_info["budget"] = "quick"
    benchmark.extra_info["batch"] = budget.batch_size
    benchmark.extra_info["crop"] = budget.crop
    rounds = request.config.getoption("benchmark_min_rounds")  # pedantic mode would ignore it otherwise
    benchmark.pedantic(iteration, rounds=rounds, warmup_rounds=1)
    MEDIANS[method_name] = benchmark.stats.stats.median
    benchmark.extra_info["seconds_per_iteration"] = MEDIANS[method_name]
    if "standard" in MEDIANS:
        benchmark.extra_info["relative_to_standard"] = MEDIANS[method_name] / MEDIANS["standard"]
