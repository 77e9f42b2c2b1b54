"""Figures: the plotted numbers against hand-computed means, both file formats, clear errors, hard examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from robench.benchmark.records import RECORD_COLUMNS
from robench.errors import ConfigError, DataError, RunStateError
from robench.plots import plot_severity, plot_sites, severity_curves, site_scores
from robench.plots.aggregate import ALL_CORRUPTIONS, CLASS_MEAN
from robench.plots.cli import plot_app
from robench.plots.style import METHOD_COLOURS, line_styles, method_colour

CLASSES = ("LV", "MYO", "RV")


def rows(run_id, method, test_set, kind, dice_by_case, *, seed=0, corruption="", severity=0, site="", vendor="",
         hparams="{}", suite="cardiac-synth", budget="smoke", unit=None):
    """Primary records with the given per-class Dice, plus a non-primary mode whose Dice must never show up."""
    out = []
    for case_id, per_class in dice_by_case.items():
        for cls, dice in zip(CLASSES, per_class):
            for mode, primary, value in (("ftn", True, dice), ("ftn+stn", False, 0.0)):
                out.append({
                    "run_id": run_id, "method": method, "suite": suite, "budget": budget, "seed": seed, "cval": 0,
                    "hparams": hparams, "test_set": test_set, "kind": kind, "site": site, "vendor": vendor,
                    "corruption": corruption, "severity": severity, "case_id": case_id,
                    "unit": unit(case_id) if unit else case_id, "subject": case_id, "frame": "ED", "mode": mode,
                    "primary": primary, "class": cls, "dice": value, "hd95": 1.0, "assd": 0.5, "sensitivity": 1.0,
                    "precision": 1.0, "missed": False, "false_positive": False, "both_empty": np.isnan(value),
                    "hd95_variant": "max_directed", "metric_version": "1", "spacing_source": "header",
                })
    return out


def frame(*parts) -> pd.DataFrame:
    return pd.DataFrame([r for part in parts for r in part], columns=list(RECORD_COLUMNS))


@pytest.fixture
def graded():
    """Two standard seeds and one coop-latent run: intra, cross-site and graded sets with known means."""
    parts = []
    for run, method, seed, shift in (("s0", "standard", 0, 0.0), ("s1", "standard", 1, 0.1), ("c0", "coop-latent", 0, 0.2)):
        parts.append(rows(run, method, "SiteA", "intra", {"a": (0.9, 0.8, 0.7), "b": (0.6, np.nan, 0.8)}, seed=seed,
                          site="A", vendor="A"))
        parts.append(rows(run, method, "SiteB", "cross-site", {"a": (0.5, 0.5, 0.5), "b": (0.3 + shift, 0.3, 0.3)},
                          seed=seed, site="2", vendor="B"))
        for corruption, base in (("bias", 0.6), ("noise", 0.4)):
            for severity in (1, 2):
                dice = base - 0.1 * severity + shift
                parts.append(rows(run, method, f"{corruption}-{severity}", "artefact",
                                  {"a": (dice,) * 3, "b": (dice - 0.2,) * 3}, seed=seed, corruption=corruption,
                                  severity=severity, unit=lambda c: c))
        parts.append(rows(run, method, "RandBias", "artefact", {"a": (0.1,) * 3}, seed=seed, corruption="RandBias"))
    return frame(*parts)


def point(table, **keys):
    selected = table
    for key, value in keys.items():
        selected = selected[selected[key] == value]
    assert len(selected) == 1, (keys, selected)
    return selected.iloc[0]


def test_severity_curves_are_the_hand_computed_means(graded):
    curves = severity_curves(graded, n_boot=50)
    # case a: mean(0.9, 0.8, 0.7) = 0.8; case b: mean(0.6, 0.8) = 0.7 (NaN class skipped) -> 0.75, both seeds alike
    for corruption in (ALL_CORRUPTIONS, "bias", "noise"):
        assert point(curves, corruption=corruption, severity=0, label="standard").dice == pytest.approx(0.75)
    # bias s1: seed 0 (0.5 + 0.3) / 2 = 0.4, seed 1 shifted by 0.1 -> 0.5; mean over seeds 0.45
    assert point(curves, corruption="bias", severity=1, label="standard").dice == pytest.approx(0.45)
    assert point(curves, corruption="noise", severity=2, label="standard").dice == pytest.approx(0.15)
    assert point(curves, corruption="noise", severity=2, label="coop-latent").dice == pytest.approx(0.3)
    # pooled panel: the mean over both corruptions of a severity
    assert point(curves, corruption=ALL_CORRUPTIONS, severity=1, label="standard").dice == pytest.approx((0.45 + 0.25) / 2)
    standard = point(curves, corruption="bias", severity=1, label="standard")
    assert (standard.n_runs, standard.n_units) == (2, 2)
    assert standard.ci_low <= standard.dice <= standard.ci_high
    assert set(curves["severity"]) == {0, 1, 2}  # the ungraded RandBias set is not a severity
    assert list(dict.fromkeys(curves["corruption"])) == [ALL_CORRUPTIONS, "bias", "noise"]


def test_copies_of_one_volume_are_one_unit(graded):
    copies = graded[graded["test_set"] == "bias-1"].copy()
    copies["case_id"] = copies["case_id"] + "-copy"
    copies.loc[copies["primary"], "dice"] = 1.0
    curves = severity_curves(pd.concat([graded, copies]), n_boot=20)
    standard = point(curves, corruption="bias", severity=1, label="standard")
    assert standard.n_units == 2
    # per unit: mean(original, copy); seed 0: ((0.5 + 1) / 2 + (0.3 + 1) / 2) / 2 = 0.7, seed 1: 0.75
    assert standard.dice == pytest.approx(0.725)


def test_no_graded_rows_says_which_command_makes_them(graded):
    clean = graded[graded["severity"] == 0]
    with pytest.raises(DataError, match="--corruptions graded"):
        severity_curves(clean)


def test_suites_and_budgets_are_never_mixed(graded):
    other = graded.assign(budget="quick", run_id=graded["run_id"] + "q")
    both = pd.concat([graded, other])
    with pytest.raises(DataError, match="--suite and --budget"):
        severity_curves(both)
    assert len(severity_curves(both, budget="quick", n_boot=10)) == len(severity_curves(graded, n_boot=10))
    with pytest.raises(DataError, match="no records"):
        site_scores(both, suite="cardiac")


def test_hparams_settings_are_separate_lines(graded):
    variant = graded[graded["run_id"] == "c0"].assign(run_id="c1", hparams='{"p_max": 0.3}')
    base = graded.assign(hparams=np.where(graded["run_id"] == "c0", '{"p_max": 0.5}', "{}"))
    labels = set(site_scores(pd.concat([base, variant]), n_boot=10)["label"])
    assert labels == {"standard", "coop-latent (p_max=0.5)", "coop-latent (p_max=0.3)"}


def test_site_scores_order_values_and_classes(graded):
    scores = site_scores(graded, n_boot=50)
    assert list(dict.fromkeys(scores["test_set"])) == ["SiteA", "SiteB"]
    assert set(scores["class"]) == {CLASS_MEAN, *CLASSES}
    # SiteB standard: a 0.5; b 0.3 (seed 0) and (0.4 + 0.3 + 0.3) / 3 (seed 1)
    expected = (0.4 + (0.5 + 1.0 / 3) / 2) / 2
    assert point(scores, test_set="SiteB", label="standard", **{"class": CLASS_MEAN}).dice == pytest.approx(expected)
    # per class: LV of SiteA is (0.9 + 0.6) / 2; MYO of case b is NaN (both empty), so only case a counts
    assert point(scores, test_set="SiteA", label="standard", **{"class": "LV"}).dice == pytest.approx(0.75)
    assert point(scores, test_set="SiteA", label="standard", **{"class": "MYO"}).dice == pytest.approx(0.8)
    assert point(scores, test_set="SiteB", label="standard", **{"class": CLASS_MEAN}).caption == "SiteB\nsite 2"  # vendor B is in the name already
    assert point(scores, test_set="SiteA", label="standard", **{"class": CLASS_MEAN}).caption == "SiteA"
    assert set(site_scores(graded, per_class=False, n_boot=10)["class"]) == {CLASS_MEAN}


def test_site_scores_need_intra_or_cross_site_sets(graded):
    with pytest.raises(DataError, match="no intra or cross-site"):
        site_scores(graded[graded["kind"] == "artefact"])


def test_records_without_the_schema_are_refused(graded):
    with pytest.raises(DataError, match="lack the columns"):
        site_scores(graded.drop(columns=["dice"]))


def _assert_figures(paths: list[Path], name: str) -> None:
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert not [p for p in paths[0].parent.iterdir() if p.name.endswith(".tmp")]


def test_figures_are_written_in_both_formats_and_reproducibly(graded, tmp_path):
    _assert_figures(plot_severity(graded, tmp_path, n_boot=20), "severity")
    first = (tmp_path / "severity.pdf").read_bytes()
    plot_severity(graded, tmp_path, n_boot=20)
    assert (tmp_path / "severity.pdf").read_bytes() == first
    _assert_figures(plot_sites(graded, tmp_path / "new", n_boot=20, name="sites_all"), "sites_all")


def test_each_method_keeps_its_colour_in_every_figure():
    one = line_styles([("coop-latent", "coop-latent"), ("standard", "standard")])
    other = line_styles([("standard", "standard"), ("rand-conv", "rand-conv"), ("coop-latent", "coop-latent")])
    assert one["coop-latent"] == other["coop-latent"] and one["standard"] == other["standard"]
    assert len(set(METHOD_COLOURS.values())) == len(METHOD_COLOURS)
    assert method_colour("my-new-method") == method_colour("my-new-method")
    variants = line_styles([("m (a=1)", "adv-bias"), ("m (a=2)", "adv-bias")])
    assert variants["m (a=1)"].colour == variants["m (a=2)"].colour
    assert variants["m (a=1)"].linestyle != variants["m (a=2)"].linestyle
    # point-only figures (sites) have no lines: the second setting's markers are hollow
    assert variants["m (a=1)"].face == variants["m (a=1)"].colour and variants["m (a=2)"].face == "white"


def _run_folder(root: Path, run_id: str, records: pd.DataFrame) -> None:
    folder = root / run_id
    folder.mkdir(parents=True)
    first = records.iloc[0]
    config = {"method": first["method"], "suite": first["suite"], "budget": first["budget"], "seed": int(first["seed"]),
              "cval": 0, "hparams": {}, "run_id": run_id}
    (folder / "config.json").write_text(json.dumps(config))
    records.to_parquet(folder / "records.parquet", index=False)
    (folder / "done.json").write_text("{}")


def test_cli_writes_and_names_the_figures(graded, tmp_path):
    runs = tmp_path / "runs"
    for run_id, part in graded.groupby("run_id"):
        _run_folder(runs, run_id, part)
    runner = CliRunner()
    for command in ("severity", "sites"):
        result = runner.invoke(plot_app, [command, str(runs), "--out", str(tmp_path / "figures")])
        assert result.exit_code == 0, result.output
        assert f"wrote {tmp_path / 'figures' / command}.png" in result.output
        assert (tmp_path / "figures" / f"{command}.pdf").exists()


def test_cli_errors_are_one_line(graded, tmp_path):
    runs = tmp_path / "runs"
    for run_id, part in graded[graded["severity"] == 0].groupby("run_id"):
        _run_folder(runs, run_id, part)
    result = CliRunner().invoke(plot_app, ["severity", str(runs), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--corruptions graded" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(plot_app, ["hard-examples", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "not a run folder" in result.output


# hard examples ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coop_run(tiny_acdc, tmp_path_factory):
    """A coop-latent run trained at the smoke budget on tiny ACDC-layout data (artefact sets skipped)."""
    from robench.benchmark.runner import RunRequest, execute
    from robench.benchmark.suites import SuiteOptions

    request = RunRequest(
        suite="cardiac", method="coop-latent", budget="smoke", out=tmp_path_factory.mktemp("runs"), progress=False,
        options=SuiteOptions(data_root=tiny_acdc, cval=0, corruptions=()),
    )
    return execute(request, log=lambda m: None).folder.path


def test_hard_examples_differ_from_the_originals(coop_run):
    from robench.plots.hard_examples import hard_examples

    examples = hard_examples(coop_run, n=3, seed=1)
    assert examples.images.shape == examples.hard_images.shape == examples.corrupted_shapes.shape
    assert examples.images.shape[0] == 3
    assert np.abs(examples.hard_images - examples.images).mean() > 1e-3
    assert (examples.corrupted_shapes != examples.labels).any()
    assert all(set(np.unique(label)) == {0, 1, 2, 3} for label in examples.labels)  # slices that show every structure
    again = hard_examples(coop_run, n=3, seed=1)
    np.testing.assert_array_equal(again.hard_images, examples.hard_images)


def test_hard_examples_figure_via_the_cli(coop_run, tmp_path):
    result = CliRunner().invoke(plot_app, ["hard-examples", str(coop_run), "--out", str(tmp_path), "--n", "2"])
    assert result.exit_code == 0, result.output
    _assert_figures([tmp_path / "hard_examples.png", tmp_path / "hard_examples.pdf"], "hard_examples")


def test_image_only_masking_draws_no_shape_column(tmp_path):
    from robench.plots.hard_examples import HardExamples, draw_hard_examples

    rng = np.random.default_rng(0)
    images = rng.random((2, 16, 16))
    examples = HardExamples(images, rng.integers(0, 4, (2, 16, 16)), images + 0.1, None, "channel", "",
                            {"RV": 1, "MYO": 2, "LV": 3}, "caption")
    figure = draw_hard_examples(examples)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert len(titles) == 4 and not any("corrupted" in t for t in titles)
    assert "channel mask" in titles[1]


def test_hard_examples_need_a_method_that_makes_them(coop_run, tmp_path):
    from robench.plots.hard_examples import hard_examples

    folder = tmp_path / "standard-run"
    folder.mkdir()
    config = json.loads((coop_run / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "method": "standard"}))
    with pytest.raises(ConfigError, match="coop-latent, coop-latent-x"):
        hard_examples(folder)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunStateError, match="no best checkpoint"):
        hard_examples(folder)
