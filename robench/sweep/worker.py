"""What runs on a worker, whichever engine started it: one sweep job, its output to its log file.

A job never raises: a failure becomes a `failed.json` in its run folder (the error's last line
and the log path, for `robench status`) and a returned outcome, so one bad run does not stop the
others; a killed worker leaves an interrupted run that the next sweep resumes.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from robench.sweep.grid import Job


@dataclass(frozen=True)
class Outcome:
    run_id: str
    state: str  # done | failed | interrupted (the worker died or was cancelled: rerun the sweep to resume)
    error: str = ""
    seconds: float = 0.0
    log: str | None = None


def run_job(job: Job) -> Outcome:
    from robench.benchmark.runner import execute
    from robench.benchmark.store import RunFolder

    start = time.perf_counter()
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    with job.log_path.open("a") as log:
        def write(message: str) -> None:
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            log.write(f"{stamp} {message}\n")
            log.flush()

        write(f"starting {job.name} ({job.run_id})")
        try:
            result = execute(job.request, log=write)
        except Exception as exc:  # noqa: BLE001 — recorded, reported, and the sweep goes on
            error = one_line(exc)
            write(f"failed: {error}")
            log.write(traceback.format_exc())
            folder = RunFolder.for_config(job.request.out, job.run_id)
            if folder.owner() is None:  # not "in use by another process": that one is running it
                folder.mark_failed(error, job.log_path)
            return Outcome(job.run_id, "failed", error, time.perf_counter() - start, str(job.log_path))
        if result.folder.path.name != job.run_id:  # the code changed the config's identity since the plan
            error = f"ran as {result.folder.path.name}, planned as {job.run_id}; rerun the sweep to replan it"
            write(error)
            return Outcome(job.run_id, "failed", error, time.perf_counter() - start, str(job.log_path))
        write("finished" if not result.already_finished else "already finished")
    return Outcome(job.run_id, "done", "", time.perf_counter() - start, str(job.log_path))


def with_threads(job: Job, threads: int) -> Job:
    """The job with a fixed intra-op thread count: workers sharing a machine do not oversubscribe it, and a
    resumed run computes with the same kernels as the uninterrupted one."""
    return dataclasses.replace(job, request=dataclasses.replace(job.request, threads=threads))


def one_line(exc: BaseException) -> str:
    """The error's type and last line: what `robench status` shows of a failure."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__
