"""`robench regress`: compare a leaderboard with a committed baseline of the same format.

The baseline is the leaderboard's own JSON (`robench leaderboard --format json`), optionally
with a top-level `regression` entry saying which tolerance applies and how it was derived
(e.g. from the spread over seeds). Every score cell of every row present in the baseline is
compared: each test set, the kind and overall averages, and each class (the class columns
average a class over the test sets). A cell that is worse than the baseline by more than the
tolerance, or missing, fails the check.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from robench.errors import ConfigError, DataError

COMPARED_ROLES = ("test_set", "kind_average", "average", "class_average", "corruption", "mode_average")
DEFAULT_TOLERANCE = 0.02


@dataclass(frozen=True)
class Comparison:
    table: str  # "suite / budget [/ view]"
    row: str
    column: str
    role: str
    baseline: float | None
    measured: float | None
    tolerance: float
    higher_is_better: bool

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.measured is None:
            return None
        return self.measured - self.baseline

    @property
    def verdict(self) -> str:
        if self.baseline is None:
            return "new"
        if self.measured is None:
            return "missing"
        worse = -self.delta if self.higher_is_better else self.delta  # type: ignore[operator]
        if worse > self.tolerance + 1e-12:
            return "worse"
        return "better" if worse < -self.tolerance else "ok"

    @property
    def failed(self) -> bool:
        return self.verdict in ("worse", "missing")


def read_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: baseline not found; create it with `robench regress RUNS --baseline {path} --update`") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable leaderboard JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("tables"), list):
        raise DataError(f"{path}: not a leaderboard JSON (no 'tables'); write one with `robench leaderboard --format json`")
    return document


def measured_document(source: Path, metric: str) -> dict[str, Any]:
    """A leaderboard document from a results folder, or a leaderboard JSON file as it is."""
    if Path(source).is_file():
        return read_document(source)
    from robench.leaderboards import collect_records, leaderboard, metric_table, render

    records, runs = collect_records(source)
    board = leaderboard(records, runs) if metric == "dice" else metric_table(records, runs, metric=metric)
    return json.loads(render(board, "json"))


def tolerance_of(baseline: dict[str, Any], override: float | None) -> float:
    if override is not None:
        value = override
    else:
        value = (baseline.get("regression") or {}).get("tolerance", DEFAULT_TOLERANCE)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"--tolerance must be a number >= 0, got {value!r}")
    return float(value)


def compare(baseline: dict[str, Any], measured: dict[str, Any], tolerance: float, metric: str = "dice") -> list[Comparison]:
    base_tables = dict(_tables(baseline, metric))
    if not base_tables:
        raise DataError(f"the baseline has no {metric} table; update it with --update or pass --metric")
    new_tables = dict(_tables(measured, metric))
    out: list[Comparison] = []
    for key in sorted(set(base_tables) | set(new_tables)):
        base, new = base_tables.get(key), new_tables.get(key)
        higher = bool((base or new)["higher_is_better"])  # type: ignore[index]
        base_cells, new_cells = _cells(base), _cells(new)
        for row, column in sorted(set(base_cells) | set(new_cells)):
            role = (base_cells.get((row, column)) or new_cells.get((row, column)))[1]  # type: ignore[index]
            out.append(
                Comparison(
                    key, row, column, role,
                    (base_cells.get((row, column)) or (None, ""))[0], (new_cells.get((row, column)) or (None, ""))[0],
                    tolerance, higher,
                )
            )
    return out


def _tables(document: dict[str, Any], metric: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for table in document.get("tables", []):
        if table.get("metric") != metric:
            continue
        name = f"{table['suite']} / {table['budget']}" + (f" / {table['view']}" if table.get("view") else "")
        yield name, table


def _cells(table: dict[str, Any] | None) -> dict[tuple[str, str], tuple[float | None, str]]:
    if table is None:
        return {}
    roles = {c["name"]: c["role"] for c in table["columns"]}
    cells = {}
    for row in table["rows"]:
        for column, cell in row["cells"].items():
            if roles.get(column) in COMPARED_ROLES:
                cells[(row["label"], column)] = (cell.get("mean"), roles[column])
    return cells


def tolerance_from_seeds(document: dict[str, Any], k: float, metric: str = "dice") -> dict[str, Any]:
    """A tolerance from the spread over seeds of a leaderboard whose rows aggregate several seeds.

    A later single run is one more draw (on another machine float differences grow into what
    amounts to another seed), so it differs from the baseline mean of n runs with standard
    deviation σ·√(1 + 1/n). The tolerance is k times that for the largest σ of any compared
    cell: with k = 3 a one-sided false alarm per cell is ~0.1 % under normality.
    """
    if not math.isfinite(k) or k <= 0:
        raise ConfigError(f"--tolerance-from-seeds must be a positive number of standard deviations, got {k}")
    spreads, runs = [], []
    for _, table in _tables(document, metric):
        roles = {c["name"]: c["role"] for c in table["columns"]}
        for row in table["rows"]:
            for column, cell in row["cells"].items():
                if roles.get(column) in COMPARED_ROLES and cell.get("std") is not None and (cell.get("n_runs") or 0) >= 2:
                    spreads.append(float(cell["std"]))
                    runs.append(int(cell["n_runs"]))
    if not spreads:
        raise DataError("no cell aggregates two or more runs: run several seeds into the folder to derive a tolerance")
    n = min(runs)
    sigma = max(spreads)
    return {
        "tolerance": round(k * sigma * math.sqrt(1 + 1 / n), 4),
        "derivation": f"{k:g} x largest std over seeds ({sigma:.4f}, {n} runs per row) x sqrt(1 + 1/{n})",
        "largest_std_over_seeds": round(sigma, 5),
        "runs_per_row": n,
    }


def updated_baseline(
    measured: dict[str, Any], previous: dict[str, Any] | None, tolerance: float | None, seeds_k: float | None = None,
    metric: str = "dice",
) -> dict[str, Any]:
    """The measured leaderboard as the new baseline; its `regression` note kept, or derived anew."""
    regression = dict((previous or {}).get("regression") or {})
    if seeds_k is not None:
        regression = tolerance_from_seeds(measured, seeds_k, metric)
    if tolerance is not None:
        regression["tolerance"] = tolerance
    return {**measured, **({"regression": regression} if regression else {})}
