"""Leaderboard: statistical units, graded corruptions (Corruption, mCE), later evaluations of finished runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from robench.errors import DataError
from robench.leaderboards import collect_records, leaderboard, render, save_mce_references
from robench.leaderboards import corruption
from tests.test_leaderboard import make_records, row_of, write_run

CORRUPTIONS = ("bias", "noise")


def graded_records(run_id, method, seed, dice_of, n_cases=6):
    """Clean SiteA records plus graded sets `<type>@<s>` with Dice = dice_of(type, severity)."""
    sets = {"SiteA": "intra", **{f"{c}@{s}": "artefact" for c in CORRUPTIONS for s in range(1, 6)}}

    def score(test_set, case, cls, seed):
        if test_set == "SiteA":
            return 0.9
        c, s = test_set.split("@")
        return dice_of(c, int(s))

    records = make_records(run_id, method, seed, score, test_sets=sets, n_cases=n_cases)
    graded = records["test_set"] != "SiteA"
    parts = records.loc[graded, "test_set"].str.split("@", expand=True)
    records.loc[graded, "corruption"] = parts[0]
    records.loc[graded, "severity"] = parts[1].astype(int)
    return records


def linear(slope):
    return lambda c, s: 0.9 - slope * s


def test_graded_sets_leave_the_main_columns_and_get_their_own_table():
    records = pd.concat([graded_records("std-0", "standard", 0, linear(0.1)), graded_records("m-0", "m", 0, linear(0.05))])
    board = leaderboard(records, n_boot=0)
    main, graded = board.tables
    assert [c.name for c in main.columns if c.role == "test_set"] == ["SiteA"]
    assert main.rows[0].cells["Avg"].mean == pytest.approx(0.9)  # graded sets are not part of Avg
    std = row_of(main, "standard")
    assert std.cells["Corruption"].mean == pytest.approx(0.9 - 0.1 * 3)  # mean over severities 1..5
    assert [c.name for c in graded.columns if c.role == "test_set"] == list(CORRUPTIONS)
    assert graded.view and row_of(graded, "m").cells["bias"].mean == pytest.approx(0.9 - 0.05 * 3)


def test_mce_is_the_ratio_of_summed_errors_against_the_reference():
    records = pd.concat([
        graded_records("std-0", "standard", 0, linear(0.1)),
        graded_records("m-0", "m", 0, lambda c, s: 0.9 - (0.05 if c == "bias" else 0.1) * s),
    ])
    main = leaderboard(records, n_boot=0).tables[0]
    ref_errors = {s: 0.1 + 0.1 * s for s in range(1, 6)}  # 1 - (0.9 - 0.1 s)
    own = {"bias": [0.1 + 0.05 * s for s in range(1, 6)], "noise": [ref_errors[s] for s in range(1, 6)]}
    expected = np.mean([sum(own[c]) / sum(ref_errors.values()) for c in CORRUPTIONS])
    assert row_of(main, "m").cells["mCE"].mean == pytest.approx(expected)
    assert row_of(main, "standard").cells["mCE"].mean == pytest.approx(1.0)
    assert any("mCE reference" in note for note in main.notes)
    assert "The mCE reference" in render(leaderboard(records, n_boot=0), "markdown")
    assert "mCE" in render(leaderboard(records, n_boot=0), "markdown")


def test_shipped_reference_is_used_and_round_trips(tmp_path, monkeypatch):
    for seed in (0, 1):
        write_run(tmp_path / "runs", f"std{seed}", graded_records(f"std-{seed}", "standard", seed, linear(0.1)), done={})
    records, runs = collect_records(tmp_path / "runs")
    monkeypatch.setattr(corruption, "reference_directory", lambda: tmp_path / "ref")
    [path] = save_mce_references(records, runs, "standard")
    document = json.loads(path.read_text())
    assert document["errors"]["bias"]["3"] == pytest.approx(0.4) and sorted(document["run_ids"]) == ["std-0", "std-1"]
    # a method that is worse than the shipped reference, with the reference method absent from the table
    worse = graded_records("m-0", "m", 0, linear(0.12))
    main = leaderboard(worse, n_boot=0).tables[0]
    expected = sum(0.1 + 0.12 * s for s in range(1, 6)) / sum(0.1 + 0.1 * s for s in range(1, 6))
    assert main.rows[0].cells["mCE"].mean == pytest.approx(expected)
    assert any("shipped" in note for note in main.notes)


def test_shipped_reference_that_is_corrupt_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "cardiac-synth-quick.json").write_text("{not json")
    monkeypatch.setattr(corruption, "reference_directory", lambda: tmp_path)
    with pytest.raises(DataError, match="cardiac-synth-quick.json"):
        leaderboard(graded_records("m-0", "m", 0, linear(0.1)), n_boot=0)


def test_slices_of_one_patient_and_phase_are_one_unit():
    """Sunnybrook: three slices of one unit at 1.0 and one slice of another at 0.0 average to 0.5, not 0.75."""
    records = make_records("r", "standard", 0, lambda t, case, cls, seed: 1.0 if case < 3 else 0.0,
                           test_sets={"Sunnybrook": "cross-site"}, n_cases=4, classes=("LV",))
    records["unit"] = ["p1_ED"] * 3 + ["p2_ED"]
    cell = leaderboard(records, n_boot=0).tables[0].rows[0].cells["Sunnybrook"]
    assert cell.mean == pytest.approx(0.5) and cell.n_cases == 2


def test_collect_adds_later_evaluations_and_rejects_duplicates(tmp_path):
    records = make_records("r", "standard", 0, lambda *a: 0.8, test_sets={"SiteA": "intra"})
    folder = write_run(tmp_path, "run", records, done={})
    (folder / "evaluations").mkdir()
    extra = make_records("r", "standard", 0, lambda *a: 0.5, test_sets={"Other": "cross-site"})
    extra.to_parquet(folder / "evaluations" / "other.parquet")
    collected, _ = collect_records(tmp_path)
    assert set(collected["test_set"]) == {"SiteA", "Other"}
    records.to_parquet(folder / "evaluations" / "again.parquet")
    with pytest.raises(DataError, match="SiteA"):
        collect_records(tmp_path)


def test_the_shipped_reference_comes_from_whole_pool_runs_and_normalises_fraction_tables(tmp_path, monkeypatch):
    """Runs on a quarter of the pool never become the reference; their table is normalised by the whole-pool one."""
    quarter = graded_records("std-q", "standard", 0, linear(0.2)).assign(hparams=json.dumps({"train_fraction": 0.25}))
    write_run(tmp_path / "runs", "quarter", quarter, done={})
    write_run(tmp_path / "runs", "full", graded_records("std-f", "standard", 0, linear(0.1)), done={})
    records, runs = collect_records(tmp_path / "runs")
    monkeypatch.setattr(corruption, "reference_directory", lambda: tmp_path / "ref")
    [path] = save_mce_references(records, runs, "standard")
    assert json.loads(path.read_text())["run_ids"] == ["std-f"]
    quarter_table, full_table = [t for t in leaderboard(records, runs, n_boot=0).tables if not t.view]
    assert (quarter_table.condition, full_table.condition) == ("training fraction 0.25", "")
    expected = sum(0.1 + 0.2 * s for s in range(1, 6)) / sum(0.1 + 0.1 * s for s in range(1, 6))
    assert quarter_table.rows[0].cells["mCE"].mean == pytest.approx(expected)
    assert any("trained on the whole training pool" in note for note in quarter_table.notes)
    assert not any("whole training pool" in note for note in full_table.notes)
