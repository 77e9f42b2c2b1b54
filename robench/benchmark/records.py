"""The per-case record schema: one row per (run, test set, case, prediction mode, class).

Records are the source of truth; leaderboards, statistics and plots are pure functions of
them. Every column is listed here so writers and readers agree.
"""

from __future__ import annotations

RUN_COLUMNS = ("run_id", "method", "suite", "budget", "seed", "cval", "hparams", "numeric_precision")
CASE_COLUMNS = (
    "test_set",  # name of the test set, e.g. "ACDC", "SiteB", "RandBias"
    "kind",  # "intra" | "cross-site" | "artefact"
    "site",  # acquisition site / centre, or "" when unknown
    "vendor",  # scanner vendor code, or ""
    "corruption",  # corruption type for artefact sets, "" otherwise
    "severity",  # 1..5 for graded corruptions, 0 otherwise
    "case_id",  # unique within the test set, e.g. "patient007_ED"
    "unit",  # statistical unit the case belongs to: itself for a volume; the patient+phase of a
    #          Sunnybrook slice; the source volume of an artefact copy (copies are not independent)
    "subject",
    "frame",  # "ED" | "ES" | "" (Sunnybrook slices carry the phase here too)
)
PREDICTION_COLUMNS = (
    "mode",  # prediction mode of the method, e.g. "ftn" or "ftn+stn"
    "primary",  # True for the method's default prediction mode (the leaderboard's main numbers)
    "class",  # structure name: "LV", "MYO", "RV"
)
METRIC_COLUMNS = ("dice", "hd95", "assd", "sensitivity", "precision")
FLAG_COLUMNS = ("missed", "false_positive", "both_empty")
PROVENANCE_COLUMNS = ("hd95_variant", "metric_version", "spacing_source")

RECORD_COLUMNS = RUN_COLUMNS + CASE_COLUMNS + PREDICTION_COLUMNS + METRIC_COLUMNS + FLAG_COLUMNS + PROVENANCE_COLUMNS
