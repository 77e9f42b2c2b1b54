"""ACDC-C as published (protocol.md §3): four TorchIO random transforms, three frozen copies per case.

The paper called `RandomBiasField()`, `RandomGhosting()`, `RandomMotion(degrees=30,
translation=10)` and `RandomSpike()` on a bare (1, S, 192, 192) tensor, i.e. with TorchIO's
identity affine (1 "mm" per voxel, slice axis first). Here the same random transform draws
its parameters with its own `get_params` under a torch generator seeded per copy, and the
matching deterministic TorchIO transform applies them, so the sampling distribution is
TorchIO's and the result is replayable.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torchio as tio

from robench.corruptions.recipe import TORCH_GLOBAL_RNG, ImageTransform, Recipe

COPIES = 3


def _seeded(seed: int, sample: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run TorchIO's sampler on a private copy of the global torch RNG, leaving the caller's untouched."""
    with TORCH_GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return sample()


def _bias() -> tuple[tio.RandomBiasField, Callable, Callable]:
    random = tio.RandomBiasField()

    def sample() -> dict[str, Any]:
        return {"coefficients": random.get_params(random.order, random.coefficients_range), "order": random.order}

    def build(p: Mapping[str, Any]) -> ImageTransform:
        return tio.BiasField(coefficients=list(p["coefficients"]), order=int(p["order"]))

    return random, sample, build


def _ghosting() -> tuple[tio.RandomGhosting, Callable, Callable]:
    random = tio.RandomGhosting()

    def sample() -> dict[str, Any]:
        low, high = random.num_ghosts_range
        axes = tuple(int(a) for a in random.axes)
        num_ghosts, axis, intensity, restore = random.get_params((int(low), int(high)), axes, random.intensity_range, random.restore)
        return {"num_ghosts": num_ghosts, "axis": axis, "intensity": intensity, "restore": restore}

    def build(p: Mapping[str, Any]) -> ImageTransform:
        return tio.Ghosting(num_ghosts=int(p["num_ghosts"]), axis=int(p["axis"]), intensity=float(p["intensity"]), restore=p["restore"])

    return random, sample, build


def _motion() -> tuple[tio.RandomMotion, Callable, Callable]:
    random = tio.RandomMotion(degrees=30, translation=10)

    def sample() -> dict[str, Any]:
        times, degrees, translation = random.get_params(
            random.degrees_range, random.translation_range, random.num_transforms, is_2d=False
        )
        return {"degrees": degrees, "translation": translation, "times": times, "image_interpolation": random.image_interpolation}

    def build(p: Mapping[str, Any]) -> ImageTransform:
        # float32, as TorchIO's own draw: Motion computes radians and k-space split points from these arrays
        return tio.Motion(
            degrees=np.asarray(p["degrees"], np.float32), translation=np.asarray(p["translation"], np.float32),
            times=np.asarray(p["times"], np.float32), image_interpolation=str(p["image_interpolation"]),
        )

    return random, sample, build


def _spike() -> tuple[tio.RandomSpike, Callable, Callable]:
    random = tio.RandomSpike()

    def sample() -> dict[str, Any]:
        low, high = random.num_spikes_range
        positions, intensity = random.get_params((int(low), int(high)), random.intensity_range)
        return {"spikes_positions": positions, "intensity": intensity}

    def build(p: Mapping[str, Any]) -> ImageTransform:
        positions = np.asarray(p["spikes_positions"], np.float32).reshape(-1, 3)
        return tio.Spike(spikes_positions=positions, intensity=float(p["intensity"]))

    return random, sample, build


# set name → (corruption type, the paper's TorchIO call, its sampler and deterministic builder)
_SETS = {
    "RandBias": ("bias", "RandomBiasField()", _bias),
    "RandGhosting": ("ghosting", "RandomGhosting()", _ghosting),
    "RandMotion": ("motion", "RandomMotion(degrees=30, translation=10)", _motion),
    "RandSpike": ("spike", "RandomSpike()", _spike),
}
ACDC_C_SETS: tuple[str, ...] = tuple(_SETS)
ES_SUFFIX = "-ES"  # the paper-exact sets: RandBias-ES, ...
ACDC_C_ES_SETS: tuple[str, ...] = tuple(f"{name}{ES_SUFFIX}" for name in _SETS)


def _distribution(random: tio.Transform) -> dict[str, Any]:
    """The random transform's configuration, recorded in every parameter file it drew."""
    names = ("coefficients_range", "order", "num_ghosts_range", "axes", "intensity_range", "restore", "degrees_range",
             "translation_range", "num_transforms", "image_interpolation", "num_spikes_range")
    config = {n: getattr(random, n) for n in names if hasattr(random, n)}
    return {"torchio": type(random).__name__, "grid": "identity affine (bare tensor)", **config}


def acdc_c_recipes() -> tuple[Recipe, ...]:
    recipes = []
    for name, (corruption, _, make) in _SETS.items():
        random, sample, build = make()
        recipes.append(Recipe(
            name=name, family="acdc-c", corruption=corruption, severity=0, copies=COPIES, stream=name,
            distribution=_distribution(random), draw=lambda seed, sample=sample: _seeded(seed, sample),
            transform=build, physical_grid=False,
        ))
    return tuple(recipes)


def acdc_c_es_recipes() -> tuple[Recipe, ...]:
    """ACDC-C as the public script generated it: frame ES only, 3 copies (60 volumes per set on ACDC's 20).

    Same seed stream as the both-frames set of the same corruption, so every ES copy here is
    the ES copy there, parameter for parameter: the two families differ only by the ED cases.
    """
    return tuple(replace(r, name=f"{r.name}{ES_SUFFIX}", family="acdc-c-es", frames=("ES",)) for r in acdc_c_recipes())


def acdc_c_description() -> list[tuple[str, str, str]]:
    """(set, corruption, TorchIO call) rows for listings."""
    return [(name, corruption, call) for name, (corruption, call, _) in _SETS.items()]
