"""Collect benchmark modules named ``bench_*.py`` (pytest's default only collects ``test_*.py``)."""

import pytest


def pytest_collect_file(file_path, parent):
    # Files given explicitly on the command line are already collected by pytest itself.
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config):
    # pytest-benchmark does not create the folder of --benchmark-json (`make bench` writes
    # benchmarks/results/latest.json, which git does not track).
    path = config.getoption("benchmark_json", default=None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
