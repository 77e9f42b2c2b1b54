"""The learned augmentation policy of a `learned-aug` run: its trajectory, and initial against final.

Reads the run folder's `policy.parquet` (one row per recorded update, policy, group and option)
and draws, per policy (one, or background- and foreground-centred ones when class-specific):

* `<name>-trajectory-<policy>`: one panel per op group, over the updates, the probability that the
  group augments at all (1 − P(identity), grey) and that of each option (light = mildest to
  dark = strongest magnitude), on the panel's own scale so small moves show;
* `<name>-initial-final`: heat maps of every option's probability at the first and the last
  recorded update for every policy (square-root colour scale), and of the change between them;

and `<name>.csv`: per policy and group, P(augment) = 1 − P(identity) at the start and at the end,
with whether the group is geometric, so "geometric ops were chosen more often" is a number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from robench.benchmark.store import atomic_write
from robench.errors import DataError
from robench.methods.op_table import GEOMETRIC_GROUPS, GROUP_OPTIONS
from robench.plots.style import save_figure, theme

POLICY_FILE = "policy.parquet"
COLUMNS = ("update", "policy", "group", "option", "label", "probability")
GROUP_ORDER = [name for name, _ in GROUP_OPTIONS]


def read_policy(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / POLICY_FILE
    if not path.is_file():
        raise DataError(f"{run_dir} has no {POLICY_FILE}: only learned-aug runs record a policy, once training has finished")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} cannot be read ({exc}); rerun the run's command with --resume to write it again") from None
    missing = set(COLUMNS) - set(table.columns)
    if missing or table.empty:
        raise DataError(f"{path} is not a policy trajectory (missing {sorted(missing) or 'rows'}); rerun with --resume")
    return table


def policy_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per policy and group: P(augment) at the first and last recorded update."""
    first, last = table["update"].min(), table["update"].max()
    identity = table[table["option"] == 0].pivot_table(index=["policy", "group"], columns="update", values="probability")
    out = pd.DataFrame({
        "p_augment_initial": 1 - identity[first], "p_augment_final": 1 - identity[last],
    }).reset_index()
    out["change"] = out["p_augment_final"] - out["p_augment_initial"]
    out["geometric"] = out["group"].isin(GEOMETRIC_GROUPS)
    out.insert(2, "first_update", int(first))
    out.insert(3, "last_update", int(last))
    out["group"] = pd.Categorical(out["group"], GROUP_ORDER, ordered=True)
    return out.sort_values(["policy", "group"]).reset_index(drop=True)


def plot_policy(run_dir: Path, out: Path, *, name: str = "policy") -> list[Path]:
    table = read_policy(run_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with theme():
        for policy, rows in table.groupby("policy", sort=False):
            paths += save_figure(_trajectory_figure(rows, f"{Path(run_dir).name} · policy: {policy}"), out, f"{name}-trajectory-{policy}")
        paths += save_figure(_initial_final_figure(table), out, f"{name}-initial-final")
    summary = policy_summary(table)
    csv = out / f"{name}.csv"
    atomic_write(csv, lambda f: f.write(summary.to_csv(index=False, float_format="%.4f").encode()))
    return paths + [csv]


def _trajectory_figure(rows: pd.DataFrame, title: str) -> Figure:
    groups = [g for g in GROUP_ORDER if g in set(rows["group"])]
    ncols = 4
    nrows = -(-len(groups) // ncols)
    fig = Figure(figsize=(3.3 * ncols, 2.5 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    for ax, group in zip(axes, groups):
        these = rows[rows["group"] == group].sort_values("update")
        options = sorted(these["option"].unique())
        shades = sns.color_palette("viridis_r", max(1, len(options) - 1))
        identity = these[these["option"] == 0]
        ax.plot(identity["update"], 1 - identity["probability"], color="#9a9a9a", lw=2.4, label="augment (1 − identity)")
        for option in options[1:]:
            line = these[these["option"] == option]
            ax.plot(line["update"], line["probability"], color=shades[option - 1], lw=1.3, label=line["label"].iloc[0])
        ax.set_title(group + (" (geometric)" if group in GEOMETRIC_GROUPS else ""), fontsize=9)
        ax.set_ylim(0, max(0.1, 1.15 * float((1 - identity["probability"]).max())))
        ax.legend(fontsize=5.5, loc="upper left", handlelength=1.2, ncols=2)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    for ax in axes[-ncols:]:
        ax.set_xlabel("update")
    for ax in axes[::ncols]:
        ax.set_ylabel("probability")
    fig.suptitle(title, fontsize=10)
    return fig


def _initial_final_figure(table: pd.DataFrame) -> Figure:
    first, last = table["update"].min(), table["update"].max()
    ends = table[table["update"].isin([first, last])].copy()
    ends["when"] = np.where(ends["update"] == first, f"initial ({first})", f"final ({last})")
    ends["column"] = ends["policy"] + "\n" + ends["when"]
    ends["row"] = np.where(ends["option"] == 0, ends["group"] + ": identity", ends["label"])
    ends["order"] = ends["group"].map({g: i for i, g in enumerate(GROUP_ORDER)}) * 100 + ends["option"]
    policies = list(ends["policy"].unique())
    columns = [f"{p}\n{w}" for p in policies for w in (f"initial ({first})", f"final ({last})")]
    grid = ends.pivot_table(index=["order", "row"], columns="column", values="probability")[columns]
    grid.index = grid.index.get_level_values("row")
    change = pd.DataFrame({f"{p}\nfinal − initial": grid[f"{p}\nfinal ({last})"] - grid[f"{p}\ninitial ({first})"] for p in policies})
    fig = Figure(figsize=(1.2 * (len(columns) + len(policies)) + 4.2, 0.19 * len(grid) + 1.4), layout="constrained")
    ax, ax_change = fig.subplots(1, 2, sharey=True, width_ratios=[len(columns), len(policies)])
    sns.heatmap(grid, ax=ax, cmap="mako_r", norm=PowerNorm(0.5, vmin=0, vmax=1), annot=True, fmt=".3f",
                annot_kws={"fontsize": 5}, cbar_kws={"label": "probability", "shrink": 0.4}, linewidths=0.3, linecolor="white")
    bound = max(1e-3, float(change.abs().max().max()))
    sns.heatmap(change, ax=ax_change, cmap="vlag", vmin=-bound, vmax=bound, annot=True, fmt="+.3f", annot_kws={"fontsize": 5},
                cbar_kws={"label": "change", "shrink": 0.4}, linewidths=0.3, linecolor="white")
    for axis in (ax, ax_change):
        for i, row in enumerate(grid.index):
            if row.endswith(": identity") and i:
                axis.axhline(i, color="white", lw=2.5)
        axis.set_xlabel("")
        axis.set_ylabel("")
        axis.tick_params(axis="y", labelsize=6)
        axis.tick_params(axis="x", labelsize=7)
    return fig
