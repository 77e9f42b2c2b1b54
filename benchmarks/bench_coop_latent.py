"""Cost of latent masking: one training iteration of `coop-latent` vs `standard` on CPU (quick budget).

One iteration = augmentation of half a batch + one `update`, as in bench_train.py. `coop-latent`
adds up to two saliency passes through a decoder, two decodings of masked codes and a second
FTN+STN forward/backward on the hard examples; `relative_to_standard` in the extra info of the
`coop-latent` row records its mean time per iteration over that of `standard` measured just before.
Rounds follow `--benchmark-min-rounds` (default 5).
"""

from __future__ import annotations

import pytest
import torch

from robench.benchmark.config import get_budget
from robench.imageops import centre_crop
from robench.methods import Batch, get_method
from robench.methods.augment import augment_batch

MEANS: dict[str, float] = {}


@pytest.mark.parametrize("method_name", ["standard", "coop-latent"])  # standard first: the reference
def test_coop_latent_iteration(benchmark, request, method_name):
    budget = get_budget("quick")
    cls = get_method(method_name)
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

    benchmark.group = "coop-latent vs standard iteration (CPU, quick)"
    benchmark.extra_info["batch"] = budget.batch_size
    benchmark.extra_info["crop"] = budget.crop
    rounds = request.config.getoption("benchmark_min_rounds")  # pedantic mode would ignore it otherwise
    benchmark.pedantic(iteration, rounds=rounds, warmup_rounds=1)
    MEANS[method_name] = benchmark.stats.stats.mean
    benchmark.extra_info["seconds_per_iteration"] = MEANS[method_name]
    if method_name != "standard" and "standard" in MEANS:
        benchmark.extra_info["relative_to_standard"] = MEANS[method_name] / MEANS["standard"]
