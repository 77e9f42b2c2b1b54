"""Sweeps under each launcher: complete, killed midway, re-run — only the missing runs execute and the
records equal those of an uninterrupted sweep. Plus the grid, the plan and `robench status`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from robench.benchmark.runner import RunRequest
from robench.benchmark.store import RunFolder, RunLock
from robench.errors import ConfigError
from robench.sweep import grid as g
from robench.sweep.launchers import time_minutes
from robench.sweep.status import RunState, collect_status, run_state
from tests.slurm_cluster import free_port

METHODS = "standard,adv-bias,rand-conv"
N_RUNS = 6  # 3 methods × 2 seeds


def sweep_args(tiny_acdc: Path, out: Path, *launcher: str) -> list[str]:
    return ["sweep", "--suite", "cardiac", "--data-root", str(tiny_acdc), "--methods", METHODS, "--seeds", "0-1",
            "--budget", "smoke", "--corruptions", "none", "--precision", "fp32", "--out", str(out), *launcher]


# generous limits: on a loaded 2-core machine a smoke run under Ray took 6 minutes (session 11); a limit only
# turns a hang into a failure, it asserts no speed
def robench(*args: str, check: bool = True, timeout: float = 2400) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "robench", *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "COLUMNS": "200"})
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def status_of(out: Path) -> dict:
    return json.loads(robench("status", str(out), "--format", "json").stdout)


def run_records(out: Path) -> dict[str, pd.DataFrame]:
    frames = {}
    for done in sorted(out.glob("*/done.json")):
        records = RunFolder(done.parent).records()
        frames[done.parent.name] = records.sort_values(list(records.columns[:20])).reset_index(drop=True)
    return frames


@pytest.fixture(scope="module")
def reference(tiny_acdc, tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The uninterrupted sweep's records, run id → records."""
    out = tmp_path_factory.mktemp("uninterrupted")
    robench(*sweep_args(tiny_acdc, out, "--launcher", "local", "--workers", "2"))
    records = run_records(out)
    assert len(records) == N_RUNS
    return records


def kill_midway_then_resume(tiny_acdc: Path, out: Path, launcher: list[str], kill, reference: dict) -> None:
    """Start the sweep, kill it once a run has finished and another is under way, check the status, re-run."""
    proc = subprocess.Popen([sys.executable, "-m", "robench", *sweep_args(tiny_acdc, out, *launcher)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: len(list(out.glob("*/done.json"))) >= 1 and _unfinished_started(out), timeout=2400,
                 what="one finished run and one under way")
    finally:
        kill(proc)
        proc.wait(timeout=60)
    wait_for(lambda: not any(RunFolder(p).owner() for p in out.iterdir() if p.is_dir()), timeout=300,
             what="the killed workers to release their runs")

    before = status_of(out)
    finished = {r["run_id"]: (out / r["run_id"] / "done.json").stat().st_mtime_ns
                for r in before["runs"] if r["state"] == "done"}
    assert 1 <= len(finished) < N_RUNS
    assert before["totals"]["failed"] == 0 and before["totals"]["running"] == 0
    assert before["totals"]["interrupted"] >= 1, before  # killed mid-run, not merely not started
    assert before["totals"]["total"] == N_RUNS  # the plan names the runs not started yet (missing)

    again = robench(*sweep_args(tiny_acdc, out, *launcher))
    assert f"{len(finished)} done" in again.stdout, again.stdout

    after = status_of(out)
    assert after["totals"]["done"] == N_RUNS, after
    for run_id, mtime in finished.items():  # finished runs were skipped, not recomputed
        assert (out / run_id / "done.json").stat().st_mtime_ns == mtime
        log = (out / ".sweeps" / "logs" / f"{run_id}.log").read_text()
        assert log.count("starting ") == 1, log
    measured = run_records(out)
    assert measured.keys() == reference.keys()
    for run_id, records in measured.items():
        pd.testing.assert_frame_equal(records, reference[run_id], obj=run_id)


def _unfinished_started(out: Path) -> bool:
    """Some run has a checkpoint and is still training (so killing now interrupts it mid-run)."""
    return any((p / "checkpoints" / "last.pt").exists() and "training finished" not in _text(p / "log.txt")
               for p in out.iterdir() if p.is_dir())


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and every worker it spawned


# ---------------------------------------------------------------- launchers, for real


@pytest.mark.slow
def test_local_sweep_killed_and_resumed(tiny_acdc, tmp_path, reference):
    kill_midway_then_resume(tiny_acdc, tmp_path / "runs", ["--launcher", "local", "--workers", "2"], kill_group, reference)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real Ray instance on this machine, started and stopped by the test."""
    pytest.importorskip("ray", reason="the ray launcher needs ray (pip install 'robench[cluster]')")
    ray_bin = Path(sys.executable).with_name("ray")
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--object-store-memory=100000000", "--disable-usage-stats"],
                   check=True, capture_output=True, env=env, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env, timeout=120)


@pytest.mark.slow
def test_ray_sweep_killed_and_resumed(tiny_acdc, tmp_path, reference, ray_cluster):
    out = tmp_path / "runs"
    # killing the driver ends its Ray job, and Ray kills that job's workers
    kill_midway_then_resume(tiny_acdc, out, ["--launcher", "ray", "--address", ray_cluster, "--cpus", "1"],
                            kill_group, reference)


@pytest.mark.slow
def test_slurm_sweep_cancelled_and_resumed(tiny_acdc, tmp_path, reference):
    from tests.slurm_cluster import single_node_cluster

    with single_node_cluster(tmp_path / "slurm") as cluster:
        out = cluster.shared / "runs"
        kill_midway_then_resume(tiny_acdc, out, ["--launcher", "slurm", "--cpus", "1", "--time", "20"],
                                lambda proc: cluster.cancel_all(proc), reference)


# ---------------------------------------------------------------- the grid, the plan, the status


def test_ranges_and_lists_parse_and_bad_ones_say_how():
    assert g.parse_int_list("0-2", "--seeds") == (0, 1, 2)
    assert g.parse_int_list("0,3,5", "--seeds") == (0, 3, 5)
    assert g.parse_int_list("0-1,1,7", "--seeds") == (0, 1, 7)
    assert g.parse_float_list("0.25,1", "--fractions") == (0.25, 1.0)
    assert g.parse_grid(["margin=0|2"]) == {"margin": ("0", "2")}
    for bad in ("a", "1-", ""):
        with pytest.raises(ConfigError, match="--seeds"):
            g.parse_int_list(bad, "--seeds")
    with pytest.raises(ConfigError, match="key=value1"):
        g.parse_grid(["margin"])
    with pytest.raises(ConfigError, match="unknown method"):
        g.parse_methods("standard,no-such-method")
    assert "standard" in g.parse_methods("all") and len(g.parse_methods("all")) > 10
    assert [time_minutes(t) for t in ("30", "04:00:00", "1-02:30", "0:30")] == [30, 240, 1590, 1]
    with pytest.raises(ConfigError, match="--time"):
        time_minutes("4h")


def test_grid_expands_every_combination_into_resumable_quiet_requests(tmp_path):
    base = RunRequest(suite="cardiac-synth", method="standard", budget="smoke", out=tmp_path)
    spec = g.SweepGrid(base, ("standard", "margin"), seeds=(0, 1), fractions=(0.25, 1.0), grid={"lr": ("1e-4", "1e-3")})
    requests = spec.requests()
    assert len(requests) == spec.size() == 2 * 2 * 2 * 2
    assert {(r.method, r.seed, r.options.train_fraction, r.hparams["lr"]) for r in requests} == {
        (m, s, f, lr) for m in ("standard", "margin") for s in (0, 1) for f in (0.25, 1.0) for lr in ("1e-4", "1e-3")
    }
    assert all(r.resume and not r.progress for r in requests)


def test_plan_counts_states_and_status_reports_each(tiny_acdc, tmp_path):
    out = tmp_path / "runs"
    base = RunRequest(suite="cardiac", method="standard", budget="smoke", out=out, precision="fp32",
                      options=g.dataclasses.replace(RunRequest("cardiac", "standard").options, data_root=tiny_acdc))
    plan = g.make_plan(g.SweepGrid(base, ("standard", "adv-bias"), seeds=(0, 1)))
    assert plan.counts()["missing"] == 4 and len(plan.to_launch(retry_failed=False)) == 4
    done, failed, interrupted, running = (p.job for p in plan.jobs)
    for job in (done, failed, interrupted, running):
        (out / job.run_id).mkdir(parents=True)
    (out / done.run_id / "done.json").write_text("{}")
    RunFolder(out / failed.run_id).mark_failed("DataError: slice 3 holds NaN", out / "w.log")
    (out / interrupted.run_id / "config.json").write_text(json.dumps({"method": "standard", "seed": 1}))
    with RunLock(out / running.run_id):
        states = {s.run_id: s for s in collect_status(out)}
        assert states[running.run_id].state is RunState.RUNNING
        assert f"pid {os.getpid()}" in states[running.run_id].detail
        replanned = g.make_plan(g.SweepGrid(base, ("standard", "adv-bias"), seeds=(0, 1)))
        assert replanned.counts() == {"done": 1, "running": 1, "failed": 1, "interrupted": 1, "missing": 0}
        assert [j.run_id for j in replanned.to_launch(retry_failed=False)] == [interrupted.run_id]
        assert {j.run_id for j in replanned.to_launch(retry_failed=True)} == {interrupted.run_id, failed.run_id}
    assert states[done.run_id].state is RunState.DONE
    assert states[failed.run_id].state is RunState.FAILED
    assert states[failed.run_id].detail == "DataError: slice 3 holds NaN" and states[failed.run_id].log.endswith("w.log")
    assert states[interrupted.run_id].state is RunState.INTERRUPTED
    assert run_state(RunFolder(out / running.run_id)) is RunState.MISSING  # released: nothing in it yet


def test_a_run_whose_owner_was_killed_is_interrupted_not_running(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    holder = subprocess.Popen([sys.executable, "-c", f"from robench.benchmark.store import RunLock; import time; "
                               f"RunLock({str(folder)!r}).__enter__(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert run_state(RunFolder(folder)) is RunState.RUNNING
    holder.kill()
    holder.wait()
    assert run_state(RunFolder(folder)) is RunState.INTERRUPTED  # the record remains, its pid is gone


def test_a_run_failing_in_its_worker_is_recorded_and_the_sweep_reports_it(tiny_acdc, tmp_path):
    """A training file corrupt on disk is found when the worker loads it: the run is marked failed with the
    error's last line and its log, the sweep exits 1, and `robench status` shows both."""
    from robench.benchmark.suites.cardiac import ACDC_TRAIN

    data = tmp_path / "acdc"
    shutil.copytree(tiny_acdc, data)
    subject = f"patient{ACDC_TRAIN[0][0]:03d}"
    originals = {f: f.read_bytes() for f in data.glob(f"**/{subject}/*frame*.nii*")}
    assert originals
    for f in originals:
        f.write_bytes(b"not a nifti file")
    out = tmp_path / "runs"
    args = ["sweep", "--suite", "cardiac", "--data-root", str(data), "--methods", "standard", "--budget", "smoke",
            "--corruptions", "none", "--precision", "fp32", "--out", str(out)]
    result = robench(*args, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    report = status_of(out)
    assert report["totals"]["failed"] == 1, report
    failed = report["runs"][0]
    assert subject in failed["detail"], failed
    assert "Traceback" in Path(failed["log"]).read_text()
    assert failed["detail"] in robench("status", str(out)).stdout

    for f, content in originals.items():
        f.write_bytes(content)
    fixed = robench(*args)  # other data, another run (content-addressed); the failed one stays reported
    assert "1 to start" in fixed.stdout
    totals = status_of(out)["totals"]
    assert (totals["done"], totals["failed"], totals["total"]) == (1, 1, 2)


def test_failed_runs_are_skipped_until_retried(tiny_acdc, tmp_path):
    """A run failing on its disk (its checkpoint folder blocked by a file) keeps its id: skipped by the next
    sweep, run again by `--retry-failed` once the cause is gone."""
    out = tmp_path / "runs"
    args = ["sweep", "--suite", "cardiac", "--data-root", str(tiny_acdc), "--methods", "standard", "--budget", "smoke",
            "--corruptions", "none", "--precision", "fp32", "--out", str(out)]
    base = RunRequest(suite="cardiac", method="standard", budget="smoke", out=out, precision="fp32",
                      options=g.dataclasses.replace(RunRequest("cardiac", "standard").options, data_root=tiny_acdc))
    run_id = g.make_plan(g.SweepGrid(base, ("standard",)), save=False).jobs[0].job.run_id
    (out / run_id).mkdir(parents=True)
    (out / run_id / "checkpoints").write_text("in the way")
    assert robench(*args, check=False).returncode == 1
    assert status_of(out)["totals"]["failed"] == 1
    skipped = robench(*args)
    assert "1 failed (skipped" in skipped.stdout and status_of(out)["totals"]["failed"] == 1
    (out / run_id / "checkpoints").unlink()
    robench(*args, "--retry-failed")
    assert status_of(out)["totals"] == {"done": 1, "running": 0, "failed": 0, "interrupted": 0, "missing": 0, "total": 1}
    assert not (out / run_id / "failed.json").exists()


def test_unknown_launcher_and_bad_workers_fail_before_planning(tmp_path):
    for extra, message in ((["--launcher", "kubernetes"], "unknown launcher"), (["--workers", "0"], "--workers")):
        result = robench("sweep", "--methods", "standard", "--budget", "smoke", "--out", str(tmp_path), *extra, check=False)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
