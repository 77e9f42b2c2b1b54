"""Inference on every test set → per-case records.

Each volume is pre-processed exactly as at training time, predicted slice-wise, and its
probability maps are mapped back to the original grid before the metrics, which are
computed in millimetres with the case's true spacing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from robench.benchmark.config import Budget
from robench.benchmark.metrics import case_metrics_modes
from robench.benchmark.preprocess import PreparedVolume, labels_on_original_grid, prepare, test_slices
from robench.benchmark.records import RECORD_COLUMNS
from robench.benchmark.suites.base import Case, TestSet
from robench.corruptions.testsets import by_source
from robench.errors import DataError
from robench.methods.base import Method


INFERENCE_BATCH = 64  # slices per forward pass, gathered across volumes (and test sets)


@dataclass
class _Pending:
    """A volume waiting for its slices' turn in a batch."""

    key: object
    vol: PreparedVolume
    inputs: torch.Tensor


def predict_volumes(
    method: Method, items: Iterable[tuple[object, Case]], budget: Budget, modes: Iterable[str],
    batch_slices: int = INFERENCE_BATCH,
) -> Iterator[tuple[object, dict[str, torch.Tensor]]]:
    """(key, case) pairs → (key, label map per mode on the original grid, on the method's device).

    Slices of consecutive volumes share forward passes of `batch_slices`, under the run's
    precision; every mode comes from one pass of the shared networks (`Method.predict_modes`),
    and probabilities are mapped back to each grid on the device.
    """
    modes = tuple(modes)
    method.eval()
    queue: list[_Pending] = []
    queued = 0
    for key, case in items:
        vol = prepare(case, budget.spacing_mm)
        queue.append(_Pending(key, vol, test_slices(vol, budget.crop).to(method.device)))
        queued += len(queue[-1].inputs)
        if queued >= batch_slices:
            yield from _predict_queue(method, queue, modes, batch_slices)
            queue, queued = [], 0
    yield from _predict_queue(method, queue, modes, batch_slices)


def _predict_queue(method: Method, queue: list[_Pending], modes: tuple[str, ...], batch_slices: int):
    if not queue:
        return
    inputs = torch.cat([item.inputs for item in queue])
    probs: dict[str, list[torch.Tensor]] = {mode: [] for mode in modes}
    with torch.no_grad():
        for start in range(0, len(inputs), batch_slices):
            for mode, logits in method.predict_modes(inputs[start : start + batch_slices], modes).items():
                probs[mode].append(torch.softmax(logits, 1))
        joined = {mode: torch.cat(parts) for mode, parts in probs.items()}
        start = 0
        for item in queue:
            stop = start + len(item.inputs)
            yield item.key, {mode: labels_on_original_grid(p[start:stop], item.vol) for mode, p in joined.items()}
            start = stop


def predict_volume(method: Method, case: Case, budget: Budget, modes: Iterable[str]) -> dict[str, np.ndarray]:
    """Label maps of one case on its original grid, one per prediction mode, as NumPy arrays."""
    (_, maps), = predict_volumes(method, [(None, case)], budget, modes)
    return {mode: m.cpu().numpy() for mode, m in maps.items()}


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
    total = sum(len(t.cases) for t in test_sets)
    with Progress(
        TextColumn("[bold]evaluate {task.fields[name]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task("evaluate", total=total, name="")
        load_seconds = [0.0]

        def labelled_cases():
            for test_set, ref in by_source([(t, r) for t in test_sets for r in t.cases]):
                bar.update(task, name=test_set.name)
                reading = time.perf_counter()
                case = ref.load()
                load_seconds[0] += time.perf_counter() - reading
                if case.label is None:
                    unlabelled.append(f"{test_set.name}/{case.case_id}")
                    bar.advance(task)
                    continue
                yield (test_set, case), case

        started = time.perf_counter()
        metric_seconds, volumes = 0.0, 0
        for (test_set, case), predictions in predict_volumes(method, labelled_cases(), budget, method.prediction_modes):
            scoring = time.perf_counter()
            volumes += 1
            scored = scored_classes(classes, {**test_set.meta, **case.meta}, case.case_id)
            reference = case.label
            on_device = next(iter(predictions.values())).is_cuda
            if on_device:  # score where the maps are (robench.benchmark.metrics_torch)
                reference = torch.as_tensor(case.label).to(next(iter(predictions.values())).device)
            else:
                predictions = {mode: p.numpy() for mode, p in predictions.items()}
            by_mode = case_metrics_modes(predictions, reference, case.spacing, scored, hd95_variant=hd95_variant)
            for mode, values in by_mode.items():
                for m in values:
                    rows.append(_record(run_info, test_set, case, mode, mode == method.primary_mode, m))
            metric_seconds += time.perf_counter() - scoring
            bar.advance(task)
        # pre-processing, forward passes and grid mapping; reading, corrupting and metrics excluded.
        # Per volume and prediction mode, as before the modes shared their pass (comparable across runs)
        inference_seconds = (time.perf_counter() - started - metric_seconds - load_seconds[0]) / len(method.prediction_modes)
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
