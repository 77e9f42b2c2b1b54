"""`robench regress`: compare a leaderboard with a committed baseline of the same format.

The baseline is the leaderboard's own JSON (`robench leaderboard --format json`), optionally
with a top-level `regression` entry saying which tolerance applies and how it was derived.
Every score cell of every row present in the baseline is compared: each test set, the kind
and overall averages, and each class (the class columns average a class over the test sets).
A cell that is worse than the baseline by more than its tolerance, or missing, fails.

Tolerances: one absolute number for every cell (`--tolerance`, or `regression.tolerance`), or
per cell from the spread over seeds the baseline's own cells carry (`regression.sigmas`):
k·σ·√(1 + 1/n) with σ the cell's standard deviation over its n runs — a later single run is
one more draw (on another machine float differences grow into what amounts to another seed),
so it differs from a mean of n with standard deviation σ·√(1 + 1/n). With k = 3 a one-sided
false alarm per cell is ~0.1 % under normality. Seeds spread differently per test set (a far
site spreads far more than the intra-domain set), so one number from the widest cell would
blind the check everywhere else.
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
DEFAULT_FLOOR = 0.005  # a per-cell tolerance never below this: two seeds can agree by chance


@dataclass(frozen=True)
class Tolerance:
    absolute: float | None = None  # one number for every cell
    sigmas: float | None = None  # k of k·σ·√(1 + 1/n), from each baseline cell's spread over seeds
    floor: float = DEFAULT_FLOOR

    def for_cell(self, cell: dict[str, Any] | None) -> float:
        if self.absolute is not None:
            return self.absolute
        std, n = (cell or {}).get("std"), (cell or {}).get("n_runs") or 0
        if self.sigmas is None or std is None or n < 2:
            return DEFAULT_TOLERANCE
        return max(self.floor, self.sigmas * float(std) * math.sqrt(1 + 1 / n))

    def describe(self) -> str:
        if self.absolute is not None:
            return f"tolerance {self.absolute:g}"
        if self.sigmas is not None:
            return f"tolerance {self.sigmas:g} std over seeds per cell (at least {self.floor:g})"
        return f"tolerance {DEFAULT_TOLERANCE:g}"


@dataclass(frozen=True)
class Comparison:
    table: str  # "suite / budget [/ condition] [/ view]"
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


def tolerance_of(baseline: dict[str, Any], override: float | None) -> Tolerance:
    recorded = baseline.get("regression") or {}
    if override is not None:
        tolerance = Tolerance(absolute=override)
    elif "tolerance" in recorded:
        tolerance = Tolerance(absolute=recorded["tolerance"])
    elif "sigmas" in recorded:
        tolerance = Tolerance(sigmas=recorded["sigmas"], floor=recorded.get("floor", DEFAULT_FLOOR))
    else:
        tolerance = Tolerance(absolute=DEFAULT_TOLERANCE)
    for value in (tolerance.absolute, tolerance.sigmas, tolerance.floor):
        if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
            raise ConfigError(f"--tolerance must be a number >= 0, got {value!r}")
    return tolerance


def compare(
    baseline: dict[str, Any], measured: dict[str, Any], tolerance: Tolerance | float, metric: str = "dice",
) -> list[Comparison]:
    if not isinstance(tolerance, Tolerance):
        tolerance = Tolerance(absolute=tolerance)
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
            base_cell, new_cell = base_cells.get((row, column)), new_cells.get((row, column))
            role = (base_cell or new_cell)[1]  # type: ignore[index]
            out.append(
                Comparison(
                    key, row, column, role, _mean(base_cell), _mean(new_cell),
                    tolerance.for_cell(base_cell[0] if base_cell else None), higher,
                )
            )
    return out


def _mean(cell: tuple[dict[str, Any], str] | None) -> float | None:
    return None if cell is None else cell[0].get("mean")


def _tables(document: dict[str, Any], metric: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for table in document.get("tables", []):
        if table.get("metric") != metric:
            continue
        name = "".join([f"{table['suite']} / {table['budget']}",
                        *(f" / {table[k]}" for k in ("condition", "view") if table.get(k))])
        yield name, table


def _cells(table: dict[str, Any] | None) -> dict[tuple[str, str], tuple[dict[str, Any], str]]:
    """(row label, column) → (the cell's fields, the column's role), for the compared roles."""
    if table is None:
        return {}
    roles = {c["name"]: c["role"] for c in table["columns"]}
    cells = {}
    for row in table["rows"]:
        for column, cell in row["cells"].items():
            if roles.get(column) in COMPARED_ROLES:
                cells[(row["label"], column)] = (cell, roles[column])
    return cells


def tolerance_from_seeds(document: dict[str, Any], k: float, metric: str = "dice") -> dict[str, Any]:
    """The `regression` entry for per-cell tolerances of k standard deviations over seeds."""
    if not math.isfinite(k) or k <= 0:
        raise ConfigError(f"--tolerance-from-seeds must be a positive number of standard deviations, got {k}")
    runs = [
        int(cell["n_runs"]) for _, table in _tables(document, metric) for cell, _ in _cells(table).values()
        if cell.get("std") is not None and (cell.get("n_runs") or 0) >= 2
    ]
    if not runs:
        raise DataError("no cell aggregates two or more runs: run several seeds into the folder to derive a tolerance")
    return {
        "sigmas": k,
        "floor": DEFAULT_FLOOR,
        "derivation": f"per cell: {k:g} x its std over seeds x sqrt(1 + 1/n), n = {min(runs)} to {max(runs)} runs; "
                      f"at least {DEFAULT_FLOOR:g}",
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
        regression = {"tolerance": tolerance}
    return {**measured, **({"regression": regression} if regression else {})}
