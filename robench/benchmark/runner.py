"""One run end to end: suite → config/run folder → train (or resume) → evaluate best → records → done."""

from __future__ import annotations

import dataclasses
import hashlib
import resource
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from robench.benchmark.config import Budget, RunConfig, check_test_norm, get_budget
from robench.benchmark.evaluate import check_test_sets, evaluate
from robench.benchmark.reopen import build_method, config_numerics, reopen
from robench.benchmark.metrics import HD95_VARIANTS
from robench.benchmark.store import (
    CONFIG, LOCK, RunFolder, RunLock, environment, remove_stale_temporaries, write_json, write_records,
)
from robench.benchmark.suites import SuiteData, SuiteOptions, get_suite
from robench.benchmark.suites.base import check_fraction
from robench.benchmark.suites.nnunet import check_slice_axis
from robench.corruptions.testsets import first_sources
from robench.benchmark.train import Trainer, TrainingSlices, ValidationSet, load_best, pick_device, seed_everything
from robench.errors import ConfigError, DataError, RunStateError, describe_os_error
from robench import precision
from robench.methods import get_method, resolve_hparams
from robench.numerics import is_pinned
from robench.threads import ThreadGovernor, check_threads


@dataclass(frozen=True)
class RunRequest:
    suite: str
    method: str
    seed: int = 0
    cval: int = 0
    budget: str = "quick"
    hparams: dict[str, str] = field(default_factory=dict)
    out: Path = Path("runs")
    options: SuiteOptions = SuiteOptions()
    resume: bool = False
    device: str = "auto"
    hd95_variant: str = "max_directed"
    progress: bool = True
    precision: str = "auto"  # fp32 | bf16 | auto (bf16 where the device computes it natively)
    threads: int | None = None  # intra-op threads; None follows the free cores (robench.threads)
    oversample_foreground: float | None = None  # share of each batch holding the rarest class; None: the suite's
    test_norm: str = "per-slice"  # evaluation slices: per-slice min-max, or none (the public tester's); Budget.test_norm


@dataclass(frozen=True)
class RunResult:
    folder: RunFolder
    already_finished: bool
    records: pd.DataFrame
    notes: tuple[str, ...] = ()


def run_info(config: RunConfig, run_id: str) -> dict[str, object]:
    import json

    return {
        "run_id": run_id, "method": config.method, "suite": config.suite, "budget": config.budget,
        "seed": config.seed, "cval": config.cval, "hparams": json.dumps(dict(config.hparams), sort_keys=True),
        "numeric_precision": config.precision,  # fp32 | bf16 ("precision" is the metric)
    }


SEED_RANGE = (0, 2**32 - 1)  # numpy's and torch's seeds; a negative seed is refused by numpy mid-run


def check_request(request: RunRequest) -> None:
    """Every option that can be checked without data, before anything is read or written."""
    low, high = SEED_RANGE
    for name, value in (("--seed", request.seed), ("--corruption-seed", request.options.corruption_seed)):
        if not low <= value <= high:
            raise ConfigError(f"{name} {value} is out of range; use an integer in {low}..{high}")
    if request.hd95_variant not in HD95_VARIANTS:
        raise ConfigError(f"--hd95 {request.hd95_variant!r} is unknown; use {' or '.join(HD95_VARIANTS)}")
    precision.resolve(request.precision, pick_device(request.device))
    check_threads(request.threads)
    check_fraction(request.options.train_fraction)
    check_test_norm(request.test_norm)
    check_slice_axis(request.options.slice_axis)
    share = request.oversample_foreground
    if share is not None and not 0 <= share <= 1:
        raise ConfigError(f"--oversample-foreground must be in [0, 1], got {share}")
    check_writable(Path(request.out), "--out")


def check_classes_occur(suite_data: SuiteData, data: TrainingSlices) -> None:
    """A class the suite lists but no training slice holds cannot be learnt (a dataset.json that lists a
    label its files never use, or a training fraction too small for it): say so before training."""
    present = set(torch.unique(data.labels).tolist())
    absent = [name for name, value in suite_data.classes.items() if value not in present]
    if absent:
        raise DataError(
            f"suite {suite_data.name}: classes {absent} occur in no training slice ({len(suite_data.train)} training "
            "cases); remove them from the label list (dataset.json) or train on more cases (--train-fraction)"
        )


def oversampling(request: RunRequest, suite_data: SuiteData) -> float:
    """The share of each batch drawn from slices of the rarest class: the request's, else the suite's."""
    return suite_data.oversample_foreground if request.oversample_foreground is None else request.oversample_foreground


def check_writable(folder: Path, option: str) -> None:
    """Create `folder` and write a probe file in it now, not after hours of training."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {folder}: cannot write there ({describe_os_error(exc)})") from None


@dataclass(frozen=True)
class PlannedRun:
    """A request resolved into its identity, before anything is written: what `execute` and a sweep's plan share."""

    config: RunConfig
    run_id: str
    folder: RunFolder
    suite_data: SuiteData
    budget: Budget
    hparams: dict


def plan(request: RunRequest, suite_data: SuiteData | None = None) -> PlannedRun:
    """Check the request and resolve its run id; `suite_data` (built for the same suite options) may be reused."""
    check_request(request)
    budget = dataclasses.replace(get_budget(request.budget), test_norm=request.test_norm)
    method_cls = get_method(request.method)
    hparams = resolve_hparams(method_cls, request.hparams)
    if suite_data is None:
        suite_data = get_suite(request.suite).build(request.options)
    if len(suite_data.channels) > 1 and not method_cls.multichannel:  # before any data is read
        raise ConfigError(
            f"method {request.method!r} works on single-channel images only; suite {suite_data.name} has "
            f"{len(suite_data.channels)} channels ({', '.join(suite_data.channels)})"
        )
    budget = budget.on_geometry(suite_data.geometry)
    suite_data = dataclasses.replace(suite_data, test_sets=first_sources(suite_data.test_sets, budget.artefact_sources))
    numerics = precision.resolve(request.precision, pick_device(request.device))
    config = RunConfig(
        suite=request.suite, method=request.method, seed=request.seed, cval=request.cval, budget=request.budget,
        hparams=hparams, data={"fingerprint": suite_data.fingerprint}, budget_spec=budget.fingerprint(),
        hd95_variant=request.hd95_variant, precision=numerics.precision, memory_format=numerics.memory_format,
        train_fraction=request.options.train_fraction, oversample_foreground=request.oversample_foreground,
    )
    run_id = config.run_id()
    return PlannedRun(config, run_id, RunFolder.for_config(request.out, run_id), suite_data, budget, hparams)


def execute(request: RunRequest, log: Callable[[str], None] = print) -> RunResult:
    planned = plan(request)
    folder = planned.folder
    fresh = not folder.path.exists()
    try:
        with RunLock(folder.path):
            return _execute_locked(request, planned.config, planned.run_id, folder, planned.suite_data,
                                   planned.budget, planned.hparams, log)
    except BaseException:
        _remove_if_empty(folder, fresh)
        raise


def _execute_locked(request, config, run_id, folder, suite_data, budget, hparams, log) -> RunResult:
    for tmp in remove_stale_temporaries(folder.path):
        folder.log(f"removed {tmp.name}, left by a writer that was killed")
    if folder.finished:
        evaluate_new_test_sets(folder, config, run_id, suite_data, request, log)
        return RunResult(folder, True, folder.all_records(), suite_data.notes)
    if folder.started and not request.resume:
        raise RunStateError(
            f"{folder.path}: an interrupted run of this config exists; add --resume to continue it "
            "(or delete the folder to start over)"
        )
    device = pick_device(request.device)
    seed_everything(request.seed)
    method = build_method(
        request.method, budget.effective_hparams(hparams), request.seed, len(suite_data.classes) + 1, device,
        config_numerics(config.canonical()), in_channels=len(suite_data.channels),
    )
    threads = ThreadGovernor(requested=1 if is_pinned() else request.threads)
    trainer = Trainer(method, budget, folder, request.seed, progress=request.progress, threads=threads,
                      oversample_foreground=oversampling(request, suite_data))
    if folder.last_checkpoint.exists():
        trainer.restore()
        log(f"resuming {folder.path} at iteration {trainer.state.iteration}")
    notes = list(suite_data.notes)
    if not trainer.state.complete:
        log(f"checking the test data of {suite_data.name} …")
        check_test_sets(suite_data.test_sets, progress=request.progress)
        log(f"loading training data of {suite_data.name} …")
        data = TrainingSlices.from_cases(suite_data.train, budget, device, all_slices=suite_data.training_slices == "all")
        check_classes_occur(suite_data, data)
        val = ValidationSet.from_cases(suite_data.val, budget, device)
        if not folder.started:
            _write_provenance(folder, config, run_id, budget, request, device, suite_data)
        for warning in data.warnings:  # loud: on the console, in the log, and in the run's notes
            log(f"[yellow]warning[/]: {warning}")
            folder.log(f"warning: {warning}")
            notes.append(warning)
        folder.log(f"{len(data)} training slices, {len(val.images)} validation slices on {device}")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer.run(data, val)
        folder.log(f"training finished: best validation mIoU {trainer.state.best_score:.4f} at iteration {trainer.state.best_iteration}")
    for name, table in method.artifacts().items():  # from the last checkpoint's state: the whole training
        write_records(folder.path / f"{name}.parquet", table)
    best = load_best(method, folder)
    result = evaluate(
        method, suite_data.test_sets, budget, suite_data.classes, run_info(config, run_id),
        hd95_variant=request.hd95_variant, progress=request.progress,
    )
    summary = {
        "train_seconds": trainer.state.seconds,
        "iterations": trainer.state.iteration,
        "best_iteration": best["iteration"],
        "best_val_miou": best["score"],
        "infer_seconds_per_volume": result.seconds_per_volume,
        "peak_memory_mb": _peak_memory_mb(device),
        "device": str(device),
        "precision": config.precision,
        "memory_format": config.memory_format,
        "threads": threads.record(),
        "n_records": len(result.records),
    }
    folder.finish(result.records, summary)
    folder.log("finished")
    return RunResult(folder, False, result.records, tuple(notes))


def _write_provenance(folder: RunFolder, config: RunConfig, run_id: str, budget, request: RunRequest, device, suite_data: SuiteData) -> None:
    write_json(
        folder.path / CONFIG,
        {**config.canonical(), "run_id": run_id, "budget_details": budget.__dict__,
         "data_roots": {k: str(Path(v).expanduser().resolve()) for k, v in _roots(request.options).items()},
         "splits": {role: list(ids) for role, ids in suite_data.splits.items()},
         "classes": dict(suite_data.classes), "channels": list(suite_data.channels), "slice_axis": request.options.slice_axis,
         "training_slices": suite_data.training_slices, "foreground_share": oversampling(request, suite_data),
         "command": " ".join(sys.argv)},
    )
    write_json(folder.path / "environment.json", environment(device))
    folder.log(f"started {config.method} on {config.suite} (seed {config.seed}, cval {config.cval}, budget {config.budget})")


def _remove_if_empty(folder: RunFolder, fresh: bool) -> None:
    """A run refused before its first file (bad data, bad option) leaves no folder behind."""
    if not fresh or not folder.path.is_dir():
        return
    leftovers = {p.name for p in folder.path.iterdir()} - {LOCK, "log.txt"}
    if not leftovers:
        for name in (LOCK, "log.txt"):
            (folder.path / name).unlink(missing_ok=True)
        try:
            folder.path.rmdir()
        except OSError:
            pass


def evaluate_new_test_sets(
    folder: RunFolder, config: RunConfig, run_id: str, suite_data: SuiteData, request: RunRequest,
    log: Callable[[str], None],
) -> None:
    """Evaluate the best checkpoint of a finished run on suite test sets it has no records for.

    Test sets are not part of a run's identity (only the training data are), so a suite that
    gains test sets — corruptions, another site's folder — extends finished runs instead of
    retraining them; the new records go to `evaluations/`, the original records stay untouched.
    """
    done = set(folder.all_records()["test_set"].astype(str).unique())
    missing = [t for t in suite_data.test_sets if t.name not in done]
    if not missing:
        return
    log(f"{folder.path}: finished; evaluating {len(missing)} test sets it has no records for")
    run = reopen(folder, request.device)
    check_test_sets(missing)
    result = evaluate(run.method, missing, run.budget, suite_data.classes, run_info(config, run_id),
                      hd95_variant=config.hd95_variant, progress=request.progress)
    names = ",".join(sorted(t.name for t in missing))
    tag = hashlib.sha256(names.encode()).hexdigest()[:8]
    folder.add_evaluation(f"suite-{tag}", result.records)
    folder.log(f"evaluated {len(missing)} new test sets: {names}")


def _roots(options: SuiteOptions) -> dict[str, Path]:
    roots = dict(options.extra_roots)
    if options.data_root is not None:
        roots["data"] = options.data_root
    return roots


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
