"""Find finished run folders under a results root and load their records.

A run folder counts only once it holds `done.json` (DomainBed's `done` marker): before that
its records may be partial, so unfinished folders (a `config.json` without `done.json`) are
skipped and counted, never read. The count and paths travel in `runs.attrs` so the tables
can say how many runs were left out.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from robench.benchmark.records import RECORD_COLUMNS
from robench.errors import ConfigError, DataError

DONE_FILE = "done.json"
CONFIG_FILE = "config.json"
RECORDS_FILE = "records.parquet"
EVALUATIONS_DIR = "evaluations"  # later evaluations of a finished run (new test sets, other folders)
CONFIG_KEYS = ("method", "suite", "budget", "seed", "cval", "hparams")
COST_KEYS = ("train_seconds", "peak_memory_mb", "infer_seconds_per_volume")
RUN_TABLE_COLUMNS = ("run_id", "path", "method", "suite", "budget", "seed", "cval", "hparams", *COST_KEYS, "device", "iterations")


def collect_records(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (records of every finished run, one row per finished run).

    The run table holds the config keys, `hparams` as canonical JSON, the cost numbers of
    `done.json` (NaN / None when absent) and `path` relative to `root`.
    `runs.attrs["n_unfinished"]` and `runs.attrs["unfinished"]` report the skipped folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"results root {root} does not exist or is not a folder; pass the folder your runs wrote to")
    markers = _run_markers(root)
    finished = sorted(folder for folder, present in markers.items() if DONE_FILE in present)
    if not finished:
        raise DataError(f"no finished run under {root}: a finished run folder holds {DONE_FILE}; wait for runs to finish or check the path")
    unfinished = sorted(
        folder
        for folder, present in markers.items()
        if present == {CONFIG_FILE} and not any(folder.is_relative_to(f) for f in finished)
    )

    record_parts: list[pd.DataFrame] = []
    run_rows: list[dict] = []
    seen: dict[str, Path] = {}
    for folder in finished:
        records, run = _read_run(folder, root)
        if run["run_id"] in seen:
            raise DataError(f"run id {run['run_id']} appears in both {seen[run['run_id']]} and {folder}; remove the copy")
        seen[run["run_id"]] = folder
        run_rows.append(run)
        if len(records):
            record_parts.append(records)

    records = pd.concat(record_parts, ignore_index=True) if record_parts else pd.DataFrame(columns=list(RECORD_COLUMNS))
    runs = pd.DataFrame(run_rows, columns=list(RUN_TABLE_COLUMNS))
    runs.attrs["n_unfinished"] = len(unfinished)
    runs.attrs["unfinished"] = [str(folder.relative_to(root)) for folder in unfinished]
    return records, runs


def _run_markers(root: Path) -> dict[Path, set[str]]:
    """Every folder under `root` holding a config or done marker, with the markers it holds,
    following symbolic links.

    Users gather runs from several places by symlinking them into one root, so links are
    followed (`Path.rglob` does not); each real folder is visited once, which stops link
    cycles and keeps a run reached by two paths from being counted twice.
    """
    visited: set[str] = set()
    markers: dict[Path, set[str]] = {}
    for current, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in visited:
            subdirs[:] = []
            continue
        visited.add(real)
        present = {DONE_FILE, CONFIG_FILE}.intersection(files)
        if present:
            markers[Path(current)] = present
    return markers


def canonical_hparams(value: object) -> str:
    """Hyperparameters as sorted JSON, so equal settings compare equal whatever their source.

    Keys whose value is None are dropped: Parquet stores dicts as structs and fills keys
    that only other runs have with None.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = {}
    if isinstance(value, Mapping):
        value = {str(k): v for k, v in value.items() if v is not None}
        return json.dumps(value, sort_keys=True, default=str)
    return json.dumps(value, default=str)


def setting_labels(method: str, settings: list[str]) -> dict[str, str]:
    """Label per hparams setting (canonical JSON) of one method, as tables and figures name rows: the
    method's name, plus the keys whose values differ when it has several settings, the hparams that
    differ from the method's registered defaults (a control such as `asym-margin` at margin 0 is named)
    and the run settings of ALWAYS_NAMED."""
    unique = sorted(set(settings))
    parsed = {s: _as_dict(s) for s in unique}
    keys = sorted({k for p in parsed.values() for k in p})
    differing = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in parsed.values()}) > 1]
    defaults = _registered_defaults(method)
    off_default = [k for k in keys if k not in differing and (
        (k in defaults and any(k in p and not _same_value(p[k], defaults[k]) for p in parsed.values()))
        or k in ALWAYS_NAMED)]  # a run-setting key is stored only off its default
    named = sorted({*differing, *off_default})
    if not named:
        return {s: method for s in unique}
    # a run-setting key a run lacks is at its default (fp32, the whole training pool, the suite's share)
    return {s: f"{method} ({', '.join(f'{k}={p.get(k, RUN_SETTING_DEFAULTS.get(k))}' for k in named)})"
            for s, p in parsed.items()}


def _registered_defaults(method: str) -> Mapping:
    """The method's default hparams; none for a method this installation does not register."""
    from robench.methods import METHODS

    cls = METHODS.get(method)
    return getattr(cls, "hparams", {}) if cls is not None else {}


def _same_value(a: object, b: object) -> bool:
    try:
        return float(a) == float(b)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def training_fraction(hparams: str) -> float:
    """The share of the training pool a run trained on (1.0 where its setting does not name one)."""
    return float(_as_dict(hparams).get("train_fraction", RUN_SETTING_DEFAULTS["train_fraction"]))


def precision_of(hparams: str) -> str:
    """The numerics a run trained in (fp32 where its setting does not name them)."""
    return str(_as_dict(hparams).get("precision", RUN_SETTING_DEFAULTS["precision"]))


def condition_title(fraction: float) -> str:
    """How a table names its data condition: nothing for the whole training pool."""
    return "" if fraction == 1.0 else f"training fraction {fraction!r}"  # repr: two fractions never share a title


def _as_dict(hparams: str) -> dict:
    try:
        value = json.loads(hparams)
    except json.JSONDecodeError:
        return {"hparams": hparams}
    return value if isinstance(value, dict) else {"hparams": value}


def _read_run(folder: Path, root: Path) -> tuple[pd.DataFrame, dict]:
    config_path = folder / CONFIG_FILE
    config = _read_json(config_path, required=True)
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise DataError(f"{config_path} lacks the keys {missing}; the run folder was not written by robench")
    done = _read_json(folder / DONE_FILE, required=False)
    parts = [_read_records(folder / RECORDS_FILE)]
    parts += [_read_records(path) for path in sorted((folder / EVALUATIONS_DIR).glob("*.parquet"))]
    _check_no_duplicate_test_sets(parts, folder)
    records = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    run_ids = records["run_id"].dropna().astype(str).unique()
    if len(run_ids) > 1:
        raise DataError(f"{folder / RECORDS_FILE} holds several run ids {sorted(run_ids)}; one run folder holds one run")
    run_id = run_ids[0] if len(run_ids) else str(config.get("run_id", folder.relative_to(root)))
    for key in ("method", "suite", "budget"):
        found = {str(v) for v in records[key].dropna().unique()}
        if found and found != {str(config[key])}:
            raise DataError(
                f"{folder / RECORDS_FILE} has {key} {sorted(found)} but {config_path} says {config[key]!r}; the folder mixes runs"
            )

    run = {
        "run_id": run_id,
        "path": str(folder.relative_to(root)),
        **{key: config[key] for key in ("method", "suite", "budget", "seed", "cval")},
        # a bf16 run, or one on a fraction of the training data, is another setting of its method:
        # those fields join the hparams key, so tables name them only where they differ
        "hparams": canonical_hparams({**config["hparams"], **_run_setting(config)}),
    }
    for key in COST_KEYS:
        run[key] = _number(done.get(key), folder / DONE_FILE, key)
    run["device"] = None if done.get("device") is None else str(done["device"])
    run["iterations"] = _number(done.get("iterations"), folder / DONE_FILE, "iterations")  # updates trained
    # the records carry the same key, so figures drawn from them keep the settings (fractions) apart as tables do
    return records.assign(hparams=run["hparams"]), run


# run settings a label names even when every row shares them: they change what the numbers measure
# (precision has the table's numerics note instead, the training fraction the table's title)
ALWAYS_NAMED = ("test_norm", "oversample_foreground")
RUN_SETTING_DEFAULTS = {"precision": "fp32", "train_fraction": 1.0, "oversample_foreground": "suite's", "test_norm": "per-slice"}


def _run_setting(config: Mapping) -> dict[str, object]:
    """Run-config fields besides the hparams that make another setting of a method, where not at their default."""
    setting: dict[str, object] = {}
    if str(config.get("precision", "fp32")) != "fp32":
        setting["precision"] = str(config["precision"])
    if float(config.get("train_fraction", 1.0)) != 1.0:
        setting["train_fraction"] = float(config["train_fraction"])
    if config.get("oversample_foreground") is not None:
        setting["oversample_foreground"] = float(config["oversample_foreground"])
    test_norm = (config.get("budget_details") or {}).get("test_norm", "per-slice")
    if test_norm != "per-slice":
        setting["test_norm"] = str(test_norm)
    return setting


def _check_no_duplicate_test_sets(parts: list[pd.DataFrame], folder: Path) -> None:
    """A test set evaluated twice for one run would be counted twice in every mean."""
    seen: set[str] = set()
    for part in parts:
        names = set(part["test_set"].astype(str).unique())
        twice = seen & names
        if twice:
            raise DataError(
                f"{folder}: test sets {sorted(twice)} appear in records.parquet and in {EVALUATIONS_DIR}/ more than once; "
                "delete the duplicate evaluation file"
            )
        seen |= names


def _read_json(path: Path, *, required: bool) -> dict:
    if not path.exists():
        if required:
            raise DataError(f"{path} is missing; the run folder is incomplete, re-run it or delete it")
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        if required:
            raise DataError(f"{path} is empty; re-run this run or delete its folder")
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); re-run this run or delete its folder") from exc
    if not isinstance(value, dict):
        raise DataError(f"{path} must hold a JSON object, found {type(value).__name__}")
    return value


def _read_records(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path} is missing although the run is marked done; re-run this run or delete its folder")
    try:
        records = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path} cannot be read as Parquet ({exc}); re-run this run or delete its folder") from exc
    if "unit" not in records.columns and "case_id" in records.columns:
        records = records.assign(unit=records["case_id"])  # records written before the unit column: each case its own unit
    if "numeric_precision" not in records.columns:
        records = records.assign(numeric_precision="fp32")  # records written before the precision choice computed in fp32
    missing = [column for column in RECORD_COLUMNS if column not in records.columns]
    if missing:
        raise DataError(
            f"{path} lacks the record columns {missing}; records must follow robench.benchmark.records.RECORD_COLUMNS"
        )
    return records


def _number(value: object, path: Path, key: str) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: {key} must be a number, found {value!r}") from exc
