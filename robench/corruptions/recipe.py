"""What every artefact test set is: a seeded draw of parameters and a deterministic transform of them.

This is TorchIO's random → deterministic split made explicit, so a corrupted case is fully
described by a small JSON record and can be replayed bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import torchio as tio

Family = Literal["acdc-c", "graded"]
FAMILIES: tuple[Family, ...] = ("acdc-c", "graded")
ImageTransform = Callable[[tio.ScalarImage], tio.ScalarImage]


@dataclass(frozen=True)
class Recipe:
    """One artefact test set.

    `draw(seed)` returns JSON-able parameters; `transform(parameters)` returns the
    deterministic transform of a (1, Z, 192, 192) slice stack. `stream` names the seed
    stream: the set name for ACDC-C (independent copies per set), the corruption name for
    graded sets (one per-case draw shared by all five severities, so severity changes only
    the magnitude). `physical_grid` says whether the TorchIO image carries the paper grid's
    spacing (graded: parameters in mm) or the identity affine of a bare tensor (ACDC-C, as
    the paper called TorchIO).
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
