"""The Method interface (DomainBed's `Algorithm` is the model) and the method registry.

A method owns its networks, optimisers and any extra passes; the trainer only hands it
batches and asks for predictions. Hyperparameters are declared beside each method.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

import torch
from torch import Tensor

from robench.errors import ConfigError
from robench.methods.augment import augment_batch
from robench.precision import NumericChoice, autocast

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Batch:
    """A training batch: the first `n_augmented` slices are augmented, the rest are the same slices un-augmented."""

    images: Tensor  # (B, C, H, W) float (C = 1 but on multi-channel suites)
    labels: Tensor  # (B, H, W) int64
    n_augmented: int


class Method(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    reference: ClassVar[str]
    hparams: ClassVar[Mapping[str, Any]] = {}
    prediction_modes: ClassVar[tuple[str, ...]] = ("ftn",)
    numerics: NumericChoice = NumericChoice()  # fp32, contiguous unless the run chose otherwise
    primary_mode: ClassVar[str] = "ftn"
    selection_mode: ClassVar[str] = "ftn"  # the prediction validated for model selection
    multichannel: ClassVar[bool] = False  # trains on (B, C, H, W) inputs with C > 1 (a test shows it for each that says so)

    def __init__(self, hparams: Mapping[str, Any], *, num_classes: int, device: torch.device, seed: int, in_channels: int = 1):
        if in_channels > 1 and not self.multichannel:
            raise ConfigError(
                f"method {self.name!r} works on single-channel images only; this suite has {in_channels} input channels "
                "(methods for multi-channel data: see `robench methods`)"
            )
        self.hp = dict(hparams)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    @abstractmethod
    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One optimisation step on a batch; returns named, detached 0-d loss tensors.

        Tensors, not floats: reading a value synchronises the host with the device, so the
        trainer gathers them every few updates instead of after each one."""

    def begin_training(self, train: Any, val: Any) -> None:
        """Called by the trainer before its first update, after a resume too, with the training slices and
        the validation set; a method that learns from held-out slices (`learned-aug`) keeps them here."""

    def artifacts(self) -> Mapping[str, "pd.DataFrame"]:
        """Tables a method records while training (e.g. a learned policy's trajectory), written to the run
        folder as `<name>.parquet` once training ends; most methods record none."""
        return {}

    def augment(self, images: Tensor, labels: Tensor, *, crop: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Training augmentation of the batch's first half; the paper's policy unless a method changes it."""
        return augment_batch(images, labels, crop=crop, generator=generator)

    @abstractmethod
    def predict(self, images: Tensor, mode: str | None = None) -> Tensor:
        """(N,1,H,W) → (N,C,H,W) logits in the given prediction mode (default: the primary mode)."""

    @abstractmethod
    def modules(self) -> Mapping[str, torch.nn.Module]: ...

    @abstractmethod
    def optimisers(self) -> Mapping[str, torch.optim.Optimizer]: ...

    def train(self) -> None:
        for m in self.modules().values():
            m.train()

    def eval(self) -> None:
        for m in self.modules().values():
            m.eval()

    def use_numerics(self, choice: NumericChoice) -> "Method":
        """Compute in `choice.precision` and keep the networks in `choice.memory_format` from now on."""
        self.numerics = choice
        if choice.channels_last:
            for module in self.modules().values():
                module.to(memory_format=torch.channels_last)  # in place: the optimisers keep their parameters
        return self

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when the run's precision is bf16 (no loss scaling needed); nothing otherwise."""
        return autocast(self.device, self.numerics.precision)

    def predict_modes(self, images: Tensor, modes: Iterable[str]) -> dict[str, Tensor]:
        """Logits of several prediction modes of the same images; methods share the passes they have in common."""
        return {mode: self.predict(images, mode) for mode in modes}

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimisers": {k: o.state_dict() for k, o in self.optimisers().items()},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any], *, weights_only: bool = False) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        if not weights_only:
            for k, o in self.optimisers().items():
                o.load_state_dict(state["optimisers"][k])
            self.generator.set_state(state["generator"])

    def check_mode(self, mode: str | None) -> str:
        mode = mode or self.primary_mode
        if mode not in self.prediction_modes:
            raise ConfigError(
                f"method {self.name!r} has no prediction mode {mode!r}; choose one of {', '.join(self.prediction_modes)}"
            )
        return mode


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; registered methods: {', '.join(sorted(METHODS))}") from None


def resolve_hparams(cls: type[Method], overrides: Mapping[str, str]) -> dict[str, Any]:
    """Defaults + `key=value` overrides, each converted to the type of its default."""
    out = dict(cls.hparams)
    for key, raw in overrides.items():
        if key not in cls.hparams:
            known = ", ".join(sorted(cls.hparams)) or "none"
            raise ConfigError(f"method {cls.name!r} has no hyperparameter {key!r}; known: {known}")
        out[key] = _convert(raw, cls.hparams[key], key)
    return out


def _convert(raw: Any, default: Any, key: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if not math.isfinite(value):
                raise ConfigError(f"hyperparameter {key}={raw!r}: expected a finite number")
            if key == "lr" and value <= 0:
                raise ConfigError(f"hyperparameter lr={raw!r}: the learning rate must be positive")
            return value
    except ValueError:
        raise ConfigError(f"hyperparameter {key}={raw!r}: expected a {type(default).__name__}") from None
    return raw
