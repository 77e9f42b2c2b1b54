"""The engines a sweep hands its jobs to, behind one small interface: `launch(jobs, report)`.

`local` is a process pool on this machine (one fixed thread count per worker, so N workers on N
cores do not oversubscribe them); `slurm` submits a submitit job array, one task per run;
`ray` sends Ray tasks with their CPU / GPU needs to a running or a local Ray instance.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from robench.errors import ConfigError
from robench.sweep.grid import Job
from robench.sweep.status import SWEEPS_DIR
from robench.sweep.worker import Outcome, one_line, run_job, with_threads

Report = Callable[[Outcome], None]


class Launcher(Protocol):
    name: str

    def launch(self, jobs: list[Job], report: Report) -> list[Outcome]:
        """Run every job, calling `report` as each ends; outcomes of jobs that did not end say `interrupted`."""


def _init_worker(threads: int) -> None:
    """Before the worker imports torch: one thread count for OpenMP and MKL too."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


@dataclass
class LocalLauncher:
    workers: int = 1
    threads_per_worker: int | None = None  # default: this machine's cores shared evenly
    name: str = "local"

    def threads(self) -> int:
        return self.threads_per_worker or max(1, len(os.sched_getaffinity(0)) // self.workers)

    def launch(self, jobs: list[Job], report: Report) -> list[Outcome]:
        threads = self.threads()
        outcomes: dict[str, Outcome] = {}
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited torch state
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(run_job, with_threads(job, threads)): job for job in jobs}
            try:
                for future in as_completed(futures):
                    outcomes[futures[future].run_id] = outcome = future.result()
                    report(outcome)
            except BrokenProcessPool:  # a worker was killed: the runs it held are interrupted
                for job in jobs:
                    if job.run_id not in outcomes:
                        outcomes[job.run_id] = outcome = Outcome(job.run_id, "interrupted", "a worker process died")
                        report(outcome)
        return [outcomes[job.run_id] for job in jobs]


@dataclass
class RayLauncher:
    address: str | None = None  # None: start a Ray instance on this machine for the sweep
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    name: str = "ray"

    def launch(self, jobs: list[Job], report: Report) -> list[Outcome]:
        ray = _import("ray", "ray")
        threads = max(1, int(self.cpus_per_run))
        ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}})
        task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=0)(run_job)
        refs = {task.remote(with_threads(job, threads)): job for job in jobs}
        outcomes: dict[str, Outcome] = {}
        pending = list(refs)
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                job = refs[ref]
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died or the task was cancelled
                    outcome = Outcome(job.run_id, "interrupted", f"ray: {type(exc).__name__}")
                outcomes[job.run_id] = outcome
                report(outcome)
        return [outcomes[job.run_id] for job in jobs]


@dataclass
class SlurmLauncher:
    """A submitit job array: one Slurm task per run; a task that times out or is preempted is requeued and
    resumes from the run's checkpoint (submitit's checkpointing)."""

    partition: str | None = None
    time: str = "04:00:00"
    gpus: int = 0
    cpus: int = 2
    mem_gb: float | None = None
    parallelism: int = 64  # array tasks running at once
    wait: bool = True  # False: submit, print the job ids and return (follow with `robench status`)
    folder: Path | None = None  # submitit's logs; default <out>/.sweeps/slurm
    name: str = "slurm"

    def launch(self, jobs: list[Job], report: Report) -> list[Outcome]:
        submitit = _import("submitit", "submitit")
        if not jobs:
            return []
        folder = self.folder or Path(jobs[0].request.out) / SWEEPS_DIR / "slurm"
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        params = {"timeout_min": time_minutes(self.time), "cpus_per_task": self.cpus, "slurm_array_parallelism": self.parallelism,
                  "name": "robench", "slurm_additional_parameters": {"requeue": True}}
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        executor.update_parameters(**params)
        submitted = executor.map_array(CheckpointableRun(), [with_threads(job, self.cpus) for job in jobs])
        self.job_ids = [j.job_id for j in submitted]
        if not self.wait:
            return []
        by_id = {j.job_id: job for j, job in zip(submitted, jobs)}
        outcomes: dict[str, Outcome] = {}
        for sjob in submitit.helpers.as_completed(submitted):
            job = by_id[sjob.job_id]
            try:
                outcome = sjob.result()
            except Exception as exc:  # noqa: BLE001 — cancelled, killed, node failure: the run is resumable
                outcome = Outcome(job.run_id, "interrupted", f"slurm job {sjob.job_id}: {one_line(exc)[:200]}")
            outcomes[job.run_id] = outcome
            report(outcome)
        return [outcomes[job.run_id] for job in jobs]


class CheckpointableRun:
    """`run_job` as submitit's Checkpointable: on timeout or preemption, resubmit the same job (it resumes)."""

    def __call__(self, job: Job) -> Outcome:
        return run_job(job)

    def checkpoint(self, job: Job):  # called by submitit when Slurm signals the end of the allocation
        import submitit

        return submitit.helpers.DelayedSubmission(CheckpointableRun(), job)


def time_minutes(text: str) -> int:
    """Slurm's time formats — MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS — in whole minutes (rounded up)."""
    days, dash, rest = text.strip().rpartition("-")
    parts = rest.split(":")
    if not (1 <= len(parts) <= 3 and all(p.isdigit() for p in parts) and (not dash or days.isdigit())):
        raise ConfigError(f"--time {text!r}: use minutes, HH:MM:SS or D-HH:MM:SS (Slurm's formats)")
    numbers = [int(p) for p in parts]
    if dash:
        hours, minutes, seconds = (numbers + [0, 0])[:3]
    else:  # MM, MM:SS or HH:MM:SS
        hours, minutes, seconds = numbers if len(numbers) == 3 else [0, *numbers, 0][:3]
    total = (int(days) if dash else 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    return max(1, total)


def _import(module: str, package: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(
            f"the {module} launcher needs the {package} package; install robench with its cluster extra "
            f"(pip install 'robench[cluster]')"
        ) from None


def get_launcher(name: str, **options) -> Launcher:
    launchers = {"local": LocalLauncher, "slurm": SlurmLauncher, "ray": RayLauncher}
    if name not in launchers:
        raise ConfigError(f"unknown launcher {name!r}; use {', '.join(launchers)}")
    return launchers[name](**options)
