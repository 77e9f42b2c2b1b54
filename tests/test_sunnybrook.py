"""Sunnybrook reader: both folder layouts, polygon masks, ED/ES assignment, per-case classes, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from robench.benchmark.suites import sunnybrook as sb
from robench.errors import DataError
from tests.conftest import SHARED_DATA
from tests.fixtures import write_sunnybrook

SUNNYBROOK_ROOT = SHARED_DATA / "sunnybrook"
needs_sunnybrook = pytest.mark.skipif(
    not (SUNNYBROOK_ROOT / "link.csv").exists(),
    reason=f"real Sunnybrook data not found at {SUNNYBROOK_ROOT} (data is never copied into the repository)",
)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    return {layout: write_sunnybrook(tmp_path_factory.mktemp(layout), layout) for layout in ("original", "redistributed")}


def _cases(root):
    test_set, _ = sb.sunnybrook_test_set(root)
    return {ref.case_id: ref.load() for ref in test_set.cases}


def _redistributed(tmp_path, **kwargs):
    return write_sunnybrook(tmp_path, "redistributed", **kwargs)


def test_both_layouts_give_the_same_cases(layouts):
    original, redistributed = _cases(layouts["original"]), _cases(layouts["redistributed"])
    assert list(original) == list(redistributed)
    assert len(original) == 2 * 3 * 2  # patients x locations x {ED, ES}
    for case_id, case in original.items():
        other = redistributed[case_id]
        assert np.array_equal(case.image, other.image) and np.array_equal(case.label, other.label)
        assert case.spacing == other.spacing == (8.0, 1.25, 1.5)  # (thickness, PixelSpacing row, column)
        assert dict(case.meta) == dict(other.meta)


def test_masks_fill_the_contour_polygons_in_column_row_order(layouts):
    cases = _cases(layouts["redistributed"])
    ed, es = cases["SCD0000101_ED_0004"], cases["SCD0000101_ES_0002"]
    assert ed.image.shape == ed.label.shape == (1, 32, 40) and ed.image.dtype == np.float32
    lv = np.zeros((32, 40), bool)
    lv[6:12, 10:20] = True  # x 9.5..19.5 are columns, y 5.5..11.5 rows: pixel centres inside
    assert np.array_equal(ed.label[0] == 3, lv)
    assert (ed.label == 2).sum() == 16 * 12 - 60  # epicardium rectangle minus the LV: a ring
    assert (es.label == 3).sum() == 24 and (es.label == 2).sum() == 0
    assert np.all(ed.image[ed.label == 3] == 1000) and np.all(ed.image[ed.label != 3] == 100)


def test_polygon_mask_uses_pixel_centres_and_clips_to_the_image():
    square = np.array([(1.5, 1.5), (4.5, 1.5), (4.5, 4.5), (1.5, 4.5)])
    mask = sb.polygon_mask(square, (6, 8))
    assert mask.sum() == 9 and mask[2:5, 2:5].all()
    assert np.argwhere(sb.polygon_mask(square + (5.0, 0.0), (6, 8))).tolist() == [[2, 7], [3, 7], [4, 7]]  # columns 8, 9 are off
    assert sb.polygon_mask(square - 10.0, (6, 8)).sum() == 0


def test_phases_classes_and_units(layouts):
    test_set, _ = sb.sunnybrook_test_set(layouts["original"])
    meta = {ref.case_id: ref.meta for ref in test_set.cases}
    # ED is the last cine frame (instance 4, 8, 12), ES frame 1 (2, 6, 10)
    assert [i for i in meta if i.startswith("SCD0000101")] == [
        "SCD0000101_ES_0002", "SCD0000101_ED_0004", "SCD0000101_ES_0006", "SCD0000101_ED_0008",
        "SCD0000101_ES_0010", "SCD0000101_ED_0012",
    ]
    assert meta["SCD0000101_ED_0004"]["classes"] == ("LV", "MYO")
    assert meta["SCD0000101_ES_0002"]["classes"] == ("LV",)
    # the apex has no epicardium at either phase: ED from the TriggerTime, and MYO is not scored there
    assert meta["SCD0000101_ED_0012"]["classes"] == ("LV",) and meta["SCD0000101_ES_0010"]["frame"] == "ES"
    assert meta["SCD0000201_ED_0008"]["unit"] == "SCD0000201_ED"
    assert meta["SCD0000201_ED_0008"]["subject"] == "SCD0000201" and meta["SCD0000201_ED_0008"]["instance"] == 8
    assert (test_set.name, test_set.kind, dict(test_set.meta)) == ("Sunnybrook", "cross-site", {"site": "Sunnybrook", "vendor": "GE"})


def test_the_test_set_lists_the_files_that_define_its_cases(layouts):
    root = layouts["redistributed"]
    _, files = sb.sunnybrook_test_set(root)
    contours = sorted(root.rglob("*contour-manual.txt"))
    assert sorted(f for f in files if f.suffix == ".txt") == contours
    assert root / "link.csv" in files and len([f for f in files if f.suffix == ".dcm"]) == 12
    assert all(f.is_file() for f in files)


def test_dicoms_are_matched_by_instance_number_not_file_name(tmp_path, layouts):
    root = _redistributed(tmp_path)
    folder = root / "dicoms" / "SCD0000101"
    paths = sorted(folder.glob("*.dcm"))
    for k, path in enumerate(paths):  # shift every name by one: names now point at the wrong instances
        path.rename(folder / f"tmp{k}")
    for k in range(len(paths)):
        (folder / f"tmp{k}").rename(paths[(k + 1) % len(paths)])
    assert {i: c.image.tobytes() for i, c in _cases(root).items()} == {
        i: c.image.tobytes() for i, c in _cases(layouts["redistributed"]).items()
    }


def test_without_an_id_table_the_published_ids_apply(tmp_path):
    root = write_sunnybrook(tmp_path, "original", id_table=False)
    assert list(sb.discover_sunnybrook(root)) == ["SCD0000101", "SCD0000201"]
    other = write_sunnybrook(tmp_path / "other", "redistributed", subjects=(("SCD0000901", "SC-HF-I-10"),), id_table=False)
    patient = sb.discover_sunnybrook(other)["SCD0000901"]
    assert patient.original_id == "SC-HF-I-10" and len(patient.slices) == 6


def test_unknown_contour_folder_says_what_to_add(tmp_path):
    root = _redistributed(tmp_path, subjects=(("SCD0000101", "SC-HF-I-99"),), id_table=False)
    with pytest.raises(DataError, match=r"SC-HF-I-99.*maps to no SCD patient id.*link\.csv"):
        sb.discover_sunnybrook(root)


def test_contours_without_their_dicom_folder(tmp_path):
    root = _redistributed(tmp_path)
    shutil.rmtree(root / "dicoms" / "SCD0000201")
    with pytest.raises(DataError, match=r"SC-HF-I-2.*belong to SCD0000201.*no DICOM folder"):
        sb.discover_sunnybrook(root)


def test_contour_whose_instance_has_no_dicom_names_the_contour(tmp_path):
    root = _redistributed(tmp_path)
    (root / "dicoms" / "SCD0000101" / "6.dcm").unlink()
    with pytest.raises(DataError, match=r"IM-0001-0006-icontour-manual\.txt: instance 6 has no DICOM of SCD0000101"):
        sb.discover_sunnybrook(root)


def test_missing_root_and_missing_dicoms(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        sb.discover_sunnybrook(tmp_path / "nowhere")
    root = _redistributed(tmp_path / "data")
    shutil.rmtree(root / "dicoms")
    with pytest.raises(DataError, match=r"no DICOM files"):
        sb.discover_sunnybrook(root)


@pytest.mark.parametrize(
    "text, message",
    [("10 10\n20 10\n", "2 points, a contour needs at least 3"), ("10 10\n20 x\n20 20\n", "line 2 '20 x' is not an 'x y' pair")],
)
def test_bad_contour_text_names_the_file(tmp_path, text, message):
    root = _redistributed(tmp_path)
    bad = root / "contourfiles" / "SC-HF-I-2" / "o-contours" / "IM-0001-0008-ocontour-manual.txt"
    bad.write_text(text)
    with pytest.raises(DataError, match=rf"IM-0001-0008-ocontour-manual\.txt: {message}"):
        sb.discover_sunnybrook(root)


def test_unreadable_dicom_names_the_file(tmp_path):
    root = _redistributed(tmp_path)
    (root / "dicoms" / "SCD0000101" / "4.dcm").write_bytes(b"not a dicom file")
    with pytest.raises(DataError, match=r"4\.dcm: cannot read DICOM header"):
        sb.discover_sunnybrook(root)


def test_missing_pixel_spacing_names_the_file(tmp_path):
    import pydicom

    root = _redistributed(tmp_path)
    path = root / "dicoms" / "SCD0000101" / "4.dcm"
    ds = pydicom.dcmread(path)
    del ds.PixelSpacing
    ds.save_as(path)
    with pytest.raises(DataError, match=r"4\.dcm: PixelSpacing or SliceThickness.*missing"):
        sb.discover_sunnybrook(root)


def test_phases_cannot_be_told_apart_without_any_epicardium(tmp_path):
    root = _redistributed(tmp_path)
    shutil.rmtree(root / "contourfiles" / "SC-HF-I-1" / "o-contours")
    with pytest.raises(DataError, match=r"cannot tell ED from ES: SC-HF-I-1 needs epicardial contours"):
        sb.discover_sunnybrook(root)


def test_epicardium_without_endocardium_is_no_case(tmp_path):
    root = _redistributed(tmp_path)
    endo = root / "contourfiles" / "SC-HF-I-1" / "i-contours" / "IM-0001-0004-icontour-manual.txt"
    endo.unlink()
    patient = sb.discover_sunnybrook(root)["SCD0000101"]
    assert 4 not in [s.instance for s in patient.slices]
    assert [p.name for p in patient.epi_only] == ["IM-0001-0004-ocontour-manual.txt"]


@pytest.mark.realdata
@needs_sunnybrook
def test_real_sunnybrook_slices():
    patients = sb.discover_sunnybrook(SUNNYBROOK_ROOT)
    assert list(patients) == ["SCD0000101", "SCD0000201"]
    test_set, files = sb.sunnybrook_test_set(SUNNYBROOK_ROOT)
    cases = [ref.load() for ref in test_set.cases]
    frames = [c.meta["frame"] for c in cases]
    assert frames.count("ED") == frames.count("ES") == 18  # 9 slice locations per patient
    for case in cases:
        z, y, x = case.spacing
        assert 6.0 <= z <= 12.0 and 1.2 <= y <= 1.6 and 1.2 <= x <= 1.6
        lv, myo = case.label[0] == 3, case.label[0] == 2
        assert 100 <= lv.sum() * y * x <= 6000  # mm²: an LV cross-section, from apex to base
        assert myo.any() == (case.meta["frame"] == "ED") == (case.meta["classes"] == ("LV", "MYO"))
        if myo.any():  # bright blood pool inside dark myocardium: the contours sit on the image the right way round
            assert case.image[0][lv].mean() > 1.5 * case.image[0][myo].mean()
    lv_pixels = {f: sum(int((c.label == 3).sum()) for c in cases if c.meta["frame"] == f) for f in ("ED", "ES")}
    assert lv_pixels["ED"] > 1.2 * lv_pixels["ES"]  # the LV is larger at end-diastole
    assert len(files) == 1 + 36 + 36 + 18  # link.csv, DICOMs, endo and epi contours
