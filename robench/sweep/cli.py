"""`robench sweep` and `robench status`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from robench.option_help import CORRUPTIONS_HELP, TEST_NORM_HELP

console = Console()


def sweep(
    suite: str = typer.Option("cardiac-synth", help="Suite name (see `robench suites`)."),
    methods: str = typer.Option(..., help="Comma-separated method names, or all."),
    seeds: str = typer.Option("0", help="Seeds: 0-2, 0,3,5 or both mixed."),
    cvals: str = typer.Option("0", help="Cross-validation splits, as --seeds."),
    fractions: str = typer.Option("1.0", help="Training fractions, comma-separated (e.g. 0.25,1.0)."),
    hparam: Optional[List[str]] = typer.Option(None, help="Hyperparameter key=value for every run (repeatable)."),
    grid: Optional[List[str]] = typer.Option(None, help="Hyperparameter the sweep varies: key=v1|v2 (repeatable)."),
    budget: str = typer.Option("quick", help="smoke | quick | ci | paper, or NAME@UPDATES such as quick@4000."),
    out: Path = typer.Option(Path("runs"), help="Results root (shared by every worker: on a cluster, a shared disk)."),
    data_root: Optional[Path] = typer.Option(None, help="The suite's data folder."),
    corruptions: str = typer.Option("acdc-c", help=CORRUPTIONS_HELP),
    corruption_seed: int = typer.Option(0, help="Seed of the frozen artefact copies."),
    precision: str = typer.Option("auto", help="fp32 | bf16 | auto."),
    test_norm: str = typer.Option("per-slice", help=TEST_NORM_HELP),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N (on each worker)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where generated data is cached (default $ROBENCH_HOME)."),
    launcher: str = typer.Option("local", help="local | slurm | ray."),
    workers: int = typer.Option(1, help="local: runs at once."),
    threads: Optional[int] = typer.Option(None, help="local: threads per worker (default: the cores shared evenly)."),
    partition: Optional[str] = typer.Option(None, help="slurm: partition."),
    time_limit: str = typer.Option("04:00:00", "--time", help="slurm: time limit per run (HH:MM:SS, D-HH:MM:SS, minutes)."),
    gpus: float = typer.Option(0, help="slurm: GPUs per run (whole); ray: GPUs per run (fractions share one)."),
    cpus: Optional[float] = typer.Option(None, help="slurm / ray: CPUs per run (default 2 / 1)."),
    mem_gb: Optional[float] = typer.Option(None, help="slurm: memory per run in GB."),
    parallelism: int = typer.Option(64, help="slurm: array tasks running at once."),
    no_wait: bool = typer.Option(False, help="slurm: submit and return; follow with `robench status`."),
    address: Optional[str] = typer.Option(None, help="ray: cluster address (auto, or host:port); default a local instance."),
    retry_failed: bool = typer.Option(False, help="Run failed runs again (they are skipped otherwise)."),
    dry_run: bool = typer.Option(False, help="Print the plan and stop."),
) -> None:
    """Run a grid of configs through a launcher: finished runs skipped, interrupted ones resumed."""
    from robench.benchmark.config import parse_hparam_overrides
    from robench.benchmark.runner import RunRequest
    from robench.benchmark.suites import SuiteOptions, parse_corruption_families
    from robench.errors import ConfigError
    from robench.sweep import grid as g
    from robench.sweep.launchers import get_launcher

    options = SuiteOptions(data_root=data_root, cache_dir=cache_dir, corruptions=parse_corruption_families(corruptions),
                           corruption_seed=corruption_seed)
    base = RunRequest(suite=suite, method="standard", budget=budget, hparams=parse_hparam_overrides(hparam), out=out,
                      options=options, device=device, precision=precision, test_norm=test_norm)
    spec = g.SweepGrid(base, g.parse_methods(methods), g.parse_int_list(seeds, "--seeds"),
                       g.parse_int_list(cvals, "--cvals"), g.parse_float_list(fractions, "--fractions"), g.parse_grid(grid))
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    engine_options = {
        "local": {"workers": workers, "threads_per_worker": threads},
        "ray": {"address": address, "cpus_per_run": cpus or 1.0, "gpus_per_run": gpus},
        "slurm": {"partition": partition, "time": time_limit, "gpus": int(gpus), "cpus": int(cpus or 2), "mem_gb": mem_gb,
                  "parallelism": parallelism, "wait": not no_wait},
    }
    engine = get_launcher(launcher, **engine_options.get(launcher, {}))
    if launcher == "slurm":
        from robench.sweep.launchers import time_minutes

        time_minutes(time_limit)  # a bad --time fails now, not at submission
    console.print(f"planning {spec.size()} runs of {suite} ({budget}) …", highlight=False)
    sweep_plan = g.make_plan(spec, save=not dry_run)
    counts = sweep_plan.counts()
    jobs = sweep_plan.to_launch(retry_failed)
    console.print(
        f"sweep: {len(sweep_plan.jobs)} runs — {counts['done']} done, {counts['interrupted']} to resume, "
        f"{counts['missing']} to start, {counts['failed']} failed ({'retried' if retry_failed else 'skipped; --retry-failed runs them'}), "
        f"{counts['running']} running elsewhere (left alone)" + (f"; plan {sweep_plan.path}" if sweep_plan.path else ""),
        highlight=False, soft_wrap=True,
    )
    if dry_run or not jobs:
        return
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal) as progress:
        task = progress.add_task(f"{launcher} ×{workers if launcher == 'local' else ''}".rstrip("×"), total=len(jobs))

        names = {job.run_id: job.name for job in jobs}

        def report(outcome) -> None:
            colour = {"done": "green", "failed": "red"}.get(outcome.state, "yellow")
            progress.console.print(f"[{colour}]{outcome.state}[/] {outcome.run_id} {names[outcome.run_id]} {outcome.error}",
                                   highlight=False, soft_wrap=True)
            progress.advance(task)

        outcomes = engine.launch(jobs, report)
    if launcher == "slurm" and no_wait:
        console.print(f"submitted {len(jobs)} Slurm tasks ({', '.join(getattr(engine, 'job_ids', [])[:3])} …); "
                      f"follow with `robench status {out}`", highlight=False)
        return
    bad = [o for o in outcomes if o.state != "done"]
    console.print(f"{len(outcomes) - len(bad)} of {len(outcomes)} runs finished in {time.perf_counter() - start:.0f} s",
                  highlight=False)
    if bad:
        for o in bad:
            console.print(f"[red]{o.state}[/] {o.run_id}: {o.error}" + (f" (log {o.log})" if o.log else ""), highlight=False)
        console.print(f"rerun the same sweep to resume the interrupted runs; `robench status {out}` shows each run",
                      highlight=False)
        raise typer.Exit(1)


def status(
    root: Path = typer.Argument(..., help="Results root (a sweep's --out)."),
    format: str = typer.Option("table", "--format", help="table | json."),
) -> None:
    """Per run and in total: done, running, failed (with the error's last line and log), interrupted, missing."""
    from robench.errors import ConfigError
    from robench.sweep.status import collect_status, totals

    if format not in ("table", "json"):
        raise ConfigError(f"--format {format!r}: use table or json")
    statuses = collect_status(root)
    counts = totals(statuses)
    if format == "json":
        typer.echo(json.dumps({"root": str(root), "totals": counts, "runs": [s.as_dict() for s in statuses]}, indent=1))
        return
    colours = {"done": "green", "running": "cyan", "failed": "bold red", "interrupted": "yellow", "missing": "dim"}
    table = Table("run", "suite", "budget", "method", "seed", "cval", "fraction", "state")
    table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=80)
    for s in statuses:
        table.add_row(s.run_id, s.suite or "", s.budget or "", s.method or "", _text(s.seed), _text(s.cval), _text(s.train_fraction),
                      f"[{colours[s.state.value]}]{s.state.value}[/]", s.detail)
    from robench.cli import wide_console

    wide_console().print(table)
    for s in (s for s in statuses if s.state.value == "failed"):  # whole, not cut to the table's width
        console.print(f"[bold red]failed[/] {s.run_id}: {s.detail}" + (f"\n  log: {s.log}" if s.log else ""),
                      highlight=False, soft_wrap=True)
    console.print(", ".join(f"{counts[k]} {k}" for k in colours) + f" — {counts['total']} runs", highlight=False)


def _text(value) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
