"""Quick per-test-set summary of one run's records (the leaderboard does the full statistics)."""

from __future__ import annotations

import pandas as pd


def case_scores(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (test set, mode, case): mean over classes, NaN classes (both empty) skipped."""
    keys = ["test_set", "kind", "mode", "case_id"]
    return records.groupby(keys, sort=False).agg(dice=("dice", "mean"), hd95=("hd95", "mean")).reset_index()


def summarise_test_sets(records: pd.DataFrame) -> pd.DataFrame:
    keys = ["test_set", "kind", "mode"]
    cases = case_scores(records)
    out = cases.groupby(keys, sort=False).agg(cases=("case_id", "nunique"), dice=("dice", "mean"), hd95=("hd95", "mean"))
    per_class = records.pivot_table(index=keys, columns="class", values="dice", aggfunc="mean", sort=False)
    return out.join(per_class).reset_index()
