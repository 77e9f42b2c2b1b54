"""Leaderboard -> text: Markdown for people, tidy CSV and JSON for machines.

The JSON document is the leaderboard as data (RobustBench style): every number with its
std, interval, p-values and counts, no timestamps, so it can be committed and diffed and
every other format can be rebuilt from it. The CSV is tidy (one line per cell) because
tables of different suites have different columns.
"""

from __future__ import annotations

import io
import json
import math

import pandas as pd

from robench.errors import ConfigError
from robench.leaderboards.table import Cell, Column, Leaderboard, Table

FORMATS = ("markdown", "csv", "json", "latex", "html")
COMPACT_ROLES = ("test_set", "kind_average", "average")  # the default tables; --detail shows every column
COMPACT_DECIMALS = 3
METRIC_NAMES = {"dice": "Dice", "hd95": "HD95 (mm)", "assd": "ASSD (mm)", "sensitivity": "Sensitivity", "precision": "Precision"}
DECIMALS = {"dice": 4, "sensitivity": 4, "precision": 4, "hd95": 2, "assd": 2}
COST_DECIMALS = {"Train h": 2, "Peak MB": 0, "Infer s/vol": 3}
MARKS = {"better": " ↑", "worse": " ↓", "": ""}
SCHEMA_VERSION = 1


def render(board: Leaderboard, fmt: str, detail: bool = False) -> str:
    """Render every table of `board` in one document of format `fmt`.

    Markdown, LaTeX and HTML are compact by default — test sets, kind averages and Avg at three
    decimals, rank with its interval — and show ± std, per-class, cost and CI columns with `detail`.
    CSV and JSON always hold everything.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown leaderboard format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "html":
        from robench.leaderboards.html import page

        return page(board, detail=detail)
    if fmt in ("markdown", "latex"):
        return {"markdown": _markdown, "latex": _latex}[fmt](board, detail)
    return {"csv": _csv, "json": _json}[fmt](board)


def shown_columns(table: Table, detail: bool) -> list[Column]:
    if detail or table.kind != "leaderboard":
        return list(table.columns)
    return [c for c in table.columns if c.role in COMPACT_ROLES]


def cell_text(table: Table, column: Column, cell: Cell | None, decimals: int, detail: bool) -> str:
    """A cell as every renderer writes it: costs at their unit's decimals; differences signed;
    a rank-agreement τ with its interval; otherwise mean (± std with `detail`) and the test mark."""
    if column.role == "cost":
        return _number(cell.mean if cell else math.nan, COST_DECIMALS.get(column.name, 2))
    if cell is None or math.isnan(cell.mean):
        return "–"
    if table.kind == "difference":
        return f"{cell.mean:+.{decimals}f}"
    if table.kind == "agreement":
        return _number(cell.mean, decimals) + (f" [{_number(cell.ci[0], decimals)}, {_number(cell.ci[1], decimals)}]" if cell.ci else "")
    return _cell_text(cell, decimals, with_std=detail)


def decimals_of(table: Table, detail: bool) -> int:
    return DECIMALS.get(table.metric, 4) if detail else min(COMPACT_DECIMALS, DECIMALS.get(table.metric, 4))


def row_header(table: Table) -> str:
    return "Tables compared" if table.kind == "agreement" else "Method"


def table_title(table: Table) -> str:
    if table.kind == "agreement":
        return "ranking agreement · Kendall τ-b"
    return (f"`{table.suite}` · budget `{table.budget}`" + (f" · {table.condition}" if table.condition else "")
            + f" · {METRIC_NAMES.get(table.metric, table.metric)}" + (f" · {table.view}" if table.view else ""))


# --------------------------------------------------------------------------- markdown


def _markdown(board: Leaderboard, detail: bool) -> str:
    parts = []
    if board.n_unfinished:
        parts.append(f"_{board.n_unfinished} unfinished run(s) ignored (no done.json)._\n")
    parts += [_markdown_table(table, detail) for table in board.tables]
    return "\n".join(parts)


def _markdown_table(table: Table, detail: bool) -> str:
    decimals = decimals_of(table, detail)
    ranked = any(row.rank is not None for row in table.rows)
    with_ci = table.n_boot > 0 and detail
    columns = shown_columns(table, detail)
    last_metric_column = next(c.name for c in reversed(columns) if c.role != "cost") if detail else None
    header = (["Rank"] if ranked else []) + [row_header(table)]
    for column in columns:
        header.append(column.name)
        if column.name == "Avg" and with_ci:
            header.append("Avg 95 % CI")
        if column.name == last_metric_column:
            header.append("Runs")
    lines = [
        f"### {table_title(table)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if name == row_header(table) else "---:" for name in header) + "|",
    ]
    for row in table.rows:
        values = [_rank_text(row.rank, row.rank_interval)] if ranked else []
        values.append(row.label.replace("|", "\\|"))
        for column in columns:
            cell = row.cells.get(column.name)
            values.append(cell_text(table, column, cell, decimals, detail))
            if column.name == "Avg" and with_ci:
                values.append(f"[{_number(cell.ci[0], decimals)}, {_number(cell.ci[1], decimals)}]" if cell and cell.ci else "–")
            if column.name == last_metric_column:
                values.append(str(row.runs))
        lines.append("| " + " | ".join(values) + " |")
    lines += ["", f"_{legend(table, detail)}_", ""]
    return "\n".join(lines)


def _cell_text(cell: Cell | None, decimals: int, with_std: bool = True) -> str:
    if cell is None or math.isnan(cell.mean):
        return "–"
    text = _number(cell.mean, decimals)
    if with_std and not math.isnan(cell.std):
        text += f" ± {_number(cell.std, decimals)}"
    return text + MARKS[cell.mark]


def _rank_text(rank: int | None, interval: tuple[int, int] | None) -> str:
    if rank is None:
        return "–"
    return f"{rank} [{interval[0]}–{interval[1]}]" if interval else str(rank)


def _number(value: float, decimals: int) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{decimals}f}"


def legend(table: Table, detail: bool = True) -> str:
    """What the cells, columns, marks and ranks of `table` mean; the compact form says what `--detail` adds."""
    if table.kind != "leaderboard":
        return _other_legend(table)
    metric = METRIC_NAMES.get(table.metric, table.metric)
    n_sets = sum(c.role == "test_set" for c in table.columns)
    runs = sorted({row.runs for row in table.rows})
    runs_text = str(runs[0]) if len(runs) == 1 else f"{runs[0]}–{runs[-1]}"
    kinds = [c.name for c in table.columns if c.role == "kind_average"]
    classes = [c.name for c in table.columns if c.role == "class_average"]
    parts = [
        f"Cell: mean{' ± std' if detail else ''} over runs (seeds/cvals) of a run's test-set {metric}, the mean over cases of the mean over classes "
        f"(both-empty classes skipped){'' if table.higher_is_better else '; lower is better'}.",
        f"Avg: mean of the {n_sets} test-set columns" + (f"; {'/'.join(kinds)}: mean of that kind's columns" if kinds else "")
        + (f"; {'/'.join(classes)}: per-class Avg" if classes else "") + ".",
        f"Runs per row: {runs_text}.",
    ]
    names = {c.name for c in table.columns if c.role == "corruption"}
    if "Corruption" in names:
        parts.append("Corruption: mean over the graded corruption sets (type × severity 1–5), not part of Avg.")
    if "mCE" in names:
        parts.append("mCE: mean over types of Σ_s(1 − Dice) / Σ_s(1 − Dice of the reference); lower is better, 1 = reference.")
    if table.n_boot:
        parts.append(f"95 % CI: two-level bootstrap over cases (within test set) and runs, {table.n_boot} resamples, seed {table.seed}.")
    if table.reference:
        parts.append(
            f"↑/↓: better/worse than `{table.reference}` (two-sided Wilcoxon signed-rank on paired cases, Holm over test sets, "
            f"α = {table.alpha:g})."
        )
    if any(row.rank is not None for row in table.rows):
        parts.append("Rank [95 % bootstrap rank interval]; a row whose interval overlaps the row above shares its rank.")
    parts.append(f"HD95 variant: {', '.join(table.hd95_variants) or 'not recorded'}.")
    parts += [note[0].upper() + note[1:] + "." for note in table.notes]
    if not detail:
        parts.append("Compact table: `--detail` adds ± std, the 95 % CI of Avg, per-class, per-mode and cost columns.")
    return " ".join(parts)


def _other_legend(table: Table) -> str:
    """Legends of the tables beside a leaderboard: published references, their differences, rank agreement."""
    lead = {
        "beside": "Published rows are the paper's numbers as printed, never ranked or tested; measured rows are this "
                     "table's cells (mean over runs), marks dropped.",
        "difference": "Cell: measured mean − published value on the same column (positive: robench measured more).",
        "agreement": "Cell: Kendall τ-b between two method rankings [95 % bootstrap interval]; 1 = the same order, "
                     "0 = unrelated, −1 = reversed.",
    }.get(table.kind, "")
    return " ".join([lead] + [note[0].upper() + note[1:] + "." for note in table.notes]).strip()


# --------------------------------------------------------------------------- latex


def _latex(board: Leaderboard, detail: bool) -> str:
    """booktabs tables, one per view; the legend goes to the caption."""
    return "\n".join(_latex_table(table, detail) for table in board.tables)


def _latex_table(table: Table, detail: bool) -> str:
    decimals = decimals_of(table, detail)
    ranked = any(row.rank is not None for row in table.rows)
    columns = shown_columns(table, detail)
    header = (["Rank"] if ranked else []) + [row_header(table)] + [c.name for c in columns]
    spec = ("r" if ranked else "") + "l" + "r" * len(columns)
    lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & ".join(_tex(h) for h in header) + " \\\\", "\\midrule"]
    for row in table.rows:
        values = [_tex(_rank_text(row.rank, row.rank_interval))] if ranked else []
        values.append(_tex(row.label))
        for column in columns:
            values.append(_tex(cell_text(table, column, row.cells.get(column.name), decimals, detail)))
        lines.append(" & ".join(values) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}",
              f"\\caption{{{_tex(table_title(table).replace('`', ''))}. {_tex(legend(table, detail))}}}", "\\end{table}", ""]
    return "\n".join(lines)


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "α": r"$\alpha$", "→": r"$\rightarrow$",
                "·": r"\textperiodcentered{}", "–": "--", "²": r"\textsuperscript{2}", "×": r"$\times$"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


# --------------------------------------------------------------------------- csv / json


def _csv(board: Leaderboard) -> str:
    lines = []
    for table in board.tables:
        for row in table.rows:
            for column in table.columns:
                cell = row.cells.get(column.name)
                if cell is None:
                    continue
                lines.append(
                    {
                        "suite": table.suite,
                        "budget": table.budget,
                        "condition": table.condition,
                        "metric": table.metric,
                        "view": table.view,
                        "kind": table.kind,
                        "rank": row.rank,
                        "rank_low": row.rank_interval[0] if row.rank_interval else None,
                        "rank_high": row.rank_interval[1] if row.rank_interval else None,
                        "label": row.label,
                        "method": row.method,
                        "hparams": row.hparams,
                        "runs": row.runs,
                        "column": column.name,
                        "role": column.role,
                        "test_set_kind": column.test_set_kind,
                        **_cell_fields(cell),
                        "reference": table.reference,
                    }
                )
    frame = pd.DataFrame(lines)
    if len(frame):
        frame = frame.astype({column: "Int64" for column in ("rank", "rank_low", "rank_high", "n_runs", "n_cases")})
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def _json(board: Leaderboard) -> str:
    document = {
        "schema_version": SCHEMA_VERSION,
        "n_runs": board.n_runs,
        "n_unfinished": board.n_unfinished,
        "unfinished": list(board.unfinished),
        "tables": [
            {
                "suite": table.suite,
                "budget": table.budget,
                "condition": table.condition,
                "metric": table.metric,
                "view": table.view,
                "kind": table.kind,
                "higher_is_better": table.higher_is_better,
                "columns": [{"name": c.name, "role": c.role, "test_set_kind": c.test_set_kind or None} for c in table.columns],
                "reference": table.reference,
                "bootstrap": {"n_boot": table.n_boot, "seed": table.seed, "levels": ["runs", "cases within test set"]},
                "test": {"name": "wilcoxon_signed_rank_two_sided", "correction": "holm over test sets", "alpha": table.alpha},
                "hd95_variants": list(table.hd95_variants),
                "metric_versions": list(table.metric_versions),
                "notes": list(table.notes),
                "legend": legend(table),
                "rows": [
                    {
                        "label": row.label,
                        "method": row.method,
                        "hparams": json.loads(row.hparams) if row.hparams.startswith("{") else row.hparams,
                        "rank": row.rank,
                        "rank_interval": list(row.rank_interval) if row.rank_interval else None,
                        "runs": row.runs,
                        "devices": list(row.devices),
                        "cells": {name: _cell_fields(cell) for name, cell in row.cells.items()},
                    }
                    for row in table.rows
                ],
            }
            for table in board.tables
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _cell_fields(cell: Cell) -> dict:
    return {
        "mean": _finite(cell.mean),
        "std": _finite(cell.std),
        "ci_low": _finite(cell.ci[0]) if cell.ci else None,
        "ci_high": _finite(cell.ci[1]) if cell.ci else None,
        "n_runs": cell.n_runs,
        "n_cases": cell.n_cases,
        "p_value": _finite(cell.p_value),
        "p_holm": _finite(cell.p_holm),
        "mark": cell.mark or None,
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
