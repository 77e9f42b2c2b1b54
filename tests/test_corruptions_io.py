"""Materialised artefact sets are byte-identical per seed; the command functions list and write them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import typer
from typer.testing import CliRunner

from robench.benchmark.suites import base
from robench.benchmark.suites.base import Case, CaseRef, SuiteData
from robench.corruptions import artefact_test_sets, materialise
from robench.corruptions.cli import corrupt, list_corruptions


def _toy(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 3×40×40 bright disc (label 3) on a noisy background."""
    yy, xx = np.mgrid[:40, :40]
    label = np.repeat(((yy - 20) ** 2 + (xx - 19) ** 2 < 64).astype(np.int16)[None] * 3, 3, 0)
    return rng.normal(0.2, 0.02, label.shape).astype(np.float32) + 0.25 * label, label


def _intra(n: int = 2) -> base.TestSet:
    rng = np.random.default_rng(0)
    refs = []
    for i in range(n):
        image, label = _toy(rng)
        case = Case(f"patient{i + 7:03d}_ED", image, label, (8.0, 1.5, 1.5), {"subject": f"patient{i + 7:03d}", "frame": "ED"})
        refs.append(CaseRef(case.case_id, lambda case=case: case, dict(case.meta)))
    return base.TestSet("Toy", "intra", tuple(refs))


def _sets(seed: int, cache):
    sets = artefact_test_sets(_intra(), seed=seed, families=("acdc-c", "graded"), cache_dir=cache)
    return [s for s in sets if s.name in ("RandMotion", "RandSpike", "noise@3", "kspace@2")]


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_materialise_twice_gives_identical_bytes_and_another_seed_differs(tmp_path):
    # separate caches: the second run draws its parameters afresh instead of reading the first's
    summary = materialise(_sets(0, tmp_path / "cache-a"), tmp_path / "a")
    materialise(_sets(0, tmp_path / "cache-b"), tmp_path / "b")
    materialise(_sets(1, tmp_path / "cache-a"), tmp_path / "c")
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert summary["sets"] == {"RandMotion": 6, "RandSpike": 6, "noise@3": 2, "kspace@2": 2}
    assert summary["files"] == len(a) == 16 * 3 + 1
    images = [k for k in a if k.name.endswith("_image.nii.gz")]
    assert all(a[k] != c[k] for k in images)
    labels = [k for k in a if k.name.endswith("_label.nii.gz")]
    assert all(a[k] == c[k] for k in labels)  # labels are never corrupted
    for key in images + labels:
        header = a[key][:10]
        assert header[:2] == b"\x1f\x8b" and header[4:8] == b"\0\0\0\0", key  # gzip mtime 0
        assert not header[3] & 0x08, key  # no embedded file name
        gzip.decompress(a[key])


def test_materialised_files_hold_the_case_and_its_parameters(tmp_path):
    sets = _sets(0, tmp_path / "cache")
    materialise(sets, tmp_path / "out")
    case = sets[0].cases[0].load()
    image = nib.load(str(tmp_path / "out" / "RandMotion" / "patient007_ED_copy1_image.nii.gz"))
    np.testing.assert_array_equal(np.asarray(image.dataobj).transpose(2, 1, 0), case.image)
    assert np.allclose(image.header.get_zooms(), (case.spacing[2], case.spacing[1], case.spacing[0]))
    record = json.loads((tmp_path / "out" / "RandMotion" / "patient007_ED_copy1.json").read_text())
    assert record["set"] == "RandMotion" and record["copy"] == 1 and "degrees" in record["parameters"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["name"] for s in manifest["sets"]] == ["RandMotion", "RandSpike", "noise@3", "kspace@2"]


class _ToySuite:
    """Two tiny volumes; `--data-root` names a variant of their bytes (as two copies of a folder would differ)."""

    name = "toy-corruptions"
    description = "two tiny volumes"
    source = "test"

    def build(self, options):
        from robench.corruptions.testsets import suite_artefact_sets

        intra = _intra()
        if options.data_root is not None and Path(options.data_root).name == "edited":
            first = intra.cases[0].load()
            edited = Case(first.case_id, first.image + 0.01, first.label, first.spacing, first.meta)
            intra = base.TestSet("Toy", "intra", (CaseRef(first.case_id, lambda: edited, dict(first.meta)), *intra.cases[1:]))
        fingerprint = f"toy-{Path(options.data_root).name if options.data_root else ''}"
        return SuiteData(self.name, (), (), (intra, *suite_artefact_sets(intra, options, self.name, fingerprint)), {"LV": 3}, fingerprint)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("corruptions")(list_corruptions)
    app.command("corrupt")(corrupt)
    return app


def test_listing_shows_every_type_its_severities_and_the_acdc_c_sets():
    out = CliRunner().invoke(_app(), ["corruptions"], env={"COLUMNS": "400"})
    assert out.exit_code == 0, out.output
    for name in ("bias", "ghosting", "motion", "spike", "noise", "blur", "gamma", "lowres", "kspace"):
        assert name in out.output
    for name in ("RandBias", "RandGhosting", "RandMotion", "RandSpike", "RandomMotion(degrees=30, translation=10)", "σ=0.12"):
        assert name in out.output


def test_corrupt_writes_the_sets_of_a_suite(tmp_path, monkeypatch):
    monkeypatch.setitem(base.SUITES, _ToySuite.name, _ToySuite())
    args = ["corrupt", "--suite", _ToySuite.name, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--seed", "3"]
    out = CliRunner().invoke(_app(), args)
    assert out.exit_code == 0, out.output
    assert "RandSpike" in out.output
    written = sorted(p.name for p in (tmp_path / "out" / "RandSpike").iterdir())
    assert len(written) == 2 * 3 * 3 and "patient008_ED_copy3_label.nii.gz" in written
    # the cache `robench run` uses: per suite and data fingerprint
    assert len(list((tmp_path / "cache" / "corruptions").glob("toy-corruptions-*/Toy/seed-3/RandSpike/patient008_ED_copy3.json"))) == 1


def test_corrupt_on_a_second_copy_of_a_folder_whose_bytes_differ_works(tmp_path, monkeypatch):
    # one cache keyed by set name and seed alone tripped over the first copy's frozen source hash
    monkeypatch.setitem(base.SUITES, _ToySuite.name, _ToySuite())
    for root in ("original", "edited"):
        args = ["corrupt", "--suite", _ToySuite.name, "--data-root", str(tmp_path / root), "--out", str(tmp_path / f"out-{root}"),
                "--cache-dir", str(tmp_path / "cache"), "--families", "acdc-c"]
        out = CliRunner().invoke(_app(), args)
        assert out.exit_code == 0, out.output
    assert len(list((tmp_path / "cache" / "corruptions").glob("toy-corruptions-*"))) == 2


def test_the_figure_has_one_row_per_type_plus_acdc_c(tmp_path):
    from PIL import Image

    from robench.corruptions.figure import plot_corruption_grid

    path = plot_corruption_grid(_intra(1).cases[0].load(), tmp_path / "grid.png")
    width, height = Image.open(path).size
    assert height > width > 400  # 10 rows × 6 columns
