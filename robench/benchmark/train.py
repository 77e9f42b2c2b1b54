"""The training loop: device, batches (augmented half + original half), validation, checkpoints, resume.

Everything random is drawn from generators seeded by the run's seed and saved in every
checkpoint, so an interrupted run resumed from `last.pt` continues the same sequence of
batches and augmentations it would have produced without the interruption.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robench.benchmark.config import Budget
from robench.benchmark.preprocess import prepare, test_slices, training_slices
from robench.imageops import centre_crop
from robench.benchmark.store import RunFolder, load_torch, save_torch
from robench.benchmark.suites.base import CaseRef
from robench.errors import ConfigError, DataError, RunStateError
from robench.methods.base import Batch, Method
from robench.threads import ThreadGovernor


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {requested!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {requested!r}: robench runs on cpu or cuda; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunStateError("--device cuda requested but no CUDA device is available; use --device cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainingSlices:
    images: torch.Tensor  # (N, pad, pad), or (N, C, pad, pad) for multi-channel suites, float on the device
    labels: torch.Tensor  # (N, pad, pad) int64 on the device
    warnings: tuple[str, ...] = ()  # cases that contribute nothing (an empty label map)

    @classmethod
    def from_cases(cls, refs: tuple[CaseRef, ...], budget: Budget, device: torch.device, *, all_slices: bool = False) -> "TrainingSlices":
        images, labels, warnings = [], [], []
        for ref in refs:
            case = ref.load()
            if case.label is None:
                raise DataError(f"training case {ref.case_id} has no label; training needs labelled volumes")
            im, lab = training_slices(case, budget.spacing_mm, budget.pad, all_slices=all_slices)
            if len(lab) == 0 or int(lab.max()) == 0:
                warnings.append(
                    f"training case {ref.case_id} has no labelled slice (its label map is empty)"
                    f"{'' if all_slices else ' and contributes nothing'}; check its label file"
                )
            images.append(im)
            labels.append(lab)
        if not any(len(lab) and int(lab.max()) > 0 for lab in labels):
            raise DataError("the training split has no labelled slices")
        return cls(torch.cat(images).to(device), torch.cat(labels).to(device), tuple(warnings))

    def __len__(self) -> int:
        return len(self.images)

    def images_at(self, idx: torch.Tensor) -> torch.Tensor:
        """The slices at `idx` as a (B, C, pad, pad) batch."""
        images = self.images[idx]
        return images[:, None] if images.ndim == 3 else images

    def rarest_class_slices(self) -> torch.Tensor:
        """Indices of the slices holding the foreground class with the fewest voxels (nnU-Net oversamples these)."""
        counts = torch.bincount(self.labels.flatten()).cpu()
        present = [c for c in range(1, len(counts)) if counts[c] > 0]
        rarest = min(present, key=lambda c: int(counts[c]))
        return torch.nonzero((self.labels == rarest).flatten(1).any(1)).flatten().cpu()


@dataclass
class ValidationSet:
    """Validation slices at test-time pre-processing, with labels at the training resolution."""

    images: torch.Tensor  # (N, C, crop, crop)
    labels: torch.Tensor  # (N, crop, crop)

    @classmethod
    def from_cases(cls, refs: tuple[CaseRef, ...], budget: Budget, device: torch.device) -> "ValidationSet":
        images, labels = [], []
        for ref in refs:
            vol = prepare(ref.load(), budget.spacing_mm)
            assert vol.label is not None
            images.append(test_slices(vol, budget.crop, budget.test_norm))
            labels.append(centre_crop(vol.label, budget.crop))
        return cls(torch.cat(images).to(device), torch.cat(labels).to(device))


def mean_iou(method: Method, val: ValidationSet, mode: str, chunk: int = 32) -> float:
    """Mean IoU over all classes incl. background from one confusion matrix over every validation slice (the paper's selection metric)."""
    k = method.num_classes
    confusion = torch.zeros(k, k, dtype=torch.int64, device=val.images.device)
    method.eval()
    with torch.no_grad():
        for start in range(0, len(val.images), chunk):
            pred = method.predict(val.images[start : start + chunk], mode).argmax(1)
            ref = val.labels[start : start + chunk]
            confusion += torch.bincount((ref * k + pred).flatten(), minlength=k * k).view(k, k)
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    return float((tp / union.clamp_min(1)).mean())


@dataclass
class TrainState:
    iteration: int = 0
    best_score: float = -1.0
    best_iteration: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False


LOSS_GATHER_EVERY = 25  # updates between reading the losses back from the device (one host sync)


class Trainer:
    def __init__(
        self, method: Method, budget: Budget, folder: RunFolder, seed: int, *, progress: bool = True,
        threads: ThreadGovernor | None = None, oversample_foreground: float = 0.0,
    ):
        self.method, self.budget, self.folder, self.seed = method, budget, folder, seed
        self.progress = progress
        self.threads = threads if threads is not None else ThreadGovernor(requested=torch.get_num_threads())
        self._pending: list[dict[str, torch.Tensor]] = []
        self.oversample_foreground = oversample_foreground
        self._rare: np.ndarray | None = None  # slice indices holding the rarest class, when oversampling
        self.sampler = np.random.default_rng(seed)
        self.aug_generator = torch.Generator(device=method.device)
        self.aug_generator.manual_seed(seed + 1)
        self.state = TrainState()

    # checkpoints -----------------------------------------------------------------------------
    def save(self) -> None:
        self.gather_losses()
        save_torch(
            self.folder.last_checkpoint,
            {
                "method": self.method.state_dict(),
                "state": self.state.__dict__,
                "sampler": self.sampler.bit_generator.state,
                "aug_generator": self.aug_generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        )

    def restore(self) -> None:
        path = self.folder.last_checkpoint
        ckpt = load_torch(path, self.method.device)
        _load_method_state(self.method, ckpt, path, weights_only=False)
        self.state = TrainState(**ckpt["state"])
        self.sampler.bit_generator.state = ckpt["sampler"]
        self.aug_generator.set_state(ckpt["aug_generator"].cpu() if self.method.device.type == "cpu" else ckpt["aug_generator"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])

    # the loop --------------------------------------------------------------------------------
    def next_batch(self, data: TrainingSlices) -> Batch:
        half = self.budget.batch_size // 2
        idx = torch.as_tensor(self.sample_indices(data, half))
        if data.images.is_cuda:  # pinned + non-blocking: the copy does not wait for the device to drain
            idx = idx.pin_memory().to(data.images.device, non_blocking=True)
        images, labels = data.images_at(idx), data.labels[idx]
        with torch.no_grad():
            aug_images, aug_labels = self.method.augment(images, labels, crop=self.budget.crop, generator=self.aug_generator)
        originals = centre_crop(images, self.budget.crop)  # the un-augmented half is only centre-cropped, as in the paper
        return Batch(torch.cat([aug_images, originals]), torch.cat([aug_labels, centre_crop(labels, self.budget.crop)]), half)

    def sample_indices(self, data: TrainingSlices, n: int) -> np.ndarray:
        """`n` training slices: uniform, except that ⌈share·n⌉ of them hold the rarest class (nnU-Net's
        foreground oversampling, one third there) when the share is positive."""
        if self.oversample_foreground <= 0:
            return self.sampler.choice(len(data), size=n, replace=len(data) < n)
        if self._rare is None:
            self._rare = data.rarest_class_slices().numpy()
        forced = min(n, math.ceil(self.oversample_foreground * n - 1e-9))
        rare = self.sampler.choice(self._rare, size=forced, replace=len(self._rare) < forced)
        rest = self.sampler.choice(len(data), size=n - forced, replace=len(data) < n - forced)
        return np.concatenate([rare, rest])

    def run(self, data: TrainingSlices, val: ValidationSet) -> TrainState:
        total = self.budget.total_iterations(len(data))
        interval = self.budget.validation_interval(len(data))
        columns = (
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TextColumn("val mIoU {task.fields[val]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not self.progress, transient=False) as bar:
            task = bar.add_task("train", total=total, completed=self.state.iteration, loss="-", val=_fmt(self.state.best_score))
            self.threads.start()
            self.folder.log(f"iteration {self.state.iteration}: {self.threads.changes[-1]}")
            self.method.begin_training(data, val)
            try:
                while self.state.iteration < total:
                    started = time.perf_counter()
                    self.set_learning_rate(total)
                    self._pending.append(self.method.update(self.next_batch(data)))
                    self.state.iteration += 1
                    it = self.state.iteration
                    change = self.threads.tick()
                    if change:
                        self.folder.log(f"iteration {it}: {change}")
                    if it % LOSS_GATHER_EVERY == 0 or it % interval == 0 or it == total:
                        self.gather_losses()
                    if it % interval == 0 or it == total:
                        self.validate(val)
                    self.state.seconds += time.perf_counter() - started
                    if it % self.budget.checkpoint_every == 0 or it == total:
                        self.state.complete = it == total
                        self.save()
                    loss = f"{self.state.history[-1]['total']:.3f}" if self.state.history else "-"
                    bar.update(task, completed=it, loss=loss, val=_fmt(self.state.best_score))
                    if self.progress and not bar.console.is_terminal and (it % interval == 0 or it == total):
                        # logs and CI have no live bar: print a line at every validation instead
                        bar.console.print(f"iteration {it}/{total} loss {loss} best val mIoU {_fmt(self.state.best_score)}")
            except KeyboardInterrupt:
                # no save here: the interrupt may land mid-update; resuming from the last periodic
                # checkpoint replays the same batches, so the finished run is identical either way
                self.folder.log(f"interrupted at iteration {self.state.iteration}")
                raise
        return self.state

    def gather_losses(self) -> None:
        """Read the pending updates' losses back in one transfer into the history; stop on a non-finite one."""
        if not self._pending:
            return
        names = list(self._pending[0])
        rows = torch.stack([torch.stack([losses[k] for k in names]) for losses in self._pending]).tolist()
        first = self.state.iteration - len(rows) + 1
        self._pending = []
        for offset, row in enumerate(rows):
            entry = dict(zip(names, row))
            if not all(math.isfinite(v) for v in row):
                raise RunStateError(
                    f"training diverged: non-finite loss at iteration {first + offset} ({_fmt_losses(entry)}); "
                    "lower the learning rate (--hparam lr=…) or use --precision fp32, and start the run over"
                )
            self.state.history.append({"iteration": first + offset, **entry})

    def set_learning_rate(self, total: int) -> None:
        """Apply the budget's schedule to every optimiser; `initial_lr` keeps each group's starting rate."""
        factor = self.budget.lr_factor(self.state.iteration, total)
        for optimiser in self.method.optimisers().values():
            for group in optimiser.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor

    def validate(self, val: ValidationSet) -> None:
        score = mean_iou(self.method, val, self.method.selection_mode)
        self.folder.log(f"iteration {self.state.iteration}: validation mIoU ({self.method.selection_mode}) {score:.4f}")
        if score > self.state.best_score:
            self.state.best_score, self.state.best_iteration = score, self.state.iteration
            save_torch(self.folder.best_checkpoint, {"method": self.method.state_dict(), "iteration": self.state.iteration, "score": score})


def _fmt_losses(losses: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in losses.items())


def _fmt(score: float) -> str:
    return "-" if score < 0 else f"{score:.3f}"


def load_best(method: Method, folder: RunFolder) -> dict[str, Any]:
    path = folder.best_checkpoint
    if not path.exists():
        raise RunStateError(f"{path}: no best checkpoint; the run has not validated yet — resume it with --resume")
    ckpt = load_torch(path, method.device)
    _load_method_state(method, ckpt, path, weights_only=True)
    return ckpt


def _load_method_state(method: Method, ckpt: Any, path, *, weights_only: bool) -> None:
    try:
        method.load_state_dict(ckpt["method"], weights_only=weights_only)
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise RunStateError(
            f"{path}: does not hold a {method.name!r} checkpoint of this run ({exc.__class__.__name__}); "
            "delete the run folder and retrain"
        ) from None
