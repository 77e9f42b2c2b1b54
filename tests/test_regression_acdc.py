"""Quality regression on real ACDC (part (b) of test_regression.py), in a file of its own: it is the
suite's longest test, and `make test` spreads test files over workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from robench.cli import app
from tests.conftest import ACDC_ROOT, needs_acdc

GOLDEN = Path(__file__).parent / "regression"


@pytest.mark.slow
@needs_acdc
def test_real_acdc_quick_budget_stays_within_the_seed_tolerance(tmp_path):
    """The quick budget on real ACDC cval 0 (seed 0, all cores) against the four-seed baseline, with `robench regress`.

    The `ci` budget's 300 updates leave ACDC near chance (Dice 0.25, MYO 0.10): too steep a
    region for a quality check, so real ACDC uses the quick budget's 1000 (Dice ~0.58)."""
    baseline = GOLDEN / "acdc_cval0_quick.json"
    runner = CliRunner()
    out = runner.invoke(app, ["run", "--suite", "cardiac", "--data-root", str(ACDC_ROOT), "--cval", "0",
                              "--method", "standard", "--seed", "0", "--budget", "quick", "--corruptions", "none",
                              "--precision", "fp32", "--out", str(tmp_path)])  # the baseline's precision
    assert out.exit_code == 0, out.output[-3000:]
    result = runner.invoke(app, ["regress", str(tmp_path), "--baseline", str(baseline)])
    assert result.exit_code == 0, result.output[-4000:]
    assert "no regression" in result.output

