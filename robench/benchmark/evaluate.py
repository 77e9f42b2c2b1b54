"""Inference on every test set → per-case records.

Each volume is pre-processed exactly as at training time, predicted slice-wise, and its
probability maps are mapped back to the original grid before the metrics, which are
computed in millimetres with the case's true spacing.

Where the work runs: on the CPU, cases are spread over one worker thread per core the run
may use, each with a single intra-op thread, so reading, corrupting, predicting and scoring
of different cases overlap (one case at a time left a core idle through the single-threaded
parts, and two thread pools on the same cores spin against each other). On an accelerator,
slices of many volumes share each forward pass and cases are read ahead on a CPU thread.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from robench.benchmark.config import Budget
from robench.benchmark.metrics import case_metrics_modes
from robench.benchmark.preprocess import PreparedVolume, labels_on_original_grid, prepare, test_slices
from robench.benchmark.records import RECORD_COLUMNS
from robench.benchmark.suites.base import Case, CaseRef, TestSet
from robench.corruptions.testsets import by_source
from robench.errors import DataError
from robench.methods.base import Method


INFERENCE_BATCH = 64  # slices per forward pass, gathered across volumes (and test sets) on an accelerator
READ_AHEAD = 8  # cases read (and corrupted) ahead of the device

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Pending:
    """A volume waiting for its slices' turn in a batch."""

    key: object
    vol: PreparedVolume
    inputs: torch.Tensor


def _prepared(key: object, case: Case, budget: Budget, device: torch.device) -> _Pending:
    vol = prepare(case, budget.spacing_mm)
    return _Pending(key, vol, test_slices(vol, budget.crop, budget.test_norm).to(device))


def predict_volumes(
    method: Method, items: Iterable[tuple[object, Case]], budget: Budget, modes: Iterable[str],
    batch_slices: int = INFERENCE_BATCH,
) -> Iterator[tuple[object, dict[str, torch.Tensor]]]:
    """(key, case) pairs → (key, label map per mode on the original grid, on the method's device).

    Slices of consecutive volumes share forward passes of `batch_slices`, under the run's
    precision; every mode comes from one pass of the shared networks (`Method.predict_modes`),
    and probabilities are mapped back to each grid on the device.
    """
    pending = (_prepared(key, case, budget, method.device) for key, case in items)
    for batch in _batches(pending, batch_slices):
        yield from _predict_batch(method, batch, tuple(modes), batch_slices)


def _batches(pending: Iterable[_Pending], batch_slices: int) -> Iterator[list[_Pending]]:
    """Consecutive volumes grouped until they hold at least `batch_slices` slices."""
    batch: list[_Pending] = []
    for item in pending:
        batch.append(item)
        if sum(len(p.inputs) for p in batch) >= batch_slices:
            yield batch
            batch = []
    if batch:
        yield batch


def _predict_batch(method: Method, batch: list[_Pending], modes: tuple[str, ...], batch_slices: int):
    """Label maps of every volume of the batch, all computed before the first is handed out
    (so a caller's time between items is not counted as prediction)."""
    method.eval()
    inputs = torch.cat([item.inputs for item in batch])
    probs: dict[str, list[torch.Tensor]] = {mode: [] for mode in modes}
    with torch.no_grad():
        for start in range(0, len(inputs), batch_slices):
            for mode, logits in method.predict_modes(inputs[start : start + batch_slices], modes).items():
                probs[mode].append(torch.softmax(logits, 1))
        joined = {mode: torch.cat(parts) for mode, parts in probs.items()}
        out, start = [], 0
        for item in batch:
            stop = start + len(item.inputs)
            out.append((item.key, {mode: labels_on_original_grid(p[start:stop], item.vol) for mode, p in joined.items()}))
            start = stop
    return out


def predict_volume(method: Method, case: Case, budget: Budget, modes: Iterable[str]) -> dict[str, np.ndarray]:
    """Label maps of one case on its original grid, one per prediction mode, as NumPy arrays."""
    (_, maps), = predict_volumes(method, [(None, case)], budget, modes)
    return {mode: m.cpu().numpy() for mode, m in maps.items()}


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Iterator[R]:
    """`fn` over `items` on `workers` threads, results in input order, at most `ahead` items in flight.

    Why not `ThreadPoolExecutor.map`: it submits every item at once, so an error or an
    interrupt would wait for all of them; here the items not started are cancelled.
    """
    items = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="robench-eval") as pool:
        in_flight = deque(pool.submit(fn, item) for item in itertools.islice(items, max(ahead, 1)))
        try:
            while in_flight:
                result = in_flight.popleft().result()
                for item in itertools.islice(items, 1):
                    in_flight.append(pool.submit(fn, item))
                yield result
        finally:
            for future in in_flight:
                future.cancel()


@contextlib.contextmanager
def single_threaded_ops() -> Iterator[None]:
    """torch's intra-op threads set to 1 (threads started inside inherit it), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class EvaluationResult:
    records: pd.DataFrame
    seconds_per_volume: float
    unlabelled: tuple[str, ...] = ()  # cases without a reference, skipped (named so a caller can say so)


@dataclass(frozen=True)
class _Scored:
    """One test case done: its records (None when it has no reference) and its prediction time."""

    test_set: TestSet
    case_id: str
    rows: list[dict] | None
    predict_seconds: float  # pre-processing, forward passes and grid mapping, all modes


Scorer = Callable[[TestSet, Case, Mapping[str, torch.Tensor]], list[dict]]
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
    workers: int | None = None,
) -> EvaluationResult:
    """Records of every case of `test_sets`, in a fixed order (the copies of one source volume together).

    `workers`: CPU worker threads, one case each (default on the CPU: torch's thread count, the
    cores this run may use); 0 batches slices across volumes on the method's device (the
    default elsewhere). With workers, a case's records are the same bit for bit whatever the
    number of workers (each case alone, one thread); a batch may pick other kernels.
    """
    test_sets = list(test_sets)
    jobs = by_source([(t, r) for t in test_sets for r in t.cases])
    modes = tuple(method.prediction_modes)

    def score(test_set: TestSet, case: Case, maps: Mapping[str, torch.Tensor]) -> list[dict]:
        scored = scored_classes(classes, {**test_set.meta, **case.meta}, case.case_id)
        first = next(iter(maps.values()))
        if first.is_cuda:  # score where the maps are (robench.benchmark.metrics_torch)
            reference = torch.as_tensor(case.label).to(first.device)
        else:
            reference, maps = case.label, {mode: m.numpy() for mode, m in maps.items()}
        by_mode = case_metrics_modes(maps, reference, case.spacing, scored, hd95_variant=hd95_variant)
        return [_record(run_info, test_set, case, mode, mode == method.primary_mode, m)
                for mode, values in by_mode.items() for m in values]

    if workers is None:
        workers = torch.get_num_threads() if method.device.type == "cpu" else 0
    method.eval()
    outcomes = _per_case(method, jobs, budget, modes, score, workers) if workers > 0 else _batched(method, jobs, budget, modes, score)
    rows: list[dict] = []
    unlabelled: list[str] = []
    seconds, volumes = 0.0, 0
    with Progress(
        TextColumn("[bold]evaluate {task.fields[name]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not progress,
    ) as bar, contextlib.closing(outcomes):
        task = bar.add_task("evaluate", total=len(jobs), name="")
        for done in outcomes:
            bar.update(task, advance=1, name=done.test_set.name)
            if done.rows is None:
                unlabelled.append(f"{done.test_set.name}/{done.case_id}")
                continue
            rows.extend(done.rows)
            seconds += done.predict_seconds
            volumes += 1
    frame = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    # per volume and prediction mode, as before the modes shared their pass (comparable across runs)
    return EvaluationResult(frame, seconds / max(volumes, 1) / len(modes), tuple(unlabelled))


def _per_case(method: Method, jobs, budget: Budget, modes: tuple[str, ...], score: Scorer, workers: int) -> Iterator[_Scored]:
    """Each case read, predicted and scored by one of `workers` threads with one intra-op thread each."""

    def one(job: tuple[TestSet, CaseRef]) -> _Scored:
        test_set, ref = job
        case = ref.load()
        if case.label is None:
            return _Scored(test_set, case.case_id, None, 0.0)
        start = time.perf_counter()
        (_, maps), = _predict_batch(method, [_prepared(None, case, budget, method.device)], modes, INFERENCE_BATCH)
        seconds = time.perf_counter() - start
        return _Scored(test_set, case.case_id, score(test_set, case, maps), seconds)

    with single_threaded_ops():
        yield from ordered_map(one, jobs, workers, ahead=2 * workers)


def _batched(method: Method, jobs, budget: Budget, modes: tuple[str, ...], score: Scorer) -> Iterator[_Scored]:
    """Slices of consecutive volumes share forward passes on the device; a CPU thread reads ahead."""

    def read(job: tuple[TestSet, CaseRef]) -> tuple[TestSet, Case, _Pending | None, float]:
        test_set, ref = job
        case = ref.load()
        if case.label is None:
            return test_set, case, None, 0.0
        start = time.perf_counter()
        pending = _prepared((test_set, case), case, budget, torch.device("cpu"))
        return test_set, case, pending, time.perf_counter() - start

    skipped: list[_Scored] = []
    prepare_seconds: dict[int, float] = {}

    def labelled() -> Iterator[_Pending]:
        for test_set, case, pending, seconds in ordered_map(read, jobs, workers=1, ahead=READ_AHEAD):
            if pending is None:
                skipped.append(_Scored(test_set, case.case_id, None, 0.0))
                continue
            prepare_seconds[id(case)] = seconds
            yield _Pending(pending.key, pending.vol, pending.inputs.to(method.device, non_blocking=True))

    for batch in _batches(labelled(), INFERENCE_BATCH):
        start = time.perf_counter()
        predicted = _predict_batch(method, batch, modes, INFERENCE_BATCH)
        share = (time.perf_counter() - start) / len(batch)
        yield from skipped
        skipped.clear()
        for (test_set, case), maps in predicted:
            yield _Scored(test_set, case.case_id, score(test_set, case, maps), share + prepare_seconds.pop(id(case)))
    yield from skipped
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
