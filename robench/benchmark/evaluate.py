"""Inference on every test set → per-case records.

Each volume is pre-processed exactly as at training time, predicted slice-wise, and its
probability maps are mapped back to the original grid before the metrics, which are
computed in millimetres with the case's true spacing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from robench.benchmark.config import Budget
from robench.benchmark.metrics import case_metrics
from robench.benchmark.preprocess import prepare, test_slices, to_original_grid
from robench.benchmark.records import RECORD_COLUMNS
from robench.benchmark.suites.base import Case, TestSet
from robench.errors import DataError
from robench.methods.base import Method


def predict_volume(method: Method, case: Case, budget: Budget, modes: Iterable[str], chunk: int = 16) -> dict[str, np.ndarray]:
    """Label maps on the case's original grid, one per prediction mode."""
    vol = prepare(case, budget.spacing_mm)
    inputs = test_slices(vol, budget.crop).to(method.device)
    method.eval()
    out = {}
    with torch.no_grad():
        for mode in modes:
            probs = torch.cat(
                [torch.softmax(method.predict(inputs[s : s + chunk], mode), 1) for s in range(0, len(inputs), chunk)]
            )
            out[mode] = to_original_grid(probs.cpu(), vol)
    return out


@dataclass(frozen=True)
class EvaluationResult:
    records: pd.DataFrame
    seconds_per_volume: float
    unlabelled: tuple[str, ...] = ()  # cases without a reference, skipped (named so a caller can say so)


def check_test_sets(test_sets: Iterable[TestSet], progress: bool = False) -> int:
    """Read every case of every test set before any training: readable, shapes, labels, spacing.

    A corrupt, NaN or mislabelled test file found after hours of training costs the training
    (fixing the file changes the run's data fingerprint). Artefact sets are derived from an
    intra set checked here, so only their sources are read. Returns the number of cases read.
    """
    sets = [t for t in test_sets if t.kind != "artefact"]
    total = sum(len(t.cases) for t in sets)
    with Progress(TextColumn("[bold]check test data"), BarColumn(), MofNCompleteColumn(), disable=not progress) as bar:
        task = bar.add_task("check", total=total)
        for test_set in sets:
            if not test_set.cases:
                raise DataError(f"test set {test_set.name} has no cases; check its data folder")
            for ref in test_set.cases:
                case = ref.load()
                if case.label is None:
                    raise DataError(
                        f"test set {test_set.name}: case {case.case_id} has no label; every test case needs a "
                        "reference segmentation (add it or remove the case)"
                    )
                bar.advance(task)
    return total


def evaluate(
    method: Method,
    test_sets: Iterable[TestSet],
    budget: Budget,
    classes: Mapping[str, int],
    run_info: Mapping[str, object],
    *,
    hd95_variant: str = "max_directed",
    progress: bool = True,
) -> EvaluationResult:
    test_sets = list(test_sets)
    rows: list[dict] = []
    unlabelled: list[str] = []
    inference_seconds, volumes = 0.0, 0
    total = sum(len(t.cases) for t in test_sets)
    with Progress(
        TextColumn("[bold]evaluate {task.fields[name]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task("evaluate", total=total, name="")
        for test_set in test_sets:
            bar.update(task, name=test_set.name)
            for ref in test_set.cases:
                case = ref.load()
                if case.label is None:
                    unlabelled.append(f"{test_set.name}/{case.case_id}")
                    bar.advance(task)
                    continue
                started = time.perf_counter()
                predictions = predict_volume(method, case, budget, method.prediction_modes)
                inference_seconds += (time.perf_counter() - started) / len(method.prediction_modes)
                volumes += 1
                scored = scored_classes(classes, {**test_set.meta, **case.meta}, case.case_id)
                for mode, pred in predictions.items():
                    for m in case_metrics(pred, case.label, case.spacing, scored, hd95_variant=hd95_variant):
                        rows.append(_record(run_info, test_set, case, mode, mode == method.primary_mode, m))
                bar.advance(task)
    frame = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    return EvaluationResult(frame, inference_seconds / max(volumes, 1), tuple(unlabelled))


def scored_classes(classes: Mapping[str, int], meta: Mapping[str, object], case_id: str) -> dict[str, int]:
    """The classes a case's reference actually delineates.

    Some references label only part of the anatomy (Sunnybrook: LV at ED and ES, MYO at ED
    only, never RV); scoring an undelineated structure would count every correct prediction
    of it as a false positive, so such cases list their classes in `meta["classes"]`.
    """
    names = meta.get("classes")
    if names is None:
        return dict(classes)
    unknown = [n for n in names if n not in classes]  # type: ignore[union-attr]
    if unknown:
        raise DataError(f"case {case_id}: classes {unknown} are not classes of this suite ({', '.join(classes)})")
    return {n: classes[n] for n in names}  # type: ignore[union-attr]


def _record(run_info, test_set: TestSet, case: Case, mode: str, primary: bool, m: Mapping[str, object]) -> dict:
    meta = {**test_set.meta, **case.meta}
    return {
        **run_info,
        "test_set": test_set.name,
        "kind": test_set.kind,
        "site": str(meta.get("site", "")),
        "vendor": str(meta.get("vendor", "")),
        "corruption": str(meta.get("corruption", "")),
        "severity": int(meta.get("severity", 0) or 0),
        "case_id": case.case_id,
        "unit": str(meta.get("unit") or meta.get("source_case") or case.case_id),
        "subject": str(meta.get("subject", "")),
        "frame": str(meta.get("frame", "")),
        "mode": mode,
        "primary": primary,
        "spacing_source": str(meta.get("spacing_source", "")),
        **m,
    }
