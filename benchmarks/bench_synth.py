"""Generation time of the default-size cardiac-synth suite (35 site-A subjects, 20 per cross site)."""

from __future__ import annotations

from robench.benchmark.suites.synthetic import generate_cardiac_synth


def test_generate_default_size(benchmark, tmp_path):
    counter = iter(range(1000))
    benchmark.group = "suite generation"
    benchmark.pedantic(lambda: generate_cardiac_synth(tmp_path / f"run{next(counter)}"), rounds=1, iterations=1)
