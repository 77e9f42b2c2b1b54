"""The statistics behind leaderboard cells: two-level bootstrap, paired Wilcoxon, Holm, ranks.

Pure array functions, free of pandas, so each procedure can be checked on inputs whose
answer is known. Three seeds say little about a method; resampling cases as well as runs
(and the same cases for every method) gives intervals that reflect both sources of noise
and keeps methods paired when they are ranked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

MIN_PAIRED_CASES = 6


def two_level_bootstrap(scores: list[list[np.ndarray]], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of every (row, test set) score, shape (rows, test sets, n_boot).

    `scores[i][t]` is an array (runs of row i, cases of test set t) of case scores, NaN
    where a run has no score for a case. One replicate draws the cases of each test set with
    replacement (the same draw for every row, so rows stay paired) and the runs of each row
    with replacement (the same draw for every test set, since a run is one model); the
    replicate score is the mean over drawn runs of the mean over drawn cases, as the point
    estimate is formed. Draw counts (multinomial) replace index gathers: a replicate is then
    a weighted mean, one matrix product per (row, test set).
    """
    n_rows = len(scores)
    n_sets = len(scores[0]) if n_rows else 0
    out = np.full((n_rows, n_sets, n_boot), np.nan)
    case_counts = []
    for t in range(n_sets):
        n_cases = scores[0][t].shape[1]
        case_counts.append(rng.multinomial(n_cases, np.full(n_cases, 1 / n_cases), size=n_boot) if n_cases else None)
    for i, row in enumerate(scores):
        n_runs = row[0].shape[0] if n_sets else 0
        if n_runs == 0:
            continue
        run_counts = rng.multinomial(n_runs, np.full(n_runs, 1 / n_runs), size=n_boot).T  # (runs, n_boot)
        for t, matrix in enumerate(row):
            if case_counts[t] is None:
                continue
            valid = ~np.isnan(matrix)
            with np.errstate(invalid="ignore", divide="ignore"):
                run_scores = (np.where(valid, matrix, 0.0) @ case_counts[t].T) / (valid @ case_counts[t].T)
                weights = run_counts * ~np.isnan(run_scores)
                out[i, t] = (weights * np.nan_to_num(run_scores)).sum(axis=0) / weights.sum(axis=0)
    return out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along the last axis, ignoring NaN replicates."""
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as wanted
        low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=-1)
    return low, high


@dataclass(frozen=True)
class PairedTest:
    """Two-sided Wilcoxon signed-rank result; `direction` +1 when the method's scores are higher."""

    p_value: float
    direction: int
    n_pairs: int


def paired_wilcoxon(method: np.ndarray, reference: np.ndarray, min_pairs: int = MIN_PAIRED_CASES) -> PairedTest | None:
    """Wilcoxon signed-rank test on paired case scores, or None with fewer than `min_pairs` pairs.

    Zero differences are dropped (Wilcoxon's original rule); all-zero differences give p = 1.
    The direction is the sign of W+ - W-, the quantity the test is about, not of the mean.
    """
    diff = np.asarray(method, float) - np.asarray(reference, float)
    diff = diff[np.isfinite(diff)]
    if diff.size < min_pairs:
        return None
    nonzero = diff[diff != 0]
    if nonzero.size == 0:
        return PairedTest(1.0, 0, int(diff.size))
    p_value = float(sps.wilcoxon(nonzero).pvalue)
    ranks = sps.rankdata(np.abs(nonzero))
    balance = ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()
    return PairedTest(p_value, int(np.sign(balance)), int(diff.size))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are not part of the family and stay NaN."""
    p_values = np.asarray(p_values, float)
    adjusted = np.full_like(p_values, np.nan)
    tested = np.flatnonzero(~np.isnan(p_values))
    order = tested[np.argsort(p_values[tested], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * p_values[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def bootstrap_ranks(samples: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Rank (1 = best) of every row in every replicate; `samples` is (rows, n_boot).

    A row's rank is 1 + the number of rows strictly better in that replicate, so ties share
    the better rank; a NaN replicate ranks last.
    """
    worst = -np.inf if higher_is_better else np.inf
    values = np.where(np.isnan(samples), worst, samples)
    if not higher_is_better:
        values = -values
    return 1 + (values[None, :, :] > values[:, None, :]).sum(axis=1)


def shared_ranks(intervals: list[tuple[int, int]]) -> list[int]:
    """Ranks for rows already sorted best first, given their bootstrap rank intervals.

    A row whose interval overlaps the interval of the row directly above it shares that
    row's rank; otherwise its rank is its position (1-based), as in competition ranking
    ("1, 1, 3"). The rule chains: a row tied with a row that is tied with the top row also
    ranks first.
    """
    ranks: list[int] = []
    for position, (low, _) in enumerate(intervals):
        if position and low <= intervals[position - 1][1]:
            ranks.append(ranks[-1])
        else:
            ranks.append(position + 1)
    return ranks
