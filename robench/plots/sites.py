"""Dice per intra and cross-site test set: one point with its interval per method, dodged within a test set.

Points rather than bars: an interval reads against a point, and a bar's area would stress
the distance from zero, which says nothing here. The first panel is the mean over classes
(the table number); with `per_class`, one panel per class follows, all on one Dice scale.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robench.plots.aggregate import CLASS_MEAN, site_scores
from robench.plots.layout import annotate, figure_legend, provenance, series_order
from robench.plots.style import line_styles, save_figure, theme

CLASS_ORDER = ("LV", "MYO", "RV")
DODGE = 0.76  # share of a test set's slot the points of all methods spread over
KIND_TITLES = {"intra": "intra", "cross-site": "cross-site"}


def plot_sites(records: pd.DataFrame, out_dir: Path, *, suite: str | None = None, budget: str | None = None,
               per_class: bool = True, name: str = "sites", n_boot: int = 1000, seed: int = 0) -> list[Path]:
    """Write `<name>.png` and `<name>.pdf` under `out_dir`; returns their paths."""
    scores = site_scores(records, suite=suite, budget=budget, per_class=per_class, n_boot=n_boot, seed=seed)
    figure = draw_sites(scores, provenance(records, suite, budget, "bars"))
    return save_figure(figure, Path(out_dir), name)


def draw_sites(scores: pd.DataFrame, note: str) -> Figure:
    present = set(scores["class"])
    panels = [CLASS_MEAN, *[c for c in CLASS_ORDER if c in present], *sorted(present - {CLASS_MEAN, *CLASS_ORDER})]
    sets = scores.drop_duplicates("test_set")[["test_set", "kind", "caption"]].reset_index(drop=True)
    position = {name: i for i, name in enumerate(sets["test_set"])}
    labels = series_order(scores)
    styles = line_styles(labels)
    step = DODGE / len(labels)
    offset = {label: (i - (len(labels) - 1) / 2) * step for i, (label, _) in enumerate(labels)}
    longest = max(len(line) for caption in sets["caption"] for line in caption.split("\n"))
    panel_width = max(3.5, 0.8 + len(sets) * max(0.45 + 0.13 * len(labels), 0.11 * longest + 0.2))
    ncols = 2 if len(panels) > 1 and panel_width <= 6.5 else 1
    nrows = math.ceil(len(panels) / ncols)
    with theme():
        figure = Figure(figsize=(min(panel_width, 16.0) * ncols, (2.9 if ncols > 1 else 2.5) * nrows), layout="constrained")
        axes = figure.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
        for ax, panel in zip(axes, panels):
            part = scores[scores["class"] == panel]
            for label, _ in labels:
                points = part[part["label"] == label]
                if points.empty:
                    continue
                style = styles[label]
                x = points["test_set"].map(position).to_numpy(float) + offset[label]
                error = np.vstack([points["dice"] - points["ci_low"], points["ci_high"] - points["dice"]])
                ax.errorbar(x, points["dice"], yerr=np.clip(np.nan_to_num(error), 0, None), color=style.colour,
                            marker=style.marker, markerfacecolor=style.face, linestyle="none", markersize=5, elinewidth=1.3,
                            capsize=2)
            ax.set_title("Mean over classes" if panel == CLASS_MEAN else panel,
                         fontweight="bold" if panel == CLASS_MEAN else "normal")
            ax.grid(axis="x", visible=False)
            _mark_kinds(ax, sets)
            ax.set_xticks(range(len(sets)), sets["caption"])
            ax.xaxis.set_tick_params(labelbottom=True)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax in axes.reshape(nrows, ncols)[:, 0]:
            ax.set_ylabel("Dice")
        axes[0].set_xlim(-0.5, len(sets) - 0.5)
        low, high = scores["ci_low"].min(), scores["ci_high"].max()
        pad = 0.06 * max(high - low, 0.05)
        axes[0].set_ylim(max(0.0, low - pad), min(1.0, high + pad) + 2.5 * pad)  # headroom for the kind names
        annotate(figure, "Dice per test set", note)
        figure_legend(figure, scores, labels, styles)
    return figure


def _mark_kinds(ax, sets: pd.DataFrame) -> None:
    """Shade the intra sets and separate the kinds, naming each kind inside the panel's top edge."""
    for kind, members in sets.groupby("kind", sort=False):
        lo, hi = members.index.min() - 0.5, members.index.max() + 0.5
        if kind == "intra":
            ax.axvspan(lo, hi, color="#f2f2f2", zorder=0, linewidth=0)
        if lo > -0.5:
            ax.axvline(lo, color="#999999", linewidth=0.8, zorder=1)
        ax.text((lo + hi) / 2, 0.98, KIND_TITLES.get(str(kind), str(kind)), transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize="small", color="#555555")
