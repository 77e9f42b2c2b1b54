"""Artefact test sets of a suite: lazy cases whose parameters are frozen in a cache on first use."""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

from robench.benchmark.config import CARDIAC_GEOMETRY, Geometry
from robench.benchmark.suites.base import Case, CaseRef, SuiteOptions, TestSet
from robench.corruptions.acdc_c import acdc_c_es_recipes, acdc_c_recipes
from robench.corruptions.frozen import Header, derive_seed, frozen_parameters, source_sha256
from robench.corruptions.graded import graded_recipes
from robench.corruptions.pipeline import corrupt_case, paper_grid
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
    if "acdc-c-es" in families:
        out += acdc_c_es_recipes()
    if "graded" in families:
        out += graded_recipes()
    return out


def safe_name(name: str) -> str:
    """A test-set or case name as a file name (M&Ms-A → M_Ms-A)."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", name)


def suite_artefact_sets(intra: TestSet, options: SuiteOptions, suite: str, fingerprint: str,
                        geometry: Geometry | None = None) -> tuple[TestSet, ...]:
    """The frozen artefact copies of a suite's intra test set, per `--corruptions`, on the suite's paper grid.

    The one place every suite gets its artefact sets from. Their parameter files are cached per
    suite and data fingerprint, so two data folders never share (and never trip over) each
    other's frozen parameters.
    """
    if not options.corruptions:
        return ()
    base = Path(options.cache_dir) / "corruptions" if options.cache_dir is not None else default_cache_dir()
    key = f"{suite}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"
    return artefact_test_sets(intra, seed=options.corruption_seed, families=options.corruptions, cache_dir=base / key,
                              geometry=geometry or CARDIAC_GEOMETRY)


def artefact_test_sets(
    intra: TestSet, *, seed: int = 0, families: Sequence[str] = ("acdc-c",), cache_dir: Path | None = None,
    geometry: Geometry = CARDIAC_GEOMETRY,
) -> tuple[TestSet, ...]:
    """The artefact sets of one clean test set: ACDC-C (4 sets × 3 copies; `acdc-c-es`: of the ES frames
    only), graded (9 types × 5 severities).

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
        for ref in _sources(intra, recipe):
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
                refs.append(CaseRef(case_id, functools.partial(load_artefact, ref, recipe, header, path, case_id, geometry), meta))
        meta = {"corruption": recipe.corruption, "severity": recipe.severity, "family": recipe.family,
                "source": intra.name, "corruption_seed": seed, "copies": recipe.copies,
                **({"frames": list(recipe.frames)} if recipe.frames is not None else {})}
        sets.append(TestSet(recipe.name, "artefact", tuple(refs), meta))
    return tuple(sets)


def _sources(intra: TestSet, recipe: Recipe) -> tuple[CaseRef, ...]:
    """The clean cases a recipe corrupts: all of them, or those of its cardiac frames."""
    if recipe.frames is None:
        return intra.cases
    if not any("frame" in ref.meta for ref in intra.cases):
        raise ConfigError(
            f"the {recipe.family} sets keep the {'/'.join(recipe.frames)} frames of cine cases, but test set "
            f"{intra.name!r} has no frames; use --corruptions acdc-c on this suite"
        )
    return tuple(ref for ref in intra.cases if ref.meta.get("frame") in recipe.frames)


def load_artefact(source: CaseRef, recipe: Recipe, header: Header, path: Path | None, case_id: str,
                  geometry: Geometry = CARDIAC_GEOMETRY) -> Case:
    """Read the source, replay (or draw and freeze) its parameters, corrupt it on the suite's paper grid."""
    case, digest, grid = _SOURCES.get(source, geometry)
    record = frozen_parameters(path, header, digest, recipe.draw)
    return corrupt_case(case, recipe, record, case_id=case_id, copy=header.copy, grid=grid, geometry=geometry)


class _SourceCache:
    """The last few source volumes with their hash and paper grid, shared by all their artefact copies.

    Why: ACDC-C makes 12 copies of each volume and the graded sets 45; reading, hashing and
    resampling the source once instead of per copy saves most of the non-TorchIO work.
    Evaluation visits the copies of one source one after another, so a few entries suffice;
    its worker threads share the cache, and a source is read by one of them while the others wait.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self._entries: OrderedDict[tuple[int, Geometry], tuple[CaseRef, tuple]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: CaseRef, geometry: Geometry = CARDIAC_GEOMETRY) -> tuple[Case, str, tuple]:
        with self._lock:
            return self._get(source, geometry)

    def _get(self, source: CaseRef, geometry: Geometry) -> tuple[Case, str, tuple]:
        key = (id(source), geometry)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is source:
            self._entries.move_to_end(key)
            return hit[1]
        case = source.load()
        value = (case, source_sha256(case), paper_grid(case, geometry))
        self._entries[key] = (source, value)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value


_SOURCES = _SourceCache()


def by_source(cases: Sequence[tuple[TestSet, CaseRef]]) -> list[tuple[TestSet, CaseRef]]:
    """(test set, case) pairs reordered so that the artefact copies of one source volume are adjacent
    (and so share its cached paper grid); clean cases keep their place before them."""
    clean = [(t, c) for t, c in cases if t.kind != "artefact"]
    artefacts = [(t, c) for t, c in cases if t.kind == "artefact"]
    sources = {}
    for t, c in artefacts:
        sources.setdefault((str(t.meta.get("source", "")), str(c.meta.get("source_case", c.case_id))), len(sources))
    artefacts.sort(key=lambda tc: sources[(str(tc[0].meta.get("source", "")), str(tc[1].meta.get("source_case", tc[1].case_id)))])
    return clean + artefacts


def first_sources(test_sets: Sequence[TestSet], n: int | None) -> tuple[TestSet, ...]:
    """Artefact sets cut to the copies of their first `n` source volumes (other sets untouched)."""
    if n is None:
        return tuple(test_sets)
    out = []
    for t in test_sets:
        if t.kind == "artefact":
            keep: list[str] = []
            for c in t.cases:
                source = str(c.meta.get("source_case", c.case_id))
                if source not in keep:
                    keep.append(source)
            kept = set(keep[:n])
            t = TestSet(t.name, t.kind, tuple(c for c in t.cases if str(c.meta.get("source_case", c.case_id)) in kept),
                        {**t.meta, "source_volumes": len(kept)})
        out.append(t)
    return tuple(out)
