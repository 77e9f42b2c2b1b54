"""Readers of the official ACDC, SSL4MIS HDF5 and M&Ms layouts, and their errors on bad input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from robench.benchmark.suites import acdc, mnms
from robench.benchmark.suites.cardiac import ACDC_TEST, ACDC_TRAIN, ACDC_VAL, CardiacSuite
from robench.benchmark.suites.base import SuiteOptions
from robench.errors import ConfigError, DataError
from tests.conftest import ACDC_ROOT, needs_acdc
from tests.fixtures import write_acdc_hdf5, write_acdc_nifti, write_mnms


def test_official_nifti_layout_reads_ed_and_es_with_header_spacing(tmp_path):
    write_acdc_nifti(tmp_path, ["patient001"], spacing=(1.5, 1.25, 8.0))
    subjects = acdc.discover_acdc(tmp_path)
    assert list(subjects) == ["patient001"]
    refs = acdc.case_refs(subjects["patient001"], {"site": "X"})
    assert [r.case_id for r in refs] == ["patient001_ED", "patient001_ES"]
    case = refs[0].load()
    assert case.image.shape == (6, 40, 36)  # (Z, Y, X) from NIfTI (X, Y, Z)
    assert case.spacing == (8.0, 1.25, 1.5)
    assert set(np.unique(case.label)) == {0, 1, 2, 3}
    assert case.meta["spacing_source"] == "header" and case.meta["group"] == "NOR"


def test_hdf5_layout_takes_spacing_from_info_csv(tmp_path):
    write_acdc_hdf5(tmp_path, ["patient001", "patient002"], spacing=(1.4, 1.4, 10.0))
    subjects = acdc.discover_acdc(tmp_path)
    case = acdc.case_refs(subjects["patient002"], {})[1].load()
    assert case.case_id == "patient002_ES"
    assert case.spacing == (10.0, 1.4, 1.4)
    assert case.meta["spacing_source"] == "info.csv"


def test_hdf5_without_info_csv_says_what_to_add(tmp_path):
    write_acdc_hdf5(tmp_path, ["patient001"])
    (tmp_path / "info.csv").unlink()
    with pytest.raises(DataError, match="info.csv.*spacing_x"):
        acdc.discover_acdc(tmp_path)


def test_missing_root_and_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        acdc.discover_acdc(tmp_path / "nowhere")
    (tmp_path / "random.txt").write_text("x")
    with pytest.raises(DataError, match="unknown ACDC layout"):
        acdc.discover_acdc(tmp_path)


def test_corrupt_nifti_names_the_file(tmp_path):
    write_acdc_nifti(tmp_path, ["patient001"])
    bad = tmp_path / "training" / "patient001" / "patient001_frame01.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    ref = acdc.case_refs(acdc.discover_acdc(tmp_path)["patient001"], {})[0]
    with pytest.raises(DataError, match="patient001_frame01.nii.gz.*cannot read NIfTI"):
        ref.load()


def test_corrupt_hdf5_names_the_file(tmp_path):
    write_acdc_hdf5(tmp_path, ["patient001"])
    (tmp_path / "patient001_frame01.h5").write_bytes(b"\x00" * 100)
    ref = acdc.case_refs(acdc.discover_acdc(tmp_path)["patient001"], {})[0]
    with pytest.raises(DataError, match="patient001_frame01.h5.*cannot read HDF5"):
        ref.load()


def _rewrite_label(tmp_path, transform):
    path = tmp_path / "training" / "patient001" / "patient001_frame01_gt.nii.gz"
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(transform(np.asarray(img.dataobj)), img.affine), str(path))
    return acdc.case_refs(acdc.discover_acdc(tmp_path)["patient001"], {})[0]


def test_label_shape_mismatch(tmp_path):
    write_acdc_nifti(tmp_path, ["patient001"])
    ref = _rewrite_label(tmp_path, lambda a: a[:-2])
    with pytest.raises(DataError, match="label shape .* does not match"):
        ref.load()


def test_unexpected_label_values(tmp_path):
    write_acdc_nifti(tmp_path, ["patient001"])
    ref = _rewrite_label(tmp_path, lambda a: np.where(a == 3, 7, a).astype(np.uint8))
    with pytest.raises(DataError, match=r"unexpected label values \[7\]"):
        ref.load()


def test_nan_in_image(tmp_path):
    write_acdc_nifti(tmp_path, ["patient001"])
    path = tmp_path / "training" / "patient001" / "patient001_frame01.nii.gz"
    img = nib.load(str(path))
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(path))
    ref = acdc.case_refs(acdc.discover_acdc(tmp_path)["patient001"], {})[0]
    with pytest.raises(DataError, match="NaN"):
        ref.load()


def test_missing_spacing(tmp_path):
    write_acdc_nifti(tmp_path, ["patient001"])
    path = tmp_path / "training" / "patient001" / "patient001_frame01.nii.gz"
    img = nib.Nifti1Image(np.asarray(nib.load(str(path)).dataobj), None)
    img.header.set_zooms((0.0, 0.0, 0.0))
    nib.save(img, str(path))
    ref = acdc.case_refs(acdc.discover_acdc(tmp_path)["patient001"], {})[0]
    with pytest.raises(DataError, match="spacing"):
        ref.load()


def test_info_cfg_without_frames(tmp_path):
    write_acdc_nifti(tmp_path, ["patient001"])
    (tmp_path / "training" / "patient001" / "Info.cfg").write_text("Group: NOR\n")
    with pytest.raises(DataError, match="Info.cfg.*'ED:'"):
        acdc.discover_acdc(tmp_path)


def test_mnms_remaps_labels_to_acdc_order_and_reads_vendor(tmp_path):
    write_mnms(tmp_path, ["A1B2C3"], vendor="C")
    subjects = mnms.discover_mnms(tmp_path)
    ed, es = mnms.case_refs(subjects["A1B2C3"], {})
    case = ed.load()
    assert case.meta["vendor"] == "C" and case.meta["frame"] == "ED"
    # the fixture draws LV as the central disc: after remapping it must carry the ACDC LV value 3
    centre = case.label[0, case.label.shape[1] // 2, case.label.shape[2] // 2]
    assert centre == 3
    assert set(np.unique(es.load().label)) == {0, 1, 2, 3}


def test_mnms_without_csv(tmp_path):
    write_mnms(tmp_path, ["A1B2C3"])
    (tmp_path / "mnms_info.csv").unlink()
    with pytest.raises(DataError, match="information CSV"):
        mnms.discover_mnms(tmp_path)


def test_cardiac_suite_reports_missing_split_subjects(tmp_path):
    write_acdc_hdf5(tmp_path, ["patient001", "patient004"])
    with pytest.raises(DataError, match="training split needs .*patient012"):
        CardiacSuite().build(SuiteOptions(data_root=tmp_path, cval=0))


def test_cardiac_suite_needs_a_data_root_and_valid_cval(tmp_path):
    with pytest.raises(ConfigError, match="--data-root"):
        CardiacSuite().build(SuiteOptions())
    with pytest.raises(ConfigError, match="--cval"):
        CardiacSuite().build(SuiteOptions(data_root=tmp_path, cval=5))


def test_split_lists_match_the_protocol():
    assert len(ACDC_TEST) == 20 and ACDC_TEST[0] == "patient007" and ACDC_TEST[-1] == "patient090"
    for cval in (0, 1, 2):
        assert len(ACDC_TRAIN[cval]) == 10 and len(ACDC_VAL[cval]) == 5
        assert not set(ACDC_TRAIN[cval]) & {int(s[-3:]) for s in ACDC_TEST}
    assert {2, 22} <= set(ACDC_TRAIN[1]) & set(ACDC_VAL[1])  # published overlap, kept as is


@needs_acdc
def test_real_acdc_suite_has_the_paper_splits():
    data = CardiacSuite().build(SuiteOptions(data_root=ACDC_ROOT, cval=0))
    assert len(data.train) == 20 and len(data.val) == 10  # subjects × {ED, ES}
    (test,) = data.test_sets
    assert test.name == "ACDC" and test.kind == "intra" and len(test.cases) == 40
    case = test.cases[0].load()
    assert case.spacing[0] > 4 and 1.0 < case.spacing[1] < 2.0
