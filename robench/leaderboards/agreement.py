"""Ranking agreement as a number: Kendall τ-b between the method rankings of two tables.

Rankings are by each table's Avg, over the rows both tables hold (matched by label); a published
ranking is by its first average column. The interval is the 2.5–97.5 % range of τ over the
tables' bootstrap replicates of Avg (the same replicates as their rank intervals; a published
side stays fixed), so "0.07 [−0.5, 0.6]" says how much of a disagreement the test cases alone
could make.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from robench.leaderboards.published import Published, comparable_tables, reference_tables
from robench.leaderboards.table import Cell, Column, Leaderboard, Row, Table

MIN_COMMON = 3  # below three shared methods a rank correlation says nothing
TAU = "Kendall τ"


def with_comparisons(board: Leaderboard, published: Sequence[Published] = ()) -> Leaderboard:
    """The board with, after its own tables, each published set beside its suite's tables (and the
    differences), then the ranking agreement between its tables and with the published rankings."""
    extra: list[Table] = [t for p in published for t in reference_tables(board, p)]
    agreement = agreement_table(board, tuple(published))
    return dataclasses.replace(board, tables=(*board.tables, *extra, *([agreement] if agreement else [])))


def kendall_tau(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """τ-b of two scorings over their common keys (NaN with fewer than MIN_COMMON or no spread)."""
    common = sorted(set(a) & set(b))
    if len(common) < MIN_COMMON:
        return math.nan
    return float(scipy_stats.kendalltau([a[k] for k in common], [b[k] for k in common]).statistic)


def agreement_table(board: Leaderboard, published: tuple[Published, ...] = ()) -> Table | None:
    """τ between every two main Dice tables, and between each suite's table and each published ranking."""
    mains = [t for t in board.tables if t.kind == "leaderboard" and t.metric == "dice" and t.view == ""]
    pairs: list[tuple[str, Table, Table | Published]] = []
    for i, a in enumerate(mains):
        for b in mains[i + 1:]:
            pairs.append((f"{_name(a)} ↔ {_name(b)}", a, b))
    for p in published:
        for table in comparable_tables(board, p.suite):
            pairs.append((f"{_name(table)} ↔ published `{p.name}`", table, p))
    rows = []
    for label, a, b in pairs:
        scores_a, scores_b = (_scores_by_method(a), b.ranking()) if isinstance(b, Published) else (_scores(a), _scores(b))
        common = sorted(set(scores_a) & set(scores_b))
        if len(common) < MIN_COMMON:
            continue
        tau = kendall_tau(scores_a, scores_b)
        ci = _interval(a, b, common)
        rows.append(Row(label=f"{label} ({len(common)} methods)", method="", hparams="", runs=len(common),
                        cells={TAU: Cell(tau, ci=ci, n_runs=len(common))}))
    if not rows:
        return None
    notes = ("rankings over the methods both tables rank (rows matched by label; against a published set, by method, "
             "for methods with one row), each ranked by its own Avg (a published set by its first average column)",
             "95 % CI: percentile interval of τ over the tables' bootstrap replicates of Avg, drawn independently per "
             "table; a published side is fixed")
    first = mains[0] if mains else None
    return Table(suite=first.suite if first else "", budget="", metric="kendall_tau", higher_is_better=True,
                 columns=(Column(TAU, "statistic"),), rows=tuple(rows), view="ranking agreement", kind="agreement",
                 notes=notes, n_boot=first.n_boot if first else 0)


def _name(table: Table) -> str:
    return f"{table.suite} · {table.budget}" + (" (ES only)" if table.view else "")


def _scores(table: Table) -> dict[str, float]:
    return {row.label: row.cells["Avg"].mean for row in table.rows if "Avg" in row.cells}


def _scores_by_method(table: Table) -> dict[str, float]:
    """Method → Avg for the methods with one row in `table` (a published row is a method, not a setting)."""
    rows = [row for row in table.rows if "Avg" in row.cells]
    single = [row for row in rows if sum(r.method == row.method for r in rows) == 1]
    return {row.method: row.cells["Avg"].mean for row in single}


def _interval(a: Table, b: Table | Published, common: list[str]) -> tuple[float, float] | None:
    if isinstance(b, Published):  # common holds method names; the replicates are keyed by label
        labels = {row.method: row.label for row in a.rows}
        reps_a = _replicates(a, [labels[m] for m in common])
    else:
        reps_a = _replicates(a, common)
    if reps_a is None:
        return None
    if isinstance(b, Published):
        fixed = b.ranking()
        taus = [scipy_stats.kendalltau(reps_a[:, i], [fixed[k] for k in common]).statistic for i in range(reps_a.shape[1])]
    else:
        reps_b = _replicates(b, common)
        if reps_b is None:
            return None
        n = min(reps_a.shape[1], reps_b.shape[1])
        taus = [scipy_stats.kendalltau(reps_a[:, i], reps_b[:, i]).statistic for i in range(n)]
    taus = np.asarray(taus, float)
    taus = taus[~np.isnan(taus)]
    if not len(taus):
        return None
    return float(np.quantile(taus, 0.025)), float(np.quantile(taus, 0.975))


def _replicates(table: Table, common: list[str]) -> np.ndarray | None:
    """(methods, replicates) Avg replicates of `common` in `table`, or None without a bootstrap."""
    if not all(k in table.avg_replicates for k in common):
        return None
    return np.stack([np.asarray(table.avg_replicates[k], float) for k in common])
