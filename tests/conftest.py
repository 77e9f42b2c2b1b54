"""Shared fixtures: where the real data is, a persistent cache for generated data, tiny data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ACDC_ROOT = SHARED_DATA / "acdc"
CACHE = REPO / ".robench-cache"

needs_acdc = pytest.mark.skipif(
    not (ACDC_ROOT / "info.csv").exists(),
    reason=f"real ACDC data not found at {ACDC_ROOT} (licensed data is never copied into the repository)",
)


# Runs inside the test process keep one thread count (the adaptive choice would follow the load of
# whatever else runs, and two runs a test compares would then differ in their last bits).
# Under pytest-xdist (`make test` runs two workers) each worker takes one thread: two 2-thread
# processes on two cores run far slower than two 1-thread ones.
_threads = 1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, len(os.sched_getaffinity(0)))
os.environ.setdefault("OMP_NUM_THREADS", str(_threads))


@pytest.fixture(scope="session", autouse=True)
def robench_home():
    """Generated suites are cached in the repository's ignored .robench-cache, reused across test runs."""
    CACHE.mkdir(exist_ok=True)
    os.environ["ROBENCH_HOME"] = str(CACHE)
    return CACHE


@pytest.fixture(scope="session")
def tiny_acdc(tmp_path_factory):
    """Every subject of the cval-0 protocol as tiny volumes in the official NIfTI layout."""
    from robench.benchmark.suites.cardiac import ACDC_TEST, ACDC_TRAIN, ACDC_VAL
    from tests.fixtures import write_acdc_nifti

    subjects = sorted({*ACDC_TEST, *(f"patient{i:03d}" for i in ACDC_TRAIN[0] + ACDC_VAL[0])})
    return write_acdc_nifti(tmp_path_factory.mktemp("acdc"), subjects)
