"""The synthetic cardiac suite: layouts, anatomy, determinism, site differences, atomic cache."""

from __future__ import annotations

import csv
import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from robench.benchmark.suites import acdc, mnms
from robench.benchmark.suites.synthetic import SITE_PARAMETERS, ensure_cardiac_synth, generate_cardiac_synth
from robench.benchmark.suites.synthetic.anatomy import GROUPS

SIZE = dict(n_train=2, n_val=1, n_test=2, n_cross=2)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_cardiac_synth(tmp_path_factory.mktemp("synth"), seed=0, **SIZE)


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_both_official_layouts_are_written_and_read_back(synth):
    subjects = acdc.discover_acdc(synth / "siteA")
    assert sorted(subjects) == [f"patient{i:03d}" for i in range(1, 6)]
    splits = json.loads((synth / "siteA" / "splits.json").read_text())
    assert splits == {"train": ["patient001", "patient002"], "val": ["patient003"], "test": ["patient004", "patient005"]}
    cfg = (synth / "siteA" / "training" / "patient001" / "Info.cfg").read_text()
    assert cfg.startswith("ED: 1\nES: ") and "Group: " in cfg and "NbFrame: " in cfg
    codes = mnms.discover_mnms(synth / "mnms")
    assert len(codes) == 6 and sorted({s.vendor for s in codes.values()}) == ["B", "C", "D"]


def test_mnms_ground_truth_is_only_at_ed_and_es_in_mnms_label_order(synth):
    with (synth / "mnms" / "mnms_dataset_info.csv").open() as f:
        rows = list(csv.DictReader(f))
    row = rows[0]
    gt = np.asarray(nib.load(next((synth / "mnms").rglob(f"{row['External code']}_sa_gt.nii.gz"))).dataobj)
    labelled = [t for t in range(gt.shape[3]) if gt[..., t].any()]
    assert labelled == [int(row["ED"]), int(row["ES"])]
    # M&Ms order: LV (1) is the innermost structure: its mass centre is surrounded by MYO (2)
    ed = gt[..., int(row["ED"])]
    z = int(np.argmax((ed > 0).sum(axis=(0, 1))))
    lv = ed[..., z] == 1
    ring = ndimage.binary_dilation(lv, iterations=2) & ~lv
    assert (ed[..., z][ring] == 2).mean() > 0.5


def _cases(synth):
    for s in acdc.discover_acdc(synth / "siteA").values():
        yield from (r.load() for r in acdc.case_refs(s, {}))
    for s in mnms.discover_mnms(synth / "mnms").values():
        yield from (r.load() for r in mnms.case_refs(s, {}))


def test_labels_are_present_and_nested(synth):
    for case in _cases(synth):
        assert set(np.unique(case.label)) == {0, 1, 2, 3}, case.case_id
        for z in range(case.label.shape[0]):
            lab = case.label[z]
            lv = lab == 3
            if lv.any():  # the LV cavity is enclosed by myocardium: it never touches background or RV
                border = ndimage.binary_dilation(lv) & ~lv
                assert set(np.unique(lab[border])) <= {2}, (case.case_id, z)
            rv = lab == 1
            if rv.any():  # the RV lies beside the LV, against the septum (MYO), never inside it
                assert not (rv & lv).any()
                assert (ndimage.binary_dilation(rv, iterations=2) & (lab == 2)).any(), (case.case_id, z)


def test_volumes_and_ejection_fraction_follow_the_group(synth):
    for s in acdc.discover_acdc(synth / "siteA").values():
        ed, es = (r.load() for r in acdc.case_refs(s, {}))
        voxel = float(np.prod(ed.spacing)) / 1000  # ml
        v_ed, v_es = (ed.label == 3).sum() * voxel, (es.label == 3).sum() * voxel
        ef = 1 - v_es / v_ed
        low, high = GROUPS[s.group].ef
        assert low - 0.08 <= ef <= high + 0.08, (s.subject, s.group, ef)
        assert 40 < v_ed < 400, (s.subject, v_ed)
        # mass is kept: myocardial volume changes little between ED and ES
        m_ed, m_es = (ed.label == 2).sum(), (es.label == 2).sum()
        assert abs(m_es - m_ed) / m_ed < 0.25


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    tiny = dict(n_train=1, n_val=1, n_test=1, n_cross=1)
    first = _digest(generate_cardiac_synth(tmp_path / "first", seed=0, **tiny))
    assert _digest(generate_cardiac_synth(tmp_path / "again", seed=0, **tiny)) == first
    assert _digest(generate_cardiac_synth(tmp_path / "other", seed=1, **tiny)) != first


def _snr(case):
    lab = case.label
    blood = case.image[lab == 3]
    air = case.image[:, :6, :6].ravel()  # a corner of the field of view: air, pure noise
    return blood.mean() / (air.std() + 1e-6)


def test_sites_differ_in_their_intended_statistics(synth):
    by_site = {}
    for case in _cases(synth):
        by_site.setdefault(case.meta.get("vendor") or "A", []).append(case)
    snr = {k: np.mean([_snr(c) for c in v]) for k, v in by_site.items()}
    assert snr["B"] < 0.6 * snr["A"]  # site B: low SNR
    spacing = {k: v[0].spacing[1] for k, v in by_site.items()}
    assert spacing["D"] > max(spacing["A"], spacing["B"], spacing["C"])  # site D: coarser pixels
    assert SITE_PARAMETERS["C"].bias_strength > 3 * SITE_PARAMETERS["A"].bias_strength
    assert SITE_PARAMETERS["C"].gamma != SITE_PARAMETERS["A"].gamma


def test_cache_is_reused_and_partial_folders_are_ignored(tmp_path):
    leftover = tmp_path / ".cardiac-synth-leftover.partial"
    leftover.mkdir()
    first = ensure_cardiac_synth(tmp_path, seed=3, n_train=1, n_val=1, n_test=1, n_cross=1)
    assert first.parent == tmp_path and not first.name.startswith(".")
    stamp = (first / "generator.json").stat().st_mtime_ns
    second = ensure_cardiac_synth(tmp_path, seed=3, n_train=1, n_val=1, n_test=1, n_cross=1)
    assert second == first and (first / "generator.json").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".cardiac-synth-3-*.partial"))
