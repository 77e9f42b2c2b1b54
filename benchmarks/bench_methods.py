"""Training speed: one iteration per method on CPU, and `standard` at the quick and paper settings.

One iteration = the method's augmentation of half a batch + one `update`, as the training loop
does. `relative_to_standard` in a row's extra info is that method's median time per iteration
over the median of `standard` measured first in this module (medians: a shared machine's
occasional stalls would dominate a ratio of means). `iterations_per_second` is recorded too.
Rounds follow `--benchmark-min-rounds` (default 5).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from robench.benchmark.config import Budget, get_budget
from robench.imageops import centre_crop
from robench.benchmark.train import ValidationSet
from robench.methods import Batch, get_method, resolve_hparams

METHODS = (
    "standard", "rand-conv", "adv-noise", "adv-bias", "rand-mwm", "no-aug", "heuristic", "rand-augment",
    "coop-standard", "coop-latent", "coop-latent-x",
    # the class-imbalance family (methods.md §6): adv, mixup and their asymmetric variants take 2 optimiser
    # steps per iteration, asym-combo 3
    "margin", "asym-margin", "focal", "asym-focal", "adv", "asym-adv", "mixup", "asym-mixup", "asym-aug", "asym-combo",
    # learned augmentation (methods.md §7): a meta step every `augupdate` iterations
    "learned-aug", "learned-aug:augupdate=5",
)
MEDIANS: dict[str, float] = {}


def training_iteration(method_name: str, budget: Budget) -> Callable[[], dict]:
    """`name` or `name:key=value,…` (hparam overrides, e.g. learned-aug:augupdate=5)."""
    name, _, overrides = method_name.partition(":")
    cls = get_method(name)
    hparams = resolve_hparams(cls, dict(item.split("=", 1) for item in overrides.split(",") if item))
    method = cls(hparams, num_classes=4, device=torch.device("cpu"), seed=0)
    half = budget.batch_size // 2
    g = torch.Generator().manual_seed(0)
    images = torch.rand(half, 1, budget.pad, budget.pad, generator=g)
    labels = torch.randint(0, 4, (half, budget.pad, budget.pad), generator=g)
    # validation slices for methods that learn from them (learned-aug); a no-op for the others
    method.begin_training(None, ValidationSet(centre_crop(images, budget.crop), centre_crop(labels, budget.crop)))

    def iteration() -> dict:
        aug_x, aug_y = method.augment(images, labels, crop=budget.crop, generator=g)
        batch = Batch(
            torch.cat([aug_x, centre_crop(images, budget.crop)]),
            torch.cat([aug_y, centre_crop(labels, budget.crop)]),
            half,
        )
        return method.update(batch)

    return iteration


def _measure(benchmark, request, iteration: Callable, budget: Budget) -> float:
    benchmark.extra_info["budget"] = budget.name
    benchmark.extra_info["batch"] = budget.batch_size
    benchmark.extra_info["crop"] = budget.crop
    rounds = request.config.getoption("benchmark_min_rounds")  # pedantic mode would ignore it otherwise
    benchmark.pedantic(iteration, rounds=rounds, warmup_rounds=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info["seconds_per_iteration"] = median
    benchmark.extra_info["iterations_per_second"] = 1.0 / median
    return median


@pytest.mark.parametrize("method_name", METHODS)  # standard first: the reference
def test_method_iteration_quick(benchmark, request, method_name):
    budget = get_budget("quick")
    benchmark.group = "training iteration per method (CPU, quick)"
    MEDIANS[method_name] = _measure(benchmark, request, training_iteration(method_name, budget), budget)
    if "standard" in MEDIANS:
        benchmark.extra_info["relative_to_standard"] = MEDIANS[method_name] / MEDIANS["standard"]


def test_standard_iteration_paper(benchmark, request):
    budget = get_budget("paper")
    benchmark.group = "standard at the paper setting (CPU)"
    _measure(benchmark, request, training_iteration("standard", budget), budget)
