"""`robench plot logits`: logit margins of finished runs on training cases and test sets, with the CSV behind them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from robench.benchmark.preprocess import prepare
from robench.benchmark.runner import RunRequest, execute
from robench.benchmark.suites import SuiteOptions, get_suite
from robench.cli import app
from robench.errors import ConfigError, RunStateError
from robench.plots.logits import TRAINING, plot_logits, run_logits, sampled


@pytest.fixture(scope="module")
def lesion_runs(tmp_path_factory):
    """Two finished smoke runs on lesion-synth: `standard` and `asym-focal` (no artefact sets)."""
    out = tmp_path_factory.mktemp("runs")
    folders = []
    for method in ("standard", "asym-focal"):
        result = execute(
            RunRequest(suite="lesion-synth", method=method, budget="smoke", out=out, threads=1,
                       options=SuiteOptions(corruptions=()), progress=False),
            log=lambda m: None,
        )
        folders.append(result.folder.path)
    return folders


def test_every_labelled_voxel_of_every_set_is_scored_per_true_class(lesion_runs):
    run = run_logits(lesion_runs[0])
    suite = get_suite("lesion-synth").build(SuiteOptions(corruptions=()))
    assert list(run.kinds) == [TRAINING, *(t.name for t in suite.test_sets)]
    assert run.classes == ("background", "lesion")
    crop = run.config["budget_details"]["crop"]
    for set_name in run.kinds:
        counted = len(run.values[(set_name, "background")]) + len(run.values.get((set_name, "lesion"), []))
        cases = suite.train if set_name == TRAINING else next(t.cases for t in suite.test_sets if t.name == set_name)
        slices = 0
        for ref in cases:
            slices += len(prepare(ref.load(), run.config["budget_details"]["spacing_mm"]).label)
        assert counted == slices * crop * crop
        assert np.isfinite(run.values[(set_name, "background")]).all()


def test_the_voxel_draw_is_seeded_and_capped(lesion_runs):
    run = run_logits(lesion_runs[0])
    a, b, c = sampled([run], 500, 0), sampled([run], 500, 0), sampled([run], 500, 1)
    assert a.equals(b) and not a.equals(c)
    counts = a.groupby(["set", "true class"]).size()
    assert counts.max() == 500
    lesion = len(run.values[(TRAINING, "lesion")])
    assert counts[(TRAINING, "lesion")] == min(500, lesion)


def test_figure_and_csv_from_the_cli(lesion_runs, tmp_path):
    out = CliRunner().invoke(app, ["plot", "logits", *map(str, lesion_runs), "--out", str(tmp_path), "--voxels", "400"])
    assert out.exit_code == 0, out.output
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / f"logits.{ext}").stat().st_size > 0
    table = pd.read_csv(tmp_path / "logits.csv")
    assert set(table["method"]) == {"standard", "asym-focal"}
    assert set(table["true_class"]) == {"background", "lesion"}
    assert {"SiteA", "SiteB", "SiteC", TRAINING} <= set(table["set"])
    assert (table["voxels_drawn"] <= 400).all() and (table["voxels_drawn"] <= table["voxels"]).all()
    # the statistics are over every voxel: recompute one from the run itself
    run = run_logits(lesion_runs[1])
    row = table[(table["method"] == "asym-focal") & (table["set"] == "SiteB") & (table["true_class"] == "lesion")].iloc[0]
    assert row["mean"] == pytest.approx(float(run.values[("SiteB", "lesion")].mean()), rel=1e-4)
    assert row["share_foreground_side"] == pytest.approx(float((run.values[("SiteB", "lesion")] > 0).mean()), abs=1e-5)


def test_the_figure_marks_the_decision_boundary(lesion_runs):
    from robench.plots.logits import draw_logits

    runs = [run_logits(d) for d in lesion_runs]
    figure = draw_logits(sampled(runs, 200, 0), runs, "caption")
    axes = figure.axes
    assert len(axes) == 2 * 2  # two runs × two true classes
    for ax in axes:
        assert any(np.allclose(line.get_xdata(), 0) for line in ax.get_lines())


def test_refuses_an_unfinished_run_and_bad_options(lesion_runs, tmp_path):
    with pytest.raises(RunStateError, match="not a robench run folder"):
        plot_logits([tmp_path], tmp_path / "figs")
    with pytest.raises(ConfigError, match="--voxels"):
        plot_logits(lesion_runs, tmp_path / "figs", voxels=0)
