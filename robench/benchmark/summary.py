"""Quick per-test-set summary of one run's records (the leaderboard does the full statistics)."""

from __future__ import annotations

import pandas as pd


def case_scores(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (test set, mode, case): mean over classes, NaN classes (both empty) skipped."""
    keys = ["test_set", "kind", "mode", "case_id"]
    return records.groupby(keys, sort=False).agg(
        dice=("dice", "mean"), sensitivity=("sensitivity", "mean"), precision=("precision", "mean"), hd95=("hd95", "mean"),
    ).reset_index()


def summarise_test_sets(records: pd.DataFrame) -> pd.DataFrame:
    """Per (test set, kind, mode): cases, mean Dice / sensitivity / precision / HD95 over cases, and
    a Dice column per class, named by the suite's labels (see `class_names`)."""
    keys = ["test_set", "kind", "mode"]
    cases = case_scores(records)
    out = cases.groupby(keys, sort=False).agg(
        cases=("case_id", "nunique"), dice=("dice", "mean"), sensitivity=("sensitivity", "mean"),
        precision=("precision", "mean"), hd95=("hd95", "mean"),
    )
    per_class = records.pivot_table(index=keys, columns="class", values="dice", aggfunc="mean", sort=False)
    per_class.columns = [f"dice:{c}" for c in per_class.columns]
    return out.join(per_class).reset_index()


def class_names(records: pd.DataFrame) -> list[str]:
    """The classes of the records, in the order they first appear (the suite's label order)."""
    return list(dict.fromkeys(records["class"].astype(str)))


def by_site(records: pd.DataFrame) -> pd.DataFrame:
    """Records whose test set spans several sites, relabelled `<test set> · <site>` (a per-institution summary)."""
    sites = records.groupby("test_set")["site"].transform("nunique")
    several = records[sites > 1].copy()
    several["test_set"] = several["test_set"].astype(str) + " · " + several["site"].astype(str)
    return several
