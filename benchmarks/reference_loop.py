"""The reference code's training loop beside robench's, same network, same machine.

COOP (and most segmentation code of its time) augments one sample at a time on the CPU in a
`torch.utils.data.DataLoader` (NumPy/SciPy affine + elastic + intensity per slice, as
`ACDC_affine_elastic_intensity`), collates, copies the batch to the device and trains in fp32.
robench keeps the slices on the device, augments the whole half-batch at once there, and trains
under `--precision auto` with channels_last. This module times both loops per update and writes
the ratio; the policy is the paper's (AugmentationPolicy defaults), only the code path differs.

    python benchmarks/reference_loop.py [--budget quick] [--steps 30] [--workers 0] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import DataLoader, Dataset

from robench import precision
from robench.benchmark.config import get_budget
from robench.benchmark.reopen import build_method
from robench.benchmark.train import Trainer, pick_device
from robench.imageops import centre_crop
from robench.methods import Batch, get_method
from robench.methods.augment import AugmentationPolicy

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from gpu_check import synchronise, synthetic_slices  # noqa: E402


class PerSampleAugmented(Dataset):
    """One (augmented, original) pair of slices per item, augmented with NumPy/SciPy on the CPU."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, crop: int, seed: int = 0):
        self.images, self.labels, self.crop = images, labels, crop
        self.policy = AugmentationPolicy()
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image, label = self.images[i], self.labels[i]
        aug_image, aug_label = self._augment(image, label)
        return (
            torch.from_numpy(_centre(aug_image, self.crop))[None], torch.from_numpy(_centre(aug_label, self.crop)),
            torch.from_numpy(_centre(image, self.crop))[None], torch.from_numpy(_centre(label, self.crop)),
        )

    def _augment(self, image: np.ndarray, label: np.ndarray):
        p, rng, size = self.policy, self.rng, image.shape[0]
        if rng.random() < p.hflip_p:
            image, label = image[:, ::-1], label[:, ::-1]
        if rng.random() < p.vflip_p:
            image, label = image[::-1], label[::-1]
        if rng.random() < p.intensity_p:
            image = np.clip(image * rng.uniform(*p.contrast_range) + rng.uniform(*p.brightness_range), 0, 1)
        angle = np.deg2rad(rng.uniform(*p.rotation_range) + rng.choice(p.discrete_rotations))
        zoom = rng.uniform(*p.zoom_range, size=2)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * zoom[:, None]
        centre = (np.array(image.shape) - 1) / 2
        offset = centre - rot @ centre + rng.uniform(*p.translation_range, size=2) * size
        grid = np.indices(image.shape, dtype=np.float64).reshape(2, -1)
        coords = (rot @ grid + offset[:, None]).reshape(2, *image.shape)
        if rng.random() < p.elastic_p:
            sigma = rng.uniform(*p.elastic_sigma_range) * size * p.elastic_sigma_factor
            alpha = rng.uniform(*p.elastic_alpha_range) * size * size / p.reference_size
            for axis in range(2):
                coords[axis] += alpha * ndimage.gaussian_filter(rng.uniform(-1, 1, image.shape), sigma, mode="constant")
        out_image = ndimage.map_coordinates(image, coords, order=1, mode="constant").astype(np.float32)
        out_label = ndimage.map_coordinates(label, coords, order=0, mode="constant").astype(np.int64)
        return out_image, out_label


def _centre(a: np.ndarray, crop: int) -> np.ndarray:
    return np.ascontiguousarray(centre_crop(torch.from_numpy(np.ascontiguousarray(a)), crop).numpy())


def reference_seconds(budget_name: str, device: torch.device, steps: int, workers: int) -> float:
    budget = get_budget(budget_name)
    method = build_method("standard", budget.effective_hparams(get_method("standard").hparams), 0, 4, device)  # fp32
    data = synthetic_slices(200, budget.pad, 4, torch.device("cpu"))
    dataset = PerSampleAugmented(data.images.numpy(), data.labels.numpy(), budget.crop)
    loader = DataLoader(dataset, batch_size=budget.batch_size // 2, shuffle=True, num_workers=workers, drop_last=True,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)

    def batches():
        while True:
            yield from loader

    it = batches()

    def update():
        aug_x, aug_y, x, y = next(it)
        batch = Batch(torch.cat([aug_x, x]).to(device), torch.cat([aug_y, y]).to(device), len(aug_x))
        return {k: float(v) for k, v in method.update(batch).items()}  # the reference reads its losses every step

    return _time(update, steps, device)


def robench_seconds(budget_name: str, device: torch.device, steps: int, precision_name: str) -> float:
    budget = get_budget(budget_name)
    numerics = precision.resolve(precision_name, device)
    method = build_method("standard", budget.effective_hparams(get_method("standard").hparams), 0, 4, device, numerics)
    data = synthetic_slices(200, budget.pad, 4, device)
    trainer = Trainer(method, budget, folder=None, seed=0, progress=False)  # type: ignore[arg-type]
    return _time(lambda: method.update(trainer.next_batch(data)), steps, device)


def _time(update, steps: int, device: torch.device) -> float:
    for _ in range(3):
        update()
    synchronise(device)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        update()
        synchronise(device)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference loop")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    reference = reference_seconds(args.budget, device, args.steps, args.workers)
    fp32 = robench_seconds(args.budget, device, args.steps, "fp32")
    auto = robench_seconds(args.budget, device, args.steps, "auto")
    report = {
        "device": str(device), "threads": torch.get_num_threads(), "budget": args.budget, "workers": args.workers,
        "reference_seconds_per_update": reference, "robench_fp32_seconds_per_update": fp32,
        "robench_auto_seconds_per_update": auto, "auto_precision": precision.resolve("auto", device).precision,
        "speedup_fp32": reference / fp32, "speedup_auto": reference / auto,
    }
    print(f"reference loop {1e3 * reference:.0f} ms/update; robench fp32 {1e3 * fp32:.0f} ms ({reference / fp32:.2f}x); "
          f"robench {report['auto_precision']} {1e3 * auto:.0f} ms ({reference / auto:.2f}x) [{device}, "
          f"{torch.get_num_threads()} threads, {args.budget}]")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
