"""cardiac-synth: official layouts, anatomy, determinism, site differences, atomic cache.

One tiny suite (5 site-A subjects, 2 per cross site) is generated per module and read back
with the project's own ACDC and M&Ms readers, as the `cardiac-synth` suite does.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from robench.benchmark.suites import acdc, mnms
from robench.benchmark.suites.synth import (
    GENERATOR_VERSION,
    GROUP_PARAMETERS,
    SITE_PARAMETERS,
    ensure_cardiac_synth,
    generate_cardiac_synth,
    plot_synth_sites,
)
from robench.benchmark.suites.synth import generate as generate_module

SIZE = dict(n_train=2, n_val=1, n_test=2, n_cross=2)
TINY = dict(n_train=1, n_val=1, n_test=1, n_cross=1)
PATIENTS = [f"patient{i:03d}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_cardiac_synth(tmp_path_factory.mktemp("synth"), seed=0, **SIZE)


@pytest.fixture(scope="module")
def volumes(synth):
    """(site, subject, group, ED case, ES case) for every subject, via the project readers."""
    groups = {s["name"]: s["group"] for s in json.loads((synth / "cardiac_synth.json").read_text())["subjects"]}
    out = []
    for s in acdc.discover_acdc(synth / "siteA").values():
        out.append(("A", s.subject, groups[s.subject], *(r.load() for r in acdc.case_refs(s, {}))))
    for s in mnms.discover_mnms(synth / "mnms").values():
        out.append((s.vendor, s.code, groups[s.code], *(r.load() for r in mnms.case_refs(s, {}))))
    return out


def _digest(root, pattern="*"):
    h = hashlib.sha256()
    for p in sorted(root.rglob(pattern)):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_site_a_is_in_the_official_acdc_layout(synth):
    training = synth / "siteA" / "training"
    assert sorted(p.name for p in training.iterdir()) == PATIENTS
    splits = json.loads((synth / "siteA" / "splits.json").read_text())
    assert splits == {"train": PATIENTS[:2], "val": PATIENTS[2:3], "test": PATIENTS[3:]}
    for patient in PATIENTS:
        lines = (training / patient / "Info.cfg").read_text().splitlines()
        assert [line.split(":")[0] for line in lines] == ["ED", "ES", "Group", "Height", "NbFrame", "Weight"]
        info = dict(line.split(": ") for line in lines)
        assert info["ED"] == "1" and 10 <= int(info["ES"]) <= 14 and info["Group"] in GROUP_PARAMETERS
        assert re.fullmatch(r"\d+\.\d", info["Height"]) and re.fullmatch(r"\d+\.\d", info["Weight"])
        assert int(info["ES"]) < int(info["NbFrame"])
        files = sorted(p.name for p in (training / patient).iterdir())
        frames = [f"{patient}_frame01", f"{patient}_frame{int(info['ES']):02d}"]
        assert files == sorted(["Info.cfg"] + [f"{f}{suffix}.nii.gz" for f in frames for suffix in ("", "_gt")])
        image, label = (nib.load(training / patient / f"{frames[0]}{s}.nii.gz") for s in ("", "_gt"))
        site = SITE_PARAMETERS["A"]
        spacing = (site.pixel_spacing, site.pixel_spacing, site.slice_spacing)
        assert np.allclose(image.affine, np.diag([*spacing, 1.0]))
        assert np.allclose(image.header.get_zooms(), spacing)
        assert image.shape == (site.matrix[1], site.matrix[0], image.shape[2]) and 8 <= image.shape[2] <= 12
        assert image.get_data_dtype() == np.dtype(site.dtype) and label.get_data_dtype() == np.uint8


def test_sites_b_to_d_are_in_the_official_mnms_layout(synth):
    with (synth / "mnms" / "mnms_dataset_info.csv").open() as handle:
        assert handle.readline().strip() == "External code,VendorName,Vendor,Centre,ED,ES"
        handle.seek(0)
        rows = list(csv.DictReader(handle))
    assert [r["Vendor"] for r in rows] == ["B", "B", "C", "C", "D", "D"]
    codes = [r["External code"] for r in rows]
    assert len(set(codes)) == 6 and all(re.fullmatch(r"([A-Z]\d){3}", c) for c in codes)
    for row in rows:
        site = SITE_PARAMETERS[row["Vendor"]]
        assert row["VendorName"] == f"Synth{row['Vendor']}" and int(row["Centre"]) == site.centre
        folder = synth / "mnms" / "Training" / "Labeled" / row["External code"]
        image = nib.load(folder / f"{row['External code']}_sa.nii.gz")
        gt = np.asarray(nib.load(folder / f"{row['External code']}_sa_gt.nii.gz").dataobj)
        assert image.ndim == 4 and image.shape == gt.shape and image.shape[3] == site.cine_frames
        assert image.get_data_dtype() == np.dtype(site.dtype) and gt.dtype == np.uint8
        assert np.allclose(image.header.get_zooms()[:3], (site.pixel_spacing, site.pixel_spacing, site.slice_spacing))
        ed, es = int(row["ED"]), int(row["ES"])
        assert ed == 0 and 0 < es < site.cine_frames - 1
        assert [t for t in range(gt.shape[3]) if gt[..., t].any()] == [ed, es]
        # M&Ms label order: LV = 1 is the innermost structure, enclosed by MYO = 2; RV = 3 outside.
        for z in range(gt.shape[2]):
            frame = gt[..., z, ed]
            lv = frame == 1
            if lv.any():
                assert set(np.unique(frame[ndimage.binary_dilation(lv) & ~lv])) == {2}


def test_the_project_readers_load_every_case(volumes):
    assert sorted(v[0] for v in volumes) == ["A"] * 5 + ["B", "B", "C", "C", "D", "D"]
    for _, _, _, ed, es in volumes:
        for case in (ed, es):
            assert set(np.unique(case.label)) == {0, 1, 2, 3}, case.case_id


def test_labels_are_nested_like_a_heart(volumes):
    for _, _, _, ed, es in volumes:
        for case in (ed, es):
            labelled = [z for z in range(len(case.label)) if case.label[z].any()]
            for z in labelled:
                lab = case.label[z]
                lv, myo, rv = lab == 3, lab == 2, lab == 1
                # The LV cavity touches only myocardium in-plane (4-neighbourhood) ...
                assert set(np.unique(lab[ndimage.binary_dilation(lv) & ~lv])) <= {2}, (case.case_id, z)
                # ... and every LV component is wrapped by it.
                components, n = ndimage.label(lv)
                for i in range(1, n + 1):
                    component = components == i
                    assert (ndimage.binary_dilation(component) & myo).any(), (case.case_id, z)
                if rv.any():  # the RV lies against the septum, beside (never inside) the LV
                    assert (ndimage.binary_dilation(rv) & myo).any(), (case.case_id, z)
                    assert not (ndimage.binary_dilation(rv) & lv).any(), (case.case_id, z)
            # The RV is missing at the apex.
            assert not (case.label[labelled[-1]] == 1).any(), case.case_id


def test_lv_volume_and_ejection_fraction_follow_the_group(volumes):
    for site, subject, group, ed, es in volumes:
        g = GROUP_PARAMETERS[group]
        voxel_ml = float(np.prod(ed.spacing)) / 1000.0
        edv, esv = (ed.label == 3).sum() * voxel_ml, (es.label == 3).sum() * voxel_ml
        ef = 1.0 - esv / edv
        assert 0.9 * g.lv_edv[0] <= edv <= 1.1 * g.lv_edv[1], (site, subject, group, edv)
        assert g.lv_ef[0] - 0.03 <= ef <= g.lv_ef[1] + 0.03, (site, subject, group, ef)
        # The wall thickens in systole and its volume is about kept.
        myo_ed, myo_es = (ed.label == 2).sum(), (es.label == 2).sum()
        assert abs(myo_es / myo_ed - 1.0) < 0.25, (site, subject)


def test_groups_cycle_through_every_split(synth):
    training = synth / "siteA" / "training"
    groups = [dict(line.split(": ") for line in (training / p / "Info.cfg").read_text().splitlines())["Group"]
              for p in PATIENTS]
    assert groups == ["NOR", "DCM", "HCM", "MINF", "ARV"]


def test_same_seed_gives_identical_files_and_another_seed_differs(synth, tmp_path):
    first = generate_cardiac_synth(tmp_path / "first", seed=0, workers=1, **TINY)
    again = generate_cardiac_synth(tmp_path / "again", seed=0, workers=2, **TINY)
    other = generate_cardiac_synth(tmp_path / "other", seed=1, workers=1, **TINY)
    assert _digest(first) == _digest(again)  # independent of the number of workers
    assert _digest(other, "*.nii.gz") != _digest(first, "*.nii.gz")
    # A subject depends on (version, seed, site, index) only, not on the suite's size.
    assert _digest(first / "siteA" / "training" / "patient001") == _digest(synth / "siteA" / "training" / "patient001")


def _snr(case) -> float:
    """Blood over the noise level, estimated from a corner of air (Rayleigh mean)."""
    image = case.image.astype(np.float64)
    noise = image[:, :8, :8].mean() / np.sqrt(np.pi / 2)
    return float(np.median(image[ndimage.binary_erosion(case.label == 3, np.ones((1, 3, 3)))]) / noise)


def _contrast(case) -> float:
    image, structure = case.image.astype(np.float64), np.ones((1, 3, 3))
    blood = np.median(image[ndimage.binary_erosion(case.label == 3, structure)])
    return float(blood / np.median(image[ndimage.binary_erosion(case.label == 2, structure)]))


def _bias_slope(case) -> float:
    """Linear trend of log intensity over the bright tissue (blood, fat), per half field of view."""
    image = ndimage.gaussian_filter(case.image.astype(np.float64), (0, 1, 1))
    _, rows, cols = image.shape
    y, x = np.mgrid[:rows, :cols]
    y, x = (y - rows / 2) / (rows / 2), (x - cols / 2) / (cols / 2)
    slopes = []
    for plane in image:
        bright = plane > 0.45 * np.percentile(plane, 99.5)
        design = np.stack([np.ones(bright.sum()), x[bright], y[bright]], axis=1)
        coefficients = np.linalg.lstsq(design, np.log(plane[bright]), rcond=None)[0]
        slopes.append(np.hypot(*coefficients[1:]))
    return float(np.median(slopes))


def test_sites_differ_in_their_intended_statistics(volumes):
    def mean(statistic, site):
        return np.mean([statistic(case) for s, _, _, ed, es in volumes if s == site for case in (ed, es)])

    assert mean(_snr, "B") < 0.5 * mean(_snr, "A")  # B: low SNR ...
    assert mean(_contrast, "B") < 0.7 * mean(_contrast, "A")  # ... and low blood/myocardium contrast
    assert mean(_bias_slope, "C") > 1.8 * mean(_bias_slope, "A")  # C: strong bias field
    assert mean(_contrast, "C") < 0.7 * mean(_contrast, "A")  # C: gamma lifts the myocardium
    spacing = {s: ed.spacing[1] for s, _, _, ed, _ in volumes}
    assert spacing["D"] > 1.3 * max(spacing["A"], spacing["B"], spacing["C"])  # D: coarse pixels
    assert len({SITE_PARAMETERS[s].dtype for s in "ABCD"}) >= 3  # stored types differ


def test_cache_is_reused_and_never_mistakes_a_partial_folder(tmp_path, monkeypatch):
    name = generate_module.cache_name(seed=3, **TINY)
    assert name.startswith(f"cardiac-synth-v{GENERATOR_VERSION}-")
    leftover = tmp_path / f".{name}.tmp-1-deadbeef"  # what a killed generation leaves behind
    (leftover / "siteA").mkdir(parents=True)

    calls = []

    def interrupted(root, **kwargs):
        calls.append(root)
        (root / "siteA").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_module, "generate_cardiac_synth", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_cardiac_synth(tmp_path, seed=3, **TINY)
    assert not (tmp_path / name).exists() and not calls[0].exists()  # nothing half-finished appears
    monkeypatch.undo()

    first = ensure_cardiac_synth(tmp_path, seed=3, **TINY)
    assert first == tmp_path / name and (first / "cardiac_synth.json").is_file()
    assert leftover.exists() and leftover != first

    def must_not_run(root, **kwargs):
        raise AssertionError("a finished cache folder was generated again")

    monkeypatch.setattr(generate_module, "generate_cardiac_synth", must_not_run)
    assert ensure_cardiac_synth(tmp_path, seed=3, **TINY) == first
    assert generate_module.cache_name(seed=4, **TINY) != name  # other parameters, other folder


def test_cache_folder_defaults_to_robench_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBENCH_HOME", str(tmp_path))
    assert generate_module.default_cache_dir() == tmp_path / "synth"


def test_figure_shows_every_site(synth, tmp_path):
    out = plot_synth_sites(synth, tmp_path / "sites.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
