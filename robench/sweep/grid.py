"""A sweep's grid: methods × seeds × cvals × fractions × hyperparameter values, as run requests with ids.

Run ids are the runs' own content hashes (`RunConfig.run_id`), so a sweep is idempotent in the
way DomainBed's is: a finished run is skipped, an interrupted one resumes from its checkpoint,
and two sweeps that share a run share its folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from robench.benchmark.runner import RunRequest, plan
from robench.benchmark.store import RunFolder, write_json
from robench.errors import ConfigError
from robench.sweep.status import SWEEPS_DIR, RunState, run_state


@dataclass(frozen=True)
class Job:
    """One run of a sweep, as a launcher hands it to a worker (picklable: plain data)."""

    request: RunRequest
    run_id: str
    log_path: Path

    @property
    def name(self) -> str:
        r = self.request
        return f"{r.method} seed {r.seed} cval {r.cval} fraction {r.options.train_fraction:g}"


@dataclass(frozen=True)
class PlannedJob:
    job: Job
    state: RunState


@dataclass(frozen=True)
class Plan:
    jobs: tuple[PlannedJob, ...]
    path: Path | None  # where the plan is saved (names the runs `robench status` reports as missing)

    def to_launch(self, retry_failed: bool) -> list[Job]:
        wanted = {RunState.MISSING, RunState.INTERRUPTED} | ({RunState.FAILED} if retry_failed else set())
        return [p.job for p in self.jobs if p.state in wanted]

    def counts(self) -> dict[str, int]:
        out = {state.value: 0 for state in RunState}
        for p in self.jobs:
            out[p.state.value] += 1
        return out


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """`0-2` → (0, 1, 2); `0,3,5` → (0, 3, 5); both mixed: `0-2,7`."""
    values: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            low, dash, high = part.partition("-")
            values.extend(range(int(low), int(high) + 1) if dash else [int(part)])
    except ValueError:
        raise ConfigError(f"{option} {text!r}: use integers and ranges such as 0-2 or 0,3,5") from None
    if not values:
        raise ConfigError(f"{option} is empty; give at least one value, e.g. 0 or 0-2")
    return tuple(dict.fromkeys(values))


def parse_float_list(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(dict.fromkeys(float(p) for p in text.split(",") if p.strip()))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: use numbers separated by commas, e.g. 0.25,1.0") from None
    if not values:
        raise ConfigError(f"{option} is empty; give at least one value, e.g. 1.0")
    return values


def parse_methods(text: str) -> tuple[str, ...]:
    from robench.methods import METHODS, get_method

    if text.strip() == "all":
        return tuple(sorted(METHODS))
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ConfigError("--methods is empty; name methods separated by commas, or all")
    for name in names:
        get_method(name)  # unknown names fail here, listing the registry
    return names


def parse_grid(items: Sequence[str] | None) -> dict[str, tuple[str, ...]]:
    """`--grid key=a|b|c` (repeatable): a hyperparameter the sweep varies; values are split on `|`."""
    grid: dict[str, tuple[str, ...]] = {}
    for item in items or ():
        key, sep, values = item.partition("=")
        choices = tuple(v.strip() for v in values.split("|") if v.strip())
        if not sep or not key.strip() or not choices:
            raise ConfigError(f"--grid expects key=value1|value2, got {item!r}")
        grid[key.strip()] = choices
    return grid


@dataclass(frozen=True)
class SweepGrid:
    """What varies (methods, seeds, cvals, fractions, grid hyperparameters) around one base request."""

    base: RunRequest
    methods: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    cvals: tuple[int, ...] = (0,)
    fractions: tuple[float, ...] = (1.0,)
    grid: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def size(self) -> int:
        """How many requests the grid expands to (before runs equal to one another are merged)."""
        return math.prod(map(len, (self.methods, self.fractions, self.cvals, self.seeds, *self.grid.values())))

    def requests(self) -> list[RunRequest]:
        keys = sorted(self.grid)
        out = []
        for method, fraction, cval, seed, *values in itertools.product(
            self.methods, self.fractions, self.cvals, self.seeds, *(self.grid[k] for k in keys)
        ):
            options = dataclasses.replace(self.base.options, cval=cval, train_fraction=fraction)
            hparams = {**self.base.hparams, **dict(zip(keys, values))}
            out.append(dataclasses.replace(self.base, method=method, seed=seed, cval=cval, options=options,
                                           hparams=hparams, resume=True, progress=False))
        return out


def make_plan(sweep: SweepGrid, save: bool = True) -> Plan:
    """Resolve every run's id and state, checking every request before anything runs; save the plan."""
    out = Path(sweep.base.out)
    suites: dict[str, object] = {}
    jobs: list[PlannedJob] = []
    seen: set[str] = set()
    for request in sweep.requests():
        key = repr(request.options)  # suite data depend on the suite and its options only
        planned = plan(request, suites.get((request.suite, key)))
        suites[(request.suite, key)] = planned.suite_data
        if planned.run_id in seen:
            continue  # e.g. a grid value equal to the default: the same run twice
        seen.add(planned.run_id)
        job = Job(request, planned.run_id, out / SWEEPS_DIR / "logs" / f"{planned.run_id}.log")
        jobs.append(PlannedJob(job, run_state(RunFolder(planned.folder.path))))
    return Plan(tuple(jobs), _save(out, jobs) if save else None)


def _save(out: Path, jobs: list[PlannedJob]) -> Path:
    """The plan as data: the run ids and what each one is; the same grid always maps to the same file."""
    ids = sorted(p.job.run_id for p in jobs)
    sweep_id = hashlib.sha256(",".join(ids).encode()).hexdigest()[:12]
    path = out / SWEEPS_DIR / f"{sweep_id}.json"
    if not path.exists():
        runs = [{"run_id": p.job.run_id, "method": p.job.request.method, "suite": p.job.request.suite,
                 "budget": p.job.request.budget, "seed": p.job.request.seed, "cval": p.job.request.cval,
                 "train_fraction": p.job.request.options.train_fraction,
                 "hparams": json.dumps(p.job.request.hparams, sort_keys=True)} for p in jobs]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"sweep_id": sweep_id, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "command": " ".join(sys.argv), "runs": runs})
    return path
