"""Published numbers as reference rows: shipped as data, shown beside measured rows, never ranked or tested.

A published set (`published/<name>.json`) is a paper's table: its suite and budget, its columns,
which measured test sets stand for each column (the paper-exact one first: RandBias-ES before
RandBias), and its rows keyed by robench method. `reference_tables` puts it beside the measured
Dice tables of the same suite as two extra tables — published and measured rows on the
published columns, and measured − published — so the leaderboard's own ranks, intervals and
tests never see a published number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from robench.errors import ConfigError, DataError
from robench.leaderboards.table import ES_VIEW, Cell, Column, Leaderboard, Row, Table

PUBLISHED_DIR = Path(__file__).parent / "published"
AVERAGE_TOLERANCE = 1e-4 + 1e-9  # rounding: ≤ 5e-5 from the mean of 4-decimal columns, ≤ 5e-5 from the printed Avg
MODE_AVERAGES = {"Avg (FTN+STN)": "Avg (ftn+stn)"}  # published column → the measured mode-average column


@dataclass(frozen=True)
class PublishedRow:
    method: str  # the robench method the paper's row is
    label: str  # the paper's name for it
    cells: Mapping[str, float]


@dataclass(frozen=True)
class Published:
    name: str
    title: str
    source: str
    suite: str
    budget: str
    protocol: str
    columns: Mapping[str, tuple[str, ...]]  # published test-set column → measured test sets, preferred first
    averages: Mapping[str, tuple[str, ...]]  # published average column → the published columns it averages
    rows: tuple[PublishedRow, ...]
    printed_as_is: tuple[tuple[str, str], ...] = ()  # (row label, column) whose printed average is off; kept as printed

    def ranking(self, column: str | None = None) -> dict[str, float]:
        """Method → the published value ranked on (default: the first average column)."""
        column = column or next(iter(self.averages))
        return {row.method: row.cells[column] for row in self.rows if column in row.cells}


def published_names() -> tuple[str, ...]:
    return tuple(sorted(path.stem for path in PUBLISHED_DIR.glob("*.json")))


def load_published(name: str) -> Published:
    path = PUBLISHED_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"no published reference {name!r}; shipped: {', '.join(published_names()) or 'none'}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    published = Published(
        name=raw["name"], title=raw["title"], source=raw["source"], suite=raw["suite"], budget=raw["budget"],
        protocol=raw["protocol"], columns={k: tuple(v) for k, v in raw["columns"].items()},
        averages={k: tuple(v) for k, v in raw["averages"].items()},
        rows=tuple(PublishedRow(r["method"], r["label"], dict(r["cells"])) for r in raw["rows"]),
        printed_as_is=tuple((d["label"], d["column"]) for d in raw.get("printed_as_is", ())),
    )
    _check(published, path)
    return published


def _check(published: Published, path: Path) -> None:
    """A transcription error shows up as an average that is not the mean of its columns (beyond rounding),
    except where the source itself is off and the file says so (`printed_as_is`)."""
    for row in published.rows:
        for name, members in published.averages.items():
            if (row.label, name) in published.printed_as_is:
                continue
            if name in row.cells and all(m in row.cells for m in members):
                mean = sum(row.cells[m] for m in members) / len(members)
                if abs(mean - row.cells[name]) > AVERAGE_TOLERANCE:
                    raise DataError(f"{path}: {row.label}'s {name} {row.cells[name]} is not the mean {mean:.4f} of {members}")


def comparable_tables(board: Leaderboard, suite: str) -> list[Table]:
    """Per budget, the Dice table of `suite` closest to a paper's: the ES-only view where the runs have it;
    runs on the whole training pool only, as the papers trained."""
    chosen: dict[str, Table] = {}
    for table in board.tables:
        if (table.kind != "leaderboard" or table.metric != "dice" or table.suite != suite
                or table.view not in ("", ES_VIEW) or table.condition):
            continue
        if table.budget not in chosen or table.view == ES_VIEW:
            chosen[table.budget] = table
    return list(chosen.values())


def reference_tables(board: Leaderboard, published: Published) -> tuple[Table, ...]:
    """For each comparable table: published and measured rows side by side, and measured − published."""
    out: list[Table] = []
    for table in comparable_tables(board, published.suite):
        matched = matched_columns(table, published)
        if not matched:
            continue
        averages = _comparable_averages(table, published, matched)
        notes = _notes(table, published, matched, averages)
        for kind, view, columns, rows in (_beside(table, published, matched, averages),
                                          _differences(table, published, matched, averages)):
            out.append(Table(suite=table.suite, budget=table.budget, metric=table.metric, higher_is_better=True,
                             columns=tuple(columns), rows=tuple(rows), view=f"{view} `{published.name}`", kind=kind,
                             notes=notes))
    return tuple(out)


def matched_columns(table: Table, published: Published) -> dict[str, str]:
    present = {c.name for c in table.columns if c.role == "test_set"}
    matched = {}
    for column, candidates in published.columns.items():
        found = next((c for c in candidates if c in present), None)
        if found is not None:
            matched[column] = found
    return matched


def _comparable_averages(table: Table, published: Published, matched: Mapping[str, str]) -> dict[str, str]:
    """Published average column → measured column, only where both average the same test sets."""
    measured_sets = {c.name for c in table.columns if c.role == "test_set"}
    out = {}
    for name, members in published.averages.items():
        if all(m in matched for m in members) and {matched[m] for m in members} == measured_sets:
            out[name] = "Avg"
            for published_mode, measured_mode in MODE_AVERAGES.items():
                if any(c.name == measured_mode for c in table.columns):
                    out[published_mode] = measured_mode
    return out


def _matching_label(matched: Mapping[str, str]) -> str:
    return f"Avg ({len(matched)} matching)"


def _with_matching(cells: dict[str, Cell], matched: Mapping[str, str], n_runs: int = 0) -> dict[str, Cell]:
    """`cells` plus the mean over the matched columns, where the row has all of them."""
    if all(c in cells for c in matched):
        cells[_matching_label(matched)] = Cell(sum(cells[c].mean for c in matched) / len(matched), n_runs=n_runs)
    return cells


def _beside(table: Table, published: Published, matched: Mapping[str, str], averages: Mapping[str, str]):
    columns = [Column(c, "test_set", "") for c in published.columns]
    columns += [Column(name, "average") for name in (*published.averages, *MODE_AVERAGES)]
    columns.append(Column(_matching_label(matched), "average"))
    rows = [Row(label=f"{p.label} [published]", method=p.method, hparams="published", runs=0,
                cells=_with_matching({name: Cell(float(v)) for name, v in p.cells.items()}, matched))
            for p in published.rows]
    for r in table.rows:
        pairs = (*matched.items(), *averages.items())
        # measured cells without their test marks: beside published rows nothing was tested
        cells = {column: replace(r.cells[name], mark="", p_value=None, p_holm=None) for column, name in pairs if name in r.cells}
        rows.append(Row(label=f"{r.label} [measured]", method=r.method, hparams=r.hparams, runs=r.runs,
                        cells=_with_matching(cells, matched, r.runs), run_ids=r.run_ids))
    return "beside", "measured beside published", columns, rows


def _differences(table: Table, published: Published, matched: Mapping[str, str], averages: Mapping[str, str]):
    by_method = {p.method: p for p in published.rows}
    columns = [Column(c, "test_set", "") for c in matched] + [Column(n, "average") for n in averages]
    columns.append(Column(_matching_label(matched), "average"))
    rows = []
    for r in table.rows:
        p = by_method.get(r.method)
        if p is None:
            continue
        cells = {c: Cell(r.cells[m].mean - p.cells[c], n_runs=r.runs)
                 for c, m in (*matched.items(), *averages.items()) if m in r.cells and c in p.cells}
        rows.append(Row(label=f"{r.label} − {p.label}", method=r.method, hparams=r.hparams, runs=r.runs,
                        cells=_with_matching(cells, matched, r.runs), run_ids=r.run_ids))
    return "difference", "measured − published", columns, rows


def _notes(table: Table, published: Published, matched: Mapping[str, str], averages: Mapping[str, str]) -> tuple[str, ...]:
    notes = [f"published: {published.title}, budget `{published.budget}` ({published.protocol}); source {published.source}",
             f"measured: the runs of the `{table.budget}` table" + (f" ({table.view})" if table.view else "")]
    stand_ins = [f"{c} ← {m}" for c, m in matched.items() if c != m]
    if stand_ins:
        notes.append("measured test sets standing for the published columns: " + ", ".join(stand_ins))
    both_frames = [c for c, m in matched.items() if published.columns[c][0] != m]
    if both_frames:
        notes.append(f"{', '.join(both_frames)} are measured on other cases than published (e.g. both frames where the paper "
                     f"has frame ES only: run with --corruptions acdc-c,acdc-c-es)")
    missing = [c for c in published.columns if c not in matched]
    if missing:
        notes.append(f"not measured here: {', '.join(missing)}")
    unpublished = [c.name for c in table.columns if c.role == "test_set" and c.name not in matched.values()]
    if unpublished:
        notes.append(f"measured, not published: {', '.join(unpublished)}")
    if not averages:
        notes.append(f"the published averages cover {', '.join(next(iter(published.averages.values())))}, the measured Avg "
                     f"other sets, so only the {_matching_label(matched)} column compares averages")
    notes.append(f"{_matching_label(matched)}: mean of the {len(matched)} columns both sides have")
    return tuple(notes)
