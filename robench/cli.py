"""The `robench` command line. Thin: parse, call, print with Rich."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from robench.errors import ConfigError, RobenchError, describe_os_error
from robench.option_help import CORRUPTIONS_HELP, TEST_NORM_HELP

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Robustness benchmark for medical image segmentation.",
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
    pinned_numerics: bool = typer.Option(
        False, "--pinned-numerics",
        help="Run on CPU kernels that give the same floats on every x86-64 machine (one thread, ~2× slower; docs/numerics.md).",
    ),
) -> None:
    _state["debug"] = debug
    from robench import numerics

    if pinned_numerics:
        numerics.reexec_pinned()
    try:
        numerics.apply_in_process()
    except RobenchError as exc:
        _fail(str(exc))


def wide_console() -> Console:
    """The terminal's console; for logs and pipes (not 80 columns wide) one 200 wide, so tables print whole,
    not wrapped at whatever width the environment reports (COLUMNS, when wider, is honoured)."""
    if console.is_terminal:
        return console
    columns = os.environ.get("COLUMNS", "")
    return Console(width=max(200, int(columns) if columns.isdigit() else 0))


def _fail(message: str) -> None:
    """The one line every user-facing error gets, and exit code 2."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


def friendly_errors(func: Callable) -> Callable:
    """One clear line and a non-zero exit for user errors; tracebacks only with --debug."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except RobenchError as exc:
            if _state["debug"]:
                raise
            _fail(str(exc))
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: rerun the same command with --resume to continue", highlight=False)
            raise typer.Exit(130) from None
        except OSError as exc:  # the environment, not robench: permissions, full disk, link loops, ...
            if _state["debug"]:
                raise
            _fail(describe_os_error(exc))
        except MemoryError:
            if _state["debug"]:
                raise
            _fail("out of memory; use a smaller --budget or a machine with more memory")

    return wrapper


@app.command()
@friendly_errors
def suites() -> None:
    """List registered suites and where their data comes from."""
    from robench.benchmark.suites import SUITES

    table = Table("suite", "description", "data")
    for name, suite in sorted(SUITES.items()):
        table.add_row(name, suite.description, suite.source)
    wide_console().print(table)


@app.command()
@friendly_errors
def methods() -> None:
    """List registered methods with their paper reference."""
    from robench.methods import METHODS

    table = Table("method", "description", "reference", "channels")
    for name, cls in sorted(METHODS.items()):
        table.add_row(name, cls.description, cls.reference, "any" if cls.multichannel else "1")
    wide_console().print(table)


@app.command()
@friendly_errors
def run(
    suite: str = typer.Option("cardiac-synth", help="Suite name (see `robench suites`)."),
    method: str = typer.Option("standard", help="Method name (see `robench methods`)."),
    seed: int = typer.Option(0, help="Seed of everything random in the run."),
    cval: int = typer.Option(0, help="Cross-validation split (cardiac: 0, 1, 2)."),
    budget: str = typer.Option("quick", help="smoke | quick | ci | paper (see the README), or NAME@UPDATES such as quick@4000."),
    out: Path = typer.Option(Path("runs"), help="Results root; the run folder is <out>/<run id>."),
    data_root: Optional[Path] = typer.Option(None, help="ACDC folder (official NIfTI or SSL4MIS HDF5 layout)."),
    mnms_root: Optional[Path] = typer.Option(None, help="M&Ms folder (official layout), adds per-vendor test sets."),
    sunnybrook_root: Optional[Path] = typer.Option(None, help="Sunnybrook folder (DICOM + contours), adds a cross-site test set."),
    corruptions: str = typer.Option("acdc-c", help=CORRUPTIONS_HELP),
    corruption_seed: int = typer.Option(0, help="Seed of the frozen artefact copies."),
    hparam: Optional[List[str]] = typer.Option(None, help="Hyperparameter override key=value (repeatable)."),
    resume: bool = typer.Option(False, help="Continue an interrupted run of the same config."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    hd95: str = typer.Option("max_directed", help="HD95 variant: max_directed | pooled."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where generated data is cached (default $ROBENCH_HOME)."),
    precision: str = typer.Option(
        "auto", help="fp32 | bf16 | auto (bf16 where the device computes it natively); recorded in the run id."
    ),
    threads: Optional[int] = typer.Option(
        None, help="Intra-op CPU threads (default: follow the cores other processes leave free; fix it for identical floats)."
    ),
    train_fraction: float = typer.Option(
        1.0, help="Train on a nested subset of the training pool (0 < F <= 1; at least one subject); in the run id."
    ),
    slice_axis: Optional[int] = typer.Option(
        None, help="nnU-Net layouts: file axis to slice along (default: the axis of largest spacing, the last on a tie)."
    ),
    oversample_foreground: Optional[float] = typer.Option(
        None, help="Share of each batch drawn from slices holding the rarest class (default: the suite's; nnU-Net suites 1/3)."
    ),
    test_norm: str = typer.Option("per-slice", help=TEST_NORM_HELP),
) -> None:
    """Train a method on a suite and evaluate it on every test set."""
    from robench.benchmark.config import parse_hparam_overrides
    from robench.benchmark.runner import RunRequest, execute
    from robench.benchmark.suites import SuiteOptions, parse_corruption_families

    extra = {k: v for k, v in (("mnms", mnms_root), ("sunnybrook", sunnybrook_root)) if v is not None}
    options = SuiteOptions(
        data_root=data_root, cval=cval, cache_dir=cache_dir, extra_roots=extra,
        corruptions=parse_corruption_families(corruptions), corruption_seed=corruption_seed,
        train_fraction=train_fraction, slice_axis=slice_axis,
    )
    request = RunRequest(
        suite=suite, method=method, seed=seed, cval=cval, budget=budget, hparams=parse_hparam_overrides(hparam),
        out=out, options=options,
        resume=resume, device=device, hd95_variant=hd95, precision=precision, threads=threads,
        oversample_foreground=oversample_foreground, test_norm=test_norm,
    )
    result = execute(request, log=lambda m: console.print(m, highlight=False))
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")
    if result.already_finished:
        console.print(f"[green]already finished[/]: {result.folder.path} (results kept; nothing recomputed)")
    else:
        console.print(f"[green]finished[/]: {result.folder.path}")
    _print_summary(result.records)


def _print_summary(records) -> None:
    """Per test set and mode: Dice (mean over classes, and per class by the suite's label names), SENS, PRC, HD95."""
    from robench.benchmark.summary import class_names, summarise_test_sets

    summary = summarise_test_sets(records)
    classes = class_names(records)
    table = Table("test set", "kind", "mode", "cases", "Dice", *classes, "SENS", "PRC", "HD95 (mm)")
    for row in summary.to_dict("records"):
        table.add_row(
            row["test_set"], row["kind"], row["mode"], str(row["cases"]), _num(row["dice"], 4),
            *(_num(row[f"dice:{c}"], 4) for c in classes), _num(row["sensitivity"], 4), _num(row["precision"], 4),
            _num(row["hd95"], 2),
        )
    wide_console().print(table)


def _num(value: float, digits: int) -> str:
    return "—" if value != value else f"{value:.{digits}f}"  # NaN: undefined for every case (e.g. both masks empty)


@app.command()
@friendly_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run folder."),
    test_root: Path = typer.Option(..., help="A folder in the run's suite layout (ACDC; nnU-Net / MSD for those suites); every labelled case in it is evaluated."),
    name: Optional[str] = typer.Option(None, help="Test-set name (default: the folder name)."),
    kind: str = typer.Option("cross-site", help="intra | cross-site | artefact."),
    device: str = typer.Option("auto"),
    out: Optional[Path] = typer.Option(None, help="Also write the records to OUT/<name>-<tag>.parquet (never over an existing file)."),
) -> None:
    """Evaluate a finished run on another folder of labelled cases; records go to RUN_DIR/evaluations/ (and --out)."""
    from robench.benchmark.external import evaluate_external
    from robench.benchmark.runner import check_writable
    from robench.benchmark.store import write_records

    if out is not None:
        check_writable(out, "--out")  # before the evaluation, not after it
    path, result = evaluate_external(run_dir, test_root, name=name, kind=kind, device=device)
    if out is not None:
        copy = Path(out) / path.name
        if copy.exists():
            raise ConfigError(f"{copy} exists; robench never overwrites a result — delete it or choose another --out")
        write_records(copy, result.records)
        console.print(f"[green]records[/]: {copy}", highlight=False)
    if result.unlabelled:
        console.print(f"[yellow]warning[/]: {len(result.unlabelled)} cases have no label and were skipped: "
                      f"{', '.join(result.unlabelled[:10])}{' …' if len(result.unlabelled) > 10 else ''}", highlight=False)
    console.print(f"[green]records[/]: {path}")
    _print_summary(result.records)
    from robench.benchmark.summary import by_site

    per_site = by_site(result.records)
    if len(per_site):
        console.print("per site:")
        _print_summary(per_site)


@app.command()
@friendly_errors
def predict(
    run_dir: Path = typer.Argument(..., help="A finished run folder."),
    images: List[Path] = typer.Argument(..., help="3-D NIfTI images (.nii or .nii.gz)."),
    out: Path = typer.Option(..., help="Output folder; masks keep the input's file name and affine."),
    predict_mode: Optional[str] = typer.Option(None, help="Prediction mode (default: the method's primary mode)."),
    device: str = typer.Option("auto"),
) -> None:
    """Segment new images with a finished run; writes NIfTI label maps with the label values of the run's suite."""
    from robench.benchmark.external import predict_files

    for written in predict_files(run_dir, images, out, mode=predict_mode, device=device):
        console.print(f"wrote {written}", highlight=False)


@app.command()
@friendly_errors
def leaderboard(
    root: Path = typer.Argument(..., help="Results root holding run folders."),
    format: str = typer.Option("markdown", "--format", help="markdown | csv | json | latex | html."),
    metric: str = typer.Option("dice", help="dice (the ranked leaderboard) | sens | prc | hd95 | assd (mean ± std tables)."),
    detail: bool = typer.Option(False, "--detail", help="Markdown / LaTeX / HTML: add ± std, CI, per-class, per-mode and cost columns."),
    reference: Optional[List[str]] = typer.Option(
        None, help="Reference method of the paired tests and of mCE (default standard); or a published set shown beside "
                   "the measured rows, never ranked (paper: methods.md §9). Repeatable: --reference paper --reference standard."
    ),
    save_mce_reference: bool = typer.Option(
        False, help="Maintainers: write the reference method's graded-corruption errors as robench's shipped mCE reference."
    ),
) -> None:
    """Tables from every finished run under ROOT (mean ± std over seeds/cvals, bootstrap CI, paired tests)."""
    from robench.leaderboards import collect_records, metric_table, render, save_mce_references
    from robench.leaderboards import leaderboard as build
    from robench.leaderboards.table import metric_name

    from robench.leaderboards.agreement import with_comparisons
    from robench.leaderboards.published import load_published, published_names

    column = metric_name(metric)
    shipped = published_names()
    sets = [load_published(name) for name in reference or [] if name in shipped]
    methods = [name for name in reference or [] if name not in shipped]
    if len(methods) > 1:
        raise ConfigError(f"--reference names one method for the paired tests, got {methods}; published sets: {', '.join(shipped)}")
    from robench.methods import METHODS

    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise ConfigError(f"--reference {unknown[0]!r} is neither a registered method nor a published set ({', '.join(shipped)})")
    if sets and column != "dice":
        raise ConfigError("published references are Dice tables; use --reference paper with --metric dice")
    reference_method = methods[0] if methods else "standard"
    records, runs = collect_records(root)
    if save_mce_reference:
        for path in save_mce_references(records, runs, reference_method):
            err_console.print(f"wrote mCE reference {path}", highlight=False)
    if column == "dice":
        board = with_comparisons(build(records, runs, reference_method=reference_method), sets)
    else:
        board = metric_table(records, runs, metric=column)
    typer.echo(render(board, format, detail=detail))


@app.command()
@friendly_errors
def publish(
    root: Path = typer.Argument(..., help="Results root holding run folders."),
    out: Path = typer.Option(Path("docs/leaderboards"), help="Where the boards go (one set of files per suite × budget)."),
    tag: Optional[str] = typer.Option(None, help="Name part between suite and budget, for a second board of the same suite × budget."),
    metric: Optional[List[str]] = typer.Option(None, help="Metrics to publish (repeatable): dice (ranked), sens, prc, hd95, assd. Default: dice."),
    figure: Optional[List[str]] = typer.Option(None, help="Extra figure to embed, CAPTION=PATH.png (repeatable), e.g. a logit plot."),
) -> None:
    """Regenerate published leaderboards: JSON entries with provenance, then Markdown, LaTeX and HTML rendered from them."""
    from robench.leaderboards.publish import publish as write

    figures = []
    for item in figure or []:
        caption, sep, path = item.rpartition("=")
        if not sep or not Path(path).is_file():
            raise ConfigError(f"--figure expects CAPTION=PATH to an existing image, got {item!r}")
        figures.append((caption, Path(path)))
    for path in write(root, out, tag=tag, metrics=metric or ["dice"], figures=figures):
        console.print(f"wrote {path}", highlight=False)


@app.command()
@friendly_errors
def regress(
    source: Path = typer.Argument(..., help="A results folder holding finished runs, or a leaderboard JSON file."),
    baseline: Path = typer.Option(..., help="Committed baseline: a leaderboard JSON (`robench leaderboard --format json`)."),
    tolerance: Optional[float] = typer.Option(
        None, help="Largest allowed drop, one number for every cell; default: the baseline's own (per cell from the "
        "spread over seeds, or regression.tolerance), else 0.02."
    ),
    metric: str = typer.Option("dice", help="dice | hd95 | assd | sensitivity | precision."),
    update: bool = typer.Option(False, "--update", help="Rewrite the baseline with the measured numbers (on purpose)."),
    tolerance_from_seeds: Optional[float] = typer.Option(
        None, help="With --update: set the tolerance to K standard deviations over the seeds in SOURCE (see docs/numerics.md)."
    ),
) -> None:
    """Compare every test set, average and class of SOURCE with a baseline; exit 1 on a drop beyond the tolerance."""
    from robench.benchmark.store import write_json
    from robench.leaderboards import regress as rg

    measured = rg.measured_document(source, metric)
    if update:
        previous = rg.read_document(baseline) if baseline.exists() else None
        write_json(baseline, rg.updated_baseline(measured, previous, tolerance, tolerance_from_seeds, metric))
        console.print(f"[green]baseline updated[/]: {baseline}", highlight=False)
        return
    if tolerance_from_seeds is not None:
        raise ConfigError("--tolerance-from-seeds only applies with --update")
    reference = rg.read_document(baseline)
    limit = rg.tolerance_of(reference, tolerance)
    comparisons = rg.compare(reference, measured, limit, metric)
    colours = {"ok": "green", "better": "cyan", "new": "dim", "worse": "bold red", "missing": "bold red"}
    def fmt(value: float | None) -> str:
        return "—" if value is None else f"{value:.4f}"

    for name in dict.fromkeys(c.table for c in comparisons):  # one table per suite / budget, 80 columns wide
        table = Table("row", "column", "baseline", "measured", "delta", "tol", "verdict",
                      title=f"{name} · {metric} · {limit.describe()}")
        for c in (c for c in comparisons if c.table == name):
            delta = "—" if c.delta is None else f"{c.delta:+.4f}"
            table.add_row(c.row, c.column, fmt(c.baseline), fmt(c.measured), delta, f"{c.tolerance:.3f}",
                          f"[{colours[c.verdict]}]{c.verdict}[/]")
        console.print(table)
    failed = [c for c in comparisons if c.failed]
    if failed:
        err_console.print(
            f"[bold red]regression[/]: {len(failed)} of {len(comparisons)} cells worse than {baseline} by more than "
            f"their tolerance (or missing); if the change is intended, rerun with --update and commit the baseline",
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(f"[green]no regression[/]: {len(comparisons)} cells within their tolerance of {baseline}", highlight=False)


def _register_subcommands() -> None:
    """Commands that live beside their packages: corruption sets, figures, sweeps."""
    from robench.corruptions.cli import corrupt, list_corruptions
    from robench.plots.cli import plot_app
    from robench.sweep.cli import status, sweep

    app.command("sweep")(friendly_errors(sweep))
    app.command("status")(friendly_errors(status))
    app.command("corruptions")(friendly_errors(list_corruptions))
    app.command("corrupt")(friendly_errors(corrupt))
    app.add_typer(plot_app, name="plot")


_register_subcommands()


if __name__ == "__main__":
    app()
