"""End-to-end runs at the smoke budget on tiny ACDC-layout data: records, resume, reuse, predict, evaluate."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from robench.benchmark.records import RECORD_COLUMNS
from robench.benchmark.runner import RunRequest, execute
from robench.benchmark.suites import SuiteOptions
from robench.errors import RunStateError
from robench.methods.standard import StandardTraining


def request(tiny_acdc: Path, out: Path, **kw) -> RunRequest:
    return RunRequest(
        suite="cardiac", method="standard", budget="smoke", out=out,
        options=SuiteOptions(data_root=tiny_acdc, cval=0), progress=False, **kw,
    )


@pytest.fixture(scope="module")
def finished(tiny_acdc, tmp_path_factory):
    return execute(request(tiny_acdc, tmp_path_factory.mktemp("runs")), log=lambda m: None)


def test_run_writes_complete_records_and_provenance(finished):
    folder = finished.folder
    for name in ("config.json", "environment.json", "log.txt", "records.parquet", "done.json"):
        assert (folder.path / name).exists(), name
    records = finished.records
    assert list(records.columns) == list(RECORD_COLUMNS)
    # 20 test subjects × 2 frames × 2 prediction modes × 3 classes
    assert len(records) == 20 * 2 * 2 * 3
    assert set(records["class"]) == {"LV", "MYO", "RV"}
    assert set(records["mode"]) == {"ftn", "ftn+stn"}
    assert records.loc[records["primary"], "mode"].unique().tolist() == ["ftn"]
    assert records["dice"].between(0, 1).all()
    assert (records["hd95_variant"] == "max_directed").all()
    done = folder.done()
    assert done["iterations"] == 12 and done["train_seconds"] > 0
    assert folder.config()["budget_details"]["crop"] == 48


def test_same_config_reports_the_existing_result(finished, tiny_acdc):
    before = (finished.folder.path / "records.parquet").stat().st_mtime_ns
    again = execute(request(tiny_acdc, finished.folder.path.parent), log=lambda m: None)
    assert again.already_finished and again.folder.path == finished.folder.path
    assert (finished.folder.path / "records.parquet").stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(again.records, finished.records)


def test_interrupted_run_needs_resume_and_then_matches_an_uninterrupted_run(finished, tiny_acdc, tmp_path, monkeypatch):
    original = StandardTraining.update
    calls = {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 9:  # after the checkpoint at 6, before the one at 12
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(StandardTraining, "update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        execute(request(tiny_acdc, tmp_path), log=lambda m: None)
    monkeypatch.setattr(StandardTraining, "update", original)

    with pytest.raises(RunStateError, match="--resume"):
        execute(request(tiny_acdc, tmp_path), log=lambda m: None)
    resumed = execute(request(tiny_acdc, tmp_path, resume=True), log=lambda m: None)
    assert not resumed.already_finished
    assert resumed.folder.path.name == finished.folder.path.name  # same config, same id
    cols = ["test_set", "case_id", "mode", "class", "dice", "hd95", "assd"]
    pd.testing.assert_frame_equal(resumed.records[cols], finished.records[cols])


def test_test_norm_none_is_another_run_recorded_and_labelled_as_a_setting(finished, tiny_acdc, tmp_path, monkeypatch):
    import shutil

    from robench.benchmark import evaluate, preprocess, train
    from robench.leaderboards import collect_records, leaderboard

    seen = []  # the scaling every validation and test slice stack was made with

    def spy(vol, crop, norm="per-slice"):
        seen.append(norm)
        return preprocess.test_slices(vol, crop, norm)

    monkeypatch.setattr(evaluate, "test_slices", spy)
    monkeypatch.setattr(train, "test_slices", spy)
    raw = execute(request(tiny_acdc, tmp_path, test_norm="none"), log=lambda m: None)
    assert seen and set(seen) == {"none"}  # validation (model selection) and every test set
    assert raw.folder.path.name != finished.folder.path.name  # another evaluation, another model selection
    assert raw.folder.config()["budget_details"]["test_norm"] == "none"
    assert finished.folder.config()["budget_details"]["test_norm"] == "per-slice"
    shutil.copytree(finished.folder.path, tmp_path / finished.folder.path.name)
    board = leaderboard(*collect_records(tmp_path), n_boot=0)
    labels = {row.label for row in board.tables[0].rows}
    assert labels == {"standard (test_norm=none)", "standard (test_norm=per-slice)"}


def test_predict_writes_masks_on_the_input_grid(finished, tiny_acdc, tmp_path):
    from robench.benchmark.external import predict_files

    source = tiny_acdc / "training" / "patient007" / "patient007_frame01.nii.gz"
    (written,) = list(predict_files(finished.folder.path, [source], tmp_path, mode="ftn+stn", device="cpu"))
    src, out = nib.load(str(source)), nib.load(str(written))
    assert out.shape == src.shape
    assert np.allclose(out.affine, src.affine)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2, 3}


def test_evaluate_on_another_folder(finished, tmp_path):
    from robench.benchmark.external import evaluate_external
    from tests.fixtures import write_acdc_hdf5

    other = write_acdc_hdf5(tmp_path / "other", ["patient101", "patient102"], seed=3)
    path, result = evaluate_external(finished.folder.path, other, name="Other", kind="cross-site", device="cpu")
    records = result.records
    assert path.exists() and path.parent.name == "evaluations"
    assert set(records["case_id"]) == {"patient101_ED", "patient101_ES", "patient102_ED", "patient102_ES"}
    assert (records["test_set"] == "Other").all() and (records["kind"] == "cross-site").all()


def test_predict_refuses_unfinished_runs(tmp_path):
    from robench.benchmark.external import predict_files

    with pytest.raises(RunStateError, match="not a robench run folder"):
        list(predict_files(tmp_path, [], tmp_path, mode=None, device="cpu"))


def test_finished_run_is_evaluated_on_test_sets_the_suite_gained(finished, tiny_acdc, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    from robench.benchmark.suites.cardiac import CardiacSuite
    from robench.benchmark.suites.base import TestSet

    copy = tmp_path / finished.folder.path.name
    shutil.copytree(finished.folder.path, copy)
    before = (copy / "records.parquet").read_bytes()
    earlier = set((copy / "evaluations").glob("*.parquet"))
    build = CardiacSuite.build

    def with_extra_set(self, options):
        data = build(self, options)
        extra = TestSet("ACDC-subset", "cross-site", data.test_sets[0].cases[:2])
        return dataclasses.replace(data, test_sets=(*data.test_sets, extra))

    monkeypatch.setattr(CardiacSuite, "build", with_extra_set)
    again = execute(request(tiny_acdc, tmp_path), log=lambda m: None)
    assert again.already_finished and again.folder.path == copy
    assert (copy / "records.parquet").read_bytes() == before  # the finished records are never rewritten
    [added] = set(again.folder.evaluation_files()) - earlier
    new = pd.read_parquet(added)
    assert set(new["test_set"]) == {"ACDC-subset"} and len(new) == 2 * 2 * 3
    assert {"ACDC", "ACDC-subset"} <= set(again.records["test_set"])
    execute(request(tiny_acdc, tmp_path), log=lambda m: None)
    assert set(again.folder.evaluation_files()) - earlier == {added}  # nothing left to evaluate the second time


def test_evaluating_the_same_folder_twice_keeps_the_first_result(finished, tmp_path):
    import shutil

    from robench.benchmark.external import evaluate_external
    from tests.fixtures import write_acdc_hdf5

    copy = tmp_path / "run"
    shutil.copytree(finished.folder.path, copy)
    other = write_acdc_hdf5(tmp_path / "other", ["patient101"], seed=3)
    evaluate_external(copy, other, name="Other", kind="cross-site", device="cpu")
    with pytest.raises(RunStateError, match="already evaluated"):
        evaluate_external(copy, other, name="Other", kind="cross-site", device="cpu")


def test_sunnybrook_root_adds_a_cross_site_set_scored_on_delineated_classes(finished, tiny_acdc, tmp_path):
    import shutil

    from tests.fixtures import write_sunnybrook

    sunnybrook = write_sunnybrook(tmp_path / "sb", layout="redistributed")
    copy = tmp_path / "runs" / finished.folder.path.name
    shutil.copytree(finished.folder.path, copy)
    options = SuiteOptions(data_root=tiny_acdc, cval=0, extra_roots={"sunnybrook": sunnybrook})
    result = execute(RunRequest(suite="cardiac", method="standard", budget="smoke", out=tmp_path / "runs",
                                options=options, progress=False), log=lambda m: None)
    # a cross-site root adds test sets, not training data: the finished run is extended, not retrained
    assert result.already_finished and result.folder.path == copy
    sb = result.records[result.records["test_set"] == "Sunnybrook"]
    assert set(sb["kind"]) == {"cross-site"} and set(sb["vendor"]) == {"GE"}
    ed, es = sb[sb["frame"] == "ED"], sb[sb["frame"] == "ES"]
    assert set(ed["class"]) == {"LV", "MYO"} and set(es["class"]) == {"LV"}  # never RV; no MYO at ES
    assert set(sb["unit"]) == {f"{s}_{f}" for s in ("SCD0000101", "SCD0000201") for f in ("ED", "ES")}


def test_artefact_sets_are_evaluated_per_copy_and_summarised_by_corruption(tiny_acdc, tmp_path, monkeypatch):
    from robench.benchmark.suites import cardiac
    from robench.leaderboards import collect_records, leaderboard

    monkeypatch.setattr(cardiac, "ACDC_TEST", ("patient007", "patient008"))
    options = SuiteOptions(data_root=tiny_acdc, cval=0, corruptions=("acdc-c", "graded"), cache_dir=tmp_path / "cache")
    result = execute(RunRequest(suite="cardiac", method="standard", budget="smoke", out=tmp_path / "runs",
                                options=options, progress=False), log=lambda m: None)
    records = result.records[result.records["primary"]]
    bias = records[records["test_set"] == "RandBias"]
    # 3 copies of each volume; smoke evaluates artefact sets on the first 2 of the 4 source volumes
    assert bias["case_id"].nunique() == 2 * 3 and bias["unit"].nunique() == 2
    assert set(bias["kind"]) == {"artefact"} and set(bias["severity"]) == {0}
    graded = records[records["severity"] > 0]
    assert graded.groupby("corruption")["severity"].nunique().eq(5).all() and graded["corruption"].nunique() >= 9
    board = leaderboard(*collect_records(tmp_path / "runs"), n_boot=0)
    main, by_type = board.tables
    assert {"ACDC", "RandBias", "RandGhosting", "RandMotion", "RandSpike"} <= {c.name for c in main.columns}
    assert main.rows[0].cells["mCE"].mean == pytest.approx(1.0)  # standard against its own errors
    assert by_type.rows[0].cells["Avg"].mean == pytest.approx(main.rows[0].cells["Corruption"].mean)


def test_mnms_is_one_cross_site_set_with_a_per_vendor_breakdown(tiny_acdc, tmp_path):
    from robench.benchmark.suites.cardiac import CardiacSuite
    from robench.leaderboards import leaderboard
    from tests.fixtures import write_mnms

    root = write_mnms(tmp_path / "mnms", ["A1", "A2", "B1"], vendor=["A", "A", "B"])
    data = CardiacSuite().build(SuiteOptions(data_root=tiny_acdc, cval=0, extra_roots={"mnms": root}))
    [mnms] = [t for t in data.test_sets if t.kind == "cross-site"]
    assert mnms.name == "M&Ms" and len(mnms.cases) == 3 * 2
    assert sorted({r.meta["vendor"] for r in mnms.cases}) == ["A", "B"]
    # records of such a set: the main table keeps one M&Ms column, a second table splits it per vendor
    from tests.test_leaderboard import make_records

    records = make_records("r", "standard", 0, lambda t, case, cls, seed: 0.5 + 0.1 * (case % 2),
                           test_sets={"M&Ms": "cross-site"}, n_cases=4)
    records["vendor"] = records["case_id"].map({"case00": "A", "case01": "B", "case02": "A", "case03": "B"})
    main, vendors = leaderboard(records, n_boot=0).tables
    assert [c.name for c in main.columns if c.role == "test_set"] == ["M&Ms"]
    cells = vendors.rows[0].cells
    assert cells["M&Ms A"].mean == pytest.approx(0.5) and cells["M&Ms B"].mean == pytest.approx(0.6)
