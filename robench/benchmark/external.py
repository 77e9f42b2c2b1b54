"""Using a finished run on data outside its suite: `robench evaluate` and `robench predict`."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from robench.benchmark.config import get_budget
from robench.benchmark.evaluate import evaluate, predict_volume
from robench.benchmark.runner import build_method, config_numerics
from robench.benchmark.store import RunFolder, RunLock
from robench.benchmark.suites import acdc
from robench.benchmark.suites.base import Case, TestSet, check_case
from robench.benchmark.suites.nifti import load_nifti, save_nifti, xyz_to_zyx
from robench.benchmark.train import load_best, pick_device
from robench.errors import ConfigError, DataError, RunStateError
from robench.labels import CARDIAC_CLASSES, NUM_CARDIAC_CLASSES
from robench.methods import Method


def load_finished_run(run_dir: Path, device: str) -> tuple[RunFolder, dict, Method]:
    folder = RunFolder(Path(run_dir))
    if not folder.started:
        raise RunStateError(f"{run_dir}: not a robench run folder (no config.json)")
    if not folder.finished:
        raise RunStateError(f"{run_dir}: run not finished; complete it with `robench run ... --resume` first")
    config = folder.config()
    method = build_method(
        config["method"], config["hparams"], config["seed"], NUM_CARDIAC_CLASSES, pick_device(device), config_numerics(config)
    )
    load_best(method, folder)
    return folder, config, method


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
    folder, config, method = load_finished_run(run_dir, device)
    root = Path(test_root).expanduser().resolve()
    name = check_test_set_name(name or root.name, folder)
    subjects = acdc.discover_acdc(root)
    tag = hashlib.sha256(str(sorted(subjects)).encode()).hexdigest()[:8]
    if folder.evaluation_path(f"{name}-{tag}").exists():
        raise RunStateError(
            f"{folder.evaluation_path(f'{name}-{tag}')} exists: this run was already evaluated on {root}; "
            "its records are kept (delete the file to redo it)"
        )
    refs = tuple(r for s in subjects.values() for r in acdc.case_refs(s, {"site": name}))
    budget = get_budget(config["budget"])
    info = {k: config[k] for k in ("method", "suite", "budget", "seed", "cval")}
    info["run_id"] = config["run_id"]
    import json

    info["hparams"] = json.dumps(config["hparams"], sort_keys=True)
    info["numeric_precision"] = config_numerics(config).precision
    test_set = TestSet(name, kind, refs)  # type: ignore[arg-type]
    with RunLock(folder.path):
        result = evaluate(
            method, [test_set], budget, CARDIAC_CLASSES, info, hd95_variant=config.get("hd95_variant", "max_directed"),
        )
        if result.records.empty:
            raise DataError(f"{root}: no labelled case to evaluate (cases without a label: {len(result.unlabelled)})")
        path = folder.add_evaluation(f"{name}-{tag}", result.records)
    return path, result


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
    _, config, method = load_finished_run(run_dir, device)
    mode = method.check_mode(mode)
    budget = get_budget(config["budget"])
    targets = mask_targets(images, out)
    out.mkdir(parents=True, exist_ok=True)
    for path, target in zip(images, targets):
        data, zooms, affine = load_nifti(path)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise DataError(f"{path}: expected a 3-D short-axis volume, found shape {data.shape}; split 4-D cines into frames")
        case = check_case(
            Case(path.name, xyz_to_zyx(data).astype(np.float32), None, (zooms[2], zooms[1], zooms[0]), {}, affine),
            str(path), NUM_CARDIAC_CLASSES,
        )
        mask = predict_volume(method, case, budget, [mode])[mode]
        save_nifti(mask.astype(np.uint8), affine, target)
        yield target
