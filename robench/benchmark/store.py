"""Run folders: content-addressed, written atomically, finished exactly once.

A run folder `<out>/<run_id>` holds `config.json`, `environment.json`, `log.txt`,
`checkpoints/`, `records.parquet` and, written last, `done.json`. A folder with `done.json`
is never written again; one without it is an interrupted run that `--resume` continues.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import pickle
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from robench import __version__
from robench.errors import RunStateError
from robench.numerics import numerics_record

DONE = "done.json"
CONFIG = "config.json"
RECORDS = "records.parquet"
FAILED = "failed.json"  # written by a sweep's worker when its run raised; removed when the run finishes
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
    """Serialise in memory first: torch's own writer turns a full disk into a RuntimeError with no
    errno, so the bytes are written by `atomic_write`, which reports ENOSPC with what to do."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def load_torch(path: Path, device: torch.device | str = "cpu") -> Any:
    """Load a checkpoint with torch's restricted unpickler: tensors, containers and numbers only.

    A run folder may come from anyone (a shared drive, a download); `weights_only=False` would
    let a crafted checkpoint execute code. Every error is one line naming the file.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise RunStateError(f"{path}: checkpoint missing; resume the run with --resume or delete the run folder") from None
    except pickle.UnpicklingError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "not a plain checkpoint"
        raise RunStateError(
            f"{path}: refused to load: the checkpoint holds more than tensors and numbers ({reason[:160]}); "
            "it was not written by robench — delete it and retrain"
        ) from None
    except Exception as exc:  # truncated or foreign files raise RuntimeError, EOFError, zipfile errors, ...
        raise RunStateError(
            f"{path}: unreadable checkpoint ({exc.__class__.__name__}); the file is damaged or truncated — "
            "delete the run folder (or resume from an intact last.pt) and rerun"
        ) from None


def write_records(path: Path, records: pd.DataFrame) -> None:
    atomic_write(path, lambda f: records.to_parquet(f, index=False))


def read_records(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
        raise RunStateError(
            f"{path}: unreadable records ({exc.__class__.__name__}); the run folder is damaged — "
            "delete this file (and done.json) and rerun the same command with --resume to evaluate again"
        ) from None


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
        "numerics": numerics_record(),
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
        return read_records(self.path / RECORDS)

    def evaluation_files(self) -> list[Path]:
        return sorted((self.path / EVALUATIONS).glob("*.parquet"))

    def all_records(self) -> pd.DataFrame:
        """The run's own records plus every later evaluation of its best checkpoint."""
        parts = [self.records(), *(read_records(p) for p in self.evaluation_files())]
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
        (self.path / FAILED).unlink(missing_ok=True)  # an earlier failure, retried with success

    def failure(self) -> dict[str, Any] | None:
        """What the last failed attempt recorded (error line, log path, host, time), or None."""
        path = self.path / FAILED
        if not path.exists():
            return None
        try:
            info = read_json(path)
        except RunStateError:
            return {"error": f"{path} is unreadable"}
        return info if isinstance(info, dict) else {"error": str(info)}

    def mark_failed(self, error: str, log_path: Path | None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / FAILED, {
            "error": error, "log": None if log_path is None else str(log_path), "host": socket.gethostname(),
            "pid": os.getpid(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })

    def owner(self) -> dict | None:
        """The live process writing this folder (its lock record), or None: no lock, released, or its owner died."""
        path = self.path / LOCK
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            owner = _read_owner(fd)
            if not owner.get("pid"):
                return None  # released: the owner truncates the record on exit
            if owner.get("host") == socket.gethostname():
                return owner if process_alive(owner["host"], int(owner["pid"])) else None
            return owner if _flock_held(fd) else None  # another host's pid cannot be checked; its flock can
        finally:
            os.close(fd)


LOCK = "run.lock"


class RunLock:
    """Exclusive use of a run folder by one process, released by the kernel when it dies.

    `flock` on `run.lock` makes stale locks impossible on a local disk (a killed owner holds
    nothing); the file records host, pid and start time so a refusal names the owner.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            _flock_exclusive(fd)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise RunStateError(
                f"{self.path.parent}: in use by another robench process ({_describe(owner)}); wait for it to finish "
                "or stop it, then rerun with --resume"
            ) from None
        except OSError:  # a file system without flock (some network mounts): fall back to the owner record
            owner = _read_owner(fd)
            if owner.get("pid") and process_alive(str(owner.get("host")), int(owner["pid"])):
                os.close(fd)
                raise RunStateError(
                    f"{self.path.parent}: in use by {_describe(owner)}; wait for it or stop it (a stale lock: delete {self.path}), "
                    "then rerun with --resume"
                ) from None
        record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                             "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _flock_exclusive(fd: int, attempts: int = 5) -> None:
    """Take the lock, retrying briefly: `robench status` probes it for a moment (a shared lock) now and then."""
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _read_owner(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _flock_held(fd: int) -> bool:
    """Whether some process holds the lock; where flock is unsupported, assume it does (cannot tell)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _describe(owner: dict) -> str:
    if {"pid", "host", "since"} <= owner.keys():
        return f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
    return "owner unknown"


def process_alive(host: str, pid: int) -> bool:
    """Whether process `pid` of `host` still runs; one on another host cannot be checked and counts as alive."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer leaves (`.<name>.<random>.tmp`); call holding the lock."""
    removed = []
    for tmp in Path(folder).rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
