"""Pieces every records figure shares: series order, the legend outside the data, the provenance line."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from robench.plots.style import METHOD_COLOURS, LineStyle

LEGEND_ROW_INCHES = 0.26  # height of one legend entry at the theme's font size, title included in the spare row


def series_order(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, method) pairs: registered methods in the palette's order (reference first), others by name."""
    rank = {m: i for i, m in enumerate(METHOD_COLOURS)}
    pairs = {(str(l), str(m)) for l, m in zip(table["label"], table["method"])}
    return sorted(pairs, key=lambda p: (rank.get(p[1], len(rank)), p[1], p[0]))


def figure_legend(figure: Figure, table: pd.DataFrame, labels: list[tuple[str, str]], styles: dict[str, LineStyle]) -> None:
    """One legend for the whole figure, right of every panel, with each line's number of runs."""
    runs = table.groupby("label")["n_runs"].max()
    handles = [
        Line2D([], [], color=styles[l].colour, marker=styles[l].marker, linestyle=styles[l].linestyle, markersize=5,
               markerfacecolor=styles[l].face,
               label=f"{l} ({runs[l]} run{'s' if runs[l] != 1 else ''})")
        for l, _ in labels
    ]
    rows = max(4, int(figure.get_figheight() / LEGEND_ROW_INCHES) - 1)  # a taller legend would overrun the footnote
    figure.legend(handles=handles, loc="outside right center", title="method", ncols=math.ceil(len(handles) / rows))


def annotate(figure: Figure, title: str, note: str) -> None:
    """Title above the panels; the provenance line as a small footnote below them, where a caption would go."""
    figure.suptitle(title, fontsize="large")
    figure.text(0.5, -0.01, note, ha="center", va="top", fontsize="small", color="#555555")


def provenance(records: pd.DataFrame, suite: str | None, budget: str | None, interval: str) -> str:
    """Which suite and budget the figure shows, and how to read its intervals (`interval`: "bands", "bars")."""
    suites = sorted({str(s) for s in records["suite"]}) if suite is None else [suite]
    budgets = sorted({str(b) for b in records["budget"]}) if budget is None else [budget]
    return f"{'/'.join(suites)}, {'/'.join(budgets)} budget; mean over runs, {interval}: 95 % bootstrap interval over cases and runs"
