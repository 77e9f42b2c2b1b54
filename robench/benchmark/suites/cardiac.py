"""The cardiac suites: `cardiac` (real ACDC, paper protocol) and `cardiac-synth` (embedded, generated).

Both use the same readers: `cardiac-synth` is the `cardiac` loaders pointed at generated
folders in the official ACDC and M&Ms layouts, so the synthetic suite exercises the real
data path.
"""

from __future__ import annotations

import json
from pathlib import Path

from robench.benchmark.fingerprint import fingerprint_files
from robench.benchmark.suites import acdc, mnms
from robench.benchmark.suites.sunnybrook import sunnybrook_test_set
from robench.benchmark.suites.base import CaseRef, SuiteData, SuiteOptions, TestSet, nested_subset, register_suite
from robench.errors import ConfigError, DataError
from robench.labels import CARDIAC_CLASSES

# protocol.md §2 (cooperative-training code, ACDC_few_shot_cv_settings)
ACDC_TEST = tuple(f"patient{i:03d}" for r in ((7, 10), (27, 30), (47, 50), (67, 70), (87, 90)) for i in range(r[0], r[1] + 1))
ACDC_TRAIN = {
    0: (1, 4, 12, 22, 44, 46, 53, 61, 73, 92),
    1: (1, 2, 6, 21, 22, 24, 25, 33, 41, 86),
    2: (13, 21, 24, 33, 43, 46, 52, 73, 84, 93),
}
ACDC_VAL = {0: (11, 71, 62, 95, 82), 1: (11, 71, 2, 22, 95), 2: (11, 71, 2, 62, 95)}


def _ids(numbers) -> tuple[str, ...]:
    return tuple(f"patient{i:03d}" for i in numbers)


def _subject_files(subjects, root: Path) -> list[Path]:
    """Every file whose contents determine a run's numbers: volumes, labels, and where the spacing
    and frames come from (the HDF5 layout's `info.csv`, the official layout's `Info.cfg`)."""
    files = [f for s in subjects for pair in s.files.values() for f in pair if f is not None and f.exists()]
    for s in subjects:
        if s.layout == "nifti":
            files.append(s.files["ED"][0].parent / "Info.cfg")
    if any(s.layout == "hdf5" for s in subjects):
        files.append(root / "info.csv")
    return files


def _select(subjects: dict[str, acdc.AcdcSubject], ids: tuple[str, ...], root: Path, role: str) -> list[acdc.AcdcSubject]:
    missing = [i for i in ids if i not in subjects]
    if missing:
        raise DataError(f"{root}: the {role} split needs {', '.join(missing)}, which are not in this ACDC folder")
    return [subjects[i] for i in ids]


def _fraction(subjects: list, options: SuiteOptions) -> list:
    """The training subjects of `--train-fraction` (a nested subset; all of them at 1)."""
    keep = set(nested_subset([s.subject for s in subjects], options.train_fraction))
    return [s for s in subjects if s.subject in keep]


def _refs(subjects, meta) -> tuple[CaseRef, ...]:
    return tuple(ref for s in subjects for ref in acdc.case_refs(s, meta))


def mnms_test_sets(root: Path, prefix: str = "M&Ms-", *, per_vendor: bool = True) -> tuple[list[TestSet], list[Path]]:
    """Cross-site test sets from an M&Ms-layout folder.

    `per_vendor`: one set per vendor, named `<prefix><vendor>` (the synthetic sites B–D, each
    its own column); otherwise one set `M&Ms` over every vendor, as the paper's table, whose
    records keep each case's vendor so the leaderboard can break it down per vendor.
    """
    subjects = mnms.discover_mnms(root)
    files = [f for s in subjects.values() for f in (s.image, s.label)]
    if not per_vendor:
        refs = tuple(r for s in subjects.values() for r in mnms.case_refs(s, {}))
        return [TestSet("M&Ms", "cross-site", refs)], files
    by_vendor: dict[str, list[CaseRef]] = {}
    for s in subjects.values():
        by_vendor.setdefault(s.vendor or "?", []).extend(mnms.case_refs(s, {}))
    sets = [
        TestSet(f"{prefix}{vendor}", "cross-site", tuple(refs), {"vendor": vendor})
        for vendor, refs in sorted(by_vendor.items())
    ]
    return sets, files


class CardiacSuite:
    name = "cardiac"
    description = "ACDC paper protocol: 10 training subjects (cval 0/1/2), 20 test subjects; M&Ms, Sunnybrook when given"
    source = "user-supplied: --data-root ACDC (official NIfTI or SSL4MIS HDF5 + info.csv); --mnms-root, --sunnybrook-root optional"

    def build(self, options: SuiteOptions) -> SuiteData:
        from robench.corruptions.testsets import suite_artefact_sets  # corruptions import the suites: here, not at the top

        if options.data_root is None:
            raise ConfigError("the cardiac suite needs --data-root pointing at an ACDC folder (NIfTI or HDF5 layout)")
        if options.cval not in ACDC_TRAIN:
            raise ConfigError(f"--cval must be one of {sorted(ACDC_TRAIN)} for the cardiac suite, got {options.cval}")
        root = Path(options.data_root).expanduser().resolve()
        subjects = acdc.discover_acdc(root)
        train = _fraction(_select(subjects, _ids(ACDC_TRAIN[options.cval]), root, f"cval {options.cval} training"), options)
        val = _select(subjects, _ids(ACDC_VAL[options.cval]), root, f"cval {options.cval} validation")
        test = _select(subjects, ACDC_TEST, root, "test")
        meta = {"site": "ACDC", "vendor": ""}
        test_sets = [TestSet("ACDC", "intra", _refs(test, meta))]
        # the run's identity is its ACDC data; cross-site roots only add test sets, so giving them
        # later extends a finished run (evaluations/) instead of retraining it
        files = _subject_files(train + val + test, root)
        fingerprints = {"acdc": fingerprint_files(files, root)}
        fingerprint = json.dumps(fingerprints, sort_keys=True)
        test_sets += suite_artefact_sets(test_sets[0], options, self.name, fingerprint)
        mnms_root = options.extra_roots.get("mnms")
        if mnms_root is not None:
            sets, _ = mnms_test_sets(Path(mnms_root).expanduser().resolve(), per_vendor=False)
            test_sets += sets
        sunnybrook_root = options.extra_roots.get("sunnybrook")
        if sunnybrook_root is not None:
            sb_set, _ = sunnybrook_test_set(Path(sunnybrook_root).expanduser().resolve())
            test_sets.append(sb_set)
        notes = []
        if options.cval == 1:
            notes.append("cval 1 as published: patient002 and patient022 are in both training and validation")
        return SuiteData(
            self.name, _refs(train, meta), _refs(val, meta), tuple(test_sets), CARDIAC_CLASSES, fingerprint, tuple(notes),
        )


class CardiacSynthSuite:
    name = "cardiac-synth"
    description = "Embedded synthetic cine MR: train on site A; test on A (intra) and B, C, D (cross-site)"
    source = "generated on first use into $ROBENCH_HOME/synth (ACDC layout for site A, M&Ms layout for B–D)"

    def build(self, options: SuiteOptions) -> SuiteData:
        from robench.corruptions.testsets import suite_artefact_sets  # corruptions import the suites: here, not at the top

        from robench.benchmark.suites.synth import GENERATOR_VERSION, ensure_cardiac_synth

        root = ensure_cardiac_synth(options.cache_dir)
        site_a = root / "siteA"
        splits = json.loads((site_a / "splits.json").read_text())
        subjects = acdc.discover_acdc(site_a)
        pick = {k: _select(subjects, tuple(splits[k]), site_a, k) for k in ("train", "val", "test")}
        meta = {"site": "A", "vendor": "A"}
        mnms_sets, _ = mnms_test_sets(root / "mnms", prefix="Site")
        intra = TestSet("SiteA", "intra", _refs(pick["test"], meta))
        fingerprint = json.dumps({"synth": f"{GENERATOR_VERSION}:{root.name}"})
        test_sets = (intra, *mnms_sets, *suite_artefact_sets(intra, options, self.name, fingerprint))
        return SuiteData(
            self.name, _refs(_fraction(pick["train"], options), meta), _refs(pick["val"], meta), test_sets, CARDIAC_CLASSES,
            fingerprint,
            ("synthetic stand-in for real data: numbers here are not ACDC numbers",),
        )


register_suite(CardiacSuite())
register_suite(CardiacSynthSuite())
