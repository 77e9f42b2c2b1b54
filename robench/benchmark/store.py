"""Run folders: content-addressed, written atomically, finished exactly once.

A run folder `<out>/<run_id>` holds `config.json`, `environment.json`, `log.txt`,
`checkpoints/`, `records.parquet` and, written last, `done.json`. A folder with `done.json`
is never written again; one without it is an interrupted run that `--resume` continues.
"""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from robench import __version__
from robench.errors import RunStateError

DONE = "done.json"
CONFIG = "config.json"
RECORDS = "records.parquet"
EVALUATIONS = "evaluations"  # records added after the run finished: new test sets, other folders
TRACKED_PACKAGES = (
    "torch", "numpy", "scipy", "nibabel", "h5py", "pandas", "pyarrow", "torchio", "typer", "rich", "pydicom",
)


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared like any written file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise RunStateError(
                f"{path}: disk full while writing; free space and rerun with --resume (finished files are intact)"
            ) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
    atomic_write(path, lambda f: f.write(data))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunStateError(f"{path}: unreadable ({exc}); the run folder is damaged") from None


def save_torch(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def write_records(path: Path, records: pd.DataFrame) -> None:
    atomic_write(path, lambda f: records.to_parquet(f, index=False))


def code_version() -> str:
    """robench version plus the git commit of the checkout it runs from (with '+dirty')."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}" if commit else __version__


def environment(device: torch.device) -> dict[str, Any]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    env = {
        "robench": code_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "packages": versions,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


class RunFolder:
    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def for_config(cls, out: Path, run_id: str) -> "RunFolder":
        return cls(Path(out) / run_id)

    @property
    def finished(self) -> bool:
        return (self.path / DONE).exists()

    @property
    def started(self) -> bool:
        return (self.path / CONFIG).exists()

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_dir / "best.pt"

    def config(self) -> dict[str, Any]:
        return read_json(self.path / CONFIG)

    def done(self) -> dict[str, Any]:
        return read_json(self.path / DONE)

    def records(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / RECORDS)

    def evaluation_files(self) -> list[Path]:
        return sorted((self.path / EVALUATIONS).glob("*.parquet"))

    def all_records(self) -> pd.DataFrame:
        """The run's own records plus every later evaluation of its best checkpoint."""
        parts = [self.records(), *(pd.read_parquet(p) for p in self.evaluation_files())]
        return pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)

    def evaluation_path(self, name: str) -> Path:
        return self.path / EVALUATIONS / f"{name}.parquet"

    def add_evaluation(self, name: str, records: pd.DataFrame) -> Path:
        """Store records of a later evaluation; an existing evaluation is a finished result and is kept."""
        if not self.finished:
            raise RunStateError(f"{self.path}: run not finished; complete it with `robench run ... --resume` first")
        path = self.evaluation_path(name)
        if path.exists():
            raise RunStateError(f"{path} exists: this evaluation was done before and is kept; delete the file to redo it")
        write_records(path, records)
        return path

    def log(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / "log.txt").open("a") as f:
            f.write(f"{stamp} {message}\n")

    def guard_unfinished(self) -> None:
        if self.finished:
            raise RunStateError(f"{self.path}: run already finished; its results are kept and never overwritten")

    def finish(self, records: pd.DataFrame, summary: dict[str, Any]) -> None:
        """Records first, then the done marker: a folder with done.json always has complete records."""
        self.guard_unfinished()
        write_records(self.path / RECORDS, records)
        write_json(self.path / DONE, summary)
