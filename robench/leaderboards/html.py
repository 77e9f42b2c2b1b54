"""A static, self-contained HTML report of one leaderboard: sortable tables, embedded figures, provenance.

One file with no external resource (styles, script and figures inline), so it can be attached,
archived or served from any static host and still show the same thing in ten years. Sorting is
a dozen lines of plain JavaScript over `data-value` attributes: no framework to keep alive.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Sequence

from robench.leaderboards.render import (
    _rank_text, cell_text, decimals_of, legend, row_header, shown_columns, table_title,
)
from robench.leaderboards.table import Leaderboard, Table

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:78rem;padding:0 1rem;color:#1b1f24}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-variant-numeric:tabular-nums}
th,td{padding:.3rem .6rem;border-bottom:1px solid #d0d7de;text-align:right;white-space:nowrap}
th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}
th{cursor:pointer;background:#f6f8fa;user-select:none}th[aria-sort=ascending]::after{content:" ▲"}
th[aria-sort=descending]::after{content:" ▼"}
.legend{color:#57606a;font-size:.85rem;max-width:70rem}.better{color:#1a7f37}.worse{color:#cf222e}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}figure img{max-width:36rem;border:1px solid #d0d7de}
figcaption{font-size:.85rem;color:#57606a}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;font-size:.9rem}
dt{font-weight:600}dd{margin:0}code{font-size:.85rem}
"""

_SCRIPT = """
document.querySelectorAll('table.board').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, index) {
    th.addEventListener('click', function () {
      var ascending = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function (other) { other.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(cell) {
        var text = cell.getAttribute('data-value'), number = parseFloat(text);
        return isNaN(number) ? {numeric: false, value: text} : {numeric: true, value: number};
      }
      rows.sort(function (a, b) {
        var x = key(a.cells[index]), y = key(b.cells[index]);
        if (x.numeric !== y.numeric) { return x.numeric ? -1 : 1; }  // blanks last, either way
        var order = x.numeric ? x.value - y.value : String(x.value).localeCompare(String(y.value));
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def page(
    board: Leaderboard,
    *,
    detail: bool = False,
    title: str | None = None,
    figures: Sequence[tuple[str, Path]] = (),
    provenance: Sequence[dict] = (),
) -> str:
    suites = sorted({f"{t.suite} · {t.budget}" for t in board.tables if t.kind == "leaderboard"})
    heading = title or f"robench leaderboard — {', '.join(suites)}"
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(heading)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{_e(heading)}</h1>"]
    if board.n_unfinished:
        parts.append(f"<p>{board.n_unfinished} unfinished run(s) ignored (no done.json).</p>")
    parts += [_table_html(table, i, detail) for i, table in enumerate(board.tables)]
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [_figure(caption, path) for caption, path in figures]
    if provenance:
        parts.append("<h2>Provenance</h2>" + "".join(_provenance(p) for p in provenance))
    parts.append(f"<script>{_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def _table_html(table: Table, index: int, detail: bool) -> str:
    decimals = decimals_of(table, detail)
    columns = shown_columns(table, detail)
    ranked = any(row.rank is not None for row in table.rows)
    with_runs = table.kind != "agreement"  # its rows are pairs of tables, not runs
    head = (["Rank"] if ranked else []) + [row_header(table)] + [c.name for c in columns] + (["Runs"] if with_runs else [])
    body = []
    for row in table.rows:
        cells = []
        if ranked:
            cells.append(_td(_rank_text(row.rank, row.rank_interval), math.inf if row.rank is None else row.rank))
        cells.append(_td(row.label, row.label))
        for column in columns:
            cell = row.cells.get(column.name)
            mean = math.nan if cell is None else cell.mean
            mark = cell.mark if cell is not None else ""
            cells.append(_td(cell_text(table, column, cell, decimals, detail), mean, mark))
        if with_runs:
            cells.append(_td(str(row.runs), row.runs))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<h2 id=table-{index}>{_e(table_title(table).replace('`', ''))}</h2>"
            f"<table class=board><thead><tr>{''.join(f'<th>{_e(h)}</th>' for h in head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table><p class=legend>{_e(legend(table, detail))}</p>")


def _td(text: str, value: str | float, mark: str = "") -> str:
    """A cell whose `data-value` (a label, a number, or empty for none) is what the page sorts by."""
    if not isinstance(value, str):
        value = "" if math.isnan(value) else repr(float(value))
    css = f" class={mark}" if mark else ""
    return f"<td data-value=\"{_e(value)}\"{css}>{_e(text)}</td>"


def _figure(caption: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<figure><img alt=\"{_e(caption)}\" src=\"data:image/png;base64,{data}\"><figcaption>{_e(caption)}</figcaption></figure>"


def _provenance(entry: dict) -> str:
    p = entry["provenance"]
    budget = p.get("budget")
    rows = {
        "runs": ", ".join(p.get("run_ids", [])),
        "code": ", ".join(p.get("code_versions", [])),
        "hardware": "; ".join(p.get("hardware", [])),
        "dates": ", ".join(p.get("dates", [])),
        "budget": budget.get("description", "") if isinstance(budget, dict) else f"{len(budget)} budget specs",
        "packages": ", ".join(f"{k} {'/'.join(v)}" for k, v in p.get("packages", {}).items()),
    }
    items = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in rows.items())
    where = " · ".join(filter(None, (entry["suite"], entry["budget"], entry.get("condition"))))
    return f"<h3>{_e(entry['label'])} <small>({_e(where)})</small></h3><dl>{items}</dl>"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
