"""nnU-Net v2 raw and MSD data sets: reading, splits, fractions, slicing, sampling, bad input; the real fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from robench.benchmark.config import Geometry, get_budget
from robench.benchmark.suites import get_suite
from robench.benchmark.suites.base import SuiteOptions, nested_subset, seeded_split
from robench.benchmark.suites.nnunet import load_case, read_dataset, slice_axis_of
from robench.errors import ConfigError, DataError
from tests.conftest import SHARED_DATA
from tests.fixtures import write_msd, write_nnunet_v2

HIPPOCAMPUS = SHARED_DATA / "Task04_Hippocampus"
LGG = SHARED_DATA / "lgg-flair"
BRATS = SHARED_DATA / "brats2015-samples"
needs = {
    name: pytest.mark.skipif(not (path / marker).exists(), reason=f"real data not found at {path} (never copied into the repository)")
    for name, path, marker in (("hippocampus", HIPPOCAMPUS, "dataset.json"), ("lgg", LGG, "dataset.json"), ("brats", BRATS, "train"))
}


def test_nnunet_v2_reads_channels_labels_and_cases(tmp_path):
    write_nnunet_v2(tmp_path, ["b", "a", "c"], channels=("FLAIR", "T1c"), labels={"background": 0, "oedema": 1, "core": 2})
    ds = read_dataset(tmp_path)
    assert ds.layout == "nnunet-v2" and ds.channels == ("FLAIR", "T1c") and ds.classes == {"oedema": 1, "core": 2}
    assert [c.case_id for c in ds.cases] == ["a", "b", "c"] and len(ds.cases[0].images) == 2
    case = load_case(ds, ds.cases[0])
    assert case.image.shape == (6, 2, 28, 32)  # (Z, C, Y, X) from file (X, Y, Z) per channel
    np.testing.assert_allclose(case.image[:, 1], 2 * case.image[:, 0], rtol=1e-6)  # channel order kept
    assert case.label.shape == (6, 28, 32) and set(np.unique(case.label)) <= {0, 1, 2}


def test_msd_layout_reads_4d_multichannel_files_and_label_names(tmp_path):
    write_msd(tmp_path, ["hippocampus_002", "hippocampus_001"], modalities=("T1", "T2"))
    ds = read_dataset(tmp_path)
    assert ds.layout == "msd" and ds.channels == ("T1", "T2") and ds.classes == {"Anterior": 1, "Posterior": 2}
    case = load_case(ds, ds.cases[0])
    assert case.case_id == "hippocampus_001" and case.image.shape == (6, 2, 28, 32)


def test_slices_go_along_the_axis_of_largest_spacing_or_the_one_asked_for(tmp_path):
    assert slice_axis_of((1.0, 1.0, 1.0)) == 2 and slice_axis_of((3.0, 1.0, 1.0)) == 0 and slice_axis_of((1, 1, 1), 1) == 1
    write_nnunet_v2(tmp_path, ["a", "b", "c"], spacing=(4.0, 1.0, 1.5))
    ds = read_dataset(tmp_path)
    case = load_case(ds, ds.cases[0])
    assert case.image.shape == (32, 6, 28) and case.spacing == (4.0, 1.5, 1.0) and case.meta["slice_axis"] == 0
    assert load_case(ds, ds.cases[0], slice_axis=2).image.shape == (6, 28, 32)


def test_splits_are_seeded_disjoint_and_fractions_nested():
    ids = [f"c{i:02d}" for i in range(40)]
    a, b, other = seeded_split(ids, 0, 0.2, 0.1), seeded_split(ids, 0, 0.2, 0.1), seeded_split(ids, 1, 0.2, 0.1)
    assert a == b and a != other
    assert (len(a["test"]), len(a["val"]), len(a["train"])) == (8, 4, 28)
    assert not (set(a["test"]) & set(a["val"])) and not (set(a["train"]) & set(a["test"] + a["val"]))
    subsets = [set(nested_subset(a["train"], f)) for f in (0.05, 0.1, 0.25, 0.5, 1.0)]
    assert [len(s) for s in subsets] == [2, 3, 7, 14, 28]
    assert all(small <= large for small, large in zip(subsets, subsets[1:]))
    assert len(nested_subset(a["train"], 0.001)) == 1
    with pytest.raises(ConfigError, match="train-fraction"):
        nested_subset(a["train"], 0.0)


def test_budgets_keep_a_suites_field_of_view_and_leave_cardiac_untouched():
    quick = get_budget("quick")
    assert quick.on_geometry(None) is quick and quick.on_geometry(Geometry(1.36719, 192)) is quick
    brain = quick.on_geometry(Geometry(1.0, 256))
    assert (brain.crop, brain.spacing_mm) == (128, 2.0) and brain.fingerprint() != quick.fingerprint()
    small = get_budget("smoke").on_geometry(Geometry(1.0, 64))
    assert small.crop == 48 and small.spacing_mm == pytest.approx(64 / 48)  # never below 48², same field of view


def test_oversampling_draws_a_third_of_each_batch_from_slices_of_the_rarest_class():
    from robench.benchmark.train import Trainer, TrainingSlices

    labels = torch.zeros(30, 8, 8, dtype=torch.int64)
    labels[:20, 2:6, 2:6] = 1  # class 1 common
    labels[25, 3, 3] = 2  # class 2 in one slice only
    data = TrainingSlices(torch.rand(30, 8, 8), labels)
    assert data.rarest_class_slices().tolist() == [25]
    trainer = Trainer.__new__(Trainer)
    trainer.sampler, trainer.oversample_foreground, trainer._rare = np.random.default_rng(0), 1 / 3, None
    draws = np.stack([trainer.sample_indices(data, 6) for _ in range(200)])
    assert (draws[:, :2] == 25).all()  # ⌈6/3⌉ forced
    assert (draws[:, 2:] == 25).mean() < 0.2  # the rest uniform
    trainer.oversample_foreground = 0.0
    plain = trainer.sample_indices(data, 6)
    assert plain.shape == (6,)


@pytest.mark.parametrize("breakage, message", [
    (lambda r: (r / "dataset.json").unlink(), "dataset.json: missing"),
    (lambda r: _edit(r, labels={"background": 0, "whole": [1, 2]}), "region-based"),
    (lambda r: (r / "imagesTr" / "b_0000.nii.gz").unlink(), "b_0000.nii.gz: missing"),
    (lambda r: (r / "labelsTr" / "c.nii.gz").unlink(), "no label file for c"),
    (lambda r: _edit(r, file_ending=".png"), "file_ending '.png' is not supported"),
    (lambda r: _edit(r, numTraining=7), "numTraining is 7"),
    (lambda r: _edit(r, labels={"background": 0, "lesion": 1, "never": 2}), None),  # a listed label absent: fine
    (lambda r: (r / "dataset.json").write_text("{"), "not valid JSON"),
])
def test_bad_nnunet_data_sets_name_the_file_and_the_fix(tmp_path, breakage, message):
    write_nnunet_v2(tmp_path, ["a", "b", "c"])
    breakage(tmp_path)
    if message is None:
        assert read_dataset(tmp_path).classes == {"lesion": 1, "never": 2}
        return
    with pytest.raises(DataError, match=message):
        read_dataset(tmp_path)


def test_bad_voxels_and_grids_are_refused_on_load(tmp_path):
    write_nnunet_v2(tmp_path, ["a", "b", "c"])
    ds = read_dataset(tmp_path)
    image = tmp_path / "imagesTr" / "a_0000.nii.gz"
    data = np.asarray(nib.load(str(image)).dataobj).copy()
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(image))
    with pytest.raises(DataError, match="NaN"):
        load_case(ds, ds.cases[0])
    nib.save(nib.Nifti1Image(data[:-1], np.eye(4)), str(image))
    with pytest.raises(DataError, match="does not match its label"):
        load_case(ds, ds.cases[0])
    nib.save(nib.Nifti1Image(np.nan_to_num(data), np.diag([2.0, 1, 1, 1])), str(image))
    with pytest.raises(DataError, match="affine differs"):
        load_case(ds, ds.cases[0])
    label = tmp_path / "labelsTr" / "b.nii.gz"
    nib.save(nib.Nifti1Image(np.full((32, 28, 6), 5, np.uint8), np.eye(4)), str(label))
    with pytest.raises(DataError, match="unexpected label values"):
        load_case(ds, ds.cases[1])


def _edit(root: Path, **changes) -> None:
    spec = json.loads((root / "dataset.json").read_text())
    spec.update(changes)
    (root / "dataset.json").write_text(json.dumps(spec))


def test_multichannel_input_reaches_the_network_as_channels(tmp_path):
    from typer.testing import CliRunner

    from robench.benchmark.store import RunFolder
    from robench.cli import app

    write_nnunet_v2(tmp_path / "data", [f"c{i}" for i in range(5)], channels=("FLAIR", "T1c"))
    data = get_suite("nnunet").build(SuiteOptions(data_root=tmp_path / "data"))
    assert data.channels == ("FLAIR", "T1c") and not [t for t in data.test_sets if t.kind == "artefact"]
    out = tmp_path / "runs"
    args = ["run", "--suite", "nnunet", "--data-root", str(tmp_path / "data"), "--budget", "smoke", "--out", str(out), "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = list(out.iterdir())
    assert RunFolder(run_dir).config()["channels"] == ["FLAIR", "T1c"] and len(RunFolder(run_dir).records())
    from robench.benchmark.reopen import reopen

    assert reopen(run_dir, "cpu").method.net.encoder.stem[0].in_channels == 2  # FLAIR and T1c as two input channels
    refused = CliRunner().invoke(app, [*args, "--method", "rand-conv"])
    assert refused.exit_code != 0 and "single-channel images only" in refused.output


@needs["brats"]
def test_a_two_channel_nnunet_v2_copy_of_brats_reads_back(tmp_path):
    subjects = sorted(p for p in BRATS.glob("*/brats_*") if p.is_dir())[:3]
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    for s in subjects:
        for c, name in enumerate(("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd")):
            (tmp_path / "imagesTr" / f"{s.name}_{c:04d}.nii.gz").symlink_to(s / f"{name}.nii.gz")
        (tmp_path / "labelsTr" / f"{s.name}.nii.gz").symlink_to(s / "OTMultiClass.nii.gz")
    labels = {"background": 0, "necrosis": 1, "oedema": 2, "non-enhancing": 3, "enhancing": 4}
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "FLAIR", "1": "T1c"}, "labels": labels, "file_ending": ".nii.gz"}))
    ds = read_dataset(tmp_path)
    case = load_case(ds, ds.cases[0])
    assert case.image.shape == (155, 2, 240, 240) and case.spacing == (1.0, 1.0, 1.0)
    assert set(np.unique(case.label)) <= {0, 1, 2, 3, 4}


@needs["hippocampus"]
def test_msd_hippocampus_reads_as_it_comes():
    data = get_suite("nnunet").build(SuiteOptions(data_root=HIPPOCAMPUS))
    assert data.classes == {"Anterior": 1, "Posterior": 2}
    assert (len(data.train), len(data.val), len(data.test_sets[0].cases)) == (140, 20, 40)
    assert data.geometry == Geometry(1.0, 64)
    maxima = [float(ref.load().image.max()) for ref in data.train[:12]]
    assert max(maxima) / min(maxima) > 10  # intensities differ wildly between files: normalised per volume later
    assert data.splits["train"] == tuple(sorted(r.case_id for r in data.train))


@needs["lgg"]
def test_brain_lgg_trains_on_du_and_tests_every_other_institution_with_more_than_one_patient():
    data = get_suite("brain-lgg").build(SuiteOptions(data_root=LGG))
    sets = {t.name: (t.kind, len(t.cases)) for t in data.test_sets}
    assert sets == {"DU": ("intra", 9), "HT": ("cross-site", 23), "CS": ("cross-site", 11), "FG": ("cross-site", 9)}
    assert {r.meta["site"] for r in data.train + data.val} == {"DU"} and len(data.train) + len(data.val) == 21
    assert any("EZ" in n for n in data.notes) and any("nominal" in n for n in data.notes)
    assert data.classes == {"abnormality": 1} and data.geometry == Geometry(1.0, 256)
    quarter = get_suite("brain-lgg").build(SuiteOptions(data_root=LGG, train_fraction=0.25))
    assert set(r.case_id for r in quarter.train) < set(r.case_id for r in data.train) and len(quarter.train) == 5
    assert quarter.fingerprint != data.fingerprint


@needs["lgg"]
def test_brain_lgg_artefact_sets_are_made_on_its_own_grid(tmp_path):
    data = get_suite("brain-lgg").build(SuiteOptions(data_root=LGG, corruptions=("graded",), cache_dir=tmp_path))
    artefacts = {t.name: t for t in data.test_sets if t.kind == "artefact"}
    assert len(artefacts) == 45 and all(len(t.cases) == 9 for t in artefacts.values())
    case = artefacts["noise@5"].cases[0].load()
    source = data.test_sets[0].cases[0].load()
    assert case.meta["grid"] == "paper (1 mm in-plane)" and case.image.shape == source.image.shape  # 256² at 1 mm
    assert case.meta["source_case"] == source.case_id and np.array_equal(case.label, source.label)


def test_a_run_on_an_nnunet_data_set_names_its_classes_records_its_split_and_evaluates_another_folder(tmp_path):
    from typer.testing import CliRunner

    from robench.benchmark.store import RunFolder
    from robench.cli import app

    cli = CliRunner()
    labels = {"background": 0, "oedema": 1, "core": 2}
    data = write_nnunet_v2(tmp_path / "Dataset001_Toy", [f"t{i:02d}" for i in range(8)], labels=labels)
    other = write_nnunet_v2(tmp_path / "Dataset002_Other", ["o1", "o2"], labels=labels, seed=5)
    out = tmp_path / "runs"
    args = ["run", "--suite", "nnunet", "--data-root", str(data), "--method", "standard", "--budget", "smoke",
            "--out", str(out), "--threads", "1", "--train-fraction", "0.5"]
    result = cli.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "oedema" in result.output and "core" in result.output and "SENS" in result.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    folder = RunFolder(run_dir)
    config = folder.config()
    assert config["classes"] == {"oedema": 1, "core": 2} and config["train_fraction"] == 0.5
    assert len(config["splits"]["train"]) == 3 and set(config["splits"]["train"]) <= set(config["splits"]["train_pool"])
    assert config["budget_details"]["crop"] == 48 and config["foreground_share"] == pytest.approx(1 / 3)
    records = folder.records()
    assert set(records["class"]) == {"oedema", "core"}
    # ACDC-C, the default artefact family, attaches to any suite, on its own grid
    assert set(records["test_set"]) == {"Dataset001_Toy", "RandBias", "RandGhosting", "RandMotion", "RandSpike"}
    result = cli.invoke(app, ["evaluate", str(run_dir), "--test-root", str(other), "--device", "cpu", "--out", str(tmp_path / "ext")])
    assert result.exit_code == 0, result.output
    assert set(folder.all_records()["case_id"]) >= {"o1", "o2"}
    (copy,) = (tmp_path / "ext").glob("*.parquet")
    assert set(pd.read_parquet(copy)["case_id"]) == {"o1", "o2"}
    result = cli.invoke(app, ["leaderboard", str(out), "--metric", "sens"])
    assert result.exit_code == 0 and "sensitivity" in result.output.lower() and "empty masks" in result.output.lower()
    full = [a if a != "0.5" else "1.0" for a in args] + ["--corruptions", "none"]
    assert cli.invoke(app, full).exit_code == 0
    result = cli.invoke(app, ["leaderboard", str(out)], env={"COLUMNS": "250"})
    # another data condition: a table of its own, never pooled or ranked with the full data
    assert result.exit_code == 0 and "budget `smoke` · training fraction 0.5 · Dice" in result.output
    assert "budget `smoke` · Dice" in result.output and "train_fraction=" not in result.output
    listed = write_nnunet_v2(tmp_path / "Dataset004_Listed", [f"l{i}" for i in range(5)])
    spec = json.loads((listed / "dataset.json").read_text())
    (listed / "dataset.json").write_text(json.dumps({**spec, "labels": {"background": 0, "lesion": 1, "never": 2}}))
    result = cli.invoke(app, ["run", "--suite", "nnunet", "--data-root", str(listed), "--budget", "smoke", "--out", str(out)])
    assert result.exit_code != 0 and "classes ['never'] occur in no training slice" in result.output
    wrong = write_nnunet_v2(tmp_path / "Dataset003_Wrong", ["w1"], labels={"background": 0, "tumour": 1})
    result = cli.invoke(app, ["evaluate", str(run_dir), "--test-root", str(wrong), "--device", "cpu"])
    assert result.exit_code != 0 and "differ from the run's" in result.output


def test_suites_lists_the_nnunet_layout_suites_with_their_sources():
    from typer.testing import CliRunner

    from robench.cli import app

    out = CliRunner().invoke(app, ["suites"])
    assert out.exit_code == 0 and "nnunet" in out.output and "brain-lgg" in out.output and "dataset.json" in out.output


def test_lesion_synth_is_written_in_the_nnunet_layout_at_the_foreground_fraction_asked_for(tmp_path):
    from robench.benchmark.suites.lesion_synth import SITES, ensure_lesion_synth, render_subject

    for fraction in (1 / 100, 1 / 2000):
        image, label = render_subject(np.random.default_rng(0), SITES["A"], fraction)
        head = (image > 20).sum()
        assert fraction <= label.sum() / head < 4 * fraction and label.any()
    with pytest.raises(ConfigError, match="foreground fraction"):
        ensure_lesion_synth(tmp_path, foreground_fraction=0.1)
    data = get_suite("lesion-synth").build(SuiteOptions(cache_dir=tmp_path))
    assert read_dataset(ensure_lesion_synth(tmp_path)).layout == "nnunet-v2"
    assert {t.name: (t.kind, len(t.cases)) for t in data.test_sets} == {
        "SiteA": ("intra", 10), "SiteB": ("cross-site", 10), "SiteC": ("cross-site", 10)}
    a, b = data.test_sets[0].cases[0].load(), data.test_sets[1].cases[0].load()
    assert a.image.shape == (12, 96, 96) and a.spacing == (5.0, 2.0, 2.0)
    noise = [float(np.std(np.diff(c.image[6, 44:52, 44:52], axis=0))) for c in (a, b)]  # inside the ventricles
    assert noise[1] > noise[0]  # site B is noisier than A
    assert ensure_lesion_synth(tmp_path) == ensure_lesion_synth(tmp_path)  # cached: generated once


def test_a_test_set_spanning_several_sites_is_summarised_per_site():
    import pandas as pd

    from robench.benchmark.summary import by_site, summarise_test_sets

    rows = [{"test_set": "Other", "kind": "cross-site", "mode": "ftn", "case_id": f"c{i}", "site": site, "class": "abnormality",
             "dice": d, "hd95": 1.0, "sensitivity": d, "precision": 1.0} for i, (site, d) in enumerate([("HT", 0.8), ("HT", 0.6), ("CS", 0.2)])]
    records = pd.DataFrame(rows)
    summary = summarise_test_sets(by_site(records)).set_index("test_set")
    assert summary.loc["Other · HT", "dice"] == pytest.approx(0.7) and summary.loc["Other · CS", "cases"] == 1
    assert by_site(records[records.site == "HT"]).empty


def test_the_cardiac_suites_train_on_nested_fractions_of_their_subjects_too():
    full = get_suite("cardiac-synth").build(SuiteOptions())
    half = get_suite("cardiac-synth").build(SuiteOptions(train_fraction=0.5))
    subjects = {r.case_id.rsplit("_", 1)[0] for r in full.train}
    kept = {r.case_id.rsplit("_", 1)[0] for r in half.train}
    assert len(subjects) == 10 and len(kept) == 5 and kept < subjects
    assert len(half.train) == 2 * len(kept)  # both frames of every kept subject
    assert [r.case_id for r in half.test_sets[0].cases] == [r.case_id for r in full.test_sets[0].cases]
