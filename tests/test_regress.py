"""`robench regress`: an unchanged run passes, an injected Dice drop of 0.05 fails, `--update` rewrites on purpose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from robench.benchmark.runner import RunRequest, execute
from robench.benchmark.suites import SuiteOptions
from robench.cli import app
from robench.leaderboards.regress import Comparison, compare, tolerance_from_seeds, tolerance_of

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tiny_acdc, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("regress-runs")
    execute(RunRequest(suite="cardiac", method="standard", budget="smoke", out=out,
                       options=SuiteOptions(data_root=tiny_acdc, cval=0), progress=False), log=lambda m: None)
    return out


@pytest.fixture
def baseline(runs, tmp_path) -> Path:
    path = tmp_path / "baseline.json"
    result = runner.invoke(app, ["regress", str(runs), "--baseline", str(path), "--update", "--tolerance", "0.02"])
    assert result.exit_code == 0, result.output
    return path


def _with_dice_drop(runs: Path, target: Path, drop: float) -> Path:
    shutil.copytree(runs, target)
    [records_path] = target.glob("*/records.parquet")
    records = pd.read_parquet(records_path)
    records["dice"] = records["dice"] - drop
    records.to_parquet(records_path, index=False)
    return target


def test_update_writes_the_leaderboards_own_json_with_the_tolerance(baseline):
    document = json.loads(baseline.read_text())
    assert document["regression"]["tolerance"] == 0.02
    [table] = [t for t in document["tables"] if not t["view"]]
    assert table["metric"] == "dice" and {"ACDC", "Avg", "LV", "MYO", "RV"} <= set(table["rows"][0]["cells"])


def test_an_unchanged_run_passes(runs, baseline):
    result = runner.invoke(app, ["regress", str(runs), "--baseline", str(baseline)])
    assert result.exit_code == 0, result.output
    assert "no regression" in result.output and "worse" not in result.output


def test_an_injected_drop_of_005_fails_per_test_set_and_class(runs, baseline, tmp_path):
    dropped = _with_dice_drop(runs, tmp_path / "dropped", 0.05)
    result = runner.invoke(app, ["regress", str(dropped), "--baseline", str(baseline)])
    assert result.exit_code == 1, result.output
    assert "regression" in result.output and "-0.0500" in result.output
    worse_lines = [line for line in result.output.splitlines() if "worse" in line]
    for column in ("ACDC", "Avg", "LV", "MYO", "RV"):
        assert any(f" {column} " in line for line in worse_lines), (column, result.output)


def test_a_drop_within_the_tolerance_passes_and_a_wider_tolerance_accepts_the_drop(runs, baseline, tmp_path):
    small = _with_dice_drop(runs, tmp_path / "small", 0.01)
    assert runner.invoke(app, ["regress", str(small), "--baseline", str(baseline)]).exit_code == 0
    large = _with_dice_drop(runs, tmp_path / "large", 0.05)
    assert runner.invoke(app, ["regress", str(large), "--baseline", str(baseline), "--tolerance", "0.06"]).exit_code == 0


def test_a_leaderboard_json_is_accepted_as_the_measured_side(runs, baseline, tmp_path):
    board = tmp_path / "board.json"
    board.write_text(runner.invoke(app, ["leaderboard", str(runs), "--format", "json"]).output)
    assert runner.invoke(app, ["regress", str(board), "--baseline", str(baseline)]).exit_code == 0


def test_a_missing_test_set_fails_and_lower_is_better_metrics_flip_the_direction():
    def doc(cells, higher=True):
        columns = [{"name": n, "role": "test_set"} for n in cells]
        return {"tables": [{"suite": "s", "budget": "b", "metric": "hd95" if not higher else "dice", "view": "",
                            "higher_is_better": higher, "columns": columns,
                            "rows": [{"label": "standard", "cells": {n: {"mean": v} for n, v in cells.items()}}]}]}

    [kept, lost] = compare(doc({"A": 0.8, "B": 0.7}), doc({"A": 0.8}), 0.02)
    assert (kept.verdict, lost.verdict) == ("ok", "missing") and lost.failed
    [hd] = compare(doc({"A": 5.0}, higher=False), doc({"A": 6.0}, higher=False), 0.5, metric="hd95")
    assert hd.verdict == "worse"
    assert Comparison("t", "r", "A", "test_set", 0.8, 0.9, 0.02, True).verdict == "better"


def test_tolerances_from_seeds_follow_each_cells_spread():
    def table(a, b):
        return {"suite": "s", "budget": "b", "metric": "dice", "view": "", "higher_is_better": True,
                "columns": [{"name": "A", "role": "test_set"}, {"name": "B", "role": "test_set"},
                            {"name": "cost", "role": "cost"}],
                "rows": [{"label": "standard", "cells": {"A": a, "B": b, "cost": {"mean": 9.0, "std": 5.0, "n_runs": 4}}}]}

    seeds = {"tables": [table({"mean": 0.8, "std": 0.01, "n_runs": 4}, {"mean": 0.7, "std": 0.05, "n_runs": 4})]}
    regression = tolerance_from_seeds(seeds, 3)
    tolerance = tolerance_of({**seeds, "regression": regression}, None)
    later = {"tables": [table({"mean": 0.76}, {"mean": 0.62})]}  # A drops 0.04 (> 3·0.01·√1.25), B 0.08 (< 3·0.05·√1.25)
    by_column = {c.column: c for c in compare(seeds, later, tolerance)}
    assert by_column["A"].tolerance == pytest.approx(3 * 0.01 * 1.25 ** 0.5)
    assert by_column["A"].verdict == "worse" and by_column["B"].verdict == "ok" and "cost" not in by_column
    assert tolerance_of({**seeds, "regression": regression}, 0.1).for_cell({"std": 0.01, "n_runs": 4}) == 0.1
