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


@pytest.fixture(scope="session", autouse=True)
def robench_home():
    """Generated suites are cached in the repository's ignored .robench-cache, reused across test runs."""
    CACHE.mkdir(exist_ok=True)
    os.environ["ROBENCH_HOME"] = str(CACHE)
    return CACHE
