"""Generation time of the default-size cardiac-synth suite: 35 site-A subjects and 20 per
cross site, with the default two worker processes (the target is well under a minute on
2 CPU cores)."""

from __future__ import annotations

from robench.benchmark.suites.synth import generate_cardiac_synth


def test_generate_default_size(benchmark, tmp_path):
    benchmark.group = "suite generation"
    benchmark.extra_info["subjects"] = 35 + 3 * 20
    benchmark.pedantic(generate_cardiac_synth, args=(tmp_path / "suite",), rounds=1, iterations=1)
