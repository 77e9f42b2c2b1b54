"""Where every run under a results root stands: done, running, failed, interrupted or missing.

Read from the run folders alone (done marker, lock owner, failure marker, checkpoints, log),
plus the plans sweeps leave in `<root>/.sweeps/`, which name the runs not yet started — so
`robench status` needs no server and works the same on a laptop and on a cluster's shared disk.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from robench.benchmark.config import budget_order
from robench.benchmark.store import CONFIG, DONE, RunFolder
from robench.errors import ConfigError, RunStateError

SWEEPS_DIR = ".sweeps"  # sweep plans and worker logs, beside the run folders


class RunState(str, Enum):
    DONE = "done"
    RUNNING = "running"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # started (config or checkpoint written), not finished, nobody writing it
    MISSING = "missing"  # planned by a sweep, never started

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: RunState
    path: str
    method: str = ""
    suite: str = ""
    budget: str = ""
    seed: int | None = None
    cval: int | None = None
    train_fraction: float | None = None
    detail: str = ""  # failed: the error's last line; running / interrupted: the log's last line
    log: str | None = None  # failed: where the worker's full output is

    def as_dict(self) -> dict:
        return {**asdict(self), "state": self.state.value}


def run_state(folder: RunFolder) -> RunState:
    return _state(folder, folder.owner(), folder.failure())


def _state(folder: RunFolder, owner: dict | None, failure: dict | None) -> RunState:
    if folder.finished:
        return RunState.DONE
    if owner is not None:
        return RunState.RUNNING
    if failure is not None:
        return RunState.FAILED
    if folder.started or folder.last_checkpoint.exists():
        return RunState.INTERRUPTED
    return RunState.MISSING


def run_status(folder: RunFolder, described: dict | None = None) -> RunStatus:
    """One run's state; `described` (a sweep plan's entry) names it when the folder holds no config yet."""
    owner, failure = folder.owner(), folder.failure()  # each read once: the lock record and failed.json
    state = _state(folder, owner, failure)
    about = dict(described or {})
    if folder.started:
        try:
            about.update({k: v for k, v in folder.config().items() if k in _DESCRIBING})
        except RunStateError:
            pass
    detail, log = "", None
    if state is RunState.FAILED:
        detail, log = str(failure.get("error", "")), failure.get("log")
    elif state in (RunState.RUNNING, RunState.INTERRUPTED):
        detail = _last_line(folder.path / "log.txt")
        if owner:
            detail = f"pid {owner['pid']} on {owner.get('host', '?')}: {detail}"
    return RunStatus(
        run_id=folder.path.name, state=state, path=str(folder.path), detail=detail, log=log,
        **{k: about.get(k) for k in _DESCRIBING if k in about},
    )


_DESCRIBING = ("method", "suite", "budget", "seed", "cval", "train_fraction")


def collect_status(root: Path) -> list[RunStatus]:
    """Every run folder under `root` and every run a sweep planned there, sorted by suite, method, seed."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"results root {root} does not exist or is not a folder; pass the --out of your runs or sweep")
    planned = planned_runs(root)
    folders = {p.name: p for p in root.iterdir() if p.is_dir() and _is_run_folder(p)}
    statuses = [run_status(RunFolder(root / run_id), planned.get(run_id)) for run_id in sorted({*folders, *planned})]
    return sorted(statuses, key=lambda s: (s.suite or "", budget_order(s.budget or ""), s.method or "",
                                           str(s.train_fraction), s.cval or 0, s.seed or 0, s.run_id))


def _is_run_folder(path: Path) -> bool:
    return not path.name.startswith(".") and any(
        (path / name).exists() for name in (CONFIG, DONE, "run.lock", "failed.json", "checkpoints")
    )


def planned_runs(root: Path) -> dict[str, dict]:
    """run id → its description, from every sweep plan saved under `root`."""
    runs: dict[str, dict] = {}
    for plan in sorted((Path(root) / SWEEPS_DIR).glob("*.json")):
        try:
            document = json.loads(plan.read_text())
        except (OSError, ValueError):
            raise RunStateError(f"{plan}: unreadable sweep plan; delete it (its runs are not affected) and rerun the sweep") from None
        for entry in document.get("runs", []):
            runs.setdefault(entry["run_id"], entry)
    return runs


def totals(statuses: list[RunStatus]) -> dict[str, int]:
    counts = {state.value: 0 for state in RunState}
    for status in statuses:
        counts[status.state.value] += 1
    return {**counts, "total": len(statuses)}


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
