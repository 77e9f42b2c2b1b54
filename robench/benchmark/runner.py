"""One run end to end: suite → config/run folder → train (or resume) → evaluate best → records → done."""

from __future__ import annotations

import hashlib
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from robench.benchmark.config import RunConfig, get_budget
from robench.benchmark.evaluate import evaluate
from robench.benchmark.store import CONFIG, RunFolder, environment, write_json
from robench.benchmark.suites import SuiteData, SuiteOptions, get_suite
from robench.benchmark.train import Trainer, TrainingSlices, ValidationSet, load_best, pick_device, seed_everything
from robench.errors import RunStateError
from robench.methods import Method, get_method, resolve_hparams


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


@dataclass(frozen=True)
class RunResult:
    folder: RunFolder
    already_finished: bool
    records: pd.DataFrame
    notes: tuple[str, ...] = ()


def build_method(name: str, hparams: dict, seed: int, num_classes: int, device: torch.device) -> Method:
    cls = get_method(name)
    return cls(hparams, num_classes=num_classes, device=device, seed=seed)


def run_info(config: RunConfig, run_id: str) -> dict[str, object]:
    import json

    return {
        "run_id": run_id, "method": config.method, "suite": config.suite, "budget": config.budget,
        "seed": config.seed, "cval": config.cval, "hparams": json.dumps(dict(config.hparams), sort_keys=True),
    }


def execute(request: RunRequest, log: Callable[[str], None] = print) -> RunResult:
    budget = get_budget(request.budget)
    method_cls = get_method(request.method)
    hparams = resolve_hparams(method_cls, request.hparams)
    suite_data: SuiteData = get_suite(request.suite).build(request.options)
    config = RunConfig(
        suite=request.suite, method=request.method, seed=request.seed, cval=request.cval, budget=request.budget,
        hparams=hparams, data={"fingerprint": suite_data.fingerprint}, budget_spec=budget.fingerprint(),
    )
    run_id = config.run_id()
    folder = RunFolder.for_config(request.out, run_id)
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
    method = build_method(request.method, budget.effective_hparams(hparams), request.seed, len(suite_data.classes) + 1, device)
    trainer = Trainer(method, budget, folder, request.seed, progress=request.progress)
    if folder.last_checkpoint.exists():
        trainer.restore()
        log(f"resuming {folder.path} at iteration {trainer.state.iteration}")
    else:
        folder.path.mkdir(parents=True, exist_ok=True)
        write_json(
            folder.path / CONFIG,
            {**config.canonical(), "run_id": run_id, "budget_details": budget.__dict__,
             "data_roots": {k: str(Path(v).expanduser().resolve()) for k, v in _roots(request.options).items()},
             "hd95_variant": request.hd95_variant, "command": " ".join(sys.argv)},
        )
        write_json(folder.path / "environment.json", environment(device))
        folder.log(f"started {config.method} on {config.suite} (seed {config.seed}, cval {config.cval}, budget {config.budget})")
    if not trainer.state.complete:
        log(f"loading training data of {suite_data.name} …")
        data = TrainingSlices.from_cases(suite_data.train, budget, device)
        val = ValidationSet.from_cases(suite_data.val, budget, device)
        folder.log(f"{len(data)} training slices, {len(val.images)} validation slices on {device}")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer.run(data, val)
        folder.log(f"training finished: best validation mIoU {trainer.state.best_score:.4f} at iteration {trainer.state.best_iteration}")
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
        "n_records": len(result.records),
    }
    folder.finish(result.records, summary)
    folder.log("finished")
    return RunResult(folder, False, result.records, suite_data.notes)


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
    budget = get_budget(config.budget)
    device = pick_device(request.device)
    method = build_method(config.method, budget.effective_hparams(dict(config.hparams)), config.seed,
                          len(suite_data.classes) + 1, device)
    load_best(method, folder)
    hd95 = folder.config().get("hd95_variant", request.hd95_variant)
    result = evaluate(method, missing, budget, suite_data.classes, run_info(config, run_id),
                      hd95_variant=hd95, progress=request.progress)
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
