"""CI regression of Dice numbers, in the two parts a single golden test used to mix.

(a) Determinism of the code path — exact numbers. A smoke run near chance amplifies any float
    difference, so exact numbers only hold on a numeric path that does not depend on the CPU:
    `robench --pinned-numerics` (robench/numerics.py, docs/numerics.md). The synthetic data are
    generated under the same pin (NumPy's dispatched kernels change 30-odd stored voxels per
    cine otherwise). The run is repeated as the host is and as a host with AVX2 only looks to
    each library's dispatcher; both must give the committed numbers to 1e-6.
(b) Quality — Dice far from chance, within the tolerance a baseline derives from the spread
    over seeds, checked with `robench regress`: the quick budget on real ACDC cval 0 in
    test_regression_acdc.py (tests/regression/acdc_cval0_quick.json), the `ci` budget on cardiac-synth in
    `make regress` (.ci/run).

Golden numbers move only on purpose: `ROBENCH_UPDATE_GOLDEN=1 make test`; a quality baseline
with `robench regress RUNS --baseline FILE --update --tolerance-from-seeds 3`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from robench.numerics import AVX2_HOST_ENV, pinned_environment
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "regression"
UPDATE = os.environ.get("ROBENCH_UPDATE_GOLDEN") == "1"
HOSTS = {"host": {}, "avx2-host": dict(AVX2_HOST_ENV)}


def _golden(name: str, measured: dict) -> dict:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
    if not path.exists():
        pytest.fail(f"{path} missing; run with ROBENCH_UPDATE_GOLDEN=1 to create it. Measured: {measured}")
    return json.loads(path.read_text())


def _exact_numbers(out: Path) -> dict:
    [folder] = [p for p in out.iterdir() if (p / "done.json").exists()]
    records = pd.read_parquet(folder / "records.parquet")
    records = records[records["primary"]]
    per_case = records.groupby(["test_set", "case_id"])["dice"].mean()
    done = json.loads((folder / "done.json").read_text())
    numerics = json.loads((folder / "environment.json").read_text())["numerics"]
    assert numerics["pinned"] and numerics["cpu_capability"] == "DEFAULT" and not numerics["mkldnn"], numerics
    return {
        "dice": {name: round(float(v), 6) for name, v in per_case.groupby("test_set").mean().items()},
        "best_val_miou": round(float(done["best_val_miou"]), 6),
        "best_iteration": int(done["best_iteration"]),
    }


@pytest.fixture(scope="module")
def pinned_home(tmp_path_factory) -> Path:
    """cardiac-synth generated under the pin, once for both hosts."""
    home = tmp_path_factory.mktemp("pinned-home")
    code = "from robench.benchmark.suites.synth import ensure_cardiac_synth; ensure_cardiac_synth()"
    subprocess.run([sys.executable, "-c", code], env={**pinned_environment(), "ROBENCH_HOME": str(home)},
                   cwd=REPO, check=True, timeout=1200)
    return home


@pytest.mark.slow
def test_pinned_smoke_numbers_hold_under_two_instruction_sets(pinned_home, tmp_path):
    """Both hosts run at once (one thread each); each must reproduce the golden numbers exactly."""
    processes = {}
    for host, overrides in HOSTS.items():
        command = [sys.executable, "-m", "robench", "--pinned-numerics", "run", "--suite", "cardiac-synth",
                   "--method", "standard", "--budget", "smoke", "--corruptions", "none", "--out", str(tmp_path / host)]
        env = {**os.environ, **overrides, "ROBENCH_HOME": str(pinned_home)}
        processes[host] = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    measured = {}
    for host, process in processes.items():
        output, _ = process.communicate(timeout=1800)
        assert process.returncode == 0, output[-3000:]
        measured[host] = _exact_numbers(tmp_path / host)
    expected = _golden("cardiac_synth_standard_smoke_pinned.json", measured["host"])
    for host, numbers in measured.items():
        assert numbers["best_iteration"] == expected["best_iteration"], (host, numbers)
        assert numbers["best_val_miou"] == pytest.approx(expected["best_val_miou"], abs=1e-6), (host, numbers)
        assert set(numbers["dice"]) == set(expected["dice"]) == {"SiteA", "SiteB", "SiteC", "SiteD"}
        for test_set, dice in expected["dice"].items():
            assert numbers["dice"][test_set] == pytest.approx(dice, abs=1e-6), (host, test_set, numbers)
