"""Artefact test sets of a suite: lazy cases whose parameters are frozen in a cache on first use."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Sequence

from robench.benchmark.suites.base import Case, CaseRef, TestSet
from robench.corruptions.acdc_c import acdc_c_recipes
from robench.corruptions.frozen import Header, derive_seed, frozen_parameters, source_sha256
from robench.corruptions.graded import graded_recipes
from robench.corruptions.pipeline import corrupt_case
from robench.corruptions.recipe import FAMILIES, Recipe
from robench.errors import ConfigError
from robench.home import robench_home


def default_cache_dir() -> Path:
    """`$ROBENCH_HOME/corruptions`, with ROBENCH_HOME defaulting to ~/.cache/robench (as the synthetic suite)."""
    return robench_home() / "corruptions"


def recipes(families: Sequence[str]) -> tuple[Recipe, ...]:
    if isinstance(families, str):
        raise ConfigError(f"families must be a sequence of names such as ('acdc-c',), got the string {families!r}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ConfigError(f"unknown corruption families {unknown}; valid families: {', '.join(FAMILIES)}")
    out: tuple[Recipe, ...] = ()
    if "acdc-c" in families:
        out += acdc_c_recipes()
    if "graded" in families:
        out += graded_recipes()
    return out


def safe_name(name: str) -> str:
    """A test-set or case name as a file name (M&Ms-A → M_Ms-A)."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", name)


def artefact_test_sets(
    intra: TestSet, *, seed: int = 0, families: Sequence[str] = ("acdc-c",), cache_dir: Path | None = None
) -> tuple[TestSet, ...]:
    """The artefact sets of one clean test set: ACDC-C (4 sets × 3 copies), graded (9 types × 5 severities).

    Nothing is read here. A case's parameters live in
    `<cache_dir>/<intra name>/seed-<seed>/<set>/<case>.json`: the first load draws and writes
    them, every later load replays them after checking the source volume's hash.
    """
    if intra.kind == "artefact":
        raise ConfigError(f"test set {intra.name!r} is already an artefact set; corrupt its clean source instead")
    root = Path(cache_dir if cache_dir is not None else default_cache_dir()) / safe_name(intra.name) / f"seed-{seed}"
    sets = []
    for recipe in recipes(families):
        refs = []
        for ref in intra.cases:
            for copy in range(1, recipe.copies + 1):
                case_id = f"{ref.case_id}_copy{copy}" if recipe.copies > 1 else ref.case_id
                header = Header(
                    recipe.name, recipe.family, recipe.corruption, recipe.severity, copy, ref.case_id,
                    derive_seed(seed, recipe.stream, ref.case_id, copy), recipe.distribution,
                )
                path = root / safe_name(recipe.name) / f"{safe_name(case_id)}.json"
                meta = {
                    **ref.meta, "corruption": recipe.corruption, "severity": recipe.severity, "copy": copy,
                    "family": recipe.family, "source_case": ref.case_id,
                }
                refs.append(CaseRef(case_id, functools.partial(load_artefact, ref, recipe, header, path, case_id), meta))
        meta = {"corruption": recipe.corruption, "severity": recipe.severity, "family": recipe.family,
                "source": intra.name, "corruption_seed": seed, "copies": recipe.copies}
        sets.append(TestSet(recipe.name, "artefact", tuple(refs), meta))
    return tuple(sets)


def load_artefact(source: CaseRef, recipe: Recipe, header: Header, path: Path | None, case_id: str) -> Case:
    """Read the source, replay (or draw and freeze) its parameters, corrupt it on the paper grid."""
    case = source.load()
    record = frozen_parameters(path, header, source_sha256(case), recipe.draw)
    return corrupt_case(case, recipe, record, case_id=case_id, copy=header.copy)
