"""Graded corruptions in the leaderboard: mean corruption Dice and mCE (ImageNet-C convention).

Graded records (artefact sets with a severity 1..5) would add 45 columns to the main
table, so the main table shows two summaries and a second table breaks them down by
corruption type:

- Corruption: mean Dice over every graded set (type × severity) of the run, mean ± std over runs.
- mCE: with E_{c,s} = 1 − Dice of corruption c at severity s (a set's Dice is the mean over
  its units), CE_c = Σ_s E_{c,s} / Σ_s E^{ref}_{c,s} and mCE = mean over c of CE_c (Hendrycks
  & Dietterich, ICLR 2019). Lower is better; 1.0 = as robust as the reference. E^{ref} are the
  reference method's numbers shipped in `reference_errors/<suite>-<budget>.json` (written by
  `robench leaderboard --save-mce-reference` from real runs, with their run ids), so the
  score of a method does not move when other methods are added; when no shipped file
  covers a table, the reference method's runs in the table are used and the table says so.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from robench.errors import DataError

REFERENCE_DIR = "reference_errors"
REFERENCE_FORMAT = 1


def is_graded(frame: pd.DataFrame) -> pd.Series:
    if "severity" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return (frame["kind"] == "artefact") & (pd.to_numeric(frame["severity"], errors="coerce").fillna(0) > 0)


def graded_view(graded: pd.DataFrame) -> pd.DataFrame:
    """Graded records as one test set per corruption type; the five severities of a case are its cases.

    The unit stays the source volume, so one volume's five severities are one observation.
    """
    severity = pd.to_numeric(graded["severity"]).astype(int).astype(str)
    return graded.assign(test_set=graded["corruption"].astype(str), case_id=graded["case_id"] + "@s" + severity)


def set_errors(case_scores: pd.DataFrame, graded: pd.DataFrame) -> pd.DataFrame:
    """Per (row, run_id): 1 − Dice of every graded set, columns (corruption, severity)."""
    keys = graded.drop_duplicates("test_set").set_index("test_set")[["corruption", "severity"]]
    level = case_scores.groupby(["row", "run_id", "test_set"])["score"].mean().unstack("test_set")
    level.columns = pd.MultiIndex.from_tuples(
        [(str(keys.at[t, "corruption"]), int(keys.at[t, "severity"])) for t in level.columns], names=["corruption", "severity"]
    )
    return 1.0 - level.sort_index(axis=1)


def mce(errors: pd.DataFrame, reference: dict[str, dict[int, float]]) -> pd.Series:
    """mCE per (row, run_id) from its set errors and the reference errors; NaN when a type is incomplete."""
    ratios = []
    for corruption in sorted(reference):
        ref = reference[corruption]
        severities = sorted(ref)
        columns = [(corruption, s) for s in severities]
        if not all(c in errors.columns for c in columns):
            return pd.Series(math.nan, index=errors.index)
        denominator = sum(ref[s] for s in severities)
        if denominator <= 0:
            raise DataError(f"reference errors of {corruption!r} sum to {denominator}; mCE is undefined")
        ratios.append(errors[columns].sum(axis=1, skipna=False) / denominator)
    return pd.concat(ratios, axis=1).mean(axis=1, skipna=False)


def reference_from_errors(errors: pd.DataFrame) -> dict[str, dict[int, float]]:
    """Mean over runs of a method's set errors → {corruption: {severity: error}}."""
    means = errors.mean(axis=0)
    out: dict[str, dict[int, float]] = {}
    for (corruption, severity), value in means.items():
        if not math.isnan(value):
            out.setdefault(str(corruption), {})[int(severity)] = float(value)
    return out


def shipped_reference(suite: str, budget: str, directory: Path | None = None) -> dict | None:
    """The reference file shipped for (suite, budget), or None."""
    path = (directory or reference_directory()) / f"{suite}-{budget}.json"
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
        errors = {c: {int(s): float(v) for s, v in per.items()} for c, per in document["errors"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a robench mCE reference file ({exc}); restore it from git or regenerate it") from exc
    return {**document, "errors": errors, "path": str(path)}


def reference_document(suite: str, budget: str, method: str, run_ids: list[str], errors: dict, code_version: str) -> dict:
    return {
        "format": REFERENCE_FORMAT,
        "suite": suite,
        "budget": budget,
        "method": method,
        "run_ids": sorted(run_ids),
        "code_version": code_version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "definition": "error = 1 - Dice (mean over units of the mean over classes), primary prediction mode",
        "errors": {c: {str(s): round(v, 6) for s, v in sorted(per.items())} for c, per in sorted(errors.items())},
    }


def reference_directory() -> Path:
    """Where shipped references live: inside the package, so they install with it."""
    return Path(str(resources.files("robench.leaderboards"))) / REFERENCE_DIR


def per_run_mean(errors: pd.DataFrame) -> pd.Series:
    """Mean corruption Dice per (row, run_id)."""
    return 1.0 - errors.mean(axis=1, skipna=False)


def row_cells(values: pd.Series) -> dict[str, tuple[float, float, int]]:
    """(mean, std over runs, runs) per row of a per-(row, run_id) series."""
    grouped = values.groupby(level="row")
    means, stds, counts = grouped.mean(), grouped.std(), grouped.count()
    return {
        row: (float(means[row]), float(stds[row]), int(counts[row]))
        for row in means.index
        if counts[row] and not np.isnan(means[row])
    }
