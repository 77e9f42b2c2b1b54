"""pytest-benchmark of corruption throughput on CPU: one 10×192×192 stack (the network view of
a typical ACDC volume) per call; pytest-benchmark's OPS column is volumes per second.

`transform` times the corruption alone (graded types at severity 3, ACDC-C with a fixed
draw); `case` times a whole artefact case from a 10×256×216 source: percentile
normalisation, resampling to the paper grid, the transform, min-max and padding back.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m pytest benchmarks/bench_corruptions.py --benchmark-only``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robench.benchmark.suites.base import Case
from robench.corruptions.acdc_c import acdc_c_recipes
from robench.corruptions.graded import CORRUPTIONS, graded_recipe
from robench.corruptions.pipeline import corrupt_case, run_transform
from robench.imageops import minmax_per_slice

RECIPES = [graded_recipe(name, 3) for name in CORRUPTIONS] + list(acdc_c_recipes())
SPACING = (10.0, 1.36719, 1.36719)


def _stack() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(192.0), torch.arange(192.0), indexing="ij")
    disc = (((yy - 96) ** 2 + (xx - 90) ** 2) < 30**2).float()
    return minmax_per_slice(0.2 + 0.6 * disc + 0.05 * torch.rand(10, 192, 192, generator=g))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_bench_corruption_transform(benchmark, recipe):
    benchmark.group = "corruption transform, 10×192×192"
    stack = _stack()
    parameters = recipe.draw(12345)
    out = benchmark(lambda: minmax_per_slice(run_transform(recipe, parameters, stack, SPACING)))
    assert out.shape == stack.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("recipe", [RECIPES[0], RECIPES[2], RECIPES[-1]], ids=lambda r: r.name)
def test_bench_artefact_case(benchmark, recipe):
    benchmark.group = "artefact case from a 10×256×216 source"
    rng = np.random.default_rng(0)
    label = np.zeros((10, 256, 216), np.int16)
    label[:, 100:160, 80:140] = 3
    source = Case("bench", rng.random((10, 256, 216), dtype=np.float32) + label, label, (10.0, 1.5625, 1.5625))
    record = {"parameters": recipe.draw(12345)}
    case = benchmark(corrupt_case, source, recipe, record, case_id="bench", copy=1)
    assert case.image.shape == (10, 293, 247)
