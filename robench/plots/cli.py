"""`robench plot ...`: figures from a results root or a run folder. Thin: parse, call, print the written paths."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional

import typer

plot_app = typer.Typer(
    no_args_is_help=True, pretty_exceptions_enable=False,
    help="Figures (PNG and PDF): Dice against corruption severity, Dice per site, Dice against training updates, hard examples of a run, logit distributions, learned policies.",
)


def _friendly(func: Callable) -> Callable:
    """robench.cli's error handling, looked up at call time: robench.cli imports this module."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from robench.cli import friendly_errors

        return friendly_errors(func)(*args, **kwargs)

    return wrapper


def _echo(paths: list[Path]) -> None:
    for path in paths:
        typer.echo(f"wrote {path}")


@plot_app.command()
@_friendly
def severity(
    runs_dir: Path = typer.Argument(..., help="Results root holding run folders."),
    out: Path = typer.Option(..., help="Folder for the figure files."),
    suite: Optional[str] = typer.Option(None, help="Suite to draw, when the root holds several."),
    budget: Optional[str] = typer.Option(None, help="Budget to draw, when the root holds several."),
    name: str = typer.Option("severity", help="File name without extension."),
) -> None:
    """Dice against severity per corruption type (needs runs evaluated with --corruptions graded)."""
    from robench.leaderboards import collect_records
    from robench.plots.severity import plot_severity

    records, _ = collect_records(runs_dir)
    _echo(plot_severity(records, out, suite=suite, budget=budget, name=name))


@plot_app.command()
@_friendly
def budget(
    runs_dir: Path = typer.Argument(..., help="Results root holding runs of one suite at several budgets (quick, quick@2000, …)."),
    out: Path = typer.Option(..., help="Folder for the figure files and the CSV behind them."),
    suite: str = typer.Option("cardiac", help="Suite to draw."),
    reference: Optional[str] = typer.Option("paper", help="Published set drawn as horizontal lines (none: no lines)."),
    data_root: Optional[Path] = typer.Option(None, help="The suite's data: adds the resolution ceiling of each grid (the ground truth through the pipeline)."),
    name: str = typer.Option("budget", help="File name without extension."),
) -> None:
    """Intra and average Dice against training updates per method, with published numbers and resolution ceilings."""
    from robench.benchmark.ceiling import resolution_ceiling
    from robench.benchmark.config import get_budget
    from robench.benchmark.suites import SuiteOptions, get_suite
    from robench.leaderboards import collect_records, leaderboard
    from robench.leaderboards.published import load_published
    from robench.plots.budget import plot_budget_curve

    published = None if reference in (None, "none") else load_published(reference)
    records, runs = collect_records(runs_dir)
    board = leaderboard(records, runs)
    ceilings = {}
    if data_root is not None:
        data = get_suite(suite).build(SuiteOptions(data_root=data_root))
        intra = next(t for t in data.test_sets if t.kind == "intra")
        for grid in ("quick", "paper"):
            ceilings[grid] = resolution_ceiling(intra, get_budget(grid).on_geometry(data.geometry), data.classes)
    paths, _ = plot_budget_curve(board, runs, out, suite=suite, published=published, ceilings=ceilings, name=name)
    _echo(paths)


@plot_app.command()
@_friendly
def sites(
    runs_dir: Path = typer.Argument(..., help="Results root holding run folders."),
    out: Path = typer.Option(..., help="Folder for the figure files."),
    suite: Optional[str] = typer.Option(None, help="Suite to draw, when the root holds several."),
    budget: Optional[str] = typer.Option(None, help="Budget to draw, when the root holds several."),
    per_class: bool = typer.Option(True, help="Add one panel per class (LV, MYO, RV)."),
    name: str = typer.Option("sites", help="File name without extension."),
) -> None:
    """Dice per intra and cross-site test set, per method."""
    from robench.leaderboards import collect_records
    from robench.plots.sites import plot_sites

    records, _ = collect_records(runs_dir)
    _echo(plot_sites(records, out, suite=suite, budget=budget, per_class=per_class, name=name))


@plot_app.command("hard-examples")
@_friendly
def hard_examples(
    run_dir: Path = typer.Argument(..., help="A run folder of coop-latent or coop-latent-x (finished or validated once)."),
    out: Path = typer.Option(..., help="Folder for the figure files."),
    n: int = typer.Option(4, "--n", help="Number of training slices (rows)."),
    seed: int = typer.Option(0, help="Seed of the pick of training slices."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda | cuda:N."),
    data_root: Optional[Path] = typer.Option(None, help="Data folder, when it moved since the run (default: as recorded)."),
    name: str = typer.Option("hard_examples", help="File name without extension."),
) -> None:
    """Original and hard images, label and corrupted shape of training slices, from the run's best checkpoint."""
    from robench.plots.hard_examples import plot_hard_examples

    _echo(plot_hard_examples(run_dir, out, n=n, seed=seed, device=device, data_root=data_root, name=name))


@plot_app.command()
@_friendly
def logits(
    run_dirs: list[Path] = typer.Argument(..., help="Finished run folders of one suite (each becomes a row of panels)."),
    out: Path = typer.Option(..., help="Folder for the figure files and the CSV of statistics."),
    voxels: int = typer.Option(20000, help="Voxels drawn per run, set and true class for the figure."),
    seed: int = typer.Option(0, help="Seed of the voxel draw."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda | cuda:N."),
    data_root: Optional[Path] = typer.Option(None, help="Data folder, when it moved since the runs (default: as recorded)."),
    name: str = typer.Option("logits", help="File name without extension."),
) -> None:
    """Foreground − background logit distributions per true class, on training cases and each test set."""
    from robench.plots.logits import plot_logits

    _echo(plot_logits(run_dirs, out, voxels=voxels, seed=seed, name=name, device=device, data_root=data_root))


@plot_app.command()
@_friendly
def policy(
    run_dir: Path = typer.Argument(..., help="A learned-aug run folder (it holds policy.parquet)."),
    out: Path = typer.Option(..., help="Folder for the figure files and the CSV of P(augment) per group."),
    name: str = typer.Option("policy", help="File name prefix."),
) -> None:
    """The learned augmentation policy: each group's option probabilities over training, initial against final."""
    from robench.plots.policy import plot_policy

    _echo(plot_policy(run_dir, out, name=name))
