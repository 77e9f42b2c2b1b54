"""Intra-op threads from the cores this process may use, adapted to what else runs there.

Why: on a shared machine torch's default (one thread per visible core) oversubscribes: two
2-thread training processes on 2 cores ran 3–7× slower per update than two 1-thread ones
(docs/performance.md). The cores a process may use are its CPU affinity capped by the
cgroup's CPU quota; of those, the ones other processes keep busy are measured from the
kernel's counters (/proc/stat for the allowed CPUs minus this process's own time, scaled to
the quota's share when a quota is below the allowed CPUs).

`--threads N` fixes the count, and so does `OMP_NUM_THREADS` (the usual way to give each of
several parallel jobs its share). Without either the governor starts with the free cores and
re-checks every few seconds of training: when another process takes cores it steps down,
when they free up it steps back up. Thread count changes the order of reductions and so
the last bits of the floats: a run's thread history is logged, and `--threads N` (or the
pinned path) gives the same numbers on every repetition.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robench.errors import ConfigError

_CGROUP = Path("/sys/fs/cgroup")


def cgroup_quota_cores(root: Path = _CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 `cpu.max`, v1 `cfs_quota_us`), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: its affinity, capped by the cgroup quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_quota_cores()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 1e-6)))
    return max(1, cores)


class CpuLoad:
    """Cores kept busy by *other* processes since the previous sample."""

    def __init__(self) -> None:
        try:
            self.cpus = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self.cpus = list(range(os.cpu_count() or 1))
        self.ticks = os.sysconf("SC_CLK_TCK")
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            busy = 0
            wanted = {f"cpu{i}" for i in self.cpus}
            with open("/proc/stat", encoding="ascii") as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[0] in wanted:
                        values = [int(v) for v in parts[1:9]]  # user nice system idle iowait irq softirq steal
                        busy += sum(values) - values[3] - values[4]
            with open("/proc/self/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            own = int(fields[11]) + int(fields[12])  # utime + stime of every thread
        except (OSError, ValueError, IndexError):
            return None
        return time.monotonic(), busy / self.ticks, own / self.ticks

    def other_cores(self, usable: int | None = None) -> float | None:
        """Busy cores of other processes; with a quota below the allowed CPUs (`usable`), their share
        of it (a container's neighbours on a many-core host use the host, not the quota)."""
        now = self._sample()
        last, self._last = self._last, now
        if now is None or last is None or now[0] - last[0] < 0.05:
            return None
        other = max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0]))
        if usable is not None and usable < len(self.cpus):
            other *= usable / len(self.cpus)
        return other


@dataclass
class ThreadGovernor:
    """Sets torch's intra-op threads: fixed (`requested`) or following the free cores."""

    requested: int | None = None
    interval_s: float = 5.0
    usable: int = field(default_factory=usable_cores)
    changes: list[str] = field(default_factory=list)
    iterations: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        check_threads(self.requested)
        self._source = "--threads"
        if self.requested is None and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
            self.requested = max(1, int(os.environ["OMP_NUM_THREADS"]))
            self._source = "OMP_NUM_THREADS"
        self._load = CpuLoad() if self.requested is None else None
        self._next_check = 0.0
        self._pending: int | None = None

    @property
    def adaptive(self) -> bool:
        return self._load is not None

    def start(self, probe_s: float = 0.3) -> int:
        """Set the initial count; the adaptive choice first watches the machine for `probe_s`."""
        if self.requested is not None:
            return self._set(self.requested, f"fixed by {self._source}")
        time.sleep(probe_s)
        other = self._load.other_cores(self.usable)
        target = self._target(other)
        self._next_check = time.monotonic() + self.interval_s
        return self._set(target, _why(other, self.usable))

    def tick(self) -> str | None:
        """Call once per update: counts it, and every `interval_s` re-reads the load; returns a change made."""
        self.iterations[torch.get_num_threads()] += 1
        if not self.adaptive or time.monotonic() < self._next_check:
            return None
        self._next_check = time.monotonic() + self.interval_s
        other = self._load.other_cores(self.usable)
        if other is None:
            return None
        target = self._target(other)
        if target == torch.get_num_threads():
            self._pending = None
        elif self._pending == target:  # two readings in a row: a real change, not a blip
            self._set(target, _why(other, self.usable))
            self._pending = None
            return self.changes[-1]
        else:
            self._pending = target
        return None

    def _target(self, other: float | None) -> int:
        if other is None:
            return self.usable
        return max(1, min(self.usable, round(self.usable - other)))

    def _set(self, threads: int, why: str) -> int:
        if torch.get_num_threads() != threads or not self.changes:
            torch.set_num_threads(threads)
            self.changes.append(f"{threads} threads ({why})")
        return threads

    def record(self) -> dict[str, object]:
        return {
            "requested": self.requested, "usable_cores": self.usable, "adaptive": self.adaptive,
            "changes": list(self.changes), "iterations_by_threads": {str(k): v for k, v in sorted(self.iterations.items())},
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "libgomp default"),
        }


def check_threads(requested: int | None) -> None:
    """Refuse a thread count before anything runs."""
    if requested is not None and requested < 1:
        raise ConfigError(f"--threads {requested}: use 1 or more (or leave it out to follow the free cores)")


def _why(other: float | None, usable: int) -> str:
    if other is None:
        return f"{usable} usable cores"
    return f"{usable} usable cores, {other:.1f} busy with other processes"
