"""Dice against corruption severity: one panel per corruption plus their pooled panel, one line per method."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from robench.plots.aggregate import ALL_CORRUPTIONS, severity_curves
from robench.plots.layout import annotate, figure_legend, provenance, series_order
from robench.plots.style import line_styles, save_figure, theme

SEVERITIES = range(6)


def plot_severity(records: pd.DataFrame, out_dir: Path, *, suite: str | None = None, budget: str | None = None,
                  name: str = "severity", n_boot: int = 1000, seed: int = 0) -> list[Path]:
    """Write `<name>.png` and `<name>.pdf` under `out_dir`; returns their paths."""
    curves = severity_curves(records, suite=suite, budget=budget, n_boot=n_boot, seed=seed)
    figure = draw_severity(curves, provenance(records, suite, budget, "bands"))
    return save_figure(figure, Path(out_dir), name)


def draw_severity(curves: pd.DataFrame, note: str) -> Figure:
    panels = list(dict.fromkeys(curves["corruption"]))
    ncols = len(panels) if len(panels) <= 4 else (3 if len(panels) in (5, 6, 9) else 4)
    nrows = math.ceil(len(panels) / ncols)
    labels = series_order(curves)
    styles = line_styles(labels)
    with theme():
        figure = Figure(figsize=(3.1 * ncols, 2.6 * nrows), layout="constrained")
        axes = figure.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
        for ax, panel in zip(axes, panels):
            part = curves[curves["corruption"] == panel]
            for label, _ in labels:
                line = part[part["label"] == label].sort_values("severity")
                if line.empty:
                    continue
                style = styles[label]
                ax.fill_between(line["severity"], line["ci_low"], line["ci_high"], color=style.colour, alpha=0.12, linewidth=0)
                ax.plot(line["severity"], line["dice"], color=style.colour, marker=style.marker, markerfacecolor=style.face,
                        linestyle=style.linestyle, markersize=4.5, linewidth=1.6, label=label)
            ax.set_title(panel, fontweight="bold" if panel == ALL_CORRUPTIONS else "normal")
            ax.set_xticks(list(SEVERITIES), ["clean", *map(str, SEVERITIES[1:])])
            ax.set_xlim(-0.25, 5.25)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax in axes.reshape(nrows, ncols)[:, 0]:
            ax.set_ylabel("Dice")
        for index, ax in enumerate(axes[: len(panels)]):
            if index + ncols >= len(panels):  # lowest visible panel of its column
                ax.set_xlabel("severity")
                ax.xaxis.set_tick_params(labelbottom=True)
        top = min(1.0, curves["ci_high"].max() + 0.03)
        axes[0].set_ylim(max(0.0, curves["ci_low"].min() - 0.03), top)
        annotate(figure, "Dice under graded corruptions", note)
        figure_legend(figure, curves, labels, styles)
    return figure
