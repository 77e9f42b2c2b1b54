"""Using a finished run on data outside its suite: `robench evaluate` and `robench predict`."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from robench.benchmark.evaluate import evaluate, predict_volume
from robench.benchmark.reopen import config_numerics, reopen
from robench.benchmark.store import RunFolder, RunLock
from robench.benchmark.suites import acdc, get_suite
from robench.benchmark.suites.base import Case, CaseRef, TestSet, check_case
from robench.benchmark.suites.nifti import load_nifti, save_nifti, slice_axes, to_slices
from robench.benchmark.suites.nnunet import slice_axis_of
from robench.errors import ConfigError, DataError, RunStateError


TEST_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._&+-]{0,63}")


def check_test_set_name(name: str, folder: RunFolder) -> str:
    """A name that stays inside `evaluations/` and does not collide with the run's own test sets
    (two sets of one name would merge in every leaderboard of the folder)."""
    if not TEST_SET_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"--name {name!r}: use letters, digits, spaces and . _ & + - (at most 64, no '..' or '/'); "
            "the name becomes a file in the run's evaluations/ folder"
        )
    own = set(folder.records()["test_set"].astype(str))
    if name in own:
        raise ConfigError(f"--name {name!r} is one of this run's own test sets ({', '.join(sorted(own))}); choose another name")
    return name


def evaluate_external(run_dir: Path, test_root: Path, *, name: str | None, kind: str, device: str):
    if kind not in ("intra", "cross-site", "artefact"):
        raise ConfigError(f"--kind must be intra, cross-site or artefact, got {kind!r}")
    run = reopen(run_dir, device)
    folder, config = run.folder, run.config
    root = Path(test_root).expanduser().resolve()
    name = check_test_set_name(name or root.name, folder)
    refs = external_cases(config, root, name, run.classes)
    tag = hashlib.sha256(str(sorted(r.case_id for r in refs)).encode()).hexdigest()[:8]
    if folder.evaluation_path(f"{name}-{tag}").exists():
        raise RunStateError(
            f"{folder.evaluation_path(f'{name}-{tag}')} exists: this run was already evaluated on {root}; "
            "its records are kept (delete the file to redo it)"
        )
    info = {k: config[k] for k in ("method", "suite", "budget", "seed", "cval")}
    info["run_id"] = config["run_id"]
    import json

    info["hparams"] = json.dumps(config["hparams"], sort_keys=True)
    info["numeric_precision"] = config_numerics(config).precision
    test_set = TestSet(name, kind, refs)  # type: ignore[arg-type]
    with RunLock(folder.path):
        result = evaluate(
            run.method, [test_set], run.budget, run.classes, info, hd95_variant=config.get("hd95_variant", "max_directed"),
        )
        if result.records.empty:
            raise DataError(f"{root}: no labelled case to evaluate (cases without a label: {len(result.unlabelled)})")
        path = folder.add_evaluation(f"{name}-{tag}", result.records)
    return path, result


def external_cases(config: dict, root: Path, name: str, classes: dict[str, int]) -> tuple[CaseRef, ...]:
    """Every labelled case of a folder in the run's suite layout: the suite's own reader when it has
    one (`external_cases(root)`: nnU-Net layouts, with each case's site), else the ACDC layout."""
    suite = get_suite(str(config["suite"]))
    reader = getattr(suite, "external_cases", None)
    if reader is not None:
        return reader(root, classes=classes, slice_axis=config.get("slice_axis"))
    subjects = acdc.discover_acdc(root)
    return tuple(r for s in subjects.values() for r in acdc.case_refs(s, {"site": name}))


def mask_targets(images: list[Path], out: Path) -> list[Path]:
    """Where each input's mask goes: `out/<input name>`, same file type, never onto an input or another mask."""
    out = Path(out)
    targets, inputs = [], {p.resolve() for p in images}
    seen: dict[Path, Path] = {}
    for path in images:
        if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
            raise DataError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
        target = out / path.name
        resolved = target.resolve()
        if resolved in inputs:
            raise ConfigError(
                f"{target}: --out would overwrite the input image {path} with its mask; choose another --out folder"
            )
        if resolved in seen:
            raise ConfigError(
                f"{seen[resolved]} and {path} have the same file name, so their masks would overwrite each other in "
                f"{out}; predict them into separate --out folders"
            )
        if target.exists():
            raise ConfigError(f"{target} exists; robench never overwrites a file — delete it or choose another --out")
        seen[resolved] = path
        targets.append(target)
    return targets


def predict_files(run_dir: Path, images: list[Path], out: Path, *, mode: str | None, device: str) -> Iterator[Path]:
    run = reopen(run_dir, device)
    method, budget = run.method, run.budget
    if method.in_channels > 1:
        raise ConfigError(
            f"{run_dir}: a run on {method.in_channels} input channels; `predict` reads one file per image — "
            "evaluate such runs with `robench evaluate --test-root` on a folder in the suite's layout"
        )
    mode = method.check_mode(mode)
    targets = mask_targets(images, out)
    out.mkdir(parents=True, exist_ok=True)
    for path, target in zip(images, targets):
        data, zooms, affine = load_nifti(path)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise DataError(f"{path}: expected a 3-D short-axis volume, found shape {data.shape}; split 4-D cines into frames")
        axis = slice_axis_of(zooms, run.config.get("slice_axis"))  # as the run's suite sliced its data
        spacing = tuple(float(zooms[a]) for a in slice_axes(axis))
        case = check_case(
            Case(path.name, to_slices(data, axis).astype(np.float32), None, spacing, {}, affine), str(path), len(run.classes) + 1,
        )
        mask = predict_volume(method, case, budget, [mode])[mode]
        save_nifti(mask.astype(np.uint8), affine, target, slice_axis=axis)
        yield target
