"""CI regression of Dice numbers (golden files in tests/regression/).

- cardiac-synth, smoke budget: training and evaluation are deterministic on a given machine,
  so per-test-set Dice must match the committed numbers within TOLERANCE (a change of code
  that moves them is a change of results and must update the golden file on purpose:
  `ROBENCH_UPDATE_GOLDEN=1 make test`).
- real ACDC cval 0 (skipped without ../shared/data): a short training must stay above a
  committed Dice floor on the 20 test subjects (40 volumes).

Both pin torch to one intra-op thread: float reductions split over threads sum in another
order, and after a few updates near chance that moves Dice by more than any tolerance, so
the golden numbers would otherwise depend on the machine's core count and OMP_NUM_THREADS.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from robench.benchmark.config import BUDGETS, Budget, PAPER_SPACING_MM
from robench.benchmark.runner import RunRequest, execute
from robench.benchmark.suites import SuiteOptions
from robench.benchmark.summary import summarise_test_sets
from tests.conftest import ACDC_ROOT, needs_acdc

GOLDEN = Path(__file__).parent / "regression"
TOLERANCE = 0.002  # absolute Dice; covers float differences between CPUs, not behaviour changes
UPDATE = os.environ.get("ROBENCH_UPDATE_GOLDEN") == "1"

# A CI-sized budget for the real-data check: the quick resolution, 150 updates (about a minute on 2 cores).
ACDC_CI_BUDGET = Budget(
    "ci-acdc", PAPER_SPACING_MM * 2, 112, 96, 10, None, 150, 50, 50, 10.0, "CI check on real ACDC: 150 quick updates"
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _dice_by_test_set(records) -> dict[str, float]:
    summary = summarise_test_sets(records[records["primary"]])
    return {row.test_set: round(float(row.dice), 5) for row in summary.itertuples()}


def _golden(name: str, measured: dict) -> dict:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path} missing; run with ROBENCH_UPDATE_GOLDEN=1 to create it. Measured: {measured}")
        path.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
    return json.loads(path.read_text())


@pytest.mark.slow
def test_cardiac_synth_smoke_dice_matches_golden(tmp_path):
    result = execute(
        RunRequest(suite="cardiac-synth", method="standard", budget="smoke", out=tmp_path, progress=False),
        log=lambda m: None,
    )
    measured = _dice_by_test_set(result.records)
    assert set(measured) == {"SiteA", "SiteB", "SiteC", "SiteD"}
    expected = _golden("cardiac_synth_standard_smoke.json", measured)
    for test_set, dice in expected.items():
        assert measured[test_set] == pytest.approx(dice, abs=TOLERANCE), (test_set, measured)


@pytest.mark.slow
@needs_acdc
def test_real_acdc_short_training_stays_above_the_floor(tmp_path, monkeypatch):
    monkeypatch.setitem(BUDGETS, ACDC_CI_BUDGET.name, ACDC_CI_BUDGET)
    result = execute(
        RunRequest(
            suite="cardiac", method="standard", budget=ACDC_CI_BUDGET.name, out=tmp_path,
            options=SuiteOptions(data_root=ACDC_ROOT, cval=0), progress=False,
        ),
        log=lambda m: None,
    )
    records = result.records[result.records["primary"]]
    assert records["case_id"].nunique() == 40
    measured = _dice_by_test_set(result.records)
    floor = _golden("acdc_cval0_ci_floor.json", {"ACDC": round(measured["ACDC"] - 0.05, 2)})
    assert measured["ACDC"] >= floor["ACDC"], measured
