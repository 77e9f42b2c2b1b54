"""pytest-benchmark of the batched training augmentation on CPU (the paper budget and the half-resolution one).

Run: ``make bench`` or ``.venv/bin/python -m pytest benchmarks/bench_augment.py --benchmark-only``.
"""

from __future__ import annotations

import pytest
import torch

from robench.methods.augment import augment_batch

CASES = [
    pytest.param(20, 224, 192, id="B20-P224-C192"),  # paper: 10 augmented + 10 original slices, 224 pad, 192 crop
    pytest.param(8, 112, 96, id="B8-P112-C96"),
]


@pytest.mark.parametrize(("batch", "pad", "crop"), CASES)
def test_bench_augment_batch_cpu(benchmark, batch, pad, crop):
    data = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, pad, pad, generator=data)
    labels = torch.randint(0, 4, (batch, pad, pad), generator=data)
    gen = torch.Generator().manual_seed(1)

    out_images, out_labels = benchmark(augment_batch, images, labels, crop=crop, generator=gen)

    assert out_images.shape == (batch, 1, crop, crop)
    assert out_labels.shape == (batch, crop, crop)
