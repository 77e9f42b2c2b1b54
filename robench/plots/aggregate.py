"""Records -> the numbers a figure draws, as tidy tables that tests can check by hand.

The rules are the leaderboard's (protocol §5-§6), so a point in a figure equals the cell of
a table: only `primary` records; case score = mean over the case's classes (both-empty
classes, NaN, skipped); a run's score = mean over statistical units (a volume; the copies
of one corrupted volume count as one unit) of the mean over the unit's cases; the point =
mean over the runs (seeds, cvals) of one method setting; its interval = 95 % two-level
bootstrap over units and runs. Numbers of different suites or budgets are never drawn
together.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from robench.errors import DataError
from robench.leaderboards.collect import canonical_hparams, setting_labels
from robench.leaderboards.stats import percentile_interval, two_level_bootstrap

ALL_CORRUPTIONS = "All corruptions"
CLASS_MEAN = "mean"
SITE_KINDS = ("intra", "cross-site")
REQUIRED_COLUMNS = (
    "run_id", "method", "suite", "budget", "hparams", "test_set", "kind", "site", "vendor", "corruption",
    "severity", "case_id", "primary", "class", "dice",
)
SUMMARY_COLUMNS = ("label", "method", "dice", "ci_low", "ci_high", "n_runs", "n_units")
GRADED_HINT = (
    "graded corruption records (kind 'artefact', severity 1-5) come from `robench run ... --corruptions graded` "
    "(or `all`); rerunning the command of a finished run evaluates it on the new sets without retraining"
)


def primary_records(records: pd.DataFrame, *, suite: str | None = None, budget: str | None = None) -> pd.DataFrame:
    """The primary-mode records of one (suite, budget), with a `label` column naming the line of each run.

    A label is the method name, plus the differing hparams when the records hold several
    settings of that method (as the leaderboard's rows).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in records.columns]
    if missing:
        raise DataError(f"records lack the columns {missing}; records must follow robench.benchmark.records.RECORD_COLUMNS")
    frame = records
    if suite is not None:
        frame = frame[frame["suite"] == suite]
    if budget is not None:
        frame = frame[frame["budget"] == budget]
    if frame.empty:
        raise DataError(f"no records for suite {suite or 'any'} and budget {budget or 'any'}; check --suite / --budget")
    combos = sorted({(str(s), str(b)) for s, b in zip(frame["suite"], frame["budget"])})
    if len(combos) > 1:
        listed = ", ".join(f"{s}/{b}" for s, b in combos)
        raise DataError(f"records mix suites/budgets ({listed}), whose numbers are not comparable; choose one with --suite and --budget")
    frame = frame[frame["primary"].eq(True)].copy()
    if frame.empty:
        raise DataError("records hold no primary-mode rows; they were not written by robench's evaluation")
    frame["severity"] = pd.to_numeric(frame["severity"], errors="coerce").fillna(0).astype(int)
    unit = frame["unit"].astype(str) if "unit" in frame.columns else frame["case_id"].astype(str)
    frame["unit"] = unit.where(unit.ne("") & unit.ne("None") & unit.ne("nan"), frame["case_id"].astype(str))
    frame["label"] = _labels(frame)
    return frame


def severity_curves(records: pd.DataFrame, *, suite: str | None = None, budget: str | None = None,
                    n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Dice per (corruption, severity, method setting); severity 0 is the clean intra test set of the same runs.

    Columns: corruption, severity, label, method, dice, ci_low, ci_high, n_runs, n_units. The
    `ALL_CORRUPTIONS` panel pools every corruption's cases at a severity into their source
    volumes (units), i.e. the mean over corruptions when each has as many copies per volume.
    """
    frame = primary_records(records, suite=suite, budget=budget)
    graded = frame[(frame["kind"] == "artefact") & (frame["severity"] > 0)]
    if graded.empty:
        raise DataError(f"the records hold no graded corruption rows; {GRADED_HINT}")
    clean = frame[(frame["kind"] == "intra") & frame["run_id"].isin(set(graded["run_id"]))]
    rng = np.random.default_rng(seed)
    graded_cases = case_scores(graded, ["corruption", "severity"])
    per_corruption = summarise(graded_cases, ["corruption", "severity"], n_boot, rng)
    pooled = summarise(graded_cases, ["severity"], n_boot, rng)
    pooled.insert(0, "corruption", ALL_CORRUPTIONS)
    parts = [pooled, per_corruption]
    if not clean.empty:
        clean_summary = summarise(case_scores(clean, []), [], n_boot, rng)
        corruptions = [ALL_CORRUPTIONS, *sorted(graded["corruption"].astype(str).unique())]
        parts.append(pd.concat([clean_summary.assign(corruption=c, severity=0) for c in corruptions]))
    curves = pd.concat(parts, ignore_index=True)[["corruption", "severity", *SUMMARY_COLUMNS]]
    order = {c: i for i, c in enumerate([ALL_CORRUPTIONS, *sorted(graded["corruption"].astype(str).unique())])}
    curves = curves.sort_values(["corruption", "label", "severity"], key=lambda s: s.map(order) if s.name == "corruption" else s)
    return curves.reset_index(drop=True)


def site_scores(records: pd.DataFrame, *, suite: str | None = None, budget: str | None = None,
                per_class: bool = True, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Dice per (intra or cross-site test set, method setting), overall and, with `per_class`, per class.

    Columns: test_set, kind, caption (name plus the set's site / vendor), class (`CLASS_MEAN`
    for the mean over classes), label, method, dice, ci_low, ci_high, n_runs, n_units.
    Rows come intra first, then cross-site, each by name.
    """
    frame = primary_records(records, suite=suite, budget=budget)
    sets = frame[frame["kind"].isin(SITE_KINDS)]
    if sets.empty:
        raise DataError("the records hold no intra or cross-site test sets; evaluate runs with `robench run` first")
    rng = np.random.default_rng(seed)
    parts = [summarise(case_scores(sets, ["test_set", "kind"]), ["test_set", "kind"], n_boot, rng).assign(**{"class": CLASS_MEAN})]
    if per_class:
        by_class = sets.rename(columns={"class": "structure"})
        parts.append(
            summarise(case_scores(by_class, ["test_set", "kind", "structure"]), ["test_set", "kind", "structure"], n_boot, rng)
            .rename(columns={"structure": "class"})
        )
    scores = pd.concat(parts, ignore_index=True)
    captions = {name: _caption(name, part) for name, part in sets.groupby("test_set")}
    scores.insert(2, "caption", scores["test_set"].map(captions))
    kind_rank = {k: i for i, k in enumerate(SITE_KINDS)}
    scores["_order"] = [(kind_rank[k], t) for k, t in zip(scores["kind"], scores["test_set"])]
    scores = scores.sort_values("_order", kind="stable").drop(columns="_order")
    return scores[["test_set", "kind", "caption", "class", *SUMMARY_COLUMNS]].reset_index(drop=True)


def case_scores(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per (label, run, keys, test set, unit, case): mean Dice over the case's classes."""
    group = ["label", "method", "run_id", *dict.fromkeys([*keys, "test_set"]), "unit", "case_id"]
    return frame.groupby(group, sort=True, dropna=False)["dice"].mean().reset_index()


def summarise(cases: pd.DataFrame, keys: list[str], n_boot: int, rng: np.random.Generator) -> pd.DataFrame:
    """Mean over runs of the mean over units per (label, keys), with its two-level bootstrap interval.

    A unit's score is the mean over its cases within the group, so units pool across test
    sets when `keys` do not separate them (the pooled corruption panel).
    """
    rows = []
    for group, part in cases.groupby(["label", "method", *keys], sort=True):
        matrix = part.pivot_table(index="run_id", columns="unit", values="dice", aggfunc="mean").to_numpy(float)
        with np.errstate(invalid="ignore"):
            run_means = np.nanmean(matrix, axis=1)
        low, high = percentile_interval(two_level_bootstrap([[matrix]], n_boot, rng)[0, 0])
        rows.append((*group, float(np.nanmean(run_means)), float(low), float(high), matrix.shape[0], matrix.shape[1]))
    columns = ["label", "method", *keys, "dice", "ci_low", "ci_high", "n_runs", "n_units"]
    return pd.DataFrame(rows, columns=columns)


def _labels(frame: pd.DataFrame) -> pd.Series:
    settings = {run: canonical_hparams(h) for run, h in frame.groupby("run_id", sort=False)["hparams"].first().items()}
    methods = dict(frame.groupby("run_id", sort=False)["method"].first())
    by_method: dict[str, set[str]] = defaultdict(set)
    for run, method in methods.items():
        by_method[method].add(settings[run])
    labels = {method: setting_labels(method, sorted(variants)) for method, variants in by_method.items()}
    names = {run: labels[method][settings[run]] for run, method in methods.items()}
    return frame["run_id"].map(names)


def _caption(name: str, part: pd.DataFrame) -> str:
    """The test set's name, and on a second line its site and vendor when they are single and add information."""
    extra = []
    for column in ("site", "vendor"):
        values = {str(v) for v in part[column].dropna() if str(v)}
        if len(values) == 1 and (value := values.pop()) not in name:
            extra.append(f"{column} {value}")
    return "\n".join([name, ", ".join(extra)]) if extra else name
