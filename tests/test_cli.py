"""The command line: listings, one-line errors with non-zero exit codes, tracebacks only with --debug."""

from __future__ import annotations

from typer.testing import CliRunner

from robench.cli import app

runner = CliRunner()


def test_methods_and_suites_list_the_registry():
    out = runner.invoke(app, ["methods"])
    assert out.exit_code == 0 and "standard" in out.output and "MICCAI 2021" in out.output
    out = runner.invoke(app, ["suites"])
    assert out.exit_code == 0 and "cardiac-synth" in out.output and "cardiac" in out.output


def test_missing_data_root_is_one_clear_line(tmp_path):
    out = runner.invoke(app, ["run", "--suite", "cardiac", "--data-root", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert out.exit_code == 2
    assert "error:" in out.output and "does not exist" in out.output
    assert "Traceback" not in out.output


def test_unknown_method_budget_and_hparam(tmp_path):
    for args, message in (
        (["--method", "nope"], "unknown method 'nope'"),
        (["--budget", "huge"], "unknown budget"),
        (["--hparam", "nope=1"], "no hyperparameter 'nope'"),
    ):
        out = runner.invoke(app, ["run", "--suite", "cardiac", "--out", str(tmp_path), *args])
        assert out.exit_code == 2, out.output
        assert message in out.output


def test_debug_shows_the_traceback(tmp_path):
    out = runner.invoke(app, ["--debug", "run", "--suite", "cardiac", "--data-root", str(tmp_path / "nope")])
    assert out.exit_code != 0 and out.exception is not None


def test_leaderboard_of_an_empty_folder_is_an_error(tmp_path):
    out = runner.invoke(app, ["leaderboard", str(tmp_path)])
    assert out.exit_code == 2 and "error:" in out.output


def test_predict_on_a_non_run_folder(tmp_path):
    img = tmp_path / "x.nii.gz"
    img.write_bytes(b"")
    out = runner.invoke(app, ["predict", str(tmp_path), str(img), "--out", str(tmp_path / "o")])
    assert out.exit_code == 2 and "not a robench run folder" in out.output
