"""Records -> leaderboard tables, by the paper's convention (protocol §5-§6).

The rules, and why:

- One table per (suite, budget, training fraction): numbers from other data, another training
  length or another share of the training pool are not comparable, so they never share a table
  (and never a rank or a paired test).
- A row is a method; when one table holds several hparams settings of a method, each
  setting is its own row (labelled by the keys that differ), never averaged together.
- Only `primary` records give the main numbers. Case score = mean over the case's classes,
  both-empty classes (NaN) skipped; a run's test-set score = mean over the set's cases;
  cell = mean ± std (ddof=1) over runs, with a 95 % two-level bootstrap interval
  (cases within the test set, and runs; see `stats.two_level_bootstrap`).
- Columns: test sets (intra, cross-site, artefact, then by name); the Intra / Cross-site /
  Artefact means of that kind's columns; Avg = mean of all test-set columns (the paper's
  Avg, hence undefined for a row that lacks a test set); per-class Avg (LV, MYO, RV) over
  the test sets where the class occurs; "Avg (mode)" per non-primary prediction mode;
  cost columns when runs report them.
- Paired comparison with the reference method per test set: two-sided Wilcoxon
  signed-rank on case scores (cases matched by id; averaged over the runs whose seed/cval
  both methods have, else over all runs), Holm-corrected over the row's test sets;
  skipped when the reference is absent or fewer than 6 cases pair up.
- Ranks: rows sorted by Avg; a rank interval is the 2.5-97.5 % range of a row's rank over
  bootstrap replicates (the same case draws for all rows). A row whose interval overlaps
  the interval of the row above shares its rank, otherwise it takes its position
  ("1, 1, 3"); the rule chains. Rows without an Avg are listed last, unranked.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from robench.benchmark.config import budget_order
from robench.benchmark.metrics import EMPTY_MASK_POLICY
from robench.benchmark.records import METRIC_COLUMNS
from robench.corruptions.acdc_c import ACDC_C_ES_SETS
from robench.errors import ConfigError, DataError
from robench.leaderboards import corruption, stats
from robench.leaderboards.collect import canonical_hparams, condition_title, precision_of, setting_labels, training_fraction

REQUIRED_COLUMNS = ("run_id", "method", "suite", "budget", "seed", "cval", "test_set", "kind", "case_id", "mode", "primary", "class")
KIND_TITLES = {"intra": "Intra", "cross-site": "Cross-site", "artefact": "Artefact"}
CLASS_ORDER = ("LV", "MYO", "RV")
LOWER_IS_BETTER = frozenset({"hd95", "assd"})
GRADED_VIEW = "graded corruptions (cell: mean over severities 1–5)"
ES_VIEW = "ACDC-C of frame ES only (acdc-c-es: the public script's 60 volumes per set)"
VENDOR_VIEW = "per vendor (test sets that span several vendors)"
COSTS = {  # done.json key -> (column, factor to the column's unit)
    "train_seconds": ("Train h", 1 / 3600),
    "peak_memory_mb": ("Peak MB", 1.0),
    "infer_seconds_per_volume": ("Infer s/vol", 1.0),
}


@dataclass(frozen=True)
class Cell:
    """One number of a table with its spread; `mark` is "better"/"worse" when the paired test vs the reference is significant."""

    mean: float
    std: float = math.nan
    n_runs: int = 0
    n_cases: int | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    p_holm: float | None = None
    mark: str = ""


@dataclass(frozen=True)
class Column:
    """`role`: test_set | kind_average | average | corruption | class_average | mode_average | cost."""

    name: str
    role: str
    test_set_kind: str = ""


@dataclass(frozen=True)
class Row:
    label: str
    method: str
    hparams: str
    runs: int
    cells: Mapping[str, Cell]
    rank: int | None = None
    rank_interval: tuple[int, int] | None = None
    devices: tuple[str, ...] = ()
    run_ids: tuple[str, ...] = ()  # the runs behind the row: its provenance


@dataclass(frozen=True)
class Table:
    suite: str
    budget: str
    metric: str
    higher_is_better: bool
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    reference: str | None = None  # label of the reference row the paired tests used
    n_boot: int = 0
    seed: int = 0
    alpha: float = 0.05
    hd95_variants: tuple[str, ...] = ()
    metric_versions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    view: str = ""  # "" for the main table; what a secondary view of the same runs shows
    condition: str = ""  # the data condition its runs share ("training fraction 0.25"); "" for the whole pool
    kind: str = "leaderboard"  # leaderboard | beside (measured rows beside published ones) | difference | agreement
    # bootstrap replicates (row label → column → array over resamples) of the test-set and Avg cells, for rank
    # agreement between tables; not rendered
    replicates: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Leaderboard:
    tables: tuple[Table, ...]
    n_runs: int
    n_unfinished: int = 0
    unfinished: tuple[str, ...] = field(default=())


def leaderboard(
    records: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    *,
    reference_method: str = "standard",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Leaderboard:
    """Dice leaderboard: one table per (suite, budget, training fraction) with CIs, paired tests and ranks.

    `runs` (from `collect_records`) adds cost columns, hparams and the unfinished count.
    `n_boot=0` skips the bootstrap (no intervals; ranks are plain positions).
    """
    if n_boot < 0 or seed < 0:
        raise ConfigError(f"n_boot and seed must be >= 0, got n_boot={n_boot}, seed={seed}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
    frame = _prepare(records, runs, "dice")
    tables: list[Table] = []
    for part in _split(frame):
        clean, graded = _split_graded(part)
        clean, es_only = _split_es(clean)
        extra, notes = _corruption_summaries(graded, reference_method) if len(graded) else ([], [])
        options = dict(reference_method=reference_method, n_boot=n_boot, seed=seed, alpha=alpha, main=True)
        if len(clean):
            tables.append(_build_table(clean, runs, "dice", **options, extra=extra, extra_notes=notes))
        if len(es_only):
            tables.append(_build_table(es_only, runs, "dice", **options, view=ES_VIEW))
        if len(graded):
            mce_only = [(c, cells) for c, cells in extra if c.name == "mCE"]
            tables.append(_build_table(corruption.graded_view(graded), runs, "dice", **options, extra=mce_only,
                                       extra_notes=notes, view=GRADED_VIEW))
        vendors = _vendor_view(clean)
        if len(vendors):
            tables.append(_build_table(vendors, runs, "dice", **options, view=VENDOR_VIEW))
    return _board(tuple(tables), frame, runs)


METRIC_ALIASES = {"sens": "sensitivity", "prc": "precision", "dsc": "dice"}


def metric_name(text: str) -> str:
    """`--metric` value → record column (dice, sens/sensitivity, prc/precision, hd95, assd)."""
    name = METRIC_ALIASES.get(text.lower(), text.lower())
    if name not in METRIC_COLUMNS:
        raise ConfigError(f"unknown metric {text!r}; choose dice, sens, prc, hd95 or assd")
    return name


def metric_table(records: pd.DataFrame, runs: pd.DataFrame | None = None, *, metric: str = "hd95") -> Leaderboard:
    """Secondary table of any record metric (HD95, ASSD, ...): same layout, mean ± std over runs only.

    No intervals, tests, ranks or costs: those belong to the main (Dice) leaderboard.
    Rows are sorted best first (ascending for distances).
    """
    if metric not in METRIC_COLUMNS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRIC_COLUMNS)}")
    frame = _prepare(records, runs, metric)
    tables: list[Table] = []
    for part in _split(frame):
        clean, graded = _split_graded(part)
        clean, es_only = _split_es(clean)
        options = dict(reference_method=None, n_boot=0, seed=0, alpha=0.05, main=False)
        if len(clean):
            tables.append(_build_table(clean, runs, metric, **options))
        if len(es_only):
            tables.append(_build_table(es_only, runs, metric, **options, view=ES_VIEW))
        if len(graded):
            tables.append(_build_table(corruption.graded_view(graded), runs, metric, **options, view=GRADED_VIEW))
    return _board(tuple(tables), frame, runs)


def _board(tables: tuple[Table, ...], frame: pd.DataFrame, runs: pd.DataFrame | None) -> Leaderboard:
    attrs = runs.attrs if runs is not None else {}
    return Leaderboard(
        tables=tables,
        n_runs=int(frame["run_id"].nunique()),
        n_unfinished=int(attrs.get("n_unfinished", 0)),
        unfinished=tuple(attrs.get("unfinished", ())),
    )


# --------------------------------------------------------------------------- preparation


def _prepare(records: pd.DataFrame, runs: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """Validate, keep the needed columns, and key every record by its row (method, hparams)."""
    missing = [c for c in (*REQUIRED_COLUMNS, metric) if c not in records.columns]
    if missing:
        raise DataError(f"records lack the columns {missing}; they must follow robench.benchmark.records.RECORD_COLUMNS")
    if records.empty:
        raise DataError("records are empty: no finished run evaluated any test set")
    optional = [c for c in ("hparams", "hd95_variant", "metric_version", "unit", "corruption", "severity", "vendor")
                if c in records.columns]
    frame = records[[*REQUIRED_COLUMNS, metric, *optional]].copy()
    for column in ("run_id", "method", "suite", "budget", "test_set", "kind", "case_id", "mode", "class"):
        frame[column] = frame[column].astype(str)
    if "unit" in frame.columns:
        frame["unit"] = frame["unit"].where(frame["unit"].notna() & frame["unit"].astype(str).ne(""), frame["case_id"]).astype(str)
    frame["primary"] = frame["primary"].eq(True)
    frame["value"] = pd.to_numeric(frame[metric], errors="coerce").astype(float)

    hparams_of_run: dict[str, str] = {}
    if "hparams" in frame.columns:
        firsts = frame.drop_duplicates("run_id")
        hparams_of_run = {r: canonical_hparams(h) for r, h in zip(firsts["run_id"], firsts["hparams"])}
    if runs is not None and "hparams" in runs.columns:
        hparams_of_run.update({str(r): canonical_hparams(h) for r, h in zip(runs["run_id"], runs["hparams"])})
    hparams = frame["run_id"].map(hparams_of_run).fillna("{}")
    frame["row"] = [json.dumps([m, h]) for m, h in zip(frame["method"], hparams)]
    frame["fraction"] = hparams.map({h: training_fraction(h) for h in hparams.unique()})  # parsed once per setting

    several = frame[frame["primary"]].groupby("run_id")["mode"].nunique()
    if (several > 1).any():
        raise DataError(f"runs {sorted(several[several > 1].index)} mark several modes as primary; exactly one mode per run is primary")
    return frame


def _split(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """One table per suite, budget and training fraction: a fraction is a data condition, like a budget,
    so methods are ranked and tested against the reference within it, never across fractions."""
    def order(key: tuple[str, str, float]) -> tuple:
        suite, budget, fraction = key
        return (suite, budget_order(budget), fraction)

    groups = dict(list(frame.groupby(["suite", "budget", "fraction"], sort=False)))
    return [groups[key] for key in sorted(groups, key=order)]


def _vendor_view(part: pd.DataFrame) -> pd.DataFrame:
    """Records of the test sets that span several vendors (M&Ms), one test set `<set> <vendor>` per vendor."""
    if "vendor" not in part.columns:
        return part.iloc[:0]
    vendor = part["vendor"].fillna("").astype(str)
    spans = part.assign(vendor=vendor)[vendor.ne("")].groupby("test_set")["vendor"].nunique()
    several = spans[spans > 1].index
    chosen = part[part["test_set"].isin(several) & vendor.ne("")]
    return chosen.assign(test_set=chosen["test_set"] + " " + chosen["vendor"].astype(str))


def _split_graded(part: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    graded = corruption.is_graded(part)
    return part[~graded], part[graded]


def _split_es(clean: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records without the ES-only ACDC-C sets, the paper-exact view: clean and cross-site sets with the ES sets).

    The ES sets repeat half of the both-frames copies, so the main table leaves them out (its Avg
    stays the both-frames one) and the view replaces the both-frames sets by them (its Avg is formed
    as the paper's)."""
    es = (clean["kind"] == "artefact") & clean["test_set"].isin(ACDC_C_ES_SETS)
    if not es.any():
        return clean, clean.iloc[:0]
    return clean[~es], clean[es | (clean["kind"] != "artefact")]


def _corruption_summaries(graded: pd.DataFrame, reference_method: str | None) -> tuple[list, list[str]]:
    """The main table's Corruption (mean Dice over graded sets) and mCE columns, with a note on the mCE reference."""
    primary = graded[graded["primary"]]
    suite, budget = str(graded["suite"].iloc[0]), str(graded["budget"].iloc[0])
    errors = corruption.set_errors(_case_scores(primary), primary)
    columns = [(Column("Corruption", "corruption"), _cells(corruption.row_cells(corruption.per_run_mean(errors))))]
    shipped = corruption.shipped_reference(suite, budget)
    reference_rows = [r for r in errors.index.get_level_values("row").unique() if json.loads(r)[0] == reference_method]
    if shipped is not None:
        reference = shipped["errors"]
        note = (f"the mCE reference is the `{shipped['method']}` errors shipped with robench "
                f"({len(shipped['run_ids'])} runs, code {shipped['code_version']})"
                + ("; they trained on the whole training pool" if float(graded["fraction"].iloc[0]) != 1.0 else ""))
    elif len(reference_rows) == 1:
        reference = corruption.reference_from_errors(errors.loc[reference_rows[0]])
        note = f"the mCE reference is the `{reference_method}` runs of this table (no reference errors shipped for {suite}/{budget})"
    else:
        return columns, [f"there is no mCE: no shipped reference errors for {suite}/{budget} and no single `{reference_method}` row"]
    columns.append((Column("mCE", "corruption"), _cells(corruption.row_cells(corruption.mce(errors, reference)))))
    return columns, [note]


def _cells(values: dict[str, tuple[float, float, int]]) -> dict[str, Cell]:
    return {row: Cell(mean, std, n) for row, (mean, std, n) in values.items()}


def _ordered_test_sets(part: pd.DataFrame) -> list[tuple[str, str]]:
    kinds = part.groupby("test_set")["kind"].unique()
    mixed = {name: sorted(k) for name, k in kinds.items() if len(k) > 1}
    if mixed:
        raise DataError(f"test sets with several kinds in the records: {mixed}; a test set has one kind")
    kind_order = list(KIND_TITLES)

    def order(item: tuple[str, str]) -> tuple:
        name, kind = item
        return (kind_order.index(kind) if kind in kind_order else len(kind_order), kind, name)

    return sorted(((name, k[0]) for name, k in kinds.items()), key=order)


# --------------------------------------------------------------------------- aggregation


def _case_scores(records: pd.DataFrame) -> pd.DataFrame:
    """One score per (row, run, test set, unit): mean over classes (NaN skipped), then over the unit's cases.

    The unit is the case itself for volumes; slices of one patient and phase (Sunnybrook) and
    the copies of one corrupted volume form one unit, so they are weighted and resampled as
    the one observation they are. The unit is returned in the `case_id` column.
    """
    unit = records["unit"] if "unit" in records.columns else records["case_id"]
    per_case = records.assign(unit=unit).groupby(["row", "run_id", "test_set", "unit", "case_id"], sort=True)["value"].mean()
    per_unit = per_case.groupby(level=["row", "run_id", "test_set", "unit"]).mean()
    return per_unit.rename("score").reset_index().rename(columns={"unit": "case_id"})


def _run_level(case: pd.DataFrame, test_sets: list[str]) -> pd.DataFrame:
    """Run-level test-set scores: index (row, run_id), one column per test set."""
    level = case.groupby(["row", "run_id", "test_set"])["score"].mean().unstack("test_set")
    return level.reindex(columns=test_sets)


def _test_set_cells(run_level: pd.DataFrame, case: pd.DataFrame) -> dict[str, dict[str, Cell]]:
    grouped = run_level.groupby(level="row")
    means, stds, counts = grouped.mean(), grouped.std(), grouped.count()
    n_cases = case.dropna(subset=["score"]).groupby(["row", "test_set"])["case_id"].nunique()
    cells: dict[str, dict[str, Cell]] = defaultdict(dict)
    for row in means.index:
        for name in run_level.columns:
            if counts.at[row, name]:
                cells[row][name] = Cell(
                    float(means.at[row, name]), float(stds.at[row, name]), int(counts.at[row, name]), int(n_cases.get((row, name), 0))
                )
    return cells


def _average_cells(run_level: pd.DataFrame, names: list[str]) -> dict[str, Cell]:
    """Mean of the row's cell means over `names` (NaN if the row lacks one); std over runs of the run-level mean."""
    if not names:
        return {}
    block = run_level[names]
    point = block.groupby(level="row").mean().mean(axis=1, skipna=False)
    per_run = block.mean(axis=1, skipna=False).groupby(level="row")
    stds, counts = per_run.std(), per_run.count()
    return {row: Cell(float(point[row]), float(stds[row]), int(counts[row])) for row in point.index if not math.isnan(point[row])}


def _class_cells(primary: pd.DataFrame, test_sets: list[str]) -> dict[str, dict[str, Cell]]:
    per_class = primary.groupby(["row", "run_id", "class", "test_set"])["value"].mean()
    present = set(per_class.index.get_level_values("class"))
    classes = [c for c in CLASS_ORDER if c in present] + sorted(present - set(CLASS_ORDER))
    cells = {}
    for name in classes:
        level = per_class.xs(name, level="class").unstack("test_set").reindex(columns=test_sets)
        occurring = [t for t in test_sets if level[t].notna().any()]
        cells[name] = _average_cells(level, occurring)
    return cells


def _mode_cells(part: pd.DataFrame, test_sets: list[str]) -> dict[str, dict[str, Cell]]:
    secondary = part[~part["primary"]]
    return {
        f"Avg ({mode})": _average_cells(_run_level(_case_scores(records), test_sets), test_sets)
        for mode, records in sorted(secondary.groupby("mode"), key=lambda item: item[0])
    }


def _cost_cells(run_ids: dict[str, list[str]], runs: pd.DataFrame | None) -> dict[str, dict[str, Cell]]:
    if runs is None:
        return {}
    by_id = runs.assign(run_id=runs["run_id"].astype(str)).set_index("run_id")
    cells: dict[str, dict[str, Cell]] = {}
    for key, (name, factor) in COSTS.items():
        if key not in by_id.columns:
            continue
        column = {}
        for row, ids in run_ids.items():
            values = pd.to_numeric(by_id[key].reindex(ids), errors="coerce").dropna() * factor
            if len(values):
                column[row] = Cell(float(values.mean()), float(values.std()), int(len(values)))
        if column:
            cells[name] = column
    return cells


# --------------------------------------------------------------------------- statistics


def _bootstrap(case: pd.DataFrame, rows: list[str], test_sets: list[str], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, test sets, n_boot) replicates; runs in the same order for every test set of a row."""
    wide = case.set_index(["row", "run_id", "test_set", "case_id"])["score"].unstack(["test_set", "case_id"])
    scores = []
    for row in rows:
        block = wide.loc[row]
        row_scores = []
        for name in test_sets:
            case_ids = sorted(case.loc[case["test_set"] == name, "case_id"].unique())
            if name in block.columns.get_level_values("test_set"):
                row_scores.append(block[name].reindex(columns=case_ids).to_numpy(float))
            else:
                row_scores.append(np.full((len(block), len(case_ids)), np.nan))
        scores.append(row_scores)
    return stats.two_level_bootstrap(scores, n_boot, rng)


def _paired_tests(
    part: pd.DataFrame, case: pd.DataFrame, rows: list[str], reference: str, test_sets: list[str], higher_is_better: bool, alpha: float
) -> dict[str, dict[str, tuple[float | None, float | None, str]]]:
    """Per row and test set: (p, Holm-adjusted p, mark) of the paired Wilcoxon test vs `reference`."""
    keys = part.drop_duplicates("run_id").set_index("run_id")[["seed", "cval"]]
    run_key = {r: (_plain(s), _plain(c)) for r, s, c in zip(keys.index, keys["seed"], keys["cval"])}
    case = case.assign(run_key=case["run_id"].map(run_key))
    by_row = dict(list(case.groupby("row")))
    ref = by_row[reference]
    results: dict[str, dict[str, tuple[float | None, float | None, str]]] = {}
    for row in rows:
        if row == reference:
            continue
        own = by_row[row]
        shared = set(own["run_key"]) & set(ref["run_key"])
        a_all, b_all = (own, ref) if not shared else (own[own["run_key"].isin(shared)], ref[ref["run_key"].isin(shared)])
        tests = []
        for name in test_sets:
            a = a_all[a_all["test_set"] == name].groupby("case_id")["score"].mean()
            b = b_all[b_all["test_set"] == name].groupby("case_id")["score"].mean()
            paired = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
            tests.append(stats.paired_wilcoxon(paired["a"].to_numpy(), paired["b"].to_numpy()))
        p_values = np.array([t.p_value if t else np.nan for t in tests])
        adjusted = stats.holm(p_values)
        results[row] = {}
        for name, test, p_adj in zip(test_sets, tests, adjusted):
            if test is None:
                continue
            mark = ""
            if p_adj < alpha and test.direction:
                mark = "better" if (test.direction > 0) == higher_is_better else "worse"
            results[row][name] = (test.p_value, float(p_adj), mark)
    return results


def _plain(value: object) -> str:
    return "" if pd.isna(value) else str(value)


# --------------------------------------------------------------------------- assembly


def _build_table(
    part: pd.DataFrame,
    runs: pd.DataFrame | None,
    metric: str,
    *,
    reference_method: str | None,
    n_boot: int,
    seed: int,
    alpha: float,
    main: bool,
    extra: list | tuple = (),
    extra_notes: list[str] | tuple[str, ...] = (),
    view: str = "",
) -> Table:
    """`main`: the Dice leaderboard (ranks, costs); otherwise a secondary metric table."""
    suite, budget = str(part["suite"].iloc[0]), str(part["budget"].iloc[0])
    higher_is_better = metric not in LOWER_IS_BETTER
    primary = part[part["primary"]]
    if primary.empty:
        raise DataError(f"suite {suite!r}, budget {budget!r}: no record is marked primary; each run marks its default mode primary")
    ordered = _ordered_test_sets(primary)
    test_sets = [name for name, _ in ordered]
    kinds = defaultdict(list)
    for name, kind in ordered:
        kinds[kind].append(name)

    case = _case_scores(primary)
    run_level = _run_level(case, test_sets)
    rows = sorted(run_level.index.get_level_values("row").unique())
    run_ids = {row: list(run_level.loc[row].index) for row in rows}

    cells = _test_set_cells(run_level, case)
    columns = [Column(name, "test_set", kind) for name, kind in ordered]
    summaries: list[tuple[Column, dict[str, Cell]]] = [
        (Column(KIND_TITLES.get(kind, kind), "kind_average"), _average_cells(run_level, kinds[kind])) for kind in kinds
    ]
    summaries.append((Column("Avg", "average"), _average_cells(run_level, test_sets)))
    summaries += [(c, {row: cell for row, cell in cs.items() if row in rows}) for c, cs in extra]
    summaries += [(Column(name, "class_average"), c) for name, c in _class_cells(primary, test_sets).items()]
    summaries += [(Column(name, "mode_average"), c) for name, c in _mode_cells(part, test_sets).items()]
    if main:
        summaries += [(Column(name, "cost"), c) for name, c in _cost_cells(run_ids, runs).items()]
    for column, column_cells in summaries:
        if column.name in test_sets:
            raise DataError(f"test set name {column.name!r} collides with a summary column of the leaderboard; rename the test set")
        columns.append(column)
        for row, cell in column_cells.items():
            cells[row][column.name] = cell

    notes: list[str] = [*extra_notes, EMPTY_MASK_POLICY[metric]]
    rank_intervals: dict[str, tuple[int, int]] = {}
    replicates: dict[str, dict[str, np.ndarray]] = {}
    if n_boot:
        # seeded by the suite, not the budget: tables of one suite whose test sets hold the same cases draw the
        # same cases in every replicate, so comparisons between them (rank agreement) are paired
        rng = np.random.default_rng([seed, zlib.crc32(suite.encode())])
        rank_intervals, replicates = _add_intervals(cells, case, rows, test_sets, kinds, n_boot, rng, higher_is_better)
    reference_label = None
    if reference_method is not None:
        reference_label, note = _add_tests(cells, part, case, rows, reference_method, test_sets, higher_is_better, alpha)
        notes += [note] if note else []

    labels = _labels(rows)
    notes += _mixed_numerics_note(rows, labels)
    sign = -1 if higher_is_better else 1

    def order(row: str) -> tuple:
        avg = cells[row].get("Avg")
        return (avg is None, sign * avg.mean if avg else 0.0, labels[row])

    sorted_rows = sorted(rows, key=order)
    ranked = [row for row in sorted_rows if "Avg" in cells[row]]
    if len(ranked) < len(rows):
        notes.append("rows without a score on every test set have no Avg" + (" and no rank" if main else ""))
    ranks: dict[str, int] = {}
    if main:
        intervals = [rank_intervals.get(row, (p + 1, p + 1)) for p, row in enumerate(ranked)]
        ranks = dict(zip(ranked, stats.shared_ranks(intervals)))

    devices = _devices(run_ids, runs) if main else {}
    table_rows = tuple(
        Row(
            label=labels[row],
            method=json.loads(row)[0],
            hparams=json.loads(row)[1],
            runs=len(run_ids[row]),
            cells=dict(cells[row]),
            rank=ranks.get(row),
            rank_interval=rank_intervals.get(row),
            devices=devices.get(row, ()),
            run_ids=tuple(sorted(run_ids[row])),
        )
        for row in sorted_rows
    )
    hd95_variants = _distinct(part, "hd95_variant")
    if len(hd95_variants) > 1 and metric == "hd95":
        notes.append(f"records mix HD95 variants {list(hd95_variants)}: their numbers are not comparable")
    return Table(
        suite=suite,
        budget=budget,
        metric=metric,
        higher_is_better=higher_is_better,
        columns=tuple(columns),
        rows=table_rows,
        reference=labels[reference_label] if reference_label else None,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        hd95_variants=hd95_variants,
        metric_versions=_distinct(part, "metric_version"),
        notes=tuple(notes),
        view=view,
        condition=condition_title(float(part["fraction"].iloc[0])) if "fraction" in part.columns else "",
        replicates={labels[row]: samples for row, samples in replicates.items()},
    )


def _add_intervals(
    cells: dict[str, dict[str, Cell]],
    case: pd.DataFrame,
    rows: list[str],
    test_sets: list[str],
    kinds: dict[str, list[str]],
    n_boot: int,
    rng: np.random.Generator,
    higher_is_better: bool,
) -> tuple[dict[str, tuple[int, int]], dict[str, dict[str, np.ndarray]]]:
    """Put bootstrap intervals on test-set, kind and Avg cells; return each rankable row's rank interval
    and every row's replicates of its test-set and Avg cells."""
    boot = _bootstrap(case, rows, test_sets, n_boot, rng)
    blocks = {name: boot[:, i, :] for i, name in enumerate(test_sets)}
    blocks |= {KIND_TITLES.get(k, k): boot[:, [test_sets.index(t) for t in names], :].mean(axis=1) for k, names in kinds.items()}
    blocks["Avg"] = boot.mean(axis=1)
    for name, samples in blocks.items():
        low, high = stats.percentile_interval(samples)
        for i, row in enumerate(rows):
            if name in cells[row] and not math.isnan(low[i]):
                cells[row][name] = _with(cells[row][name], ci=(float(low[i]), float(high[i])))
    replicates = {row: {name: blocks[name][i] for name in (*test_sets, "Avg") if name in cells[row]}
                  for i, row in enumerate(rows)}
    rankable = [i for i, row in enumerate(rows) if "Avg" in cells[row]]
    if not rankable:
        return {}, replicates
    ranks = stats.bootstrap_ranks(blocks["Avg"][rankable], higher_is_better)
    low = np.quantile(ranks, 0.025, axis=1, method="lower")
    high = np.quantile(ranks, 0.975, axis=1, method="higher")
    return {rows[i]: (int(lo), int(hi)) for i, lo, hi in zip(rankable, low, high)}, replicates


def _add_tests(
    cells: dict[str, dict[str, Cell]],
    part: pd.DataFrame,
    case: pd.DataFrame,
    rows: list[str],
    reference_method: str,
    test_sets: list[str],
    higher_is_better: bool,
    alpha: float,
) -> tuple[str | None, str]:
    """Put p-values and marks on test-set cells; return (reference row, note when tests were skipped)."""
    candidates = [row for row in rows if json.loads(row)[0] == reference_method]
    if not candidates:
        return None, f"no paired tests: the reference `{reference_method}` is not in this table"
    if len(candidates) > 1:
        return None, f"no paired tests: the reference `{reference_method}` has several hparams settings in this table"
    tests = _paired_tests(part, case, rows, candidates[0], test_sets, higher_is_better, alpha)
    for row, per_set in tests.items():
        for name, (p, p_adj, mark) in per_set.items():
            cells[row][name] = _with(cells[row][name], p_value=p, p_holm=p_adj, mark=mark)
    return candidates[0], ""


def _mixed_numerics_note(rows: list[str], labels: dict[str, str]) -> list[str]:
    """Rows trained in other numerics (bf16 and fp32) are comparable only within a seed's spread: say which is which."""
    by_precision: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_precision[precision_of(json.loads(row)[1])].append(labels[row])
    if len(by_precision) < 2:
        return []
    return ["rows differ in numerics — " + "; ".join(f"{p}: {', '.join(sorted(names))}" for p, names in sorted(by_precision.items()))]


def _with(cell: Cell, **changes: object) -> Cell:
    return Cell(**{**cell.__dict__, **changes})


def _labels(rows: list[str]) -> dict[str, str]:
    """Method name, plus the differing hparams when a method has several settings in the table."""
    by_method: dict[str, list[tuple[str, str]]] = defaultdict(list)  # method -> (row, hparams setting)
    for row in rows:
        method, setting = json.loads(row)[:2]
        by_method[method].append((row, setting))
    labels = {}
    for method, pairs in by_method.items():
        names = setting_labels(method, [setting for _, setting in pairs])
        labels.update({row: names[setting] for row, setting in pairs})
    return labels


def _devices(run_ids: dict[str, list[str]], runs: pd.DataFrame | None) -> dict[str, tuple[str, ...]]:
    if runs is None or "device" not in runs.columns:
        return {}
    device = dict(zip(runs["run_id"].astype(str), runs["device"]))
    return {row: tuple(sorted({str(device[r]) for r in ids if r in device and not pd.isna(device[r])})) for row, ids in run_ids.items()}


def _distinct(part: pd.DataFrame, column: str) -> tuple[str, ...]:
    if column not in part.columns:
        return ()
    return tuple(sorted({str(v) for v in part[column].dropna().unique() if str(v)}))


def save_mce_references(
    records: pd.DataFrame, runs: pd.DataFrame | None, method: str = "standard", directory: Path | None = None
) -> list[Path]:
    """Write `method`'s graded-corruption errors of every (suite, budget) as the shipped mCE reference.

    Only runs on the whole training pool count: that reference normalises every fraction's table.
    A maintainer's step: run it on finished runs of the reference method, review and commit the
    files. One hparams setting of the method per table, or the reference is ambiguous.
    """
    from robench.benchmark.store import code_version, write_json

    frame = _prepare(records, runs, "dice")
    written = []
    for part in _split(frame):
        if float(part["fraction"].iloc[0]) != 1.0:
            continue  # the reference is the method trained on the whole pool; fraction tables are normalised by it too
        _, graded = _split_graded(part)
        graded = graded[graded["primary"] & (graded["method"] == method)]
        if graded.empty:
            continue
        suite, budget = str(graded["suite"].iloc[0]), str(graded["budget"].iloc[0])
        errors = corruption.set_errors(_case_scores(graded), graded)
        rows = errors.index.get_level_values("row").unique()
        if len(rows) != 1:
            raise DataError(f"{suite}/{budget}: `{method}` has {len(rows)} hparams settings; keep one to write its reference")
        document = corruption.reference_document(
            suite, budget, method, list(errors.loc[rows[0]].index), corruption.reference_from_errors(errors.loc[rows[0]]),
            code_version(),
        )
        path = (directory or corruption.reference_directory()) / f"{suite}-{budget}.json"
        write_json(path, document)
        written.append(path)
    if not written:
        raise DataError(f"no graded-corruption records of `{method}`: run it with --corruptions graded first")
    return written
