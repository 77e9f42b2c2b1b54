"""Dice against training updates: how far each budget is from the paper, per method.

One point per (method, budget) of a suite — quick, quick@2000, … on one line per method (one
resolution), the paper budget as a separate hollow point (another resolution) — on two panels:
the intra test set, and the mean over the columns the published table shares with the runs
(ACDC and the ACDC-C sets, ES-only where the runs have them), so measured and published
averages are formed alike. The published numbers are horizontal dashed lines in the method's
colour; the resolution ceiling of each grid (the ground truth through the pipeline,
`benchmark.ceiling`) is a dotted line on the intra panel.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from robench.benchmark.store import atomic_write
from robench.errors import DataError
from robench.leaderboards.published import Published, comparable_tables, matched_columns
from robench.leaderboards.table import Leaderboard
from robench.plots.layout import annotate, series_order
from robench.plots.style import line_styles, save_figure, theme


def budget_points(board: Leaderboard, runs: pd.DataFrame, suite: str, published: Published | None) -> pd.DataFrame:
    """(label, method, budget, base, updates, panel, dice, ci_low, ci_high, n_runs, measured_columns,
    published_columns) per method, budget and panel: the measured cells a point is (the mean of), and the
    published cells it corresponds to."""
    iterations = dict(zip(runs["run_id"].astype(str), pd.to_numeric(runs["iterations"], errors="coerce")))
    rows = []
    for table in comparable_tables(board, suite):
        intra = next((c.name for c in table.columns if c.role == "test_set" and c.test_set_kind == "intra"), None)
        matched = matched_columns(table, published) if published else {}
        # sets measured on other cases than published (both frames where the paper has ES only) make another panel
        stand_ins = [m for c, m in matched.items() if published is not None and published.columns[c][0] != m]
        average = (f"Avg of the {len(matched)} columns the paper shares"
                   + (f" ({len(stand_ins)} on other cases)" if stand_ins else "")) if matched else "Avg"
        for row in table.rows:
            updates = [u for u in (iterations.get(r) for r in row.run_ids) if u is not None and not np.isnan(u)]
            if not updates:
                continue
            common = dict(label=row.label, method=row.method, budget=table.budget, base=table.budget.partition("@")[0],
                          updates=float(np.median(updates)), n_runs=row.runs)
            if intra in row.cells:
                rows.append({**common, **_point(row.cells[intra]), "panel": intra, "measured_columns": intra,
                             "published_columns": next((c for c, m in matched.items() if m == intra), "")})
            if matched and all(m in row.cells for m in matched.values()):
                rows.append({**common, "dice": float(np.mean([row.cells[m].mean for m in matched.values()])),
                             "ci_low": np.nan, "ci_high": np.nan, "panel": average,
                             "measured_columns": ",".join(matched.values()), "published_columns": ",".join(matched)})
            elif not matched and "Avg" in row.cells:
                rows.append({**common, **_point(row.cells["Avg"]), "panel": "Avg", "measured_columns": "Avg",
                             "published_columns": ""})
    if not rows:
        raise DataError(f"no finished {suite} runs with a recorded number of updates; the budget curve needs runs of "
                        f"one or more budgets (quick, quick@2000, …) of that suite")
    return pd.DataFrame(rows)


def _point(cell) -> dict:
    low, high = cell.ci if cell.ci else (np.nan, np.nan)
    return {"dice": cell.mean, "ci_low": low, "ci_high": high}


def published_levels(points: pd.DataFrame, published: Published) -> pd.DataFrame:
    """(method, panel, dice) of the published rows on the measured panels: the published cell, or the mean of
    the published cells a panel averages."""
    by_method = {r.method: r.cells for r in published.rows}
    rows = []
    for (method, panel, columns), _ in points.groupby(["method", "panel", "published_columns"]):
        cells, names = by_method.get(method), [c for c in str(columns).split(",") if c]
        if cells is not None and names and all(c in cells for c in names):
            rows.append({"method": method, "panel": panel, "dice": float(np.mean([cells[c] for c in names]))})
    return pd.DataFrame(rows, columns=["method", "panel", "dice"])


def draw_budget_curve(points: pd.DataFrame, levels: pd.DataFrame, ceilings: Mapping[str, float], note: str,
                      published_name: str | None) -> Figure:
    labels = series_order(points)
    styles = line_styles(labels)
    panels = list(dict.fromkeys(points["panel"]))
    with theme():
        figure = Figure(figsize=(5.2 * len(panels) + 2.6, 3.6), layout="constrained")
        axes = figure.subplots(1, len(panels), sharey=True, squeeze=False).ravel()
        for ax, panel in zip(axes, panels):
            part = points[points["panel"] == panel]
            for label, method in labels:
                style = styles[label]
                mine = part[part["label"] == label]
                for base, line in mine.groupby("base", sort=False):
                    line = line.sort_values("updates")
                    hollow = base == "paper"
                    error = np.vstack([line["dice"] - line["ci_low"], line["ci_high"] - line["dice"]])
                    ax.errorbar(line["updates"], line["dice"], yerr=np.clip(np.nan_to_num(error), 0, None), color=style.colour,
                                marker=style.marker, markerfacecolor="white" if hollow else style.face, markersize=5,
                                linestyle="none" if hollow else style.linestyle, linewidth=1.4, elinewidth=1.0, capsize=2)
                level = levels[(levels["method"] == method) & (levels["panel"] == panel)]
                for value in level["dice"]:
                    ax.axhline(value, color=style.colour, linestyle="--", linewidth=1.0, alpha=0.8)
            if panel == panels[0]:
                for grid, value in ceilings.items():
                    ax.axhline(value, color="#333333", linestyle=":", linewidth=1.2)
                    ax.annotate(f"{grid} grid ceiling {value:.3f}", (0.01, value), xycoords=("axes fraction", "data"),
                                textcoords="offset points", xytext=(2, 2), fontsize="x-small", color="#333333")
            ax.set_xscale("log", base=2)
            ticks = sorted(points["updates"].unique())
            ax.set_xticks(ticks, [f"{t:,.0f}" for t in ticks], rotation=30)
            ax.minorticks_off()
            ax.set_xlabel("training updates")
            ax.set_title(panel, fontsize="medium")
        axes[0].set_ylabel("Dice (mean over classes)")
        handles = [Line2D([], [], color=styles[l].colour, marker=styles[l].marker, linestyle=styles[l].linestyle,
                          markerfacecolor=styles[l].face, markersize=5, label=l) for l, _ in labels]
        extra = [Line2D([], [], color="#777777", marker="o", markerfacecolor="white", linestyle="none",
                        label="paper budget (paper grid)")] if (points["base"] == "paper").any() else []
        if published_name:
            extra.append(Line2D([], [], color="#777777", linestyle="--", label=f"published ({published_name})"))
        if ceilings:
            extra.append(Line2D([], [], color="#333333", linestyle=":", label="resolution ceiling"))
        figure.legend(handles=handles + extra, loc="outside right center", title="method")
        annotate(figure, "Dice against the number of training updates", note)
    return figure


def plot_budget_curve(board: Leaderboard, runs: pd.DataFrame, out_dir: Path, *, suite: str, published: Published | None,
                      ceilings: Mapping[str, float], name: str = "budget") -> tuple[list[Path], pd.DataFrame]:
    """Write `<name>.png/.pdf` and the numbers behind them, `<name>.csv`; returns the paths and the points."""
    points = budget_points(board, runs, suite, published).sort_values(["label", "updates"], ignore_index=True)
    levels = published_levels(points, published) if published else pd.DataFrame(columns=["method", "panel", "dice"])
    grids = ", ".join(f"{g} {v:.3f}" for g, v in ceilings.items())
    averaged = sorted({c for c in points["measured_columns"] if "," in c})
    note = (f"{suite}; mean over runs (cval/seed), bars: 95 % bootstrap interval over cases and runs (intra panel)"
            + (f"; dashed: published `{published.name}` ({published.budget} budget)" if published else "")
            + (f"; dotted: the ground truth through each grid's pipeline ({grids})" if ceilings else "")
            + "".join(f"; averaged: {c.replace(',', ', ')}" for c in averaged))
    note = "\n".join(textwrap.wrap(note, 150))
    figure = draw_budget_curve(points, levels, ceilings, note, published.name if published else None)
    out_dir = Path(out_dir)
    paths = save_figure(figure, out_dir, name)
    csv = out_dir / f"{name}.csv"
    published_rows = levels.assign(label="published", budget=published.budget if published else "", source="published")
    text = pd.concat([points.assign(source="measured"), published_rows], ignore_index=True).to_csv(
        index=False, float_format="%.5g", lineterminator="\n").encode()
    atomic_write(csv, lambda f: f.write(text))
    return [*paths, csv], points
