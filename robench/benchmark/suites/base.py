"""The suite data model: cases, test sets, and the suite registry.

A case is one labelled volume (one subject, one frame) on its original grid. Cases are
loaded lazily through `CaseRef` so a suite with hundreds of volumes costs nothing until a
test set is evaluated.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Protocol, Sequence

import numpy as np

from robench.errors import ConfigError, DataError

if TYPE_CHECKING:
    from robench.benchmark.config import Geometry

TestSetKind = Literal["intra", "cross-site", "artefact"]


@dataclass(frozen=True)
class Case:
    """One volume. `image` and `label` are (Z, Y, X); `spacing` is (z, y, x) in mm.

    `affine` is the 4x4 voxel-to-world matrix of the source file in its own axis order
    (X, Y, Z) when the source had one, so predictions can be written back onto it.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    meta: Mapping[str, object] = field(default_factory=dict)
    affine: np.ndarray | None = None


@dataclass(frozen=True)
class CaseRef:
    """A case that has not been read yet: its id, metadata known without reading, and a loader."""

    case_id: str
    loader: Callable[[], Case]
    meta: Mapping[str, object] = field(default_factory=dict)

    def load(self) -> Case:
        return self.loader()


@dataclass(frozen=True)
class TestSet:
    name: str
    kind: TestSetKind
    cases: tuple[CaseRef, ...]
    meta: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class SuiteData:
    """What a run needs from a suite: training, validation and named test sets."""

    name: str
    train: tuple[CaseRef, ...]
    val: tuple[CaseRef, ...]
    test_sets: tuple[TestSet, ...]
    classes: Mapping[str, int]
    fingerprint: str
    notes: tuple[str, ...] = ()
    geometry: "Geometry | None" = None  # the grid at the paper budget; None: the cardiac paper's
    splits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # role → case ids, written into the run's config
    channels: tuple[str, ...] = ("image",)  # input channel names; the network gets one input channel per name
    training_slices: Literal["labelled", "all"] = "labelled"  # all: slices without foreground too (rare classes)
    oversample_foreground: float = 0.0  # share of each batch drawn from slices holding the rarest class


@dataclass(frozen=True)
class SuiteOptions:
    """Everything a suite may need to locate and split its data."""

    data_root: Path | None = None
    cval: int = 0
    cache_dir: Path | None = None
    extra_roots: Mapping[str, Path] = field(default_factory=dict)
    # artefact families added to the intra test set (acdc-c, acdc-c-es, graded); none unless asked for, as
    # they multiply evaluation time (the CLI's default is acdc-c, the paper's table)
    corruptions: tuple[str, ...] = ()
    corruption_seed: int = 0  # seed of the frozen artefact copies (every method sees the same images)
    train_fraction: float = 1.0  # nested subset of the training pool (nested_subset)
    slice_axis: int | None = None  # file axis to slice along (nnU-Net layouts); None: the one of largest spacing


def seeded_split(ids: Sequence[str], seed: int, test: float, val: float) -> dict[str, tuple[str, ...]]:
    """Sorted ids → test / val / train pool, a permutation by `seed` (the run's cval): at least one case each."""
    ids = sorted(ids)
    if len(ids) < 3:
        raise DataError(f"{len(ids)} labelled case(s); a split into training, validation and test needs at least 3")
    order = [ids[i] for i in np.random.default_rng(np.random.SeedSequence([SPLIT_STREAM, seed])).permutation(len(ids))]
    n_test = max(1, round(test * len(ids)))
    n_val = max(1, round(val * len(ids)))
    if n_test + n_val >= len(ids):
        n_test, n_val = 1, 1
    return {"test": tuple(sorted(order[:n_test])), "val": tuple(sorted(order[n_test : n_test + n_val])),
            "train": tuple(sorted(order[n_test + n_val :]))}


def nested_subset(pool: Sequence[str], fraction: float) -> tuple[str, ...]:
    """The first ⌈fraction·n⌉ (at least one) of a fixed permutation of the pool.

    The permutation does not depend on the fraction, so the 5 % subjects are inside the 10 %
    ones, and so on; it is seeded by the pool itself, so a split's subsets are reproducible.
    """
    check_fraction(fraction)
    pool = sorted(pool)
    seed = [int.from_bytes(hashlib.sha256("\0".join(pool).encode()).digest()[:8], "little")]
    order = [pool[i] for i in np.random.default_rng(np.random.SeedSequence([FRACTION_STREAM, *seed])).permutation(len(pool))]
    return tuple(sorted(order[: max(1, math.ceil(fraction * len(pool) - 1e-9))]))


def check_fraction(fraction: float) -> None:
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ConfigError(f"--train-fraction must be in (0, 1], got {fraction!r}")


SPLIT_STREAM, FRACTION_STREAM = 1301, 1302  # SeedSequence words that keep split and subset draws apart


CORRUPTION_FAMILIES = ("acdc-c", "acdc-c-es", "graded")
ALL_FAMILIES = ("acdc-c", "graded")  # `all`: acdc-c-es is a subset of acdc-c's cases, and only cine suites have frames


def parse_corruption_families(text: str) -> tuple[str, ...]:
    """`acdc-c`, `acdc-c-es`, `graded`, `all`, `none` or a comma list → the artefact families to evaluate."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return ALL_FAMILIES
    if items in ([], ["none"]):
        return ()
    unknown = [t for t in items if t not in CORRUPTION_FAMILIES]
    if unknown:
        raise ConfigError(f"unknown corruption family {unknown}; use {', '.join(CORRUPTION_FAMILIES)}, all or none")
    return tuple(f for f in CORRUPTION_FAMILIES if f in items)


class Suite(Protocol):
    name: str
    description: str
    source: str

    def build(self, options: SuiteOptions) -> SuiteData: ...


SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    if suite.name in SUITES:
        raise ValueError(f"suite {suite.name!r} registered twice")
    SUITES[suite.name] = suite
    return suite


def get_suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise ConfigError(f"unknown suite {name!r}; registered suites: {', '.join(sorted(SUITES))}") from None


SPACING_RANGE_MM = (1e-3, 100.0)  # beyond it a header is wrong (1e6 mm would resample to terabytes)


def check_case(
    case: Case, source: str, n_classes: int, *, label_source: str | None = None, spacing_source: str | None = None,
) -> Case:
    """Validate a freshly read case; every problem names the file at fault and what to do.

    `label_source` / `spacing_source` name the label file and the file the spacing came from
    when they are not the image file (ACDC's `_gt` files, the HDF5 layout's `info.csv`).
    """
    label_source = label_source or source
    spacing_source = spacing_source or source
    if case.image.ndim != 3:
        raise DataError(f"{source}: image has {case.image.ndim} dimensions, expected 3 (slices, rows, columns)")
    if case.image.size == 0:
        raise DataError(f"{source}: image is empty (shape {case.image.shape}); fix or remove this file")
    if not np.all(np.isfinite(case.image)):
        raise DataError(f"{source}: image contains NaN or infinite values; fix or remove this file")
    if case.image.min() == case.image.max():
        raise DataError(
            f"{source}: image is constant (every voxel {float(case.image.flat[0]):g}); the file is blank or damaged — fix or remove it"
        )
    if len(case.spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in case.spacing):
        raise DataError(f"{spacing_source}: spacing {case.spacing} of {case.case_id} is missing or not positive; the file needs a valid voxel size")
    low, high = SPACING_RANGE_MM
    if not all(low <= s <= high for s in case.spacing):
        raise DataError(
            f"{spacing_source}: spacing {tuple(float(s) for s in case.spacing)} mm of {case.case_id} is outside "
            f"{low:g}–{high:g} mm; the voxel size is wrong (units in m or µm?) — fix it"
        )
    if case.label is not None:
        if case.label.shape != case.image.shape:
            raise DataError(
                f"{label_source}: label shape {case.label.shape} does not match image shape {case.image.shape}"
            )
        values = np.unique(case.label)
        bad = values[(values < 0) | (values >= n_classes)]
        if bad.size:
            raise DataError(
                f"{label_source}: unexpected label values {bad.tolist()}; expected 0..{n_classes - 1}"
            )
    return case
