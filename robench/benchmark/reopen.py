"""Reopening a run: its best checkpoint with everything it was trained under, from its config.json alone.

One place for what `evaluate`, `predict`, the runner's late test sets and the hard-example
plots all need: the budget on the suite's grid (`budget_details`, as trained), the method
with the budget's effective hyperparameters and the run's numerics, and the suite's classes.
Runs from before the classes were recorded are cardiac runs (the only suites then).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from robench.benchmark.config import Budget, get_budget
from robench.benchmark.store import CONFIG, RunFolder
from robench.benchmark.suites import SuiteData, SuiteOptions, get_suite
from robench.benchmark.train import load_best, pick_device
from robench.errors import RunStateError
from robench.labels import CARDIAC_CLASSES
from robench.methods import Method, get_method
from robench.precision import NumericChoice


@dataclass(frozen=True)
class ReopenedRun:
    folder: RunFolder
    config: dict[str, Any]
    budget: Budget
    classes: dict[str, int]
    method: Method
    checkpoint: dict[str, Any]


def run_budget(config: Mapping[str, Any]) -> Budget:
    """The budget the run trained under, on its suite's grid."""
    details = config.get("budget_details")
    if not details:
        return get_budget(str(config["budget"]))
    names = {f.name for f in dataclasses.fields(Budget)}
    return Budget(**{k: v for k, v in details.items() if k in names})


def run_classes(config: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in (config.get("classes") or CARDIAC_CLASSES).items()}


def config_numerics(config: Mapping[str, object]) -> NumericChoice:
    """The precision and layout a run's config recorded (runs from before the choice: fp32, contiguous)."""
    return NumericChoice(str(config.get("precision", "fp32")), str(config.get("memory_format", "contiguous")))


def build_method(
    name: str, hparams: dict, seed: int, num_classes: int, device, numerics: NumericChoice = NumericChoice(),
    in_channels: int = 1,
) -> Method:
    cls = get_method(name)
    return cls(hparams, num_classes=num_classes, device=device, seed=seed, in_channels=in_channels).use_numerics(numerics)


def reopen(run_dir: Path | RunFolder, device: str = "auto", *, finished: bool = True) -> ReopenedRun:
    """The run's method at its best checkpoint; `finished=False` also opens a run still training."""
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(Path(run_dir))
    if not (folder.path / CONFIG).exists():
        raise RunStateError(f"{folder.path}: not a robench run folder (no {CONFIG}); pass a folder written by `robench run`")
    if finished and not folder.finished:
        raise RunStateError(f"{folder.path}: run not finished; complete it with `robench run ... --resume` first")
    config = folder.config()
    budget = run_budget(config)
    classes = run_classes(config)
    method = build_method(
        config["method"], budget.effective_hparams(dict(config["hparams"])), config["seed"], len(classes) + 1,
        pick_device(device), config_numerics(config), in_channels=len(config.get("channels") or ["image"]),
    )
    checkpoint = load_best(method, folder)
    return ReopenedRun(folder, config, budget, classes, method, checkpoint)


def run_suite(config: Mapping[str, Any], data_root: Path | None = None) -> SuiteData:
    """The run's suite as it trained (cval, training fraction, slice axis), without artefact sets; read from
    the data root recorded in config.json, or from `data_root` when the data have moved since."""
    recorded = (config.get("data_roots") or {}).get("data")
    root = data_root or (Path(recorded) if recorded else None)
    options = SuiteOptions(data_root=root, cval=config["cval"], corruptions=(),
                           train_fraction=config.get("train_fraction", 1.0), slice_axis=config.get("slice_axis"))
    return get_suite(config["suite"]).build(options)
