"""Ranking agreement as a number: Kendall τ-b between the method rankings of two tables.

Two measured tables are ranked by their own Avg over the rows both hold (matched by label).
Against a published set, both sides are ranked by the mean of the columns they share (the
`Avg (N matching)` of `published`), so an average over a set only one side has (M&Ms,
Sunnybrook) cannot reorder them; rows are matched by method. The interval is the 2.5–97.5 %
range of τ over the tables' bootstrap replicates (those behind their rank intervals). Tables
of one suite draw the same cases in each replicate where their test sets hold the same cases
(budgets of one suite), so that comparison is paired; other pairs are resampled independently,
and a published side stays fixed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from robench.leaderboards.published import Published, comparable_tables, matched_columns, reference_tables
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


@dataclasses.dataclass(frozen=True)
class _Ranking:
    """One side of a comparison: a score per key and, when bootstrapped, its replicates per key."""

    scores: dict[str, float]
    replicates: dict[str, np.ndarray]


def agreement_table(board: Leaderboard, published: tuple[Published, ...] = ()) -> Table | None:
    """τ between every two main Dice tables, and between each suite's table and each published ranking."""
    mains = [t for t in board.tables if t.kind == "leaderboard" and t.metric == "dice" and t.view == ""]
    pairs: list[tuple[str, _Ranking, _Ranking]] = []
    for i, a in enumerate(mains):
        for b in mains[i + 1:]:
            pairs.append((f"{_name(a)} ↔ {_name(b)}", _by_avg(a), _by_avg(b)))
    for p in published:
        for table in comparable_tables(board, p.suite):
            matched = matched_columns(table, p)
            if matched:
                pairs.append((f"{_name(table)} ↔ published `{p.name}` (Avg of {len(matched)} shared columns)",
                              _by_shared_columns(table, matched), _published(p, matched)))
    rows = []
    for label, a, b in pairs:
        common = sorted(set(a.scores) & set(b.scores))
        if len(common) < MIN_COMMON:
            continue
        cell = Cell(kendall_tau(a.scores, b.scores), ci=_interval(a, b, common), n_runs=len(common))
        rows.append(Row(label=f"{label} ({len(common)} methods)", method="", hparams="", runs=len(common), cells={TAU: cell}))
    if not rows:
        return None
    notes = ("two measured tables: rankings by their Avg over the rows both hold (matched by label); against a "
             "published set: both sides by the mean of the columns they share, rows matched by method (methods "
             "with one row)",
             "95 % CI: percentile interval of τ over the bootstrap replicates of the tables (cases drawn alike for "
             "tables of one suite with the same test cases, independently otherwise; a published side is fixed)")
    first = mains[0] if mains else None
    return Table(suite=first.suite if first else "", budget="", metric="kendall_tau", higher_is_better=True,
                 columns=(Column(TAU, "statistic"),), rows=tuple(rows), view="ranking agreement", kind="agreement",
                 notes=notes, n_boot=first.n_boot if first else 0)


def _name(table: Table) -> str:
    return (f"{table.suite} · {table.budget}" + (f" · {table.condition}" if table.condition else "")
            + (" (ES only)" if table.view else ""))


def _by_avg(table: Table) -> _Ranking:
    scores = {row.label: row.cells["Avg"].mean for row in table.rows if "Avg" in row.cells}
    reps = {label: table.replicates[label]["Avg"] for label in scores if "Avg" in table.replicates.get(label, {})}
    return _Ranking(scores, reps)


def _by_shared_columns(table: Table, matched: Mapping[str, str]) -> _Ranking:
    """Method → mean of the measured columns a published set shares, for methods with one full row."""
    columns = list(matched.values())
    rows = [row for row in table.rows if all(c in row.cells for c in columns)]
    single = [row for row in rows if sum(r.method == row.method for r in rows) == 1]
    scores = {row.method: float(np.mean([row.cells[c].mean for c in columns])) for row in single}
    reps = {}
    for row in single:
        own = table.replicates.get(row.label, {})
        if all(c in own for c in columns):
            reps[row.method] = np.mean([own[c] for c in columns], axis=0)
    return _Ranking(scores, reps)


def _published(published: Published, matched: Mapping[str, str]) -> _Ranking:
    return _Ranking({row.method: float(np.mean([row.cells[c] for c in matched])) for row in published.rows
                     if all(c in row.cells for c in matched)}, {})


def _interval(a: _Ranking, b: _Ranking, common: list[str]) -> tuple[float, float] | None:
    """Percentile interval of τ over replicates; a side without replicates (published) stays fixed."""
    if not (a.replicates or b.replicates):
        return None
    if any(side.replicates and not all(k in side.replicates for k in common) for side in (a, b)):
        return None
    n = min(len(next(iter(side.replicates.values()))) for side in (a, b) if side.replicates)
    a_reps, b_reps = (_replicate_matrix(side, common, n) for side in (a, b))
    taus = np.array([scipy_stats.kendalltau(a_reps[:, r], b_reps[:, r]).statistic for r in range(n)], float)
    taus = taus[~np.isnan(taus)]
    if not len(taus):
        return None
    return float(np.quantile(taus, 0.025)), float(np.quantile(taus, 0.975))


def _replicate_matrix(side: _Ranking, common: list[str], n: int) -> np.ndarray:
    """(keys, n) replicates; a fixed side repeats its scores."""
    if not side.replicates:
        return np.repeat(np.array([side.scores[k] for k in common], float)[:, None], n, axis=1)
    return np.stack([np.asarray(side.replicates[k], float)[:n] for k in common])
