"""The leaderboard as data: one JSON entry per (suite, budget, training fraction, method, setting), with provenance.

RobustBench keeps each leaderboard entry as its own file; so does robench. An entry holds the
row's numbers in every view of its suite × budget (the main table, graded corruptions, vendors),
the table's definition (columns, tests, bootstrap) and the provenance of its runs (run ids, code
versions, package versions, budget, hardware, dates). The Markdown, LaTeX and HTML that
`robench publish` writes are rendered from these entries (`board_from_entries`), so the
committed JSON and the committed tables cannot disagree.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd

from robench.benchmark.store import write_json
from robench.errors import DataError
from robench.leaderboards.render import _finite
from robench.leaderboards.table import Cell, Column, Leaderboard, Row, Table

ENTRY_SCHEMA = "robench-leaderboard-entry/1"


def board_entries(board: Leaderboard, runs: pd.DataFrame, root: Path) -> list[dict]:
    """One entry per row label of each (suite, budget, condition); `runs` and `root` (from `collect_records`) give
    provenance."""
    grouped: dict[tuple[str, str, str, str], dict] = {}
    index: dict[tuple[str, str], int] = defaultdict(int)  # a table's place among its suite × budget's views
    for table in board.tables:
        table_index = index[(table.suite, table.budget)]
        index[(table.suite, table.budget)] += 1
        for position, row in enumerate(table.rows):
            key = (table.suite, table.budget, table.condition, row.label)
            entry = grouped.setdefault(key, {
                "schema": ENTRY_SCHEMA, "suite": table.suite, "budget": table.budget, "condition": table.condition,
                "method": row.method, "label": row.label, "hparams": _hparams(row.hparams), "tables": [], "run_ids": set(),
            })
            entry["tables"].append({**_table_fields(table), "table_index": table_index, "position": position,
                                    "row": _row_fields(row)})
            entry["run_ids"].update(row.run_ids)
    entries = []
    for entry in grouped.values():
        run_ids = sorted(entry.pop("run_ids"))
        entries.append({**entry, "provenance": provenance(run_ids, runs, Path(root))})
    return entries


def board_from_entries(entries: list[dict]) -> Leaderboard:
    """The leaderboard the entries were cut from: tables in their order, rows in their positions."""
    tables: dict[tuple[str, str, str, str, str], dict] = {}
    for entry in entries:
        if entry.get("schema") != ENTRY_SCHEMA:
            raise DataError(f"leaderboard entry {entry.get('label')!r}: schema {entry.get('schema')!r}, expected {ENTRY_SCHEMA}")
        for part in entry["tables"]:
            key = (entry["suite"], entry["budget"], entry.get("condition", ""), part["metric"], part["view"])
            table = tables.setdefault(key, {"fields": part, "rows": []})
            table["rows"].append((part["position"], _row(entry, part["row"])))
    ordered = sorted(tables.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[1]["fields"]["table_index"]))
    built = tuple(_table(suite, budget, condition, t["fields"], [row for _, row in sorted(t["rows"], key=lambda pr: pr[0])])
                  for (suite, budget, condition, _, _), t in ordered)
    n_runs = len({r for e in entries for r in e["provenance"]["run_ids"]})
    return Leaderboard(tables=built, n_runs=n_runs)


def write_entries(entries: list[dict], folder: Path) -> list[Path]:
    """Each entry to `folder/<label>[ <condition>].json` (atomic); files of entries no longer present are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in entries:
        path = folder / f"{slug(' '.join(filter(None, (entry['label'], entry.get('condition')))))}.json"
        write_json(path, entry)
        written.append(path)
    for stale in set(folder.glob("*.json")) - set(written):
        stale.unlink()
    return sorted(written)


def read_entries(folder: Path) -> list[dict]:
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise DataError(f"{folder}: no leaderboard entries (*.json); write them with `robench publish`")
    try:
        return [json.loads(p.read_text()) for p in files]
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: unreadable leaderboard entry ({exc}); regenerate it with `robench publish`") from None


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "entry"


def provenance(run_ids: list[str], runs: pd.DataFrame, root: Path) -> dict:
    """What produced the numbers: runs, code and package versions, budget, hardware and dates."""
    chosen = runs[runs["run_id"].isin(run_ids)]
    codes, packages, hardware, dates, budgets = set(), defaultdict(set), set(), set(), {}
    for path in chosen["path"]:
        folder = root / str(path)
        env = _json(folder / "environment.json")
        config = _json(folder / "config.json")
        codes.add(str(env.get("robench", "unknown")))
        for name, version in (env.get("packages") or {}).items():
            packages[name].add(str(version))
        numerics = env.get("numerics") or {}
        hardware.add(" · ".join(str(x) for x in (env.get("gpu") or env.get("device", "?"), numerics.get("cpu_capability"),
                                                 env.get("platform")) if x))
        if env.get("created"):
            dates.add(str(env["created"])[:10])
        if config.get("budget_details"):
            budgets[str(config.get("budget_spec", ""))] = config["budget_details"]
    return {
        "run_ids": list(run_ids),
        "code_versions": sorted(codes),
        "packages": {name: sorted(v) for name, v in sorted(packages.items())},
        "budget": list(budgets.values())[0] if len(budgets) == 1 else list(budgets.values()),
        "hardware": sorted(hardware),
        "dates": sorted(dates),
    }


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _hparams(text: str):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _table_fields(table: Table) -> dict:
    return {
        "view": table.view, "metric": table.metric, "higher_is_better": table.higher_is_better,
        "columns": [{"name": c.name, "role": c.role, "test_set_kind": c.test_set_kind} for c in table.columns],
        "reference": table.reference, "n_boot": table.n_boot, "seed": table.seed, "alpha": table.alpha,
        "hd95_variants": list(table.hd95_variants), "metric_versions": list(table.metric_versions),
        "notes": list(table.notes),
    }


def _row_fields(row: Row) -> dict:
    return {
        "rank": row.rank, "rank_interval": list(row.rank_interval) if row.rank_interval else None, "runs": row.runs,
        "devices": list(row.devices), "cells": {name: _cell(cell) for name, cell in row.cells.items()},
    }


def _cell(cell: Cell) -> dict:
    return {"mean": _finite(cell.mean), "std": _finite(cell.std), "n_runs": cell.n_runs, "n_cases": cell.n_cases,
            "ci": [_finite(cell.ci[0]), _finite(cell.ci[1])] if cell.ci else None,
            "p_value": _finite(cell.p_value), "p_holm": _finite(cell.p_holm), "mark": cell.mark}


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _row(entry: dict, fields: dict) -> Row:
    cells = {
        name: Cell(mean=_nan(c["mean"]), std=_nan(c["std"]), n_runs=c["n_runs"], n_cases=c["n_cases"],
                   ci=(_nan(c["ci"][0]), _nan(c["ci"][1])) if c["ci"] else None, p_value=c["p_value"],
                   p_holm=c["p_holm"], mark=c["mark"])
        for name, c in fields["cells"].items()
    }
    hparams = entry["hparams"] if isinstance(entry["hparams"], str) else json.dumps(entry["hparams"], sort_keys=True)
    return Row(label=entry["label"], method=entry["method"], hparams=hparams, runs=fields["runs"], cells=cells,
               rank=fields["rank"], rank_interval=tuple(fields["rank_interval"]) if fields["rank_interval"] else None,
               devices=tuple(fields["devices"]), run_ids=tuple(entry["provenance"]["run_ids"]))


def _table(suite: str, budget: str, condition: str, fields: dict, rows: list[Row]) -> Table:
    return Table(
        suite=suite, budget=budget, condition=condition, metric=fields["metric"], higher_is_better=fields["higher_is_better"],
        columns=tuple(Column(c["name"], c["role"], c["test_set_kind"]) for c in fields["columns"]), rows=tuple(rows),
        reference=fields["reference"], n_boot=fields["n_boot"], seed=fields["seed"], alpha=fields["alpha"],
        hd95_variants=tuple(fields["hd95_variants"]), metric_versions=tuple(fields["metric_versions"]),
        notes=tuple(fields["notes"]), view=fields["view"],
    )
