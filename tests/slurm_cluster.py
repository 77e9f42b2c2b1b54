"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd started in a temporary
folder with their own sockets, ports and state, stopped afterwards.

Needs Debian's `slurm-wlm` and `munge` (`make test-cluster` installs them) and root (the daemons run as
the test's user, which Slurm accepts only for root without a system-wide setup); skips with the reason
otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")


@dataclass
class Cluster:
    root: Path
    shared: Path  # the "shared disk": run folders and submitit's logs

    def jobs(self) -> list[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def cancel_all(self, sweep: subprocess.Popen) -> None:
        """Stop the sweep's driver, then `scancel` every job it submitted."""
        os.killpg(sweep.pid, signal.SIGKILL)
        subprocess.run(["scancel", "--full", "-u", str(os.getuid())], check=True)
        deadline = time.monotonic() + 120
        while self.jobs():
            if time.monotonic() > deadline:
                pytest.fail(f"jobs still queued after scancel: {self.jobs()}")
            time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    return line + " NodeAddr=127.0.0.1 State=UNKNOWN"


@contextlib.contextmanager
def single_node_cluster(root: Path):
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing); `make test-cluster` installs slurm-wlm and munge")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's daemons need root (single-node Slurm without a system-wide setup)")
    pytest.importorskip("submitit", reason="the slurm launcher needs submitit (pip install 'robench[cluster]')")
    root.mkdir(parents=True)
    for sub in ("state", "spool", "shared", "munge"):
        (root / sub).mkdir()
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = root / "munge" / "socket"
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=robenchtest", f"SlurmctldHost={socket.gethostname()}(127.0.0.1)",
        "SlurmUser=root", "SlurmdUser=root", f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}", f"SlurmdLogFile={root / 'slurmd.log'}",
        "AuthType=auth/munge", f"AuthInfo=socket={munge_socket}", "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "SchedulerType=sched/backfill",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "ReturnToService=2", "KillWait=2", "MinJobAge=2", "SchedulerParameters=sched_interval=1",
        _node_line(), "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", "",
    ]))
    env_before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    daemons: list[subprocess.Popen] = []
    try:
        daemons.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--socket={munge_socket}", f"--key-file={key}",
             f"--pid-file={root / 'munge' / 'pid'}", f"--log-file={root / 'munge' / 'log'}",
             f"--seed-file={root / 'munge' / 'seed'}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait(lambda: munge_socket.exists(), 30, "munged's socket", root)
        daemons.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        daemons.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait(lambda: _node_idle(), 90, "the node to register as idle", root)
        yield Cluster(root, root / "shared")
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["scancel", "--full", "-u", str(os.getuid())], timeout=30, capture_output=True)
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        if env_before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = env_before


def _node_idle() -> bool:
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return result.returncode == 0 and "idle" in result.stdout


def _wait(condition, timeout: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in root.glob("*.log"))
            pytest.fail(f"test cluster: timed out waiting for {what}\n{logs}")
        time.sleep(0.5)
