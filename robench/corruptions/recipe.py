"""What every artefact test set is: a seeded draw of parameters and a deterministic transform of them.

This is TorchIO's random → deterministic split made explicit, so a corrupted case is fully
described by a small JSON record and can be replayed bit for bit.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torchio as tio

Family = Literal["acdc-c", "acdc-c-es", "graded"]
FAMILIES: tuple[Family, ...] = ("acdc-c", "acdc-c-es", "graded")
ImageTransform = Callable[[tio.ScalarImage], tio.ScalarImage]

# TorchIO's samplers draw from torch's global generator; a draw seeds it (in a fork) under this
# lock, so evaluation workers drawing parameters side by side cannot shift each other's streams.
TORCH_GLOBAL_RNG = threading.Lock()


def replay(transform: ImageTransform, image: tio.ScalarImage) -> tio.ScalarImage:
    """`transform(image)` for a deterministic transform, without touching torch's global generator.

    TorchIO's `Transform.__call__` draws `torch.rand(1)` against its probability `p` before every
    transform, deterministic ones included; workers replaying copies side by side would move the
    global stream under a parameter draw. This is that call at p = 1 for one image: the transform
    on a copy of it, NumPy errors raised. robench's own image functions replay the TorchIO
    transforms they use the same way.
    """
    if not isinstance(transform, tio.Transform):
        return transform(image)
    if transform.probability != 1:
        raise ValueError(f"{type(transform).__name__} with p={transform.probability} is not deterministic")
    subject = tio.Subject(image=copy.deepcopy(image))
    with np.errstate(all="raise", under="ignore"):
        return transform.apply_transform(subject)["image"]


@dataclass(frozen=True)
class Recipe:
    """One artefact test set.

    `draw(seed)` returns JSON-able parameters; `transform(parameters)` returns the
    deterministic transform of a (1, Z, 192, 192) slice stack. `stream` names the seed
    stream: the set name for ACDC-C (independent copies per set), the corruption name for
    graded sets (one per-case draw shared by all five severities, so severity changes only
    the magnitude). `physical_grid` says whether the TorchIO image carries the paper grid's
    spacing (graded: parameters in mm) or the identity affine of a bare tensor (ACDC-C, as
    the paper called TorchIO). `frames` keeps only the source cases of those cardiac frames
    (`acdc-c-es`: ES, as the public generation script); None keeps every case.
    """

    name: str
    family: Family
    corruption: str
    severity: int
    copies: int
    stream: str
    distribution: Mapping[str, Any]
    draw: Callable[[int], dict[str, Any]]
    transform: Callable[[Mapping[str, Any]], ImageTransform]
    physical_grid: bool
    frames: tuple[str, ...] | None = None
