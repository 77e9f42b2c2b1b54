"""Write test sets to disk as NIfTI + parameter JSON, byte-identical for the same seed.

ImageNet-C ships pre-rendered images because evaluating from files is deterministic and
tool-independent. Here the files are a by-product of the frozen parameters, for people who
evaluate outside robench: `<out>/<set>/<case>_image.nii.gz`, `_label.nii.gz`, `<case>.json`
(the parameter record), and `<out>/manifest.json`. Nothing written holds a timestamp or a
path (nibabel's gzip writer sets mtime 0 and no file name), so two runs with the same seed
give identical bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from robench.benchmark.store import write_json
from robench.benchmark.suites.base import Case, TestSet
from robench.benchmark.suites.nifti import save_nifti
from robench.corruptions.testsets import safe_name

MANIFEST_FORMAT = 1


def case_affine(case: Case) -> np.ndarray:
    z, y, x = case.spacing
    return case.affine if case.affine is not None else np.diag([x, y, z, 1.0])


def materialise(
    test_sets: Iterable[TestSet], out: Path, *, on_case: Callable[[str, str], None] | None = None
) -> dict[str, object]:
    """Load every case of every set and write it under `out`; returns a summary (also in manifest.json)."""
    out = Path(out)
    sets = []
    files = 0
    for test_set in test_sets:
        folder = out / safe_name(test_set.name)
        folder.mkdir(parents=True, exist_ok=True)
        case_ids = []
        for ref in test_set.cases:
            case = ref.load()
            stem = safe_name(case.case_id)
            axis = int(case.meta.get("slice_axis", 2))  # the file axis the suite sliced along
            save_nifti(case.image.astype(np.float32), case_affine(case), folder / f"{stem}_image.nii.gz", axis)
            files += 1
            if case.label is not None:
                save_nifti(case.label, case_affine(case), folder / f"{stem}_label.nii.gz", axis)
                files += 1
            record = case.meta.get("corruption_record")
            if record is not None:
                write_json(folder / f"{stem}.json", record)
                files += 1
            case_ids.append(case.case_id)
            if on_case is not None:
                on_case(test_set.name, case.case_id)
        sets.append({"name": test_set.name, "kind": test_set.kind, "meta": dict(test_set.meta), "cases": case_ids})
    manifest = {"format": MANIFEST_FORMAT, "sets": sets}
    write_json(out / "manifest.json", manifest)
    return {"out": str(out), "sets": {s["name"]: len(s["cases"]) for s in sets}, "files": files + 1}
