"""Published reference rows, the ES-only view, and ranking agreement, on hand-made runs whose numbers are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from robench.cli import app
from robench.errors import ConfigError, DataError
from robench.leaderboards import collect_records, leaderboard, render
from robench.leaderboards import published as pub
from robench.leaderboards.agreement import kendall_tau, with_comparisons
from robench.leaderboards.table import ES_VIEW
from robench.methods import METHODS
from tests.test_leaderboard import make_records, write_run

ACDC_SETS = {"ACDC": "intra", "Sunnybrook": "cross-site", "RandBias": "artefact", "RandGhosting": "artefact",
             "RandMotion": "artefact", "RandSpike": "artefact"}
ES_SETS = {f"{name}-ES": "artefact" for name in ("RandBias", "RandGhosting", "RandMotion", "RandSpike")}
LEVEL = {"ACDC": 0.60, "Sunnybrook": 0.62, "RandBias": 0.40, "RandGhosting": 0.52, "RandMotion": 0.55, "RandSpike": 0.20,
         "RandBias-ES": 0.38, "RandGhosting-ES": 0.50, "RandMotion-ES": 0.53, "RandSpike-ES": 0.18}
# offsets that rank the methods as the paper does on ACDC and the four artefact columns (the columns the runs
# share with it): coop-latent 0.696, rand-conv 0.649, adv-bias 0.645, standard 0.639
OFFSET = {"coop-latent": 0.06, "rand-conv": 0.04, "adv-bias": 0.02, "standard": 0.0}


def score(offset):
    return lambda test_set, case, cls, seed: LEVEL[test_set] + offset + 0.01 * np.sin(case + seed + 1)


def cardiac_runs(root, *, es=True, budget="quick", offsets=OFFSET):
    sets = {**ACDC_SETS, **(ES_SETS if es else {})}
    for method, offset in offsets.items():
        for seed in (0, 1):
            records = make_records(f"{method}-{budget}-{seed}", method, seed, score(offset), suite="cardiac", budget=budget,
                                   test_sets=sets, n_cases=6)
            write_run(root, f"{budget}/{method}/{seed}", records, done={})
    return root


def table(board, view="", kind="leaderboard"):
    return next(t for t in board.tables if t.view == view and t.kind == kind)


def test_the_shipped_paper_table_is_the_methods_md_table_keyed_by_registered_methods():
    paper = pub.load_published("paper")
    assert paper.suite == "cardiac" and paper.budget == "paper" and "paper" in pub.published_names()
    assert [r.method for r in paper.rows] == ["standard", "rand-mwm", "rand-conv", "adv-noise", "adv-bias",
                                              "coop-latent-x", "coop-latent"]
    assert all(r.method in METHODS for r in paper.rows)
    standard = paper.rows[0].cells
    assert (standard["ACDC"], standard["RandSpike"], standard["Avg (FTN)"]) == (0.7681, 0.4901, 0.5970)
    assert paper.columns["RandBias"] == ("RandBias-ES", "RandBias")  # the ES-only set first: it is what was published
    with pytest.raises(ConfigError, match="no published reference 'imagenet'; shipped: paper"):
        pub.load_published("imagenet")


def test_a_mistyped_published_number_is_refused(tmp_path, monkeypatch):
    raw = json.loads((pub.PUBLISHED_DIR / "paper.json").read_text())
    raw["rows"][2]["cells"]["RandSpike"] = 0.4912  # one digit off: the mean moves by 1.7e-4
    (tmp_path / "paper.json").write_text(json.dumps(raw))
    monkeypatch.setattr(pub, "PUBLISHED_DIR", tmp_path)
    with pytest.raises(DataError, match="Rand Conv's Avg \\(FTN\\) 0.6162 is not the mean 0.6164"):
        pub.load_published("paper")


def test_the_shipped_table_is_the_one_in_methods_md():
    """Every cell of paper.json against the table of ../shared/docs/methods.md §9, where the docs are present."""
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "shared" / "docs" / "methods.md"
    if not source.is_file():
        pytest.skip(f"{source} is absent (the project's shared docs sit beside the repository)")
    lines = source.read_text(encoding="utf-8").split("## 9. Reference numbers", 1)[1].splitlines()
    table = [line for line in lines if line.startswith("| ") and "---" not in line]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    documented = {}
    for line in table[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        documented[cells[0]] = {name: float(v) for name, v in zip(header[1:], cells[1:])}
    paper = pub.load_published("paper")
    shipped = {r.label: r.cells for r in paper.rows}
    assert len(shipped) == len(documented) == 7
    for label, cells in documented.items():
        assert shipped[label] == cells, label


def test_es_sets_leave_the_main_table_and_form_the_paper_exact_view(tmp_path):
    board = leaderboard(*collect_records(cardiac_runs(tmp_path)), n_boot=50)
    main, es = table(board), table(board, ES_VIEW)
    assert [c.name for c in main.columns if c.role == "test_set"] == list(ACDC_SETS)
    assert [c.name for c in es.columns if c.role == "test_set"] == ["ACDC", "Sunnybrook", *ES_SETS]
    standard = next(r for r in es.rows if r.label == "standard")
    expected = np.mean([standard.cells[name].mean for name in ["ACDC", "Sunnybrook", *ES_SETS]])
    assert standard.cells["Avg"].mean == pytest.approx(expected)
    assert [r.label for r in main.rows] == ["coop-latent", "rand-conv", "adv-bias", "standard"]


def test_published_rows_sit_beside_measured_ones_and_never_enter_ranks_or_tests(tmp_path):
    records, runs = collect_records(cardiac_runs(tmp_path))
    plain = leaderboard(records, runs, n_boot=50)
    board = with_comparisons(plain, [pub.load_published("paper")])
    again = leaderboard(records, runs, n_boot=50)  # built on its own: the measured tables are those without the reference
    assert board.tables[: len(plain.tables)] == again.tables and len(board.tables) > len(again.tables)
    for measured in (t for t in board.tables if t.kind == "leaderboard"):
        assert not any("published" in r.label or r.hparams == "published" for r in measured.rows)
        assert all(r.rank is not None for r in measured.rows) and len(measured.rows) == len(OFFSET)
    beside, diff = table(board, "measured beside published `paper`", "beside"), table(board, "measured − published `paper`", "difference")
    published_rows = [r for r in beside.rows if r.label.endswith("[published]")]
    assert len(published_rows) == 7 and all(r.rank is None and r.runs == 0 for r in published_rows)
    assert all(cell.mark == "" and cell.p_value is None for r in beside.rows for cell in r.cells.values())
    es = table(plain, ES_VIEW)
    measured = {r.method: r for r in es.rows}
    paper = {r.method: r.cells for r in pub.load_published("paper").rows}
    standard = next(r for r in diff.rows if r.method == "standard")
    # RandBias is compared on RandBias-ES (what the paper published); M&Ms is not measured, so Avg (FTN) is not compared
    assert standard.cells["RandBias"].mean == pytest.approx(measured["standard"].cells["RandBias-ES"].mean - 0.4889)
    assert standard.cells["ACDC"].mean == pytest.approx(measured["standard"].cells["ACDC"].mean - 0.7681)
    assert "Avg (FTN)" not in standard.cells and "M&Ms" not in standard.cells
    matching = [n for n in ("ACDC", "RandBias", "RandGhosting", "RandMotion", "RandSpike")]
    assert standard.cells["Avg (5 matching)"].mean == pytest.approx(np.mean([standard.cells[n].mean for n in matching]))
    assert {r.method for r in diff.rows} == set(OFFSET)  # every measured method the paper has
    notes = " ".join(diff.notes)
    assert "RandBias ← RandBias-ES" in notes and "not measured here: M&Ms" in notes
    text = render(board, "markdown")
    assert "Standard training [published]" in text and "| standard − Standard training |" in text
    assert f"| {standard.cells['ACDC'].mean:+.3f} |" in text  # differences are signed


def test_without_the_es_sets_the_comparison_says_it_uses_both_frames(tmp_path):
    board = with_comparisons(leaderboard(*collect_records(cardiac_runs(tmp_path, es=False)), n_boot=0),
                             [pub.load_published("paper")])
    notes = " ".join(table(board, "measured − published `paper`", "difference").notes)
    assert "RandBias, RandGhosting, RandMotion, RandSpike are measured on other cases than published" in notes
    assert "--corruptions acdc-c,acdc-c-es" in notes


def test_kendall_tau_between_tables_and_with_the_published_ranking(tmp_path):
    assert kendall_tau({"a": 1, "b": 2, "c": 3}, {"a": 10, "b": 20, "c": 30}) == 1.0
    assert kendall_tau({"a": 1, "b": 2, "c": 3}, {"a": 3, "b": 2, "c": 1}) == -1.0
    assert np.isnan(kendall_tau({"a": 1, "b": 2}, {"a": 1, "b": 2}))  # two methods: no ranking to speak of
    cardiac_runs(tmp_path)  # quick: the paper's order
    reversed_offsets = {m: 0.06 - o for m, o in OFFSET.items()}
    cardiac_runs(tmp_path, budget="quick@2000", offsets=reversed_offsets)
    board = with_comparisons(leaderboard(*collect_records(tmp_path), n_boot=200), [pub.load_published("paper")])
    agreement = {r.label: r.cells["Kendall τ"] for r in table(board, "ranking agreement", "agreement").rows}
    assert agreement["cardiac · quick ↔ cardiac · quick@2000 (4 methods)"].mean == -1.0
    # the paper ranks coop-latent > adv-bias > rand-conv > standard by Avg (FTN), as the quick runs do
    # the paper ranks coop-latent > adv-bias > rand-conv > standard on the five columns the runs share (ACDC and
    # the ES-only sets; M&Ms is not measured), as the quick runs do; quick@2000 reverses it
    shared = "(Avg of 5 shared columns)"
    quick_vs_paper = agreement[f"cardiac · quick (ES only) ↔ published `paper` {shared} (4 methods)"]
    assert quick_vs_paper.mean == 1.0 and quick_vs_paper.ci is not None and quick_vs_paper.ci[1] == 1.0
    assert agreement[f"cardiac · quick@2000 (ES only) ↔ published `paper` {shared} (4 methods)"].mean == -1.0
    assert "Kendall τ" in render(board, "markdown") and "[" in render(board, "markdown").split("ranking agreement")[1]


def test_reference_option_takes_published_sets_and_at_most_one_method(tmp_path):
    cardiac_runs(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["leaderboard", str(tmp_path), "--reference", "paper"])
    assert result.exit_code == 0, result.output
    assert "measured beside published `paper`" in result.output and "measured − published `paper`" in result.output
    assert "↑/↓: better/worse than `standard`" in result.output  # the paired tests keep their default reference
    bad = runner.invoke(app, ["leaderboard", str(tmp_path), "--reference", "standard", "--reference", "adv-bias"])
    assert bad.exit_code == 2 and "--reference names one method" in bad.output
    typo = runner.invoke(app, ["leaderboard", str(tmp_path), "--reference", "papr"])
    assert typo.exit_code == 2 and "'papr' is neither a registered method nor a published set (paper)" in typo.output
    hd95 = runner.invoke(app, ["leaderboard", str(tmp_path), "--reference", "paper", "--metric", "hd95"])
    assert hd95.exit_code == 2 and "published references are Dice tables" in hd95.output


def test_the_resolution_ceiling_is_one_at_the_native_grid_and_falls_on_a_coarser_or_tighter_one():
    import dataclasses

    from robench.benchmark.ceiling import resolution_ceiling
    from robench.benchmark.config import get_budget
    from robench.benchmark.suites.base import Case, CaseRef, TestSet
    from robench.labels import CARDIAC_CLASSES
    from tests.fixtures import heart_volume

    image, label = heart_volume(np.random.default_rng(0), shape=(4, 60, 52), scale=2.0)
    case = Case("c", image, label, (8.0, 1.25, 1.25))
    intra = TestSet("Toy", "intra", (CaseRef("c", lambda: case, {}),))
    native = dataclasses.replace(get_budget("quick"), spacing_mm=1.25, crop=64, pad=72)
    assert resolution_ceiling(intra, native, CARDIAC_CLASSES) == 1.0
    coarse = resolution_ceiling(intra, dataclasses.replace(native, spacing_mm=2.5, crop=32, pad=40), CARDIAC_CLASSES)
    assert 0.8 < coarse < 1.0  # boundary voxels lost in the round trip
    tight = resolution_ceiling(intra, dataclasses.replace(native, crop=16), CARDIAC_CLASSES)
    assert tight < coarse  # a crop that cuts the heart loses whole structures


def test_budget_curve_points_are_the_board_cells_and_the_published_lines_the_paper_cells(tmp_path):
    import pandas as pd

    from robench.plots.budget import plot_budget_curve

    for budget, updates, gain in (("quick", 1000, 0.0), ("quick@2000", 2000, 0.03), ("quick@4000", 4000, 0.05)):
        for method in ("standard", "coop-latent"):
            offset = gain + (0.02 * updates / 4000 if method == "coop-latent" else 0.0)  # coop-latent gains faster
            records = make_records(f"{method}-{budget}", method, 0, score(offset), suite="cardiac", budget=budget,
                                   test_sets={**ACDC_SETS, **ES_SETS}, n_cases=6)
            write_run(tmp_path / "runs", f"{budget}/{method}", records, done={"iterations": updates})
    records, runs = collect_records(tmp_path / "runs")
    board = leaderboard(records, runs, n_boot=100)
    paper = pub.load_published("paper")
    paths, points = plot_budget_curve(board, runs, tmp_path / "figs", suite="cardiac", published=paper,
                                      ceilings={"quick": 0.951, "paper": 0.998})
    assert [p.name for p in paths] == ["budget.png", "budget.pdf", "budget.csv"] and all(p.stat().st_size for p in paths)
    es = table(board, ES_VIEW)  # the quick budget's ES-only table
    standard = next(r for r in es.rows if r.method == "standard")
    acdc = points[(points["panel"] == "ACDC") & (points["budget"] == "quick") & (points["method"] == "standard")]
    assert acdc["dice"].item() == standard.cells["ACDC"].mean and acdc["updates"].item() == 1000
    mean_panel = "Avg of the 5 columns the paper shares"
    mean = points[(points["panel"] == mean_panel) & (points["budget"] == "quick") & (points["method"] == "standard")]
    assert mean["dice"].item() == pytest.approx(np.mean([standard.cells[c].mean for c in
                                                         ("ACDC", "RandBias-ES", "RandGhosting-ES", "RandMotion-ES", "RandSpike-ES")]))
    csv = pd.read_csv(paths[2])
    lines = csv[csv["source"] == "published"].set_index(["method", "panel"])["dice"]
    assert lines[("standard", "ACDC")] == 0.7681
    assert lines[("coop-latent", mean_panel)] == pytest.approx(np.mean([0.7696, 0.6174, 0.7073, 0.7643, 0.6226]))
    assert set(mean["measured_columns"]) == {"ACDC,RandBias-ES,RandGhosting-ES,RandMotion-ES,RandSpike-ES"}
    assert sorted(points.loc[points["method"] == "coop-latent", "updates"].unique()) == [1000, 2000, 4000]
