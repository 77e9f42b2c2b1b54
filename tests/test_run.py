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
    path, records = evaluate_external(finished.folder.path, other, name="Other", kind="cross-site", device="cpu")
    assert path.exists() and path.parent.name == "evaluations"
    assert set(records["case_id"]) == {"patient101_ED", "patient101_ES", "patient102_ED", "patient102_ES"}
    assert (records["test_set"] == "Other").all() and (records["kind"] == "cross-site").all()


def test_predict_refuses_unfinished_runs(tmp_path):
    from robench.benchmark.external import predict_files

    with pytest.raises(RunStateError, match="not a robench run folder"):
        list(predict_files(tmp_path, [], tmp_path, mode=None, device="cpu"))
