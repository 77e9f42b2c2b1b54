"""Leaderboards from hand-made run folders whose right numbers are known by construction."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robench.benchmark.records import RECORD_COLUMNS
from robench.errors import ConfigError, DataError
from robench.leaderboards import collect_records, leaderboard, metric_table, render
from robench.leaderboards import stats

TEST_SETS = {"SiteA": "intra", "SiteB": "cross-site", "RandBias": "artefact", "RandSpike": "artefact"}
CLASSES = ("LV", "MYO", "RV")


def make_records(run_id, method, seed, score, *, suite="cardiac-synth", budget="quick", mode="ftn", primary=True,
                 test_sets=TEST_SETS, n_cases=8, classes=CLASSES, cval=0, hparams=None):
    """Records of one run; `score(test_set, case_index, class, seed)` gives Dice (NaN = both empty)."""
    rows = []
    for test_set, kind in test_sets.items():
        for case in range(n_cases):
            for cls in classes:
                dice = score(test_set, case, cls, seed)
                empty = bool(np.isnan(dice))
                rows.append({
                    "run_id": run_id, "method": method, "suite": suite, "budget": budget, "seed": seed, "cval": cval,
                    "hparams": json.dumps(hparams or {}), "test_set": test_set, "kind": kind, "site": "", "vendor": "",
                    "corruption": "", "severity": 0, "case_id": f"case{case:02d}", "subject": f"s{case}", "frame": "ED",
                    "mode": mode, "primary": primary, "class": cls, "dice": dice,
                    "hd95": np.nan if empty else 10 * (1 - dice), "assd": np.nan if empty else 2 * (1 - dice),
                    "sensitivity": dice, "precision": dice, "missed": False, "false_positive": False, "both_empty": empty,
                    "hd95_variant": "max_directed", "metric_version": "1", "spacing_source": "header",
                })
    return pd.DataFrame(rows, columns=list(RECORD_COLUMNS))


def write_run(root: Path, name: str, records: pd.DataFrame, *, done: dict | None = None, config: dict | None = None):
    folder = root / name
    folder.mkdir(parents=True)
    records.to_parquet(folder / "records.parquet")
    first = records.iloc[0]
    cfg = {"method": first["method"], "suite": first["suite"], "budget": first["budget"], "seed": int(first["seed"]),
           "cval": int(first["cval"]), "hparams": json.loads(first["hparams"])}
    (folder / "config.json").write_text(json.dumps(config or cfg))
    if done is not None:
        (folder / "done.json").write_text(json.dumps(done))
    return folder


BASE = {"SiteA": 0.8, "SiteB": 0.6, "RandBias": 0.5, "RandSpike": 0.4}


def shifted(offset):
    """Dice = test-set base + offset + 0.01 * seed, the same for every case and class."""
    return lambda test_set, case, cls, seed: BASE[test_set] + offset + 0.01 * seed


def noisy(offset, spread=0.02):
    """Per-case variation (so Wilcoxon ranks are distinct) on top of `shifted`."""
    return lambda test_set, case, cls, seed: BASE[test_set] + offset + 0.01 * seed + spread * np.sin(case + 1)


def three_seeds(root, method, score, **kwargs):
    for seed in range(3):
        write_run(root, f"{method}/{seed}", make_records(f"{method}-{seed}", method, seed, score, **kwargs), done={})


def only_table(board):
    assert len(board.tables) == 1
    return board.tables[0]


def row_of(table, label):
    return next(row for row in table.rows if row.label == label)


# --------------------------------------------------------------------------- collect


def test_collect_reads_finished_runs_and_counts_unfinished(tmp_path):
    three_seeds(tmp_path, "standard", shifted(0.0))
    write_run(tmp_path, "deep/nested/pending", make_records("p", "standard", 7, shifted(0.5)))  # no done.json
    records, runs = collect_records(tmp_path)
    assert sorted(runs["run_id"]) == ["standard-0", "standard-1", "standard-2"]
    assert set(records["run_id"]) == set(runs["run_id"])
    assert runs.attrs["n_unfinished"] == 1
    assert runs.attrs["unfinished"] == ["deep/nested/pending"]
    board = leaderboard(records, runs, n_boot=50)
    assert board.n_unfinished == 1
    assert "1 unfinished run(s) ignored" in render(board, "markdown")
    assert row_of(only_table(board), "standard").runs == 3


def test_collect_follows_symlinked_runs_once_and_survives_link_cycles(tmp_path):
    elsewhere, root = tmp_path / "elsewhere", tmp_path / "results"
    write_run(elsewhere, "standard-0", make_records("standard-0", "standard", 0, shifted(0.0)), done={})
    write_run(root, "standard-1", make_records("standard-1", "standard", 1, shifted(0.0)), done={})
    (root / "gathered").symlink_to(elsewhere, target_is_directory=True)
    (root / "again").symlink_to(elsewhere, target_is_directory=True)  # the same run reached twice
    (root / "standard-1" / "loop").symlink_to(root, target_is_directory=True)
    _, runs = collect_records(root)
    assert sorted(runs["run_id"]) == ["standard-0", "standard-1"]


def test_collect_reads_cost_numbers(tmp_path):
    for seed, seconds in enumerate([3600, 7200]):
        write_run(tmp_path, f"r{seed}", make_records(f"r{seed}", "standard", seed, shifted(0.0)),
                  done={"train_seconds": seconds, "peak_memory_mb": 1000 + seed, "infer_seconds_per_volume": 0.5, "device": "cpu"})
    records, runs = collect_records(tmp_path)
    assert runs.set_index("run_id").loc["r1", "train_seconds"] == 7200
    row = row_of(only_table(leaderboard(records, runs, n_boot=0)), "standard")
    assert row.cells["Train h"].mean == pytest.approx(1.5)
    assert row.cells["Peak MB"].mean == pytest.approx(1000.5)
    assert row.cells["Infer s/vol"].mean == pytest.approx(0.5)
    assert row.devices == ("cpu",)


def test_collect_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        collect_records(tmp_path / "missing")
    write_run(tmp_path, "pending", make_records("p", "standard", 0, shifted(0.0)))
    with pytest.raises(DataError, match="no finished run"):
        collect_records(tmp_path)
    broken = make_records("b", "standard", 0, shifted(0.0)).drop(columns=["dice", "kind"])
    folder = write_run(tmp_path, "broken", broken, done={}, config={"method": "standard", "suite": "cardiac-synth",
                       "budget": "quick", "seed": 0, "cval": 0, "hparams": {}})
    with pytest.raises(DataError, match=r"broken/records\.parquet.*\['kind', 'dice'\]"):
        collect_records(tmp_path)
    (folder / "records.parquet").unlink()
    make_records("b", "standard", 0, shifted(0.0)).to_parquet(folder / "records.parquet")
    (folder / "config.json").write_text(json.dumps({"method": "standard"}))
    with pytest.raises(DataError, match=r"broken/config\.json lacks the keys"):
        collect_records(tmp_path)


def test_leaderboard_rejects_records_without_required_columns():
    records = make_records("r", "standard", 0, shifted(0.0)).drop(columns=["primary"])
    with pytest.raises(DataError, match=r"\['primary'\]"):
        leaderboard(records)


# --------------------------------------------------------------------------- numbers


def test_cells_are_mean_and_std_over_runs(tmp_path):
    three_seeds(tmp_path, "standard", shifted(0.0))
    # 2000 resamples: a resample draws seed 0 (or 2) three times with probability 1/27, so ~74 of them do, well
    # beyond the 50 the 2.5 % tail needs — the interval reaches the lowest and highest seed whatever the draw
    table = only_table(leaderboard(*collect_records(tmp_path), n_boot=2000))
    row = row_of(table, "standard")
    for test_set, base in BASE.items():
        cell = row.cells[test_set]
        assert cell.mean == pytest.approx(base + 0.01)  # seeds add 0, 0.01, 0.02
        assert cell.std == pytest.approx(0.01)  # ddof=1
        assert (cell.n_runs, cell.n_cases) == (3, 8)
        assert cell.ci[0] == pytest.approx(base) and cell.ci[1] == pytest.approx(base + 0.02)
    assert row.cells["Avg"].mean == pytest.approx(np.mean(list(BASE.values())) + 0.01)
    assert row.cells["Avg"].std == pytest.approx(0.01)
    assert row.cells["Intra"].mean == pytest.approx(0.81)
    assert row.cells["Cross-site"].mean == pytest.approx(0.61)
    assert row.cells["Artefact"].mean == pytest.approx((0.5 + 0.4) / 2 + 0.01)
    assert row.cells["LV"].mean == pytest.approx(row.cells["Avg"].mean)


def test_column_order_and_avg_is_the_mean_of_test_set_columns(tmp_path):
    three_seeds(tmp_path, "standard", noisy(0.0, spread=0.1))
    table = only_table(leaderboard(*collect_records(tmp_path), n_boot=0))
    names = [c.name for c in table.columns]
    assert names == ["SiteA", "SiteB", "RandBias", "RandSpike", "Intra", "Cross-site", "Artefact", "Avg", "LV", "MYO", "RV"]
    row = row_of(table, "standard")
    assert row.cells["Avg"].mean == pytest.approx(np.mean([row.cells[t].mean for t in TEST_SETS]))


def test_case_score_skips_both_empty_classes_and_classes_average_separately():
    def score(test_set, case, cls, seed):
        return {"LV": 0.9, "MYO": 0.6, "RV": np.nan if case < 4 else 0.3}[cls]

    row = only_table(leaderboard(make_records("r", "standard", 0, score), n_boot=0)).rows[0]
    # cases 0-3: (0.9 + 0.6) / 2 = 0.75; cases 4-7: 0.6; test-set mean = 0.675 (not 0.6 as NaN-as-0 would give)
    assert row.cells["SiteA"].mean == pytest.approx(0.675)
    assert row.cells["LV"].mean == pytest.approx(0.9)
    assert row.cells["RV"].mean == pytest.approx(0.3)


def test_class_absent_from_a_test_set_averages_over_the_others():
    sets = {"SiteA": "intra", "Sunny": "cross-site"}

    def score(test_set, case, cls, seed):
        return np.nan if (test_set == "Sunny" and cls == "RV") else {"SiteA": 0.8, "Sunny": 0.6}[test_set]

    row = only_table(leaderboard(make_records("r", "standard", 0, score, test_sets=sets), n_boot=0)).rows[0]
    assert row.cells["RV"].mean == pytest.approx(0.8)
    assert row.cells["LV"].mean == pytest.approx(0.7)


def test_budgets_and_suites_get_separate_tables(tmp_path):
    write_run(tmp_path, "a", make_records("a", "standard", 0, shifted(0.0), budget="quick"), done={})
    write_run(tmp_path, "b", make_records("b", "standard", 0, shifted(0.1), budget="smoke"), done={})
    write_run(tmp_path, "c", make_records("c", "standard", 0, shifted(0.2), suite="cardiac"), done={})
    board = leaderboard(*collect_records(tmp_path), n_boot=0)
    keys = [(t.suite, t.budget) for t in board.tables]
    assert keys == [("cardiac", "quick"), ("cardiac-synth", "smoke"), ("cardiac-synth", "quick")]
    avgs = [t.rows[0].cells["Avg"].mean for t in board.tables]
    assert avgs == pytest.approx([0.775, 0.675, 0.575])
    assert all(t.rows[0].runs == 1 for t in board.tables)
    markdown = render(board, "markdown")
    assert markdown.count("### ") == 3 and "budget `smoke`" in markdown


def test_training_fractions_get_separate_tables_each_tested_against_its_own_reference(tmp_path):
    """A fraction is a data condition: ranks and paired tests stay within it, and entries keep the fractions apart."""
    from robench.leaderboards.entries import board_entries, board_from_entries, read_entries, write_entries

    for fraction, offset in ((0.25, -0.2), (1.0, 0.0)):
        hparams = {} if fraction == 1.0 else {"train_fraction": fraction}
        for method, gain in (("standard", 0.0), ("asym", 0.05)):
            for seed in range(2):
                run = f"{method}-{fraction}-{seed}"
                write_run(tmp_path, run, make_records(run, method, seed, noisy(offset + gain), hparams=hparams), done={})
    records, runs = collect_records(tmp_path)
    board = leaderboard(records, runs, n_boot=50)
    assert [t.condition for t in board.tables] == ["training fraction 0.25", ""]
    for table, offset in zip(board.tables, (-0.2, 0.0)):
        assert [row.label for row in table.rows] == ["asym", "standard"]  # no train_fraction in the labels
        assert table.reference == "standard" and [row.rank for row in table.rows] == [1, 2]
        assert row_of(table, "asym").cells["SiteA"].mark == "better"
        assert row_of(table, "standard").cells["SiteA"].mean == pytest.approx(BASE["SiteA"] + offset + 0.005 + 0.02 * np.sin(np.arange(1, 9)).mean())
    markdown = render(board, "markdown")
    assert "budget `quick` · training fraction 0.25 · Dice" in markdown and "budget `quick` · Dice" in markdown
    entries = board_entries(board, runs, tmp_path)
    assert sorted((e["label"], e["condition"]) for e in entries) == [
        ("asym", ""), ("asym", "training fraction 0.25"), ("standard", ""), ("standard", "training fraction 0.25")]
    written = write_entries(entries, tmp_path / "board")
    assert len(written) == 4
    from robench.plots.aggregate import site_scores

    labels = set(site_scores(records, n_boot=10)["label"])  # figures drawn from the records keep the fractions apart too
    assert labels == {f"{m} (train_fraction={f})" for m in ("standard", "asym") for f in (0.25, 1.0)}
    assert render(board_from_entries(read_entries(tmp_path / "board")), "markdown") == markdown


def test_primary_mode_gives_main_numbers_and_other_modes_an_avg_column():
    records = pd.concat([
        make_records("c", "coop", 0, shifted(0.0), mode="ftn", primary=True),
        make_records("c", "coop", 0, shifted(0.05), mode="ftn+stn", primary=False),
        make_records("s", "standard", 0, shifted(-0.1), mode="default", primary=True),
    ])
    table = only_table(leaderboard(records, n_boot=0))
    assert [c.name for c in table.columns if c.role == "mode_average"] == ["Avg (ftn+stn)"]
    coop = row_of(table, "coop")
    assert coop.cells["Avg"].mean == pytest.approx(0.575)
    assert coop.cells["Avg (ftn+stn)"].mean == pytest.approx(0.625)
    assert "Avg (ftn+stn)" not in row_of(table, "standard").cells
    header = next(line for line in render(leaderboard(records, n_boot=0), "markdown", detail=True).splitlines()
                  if line.startswith("| Rank"))
    assert "| RV | Avg (ftn+stn) | Runs |" in header


def test_rows_sorted_by_avg_and_ranks_share_when_inseparable(tmp_path):
    three_seeds(tmp_path, "standard", noisy(0.0))
    three_seeds(tmp_path, "twin", noisy(0.0))
    three_seeds(tmp_path, "best", noisy(0.2))
    three_seeds(tmp_path, "worst", noisy(-0.2))
    table = only_table(leaderboard(*collect_records(tmp_path), n_boot=300))
    labels = [row.label for row in table.rows]
    assert labels[0] == "best" and labels[-1] == "worst" and set(labels[1:3]) == {"standard", "twin"}
    ranks = {row.label: row.rank for row in table.rows}
    assert ranks == {"best": 1, "standard": 2, "twin": 2, "worst": 4}
    assert row_of(table, "best").rank_interval == (1, 1)
    assert row_of(table, "twin").rank_interval == (2, 3)


def test_shared_rank_rule_chains_and_uses_positions():
    assert stats.shared_ranks([(1, 1), (2, 3), (2, 4), (5, 5)]) == [1, 2, 2, 4]
    assert stats.shared_ranks([(1, 2), (1, 3), (3, 4)]) == [1, 1, 1]


def test_hparams_settings_of_one_method_are_separate_rows():
    records = pd.concat([
        make_records("a", "rand_conv", 0, shifted(0.0), hparams={"kernel": 3, "lr": 0.1}),
        make_records("b", "rand_conv", 0, shifted(0.1), hparams={"kernel": 5, "lr": 0.1}),
    ])
    table = only_table(leaderboard(records, n_boot=0))
    assert [row.label for row in table.rows] == ["rand_conv (kernel=5)", "rand_conv (kernel=3)"]


def test_a_registered_method_off_its_defaults_is_named_even_alone():
    """A control run (`asym-margin` at margin 0) must not pass for the method at its defaults."""
    from robench.methods import get_method

    defaults = dict(get_method("asym-margin").hparams)
    records = pd.concat([
        make_records("a", "asym-margin", 0, shifted(0.0), hparams={**defaults, "margin": 0.0}),
        make_records("b", "margin", 0, shifted(0.1), hparams=dict(get_method("margin").hparams)),
    ])
    assert {row.label for row in only_table(leaderboard(records, n_boot=0)).rows} == {"asym-margin (margin=0.0)", "margin"}
    unnormalised = make_records("c", "standard", 0, shifted(0.0), hparams={"test_norm": "none"})
    assert [row.label for row in only_table(leaderboard(unnormalised, n_boot=0)).rows] == ["standard (test_norm=none)"]


def test_a_table_whose_rows_differ_in_numerics_says_which_row_is_which():
    records = pd.concat([
        make_records("a", "standard", 0, shifted(0.0)),
        make_records("b", "mixup", 0, shifted(0.1), hparams={"precision": "bf16"}),
    ])
    table = only_table(leaderboard(records, n_boot=0))
    assert "rows differ in numerics — bf16: mixup; fp32: standard" in table.notes
    same = only_table(leaderboard(records[records["run_id"] == "a"], n_boot=0))
    assert not any("numerics" in note for note in same.notes)


# --------------------------------------------------------------------------- paired tests


def test_wilcoxon_marks_a_clearly_better_method_and_not_an_identical_one(tmp_path):
    three_seeds(tmp_path, "standard", noisy(0.0))
    three_seeds(tmp_path, "better", noisy(0.05))
    three_seeds(tmp_path, "worse", noisy(-0.05))
    three_seeds(tmp_path, "same", noisy(0.0))
    table = only_table(leaderboard(*collect_records(tmp_path), n_boot=0))
    assert table.reference == "standard"
    for test_set in TEST_SETS:
        better = row_of(table, "better").cells[test_set]
        assert better.mark == "better" and better.p_value == pytest.approx(2 / 2**8)  # exact test, 8 positive pairs
        assert row_of(table, "worse").cells[test_set].mark == "worse"
        same = row_of(table, "same").cells[test_set]
        assert (same.mark, same.p_value, same.p_holm) == ("", 1.0, 1.0)
        assert row_of(table, "standard").cells[test_set].p_value is None
    markdown = render(leaderboard(*collect_records(tmp_path), n_boot=0), "markdown")
    better_line = next(line for line in markdown.splitlines() if "| better |" in line)
    assert better_line.count("↑") == len(TEST_SETS) and "↓" not in better_line
    assert "↑" not in next(line for line in markdown.splitlines() if "| same |" in line)


def test_holm_correction_removes_a_mark_that_the_raw_p_value_would_give():
    def better_on_site_a(test_set, case, cls, seed):
        return noisy(0.05)(test_set, case, cls, seed) if test_set == "SiteA" else noisy(0.0)(test_set, case, cls, seed)

    records = pd.concat([
        make_records("s", "standard", 0, noisy(0.0), n_cases=6),
        make_records("m", "method", 0, better_on_site_a, n_cases=6),
    ])
    cell = row_of(only_table(leaderboard(records, n_boot=0)), "method").cells["SiteA"]
    assert cell.p_value == pytest.approx(2 / 2**6)  # 0.031 < 0.05 raw
    assert cell.p_holm == pytest.approx(4 * 2 / 2**6)  # four test sets in the family
    assert cell.mark == ""


def test_holm_adjustment_known_values():
    adjusted = stats.holm(np.array([0.01, 0.04, np.nan, 0.03]))
    np.testing.assert_allclose(adjusted[[0, 1, 3]], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[2])


def test_paired_tests_skip_without_reference_or_with_too_few_cases():
    records = pd.concat([make_records("a", "a", 0, noisy(0.0)), make_records("b", "b", 0, noisy(0.3))])
    table = only_table(leaderboard(records, n_boot=0))
    assert table.reference is None
    assert all(cell.mark == "" and cell.p_value is None for row in table.rows for cell in row.cells.values())
    assert any("not in this table" in note for note in table.notes)

    few = pd.concat([make_records("s", "standard", 0, noisy(0.0), n_cases=5), make_records("b", "b", 0, noisy(0.3), n_cases=5)])
    cells = row_of(only_table(leaderboard(few, n_boot=0)), "b").cells
    assert all(cells[t].p_value is None and cells[t].mark == "" for t in TEST_SETS)


def test_pairing_uses_shared_seeds_only():
    # method beats standard on seed 0 and loses on seed 9, which standard lacks: only seed 0 may count
    records = pd.concat([
        make_records("s0", "standard", 0, noisy(0.0)),
        make_records("m0", "method", 0, noisy(0.05)),
        make_records("m9", "method", 9, lambda t, c, k, s: noisy(-0.5)(t, c, k, 0)),
    ])
    cell = row_of(only_table(leaderboard(records, n_boot=0)), "method").cells["SiteA"]
    assert cell.mark == "better"


# --------------------------------------------------------------------------- statistics


def test_two_level_bootstrap_is_exact_on_constant_scores_and_seeded():
    scores = [[np.full((3, 5), 0.7), np.full((3, 4), 0.2)], [np.array([[0.1] * 5, [0.3] * 5]), np.full((2, 4), 0.5)]]
    out = stats.two_level_bootstrap(scores, 100, np.random.default_rng(0))
    assert out.shape == (2, 2, 100)
    np.testing.assert_allclose(out[0, 0], 0.7)
    assert set(np.round(out[1, 0], 10)) <= {0.1, 0.2, 0.3}  # runs resampled: 2 draws of {0.1, 0.3}
    np.testing.assert_array_equal(out, stats.two_level_bootstrap(scores, 100, np.random.default_rng(0)))


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible(tmp_path):
    three_seeds(tmp_path, "standard", noisy(0.0, spread=0.1))
    records, runs = collect_records(tmp_path)
    first = row_of(only_table(leaderboard(records, runs, n_boot=300, seed=3)), "standard").cells["Avg"]
    again = row_of(only_table(leaderboard(records, runs, n_boot=300, seed=3)), "standard").cells["Avg"]
    assert first.ci == again.ci
    assert first.ci[0] < first.mean < first.ci[1]


def test_wilcoxon_direction_and_minimum_pairs():
    test = stats.paired_wilcoxon(np.arange(10) + 1.0, np.zeros(10))
    assert test.direction == 1 and test.p_value < 0.01 and test.n_pairs == 10
    assert stats.paired_wilcoxon(np.ones(5), np.zeros(5)) is None


# --------------------------------------------------------------------------- secondary metric tables


def test_metric_table_hd95_sorted_ascending_without_statistics():
    records = pd.concat([make_records("a", "standard", 0, shifted(0.0)), make_records("b", "better", 0, shifted(0.1))])
    table = only_table(metric_table(records, metric="hd95"))
    assert table.metric == "hd95" and not table.higher_is_better
    assert [row.label for row in table.rows] == ["better", "standard"]
    assert row_of(table, "standard").cells["SiteA"].mean == pytest.approx(2.0)  # 10 * (1 - 0.8)
    assert all(row.rank is None for row in table.rows)
    markdown = render(metric_table(records, metric="hd95"), "markdown")
    assert "HD95 (mm)" in markdown and "| better | 1.00 |" in markdown and "HD95 variant: max_directed" in markdown
    with pytest.raises(ConfigError, match="unknown metric"):
        metric_table(records, metric="iou")


# --------------------------------------------------------------------------- rendering


@pytest.fixture
def board(tmp_path):
    three_seeds(tmp_path, "standard", noisy(0.0))
    three_seeds(tmp_path, "better", noisy(0.05))
    return leaderboard(*collect_records(tmp_path), n_boot=100)


def test_markdown_layout_and_legend(board):
    text = render(board, "markdown", detail=True)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| Rank"))
    assert header.split(" | ")[1:4] == ["Method", "SiteA", "SiteB"]
    better = next(line for line in lines if line.startswith("| 1 [1–1] | better"))
    mean = row_of(board.tables[0], "better").cells["SiteA"]
    assert f"{mean.mean:.4f} ± {mean.std:.4f} ↑" in better
    legend = next(line for line in lines if line.startswith("_Cell:"))
    for phrase in ("Runs per row: 3", "100 resamples", "Wilcoxon", "Holm", "HD95 variant: max_directed"):
        assert phrase in legend


def test_csv_is_tidy_with_p_values(board):
    frame = pd.read_csv(io.StringIO(render(board, "csv")))
    cell = frame[(frame["label"] == "better") & (frame["column"] == "SiteA")].iloc[0]
    assert cell["mark"] == "better" and cell["p_holm"] < 0.05
    assert cell["mean"] == pytest.approx(row_of(board.tables[0], "better").cells["SiteA"].mean)
    assert {"std", "ci_low", "ci_high", "n_runs", "n_cases", "rank", "rank_low", "rank_high"} <= set(frame.columns)


def test_json_is_a_complete_document(board):
    document = json.loads(render(board, "json"))
    table = document["tables"][0]
    assert (table["suite"], table["budget"], table["metric"], table["reference"]) == ("cardiac-synth", "quick", "dice", "standard")
    assert [c["name"] for c in table["columns"]][:2] == ["SiteA", "SiteB"]
    best = table["rows"][0]
    assert best["label"] == "better" and best["runs"] == 3 and best["rank"] == 1
    avg = best["cells"]["Avg"]
    assert avg["ci_low"] <= avg["mean"] <= avg["ci_high"] and avg["n_runs"] == 3
    assert best["cells"]["SiteA"]["p_value"] is not None
    assert table["bootstrap"]["n_boot"] == 100 and table["hd95_variants"] == ["max_directed"]
    assert render(board, "json") == render(board, "json")


def test_unknown_format_is_a_config_error(board):
    with pytest.raises(ConfigError, match="unknown leaderboard format 'docx'"):
        render(board, "docx")


def test_default_markdown_is_compact_and_detail_adds_the_rest(board):
    compact, detail = render(board, "markdown"), render(board, "markdown", detail=True)
    header = next(line for line in compact.splitlines() if line.startswith("| Rank"))
    table = board.tables[0]
    shown = [c.name for c in table.columns if c.role in ("test_set", "kind_average", "average")]
    assert header == "| Rank | Method | " + " | ".join(shown) + " |"
    better = next(line for line in compact.splitlines() if line.startswith("| 1 [1–1] | better"))
    assert f"{row_of(table, 'better').cells['SiteA'].mean:.3f} ↑" in better and "±" not in better
    assert "Avg 95 % CI" in detail and "Avg 95 % CI" not in compact and "`--detail` adds" in compact


def test_latex_is_booktabs_with_escaped_text(board):
    text = render(board, "latex")
    assert text.count("\\toprule") == len(board.tables) and "\\midrule" in text and "\\bottomrule" in text
    assert "\\caption{cardiac-synth" in text and "max\\_directed" in text and "$\\uparrow$" in text
    first = next(line for line in text.splitlines() if line.startswith("1 [1--1] & better"))
    assert first.count("&") == len([c for c in board.tables[0].columns if c.role in ("test_set", "kind_average", "average")]) + 1


def test_entries_round_trip_to_the_same_tables(board, tmp_path):
    from robench.leaderboards.entries import board_entries, board_from_entries, read_entries, write_entries

    runs = pd.DataFrame({"run_id": [r for t in board.tables for row in t.rows for r in row.run_ids], "path": "x"})
    entries = board_entries(board, runs.drop_duplicates("run_id"), tmp_path)
    assert len(entries) == len({(t.suite, t.budget, row.label) for t in board.tables for row in t.rows})
    assert all(e["provenance"]["run_ids"] for e in entries)
    write_entries(entries, tmp_path / "board")
    rebuilt = board_from_entries(read_entries(tmp_path / "board"))
    for fmt, detail in (("markdown", False), ("markdown", True), ("latex", False)):
        assert render(rebuilt, fmt, detail=detail) == render(board, fmt, detail=detail)


def test_html_page_is_self_contained_and_sortable_by_data_values(board):
    page = render(board, "html")
    assert page.startswith("<!doctype html>") and "<script>" in page and "http" not in page.replace("https://", "")
    assert page.count("<table class=board>") == len(board.tables)
    assert 'data-value="better"' in page and "aria-sort" in page


def test_row_missing_a_test_set_has_no_avg_no_rank_and_is_listed_last():
    partial = {k: v for k, v in TEST_SETS.items() if k != "RandSpike"}
    records = pd.concat([
        make_records("s", "standard", 0, shifted(0.0)),
        make_records("p", "partial", 0, shifted(0.3), test_sets=partial),
    ])
    table = only_table(leaderboard(records, n_boot=50))
    last = table.rows[-1]
    assert last.label == "partial" and last.rank is None and "Avg" not in last.cells
    assert last.cells["SiteA"].mean == pytest.approx(1.1)
    assert any("no Avg and no rank" in note for note in table.notes)
    assert "| – | partial |" in render(leaderboard(records, n_boot=50), "markdown")
