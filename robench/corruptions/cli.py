"""Command functions for `robench corruptions` and `robench corrupt` (registered in robench/cli.py).

Plain functions with Typer defaults: parse, call, print with Rich; the work happens in
`testsets` and `materialise`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from robench.errors import ConfigError
from robench.option_help import CORRUPTIONS_HELP

console = Console()


def list_corruptions() -> None:
    """List the graded corruption types with their five severities, and the four ACDC-C sets."""
    from robench.corruptions.acdc_c import COPIES, acdc_c_description
    from robench.corruptions.graded import CORRUPTIONS

    graded = Table(title="graded corruptions (family 'graded'; sets named <type>@<severity>)")
    graded.add_column("type", no_wrap=True)
    for severity in range(1, 6):
        graded.add_column(f"severity {severity}")
    for corruption in CORRUPTIONS.values():
        graded.add_row(corruption.name, *(corruption.label(s) for s in range(1, 6)))
    console.print(graded)
    for corruption in CORRUPTIONS.values():  # prose below the table, so the parameters keep the width
        console.print(f"[bold]{corruption.name}[/]: {corruption.description} [dim]({corruption.implementation})[/]",
                      highlight=False)
    console.print()
    published = Table("set", "type", "TorchIO transform", "copies", title="ACDC-C as published (family 'acdc-c': both frames; 'acdc-c-es': frame ES only, sets <name>-ES, as the public script)")
    for name, corruption, call in acdc_c_description():
        published.add_row(name, corruption, call, str(COPIES))
    console.print(published)


def corrupt(
    suite: str = typer.Option("cardiac-synth", help="Suite whose intra test set(s) are corrupted (see `robench suites`)."),
    data_root: Optional[Path] = typer.Option(None, help="Data folder of the suite (cardiac: the ACDC folder)."),
    out: Path = typer.Option(Path("corrupted"), help="Output folder: <out>/<set>/<case>_image.nii.gz, _label.nii.gz, .json."),
    seed: int = typer.Option(0, help="Corruption seed; the same seed writes byte-identical files."),
    families: str = typer.Option("acdc-c", help=CORRUPTIONS_HELP),
    cache_dir: Optional[Path] = typer.Option(None, help="Where generated data and frozen parameters are cached (default $ROBENCH_HOME)."),
) -> None:
    """Write the artefact test sets of a suite to disk as NIfTI images, labels and parameter files.

    The sets are the ones `robench run` evaluates: the suite builds them (one function for every
    suite, keyed by suite and data fingerprint), so the files and a run's records agree."""
    from robench.benchmark.suites import SuiteOptions, get_suite, parse_corruption_families
    from robench.corruptions.materialise import materialise

    chosen = parse_corruption_families(families)
    if not chosen:
        raise ConfigError("no corruption family selected; use --families acdc-c, acdc-c-es, graded or all")
    options = SuiteOptions(data_root=data_root, cache_dir=cache_dir, corruptions=chosen, corruption_seed=seed)
    sets = [t for t in get_suite(suite).build(options).test_sets if t.kind == "artefact"]
    if not sets:
        raise ConfigError(f"suite {suite!r} makes no artefact sets (it has no single-channel intra test set)")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("corrupting", total=sum(len(s.cases) for s in sets))
        summary = materialise(sets, out, on_case=lambda set_name, case_id: bar.advance(task))
    table = Table("set", "cases")
    for name, count in summary["sets"].items():  # type: ignore[union-attr]
        table.add_row(name, str(count))
    console.print(table)
    console.print(f"[green]wrote[/] {summary['files']} files to {summary['out']}", highlight=False)
