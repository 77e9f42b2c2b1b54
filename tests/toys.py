"""Tiny deterministic inputs shared by the method tests."""

from __future__ import annotations

import torch

from robench.methods import Batch, get_method


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build_method(name: str, seed: int = 0, **hp):
    """A registered method on the CPU with its defaults overridden by `hp`."""
    cls = get_method(name)
    return cls({**cls.hparams, **hp}, num_classes=4, device=torch.device("cpu"), seed=seed)


def toy_batch(n: int = 4, size: int = 32) -> Batch:
    """Squares of LV inside MYO with an RV beside them; intensities follow the labels plus noise."""
    labels = torch.zeros(n, size, size, dtype=torch.int64)
    labels[:, 8:24, 8:24] = 2
    labels[:, 12:20, 12:20] = 3
    labels[:, 10:22, 2:7] = 1
    images = (labels.float() / 3 + 0.05 * torch.randn(n, size, size, generator=gen())).clamp(0, 1)[:, None]
    return Batch(images, labels, n // 2)


def briefly_trained(method, batch: Batch, steps: int = 5):
    """The method after a few updates on `batch`, with the softmax reference of a standard pass."""
    for _ in range(steps):
        method.update(batch)
    with torch.no_grad():
        logits = method.standard_losses(batch.images, batch.labels).logits
    return method, batch, torch.softmax(logits, 1)


def divergence_of(method, perturbed: torch.Tensor, reference: torch.Tensor) -> float:
    """The method's divergence from `reference` on already perturbed inputs, with BN in eval mode."""
    method.eval()
    with torch.no_grad():
        d = method.divergence(reference, method.net.segment(method.model_input(perturbed)))
    method.train()
    return float(d)
