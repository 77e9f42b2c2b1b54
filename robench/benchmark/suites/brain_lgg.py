"""`brain-lgg`: FLAIR abnormality in lower-grade glioma across institutions (TCGA-LGG, Buda et al. 2019).

Read from the nnU-Net v2 raw layout (`suites.nnunet`). Training, validation and the intra test
set come from one institution (DU, Duke); every other institution with more than one patient is
a cross-site test set of its own (HT, CS, FG). EZ, with a single patient, joins no set: one case
is not a test set. The release carries no spacing; the volumes are written at a nominal 1 mm,
so HD95 and ASSD are in nominal millimetres.
"""

from __future__ import annotations

import re

from pathlib import Path

from robench.benchmark.suites.base import CaseRef, SuiteData, SuiteOptions, TestSet, nested_subset, register_suite, seeded_split
from robench.benchmark.suites.nnunet import case_refs, external_dataset, fingerprint, header_geometry, read_dataset
from robench.errors import ConfigError, DataError

TRAIN_SITE = "DU"
INTRA_TEST_SHARE, VAL_SHARE = 0.3, 0.15  # of the DU patients; the rest is the training pool
_SITE = re.compile(r"^TCGA_([A-Z0-9]{2})_")


def institution(case_id: str) -> str:
    """The TCGA tissue-source-site code in the case name (`TCGA_<site>_…`)."""
    match = _SITE.match(case_id)
    if match is None:
        raise DataError(f"case {case_id}: not a TCGA case name (TCGA_<site>_<patient>_<date>); brain-lgg reads the TCGA-LGG release")
    return match.group(1)


class BrainLggSuite:
    name = "brain-lgg"
    description = "TCGA-LGG FLAIR abnormality: train on DU, test on held-out DU (intra) and on HT, CS, FG (cross-site)"
    source = "user-supplied: --data-root lgg-flair (nnU-Net v2 raw layout of the Buda et al. 2019 release)"

    def build(self, options: SuiteOptions) -> SuiteData:
        from robench.corruptions.testsets import suite_artefact_sets  # corruptions import the suites: here, not at the top

        if options.data_root is None:
            raise ConfigError("the brain-lgg suite needs --data-root pointing at the lgg-flair folder (nnU-Net v2 raw layout)")
        dataset = read_dataset(options.data_root)
        if list(dataset.classes) != ["abnormality"]:
            raise DataError(f"{dataset.root / 'dataset.json'}: brain-lgg expects one class 'abnormality', found {list(dataset.classes)}")
        by_site: dict[str, list] = {}
        for raw in dataset.cases:
            by_site.setdefault(institution(raw.case_id), []).append(raw)
        if TRAIN_SITE not in by_site:
            raise DataError(f"{dataset.root}: no {TRAIN_SITE} patients; brain-lgg trains on institution {TRAIN_SITE}")
        by_id = {raw.case_id: raw for raw in dataset.cases}
        split = seeded_split([r.case_id for r in by_site[TRAIN_SITE]], options.cval, INTRA_TEST_SHARE, VAL_SHARE)
        train = nested_subset(split["train"], options.train_fraction)

        def refs(ids):
            return case_refs(dataset, [by_id[i] for i in ids], options.slice_axis,
                             lambda raw: {"site": institution(raw.case_id), "vendor": ""})

        test_sets = [TestSet(TRAIN_SITE, "intra", refs(split["test"]), {"site": TRAIN_SITE})]
        left_out = []
        for site, cases in sorted(by_site.items()):
            if site == TRAIN_SITE:
                continue
            if len(cases) < 2:
                left_out.append(f"{site} ({len(cases)} patient)")
                continue
            test_sets.append(TestSet(site, "cross-site", refs([r.case_id for r in cases]), {"site": site}))
        geometry = header_geometry(dataset, dataset.cases, options.slice_axis)
        data_fingerprint = fingerprint(dataset, options, split_seed=options.cval, shares=[INTRA_TEST_SHARE, VAL_SHARE], site=TRAIN_SITE)
        test_sets += suite_artefact_sets(test_sets[0], options, self.name, data_fingerprint, geometry)
        notes = [
            f"trained on {len(train)} {TRAIN_SITE} patients (pool {len(split['train'])}, split seed {options.cval}); "
            f"intra test {len(split['test'])} {TRAIN_SITE} patients",
            "spacing is nominal (1 mm; the release has none): HD95 and ASSD are in nominal mm",
        ]
        if left_out:
            notes.append(f"in no test set (a single patient is not a test set): {', '.join(left_out)}")
        return SuiteData(
            self.name, refs(train), refs(split["val"]), tuple(test_sets), dataset.classes,
            data_fingerprint, tuple(notes), geometry=geometry,
            splits={"train": train, "train_pool": split["train"], "val": split["val"], "test": split["test"]},
            channels=dataset.channels, training_slices="all", oversample_foreground=1 / 3,
        )


    def external_cases(self, root: Path, *, classes: dict[str, int], slice_axis: int | None = None) -> tuple[CaseRef, ...]:
        """Every labelled case of another folder in this layout, each with its institution as its site."""
        return case_refs(*external_dataset(root, classes), slice_axis, lambda raw: {"site": institution(raw.case_id), "vendor": ""})


register_suite(BrainLggSuite())
