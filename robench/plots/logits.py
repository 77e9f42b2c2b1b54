"""Logit distributions of finished runs (methods.md §6 "logit-distribution plots"): training cases against test sets.

The quantity is the logit margin of the foreground against the background, per voxel, split by
the voxel's true class: z_c − z_bg on voxels of foreground class c, and max_c z_c − z_bg on
background voxels (for a binary task both are z_fg − z_bg). The decision boundary is 0: a
foreground voxel left of it is missed, a background voxel right of it is a false positive. The
paper's observation is that with little training data the distribution of the rare class moves
left on test cases while the background's stays put.

Every voxel of every slice is scored at the run's test-time pre-processing (the grid it was
trained on, the FTN prediction); the figure draws a seeded uniform sample of at most
`voxels` voxels per run, set and true class, and the CSV beside it gives the statistics over all
voxels (and the sample's mean, which is what the figure shows).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from robench.benchmark.preprocess import prepare, test_slices
from robench.benchmark.reopen import reopen, run_suite
from robench.benchmark.store import atomic_write
from robench.benchmark.suites.base import CaseRef
from robench.errors import ConfigError, DataError
from robench.imageops import centre_crop
from robench.plots.style import save_figure, theme

TRAINING = "training cases"
PANEL_INCHES = (3.6, 2.4)
CHUNK = 32  # slices per forward pass


@dataclass(frozen=True)
class RunLogits:
    """The logit margins of one run: per (set, true class), every voxel's value (float32)."""

    label: str
    config: dict
    values: dict[tuple[str, str], np.ndarray]
    kinds: dict[str, str]
    classes: tuple[str, ...]  # "background" first, then the suite's classes in label order


def run_logits(run_dir: Path, *, device: str = "cpu", data_root: Path | None = None) -> RunLogits:
    """Score the run's training cases and every test set of its suite with the run's best checkpoint."""
    run = reopen(Path(run_dir), device)
    config = run.config
    suite = run_suite(config, data_root)
    recorded_train = (config.get("splits") or {}).get("train")
    if recorded_train is not None and sorted(recorded_train) != sorted(ref.case_id for ref in suite.train):
        raise DataError(
            f"{run_dir}: the suite's training cases differ from those the run recorded in config.json "
            "(data changed since the run?); point --data-root at the data it trained on"
        )
    order = sorted(run.classes, key=run.classes.get)
    classes = ("background", *order)
    values: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    sets = [(TRAINING, "train", suite.train)] + [(t.name, t.kind, t.cases) for t in suite.test_sets]
    for set_name, _, cases in sets:
        for ref in cases:
            for class_name, margins in _case_margins(run, ref, classes).items():
                values[(set_name, class_name)].append(margins)
    joined = {key: np.concatenate(parts) for key, parts in values.items()}
    return RunLogits(_run_label(config), config, joined, {name: kind for name, kind, _ in sets}, classes)


def _case_margins(run, ref: CaseRef, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    case = ref.load()
    if case.label is None:
        raise DataError(f"case {ref.case_id} has no label; logit distributions need labelled cases")
    vol = prepare(case, run.budget.spacing_mm)
    inputs = test_slices(vol, run.budget.crop, run.budget.test_norm).to(run.method.device)
    labels = centre_crop(vol.label, run.budget.crop).to(run.method.device)
    method = run.method
    method.eval()
    out: dict[str, list[torch.Tensor]] = defaultdict(list)
    with torch.no_grad():
        for start in range(0, len(inputs), CHUNK):
            logits = method.predict(inputs[start : start + CHUNK]).float()
            y = labels[start : start + CHUNK]
            margin = logits[:, 1:] - logits[:, :1]  # (N, C-1, H, W): z_c − z_bg
            out["background"].append(margin.amax(1)[y == 0])
            for value, name in enumerate(classes[1:], start=1):
                out[name].append(margin[:, value - 1][y == value])
    return {name: torch.cat(parts).cpu().numpy() for name, parts in out.items()}


def _run_label(config: dict) -> str:
    fraction = config.get("train_fraction", 1.0)
    parts = [config["method"], f"seed {config['seed']}"] + ([f"fraction {fraction:g}"] if fraction != 1.0 else [])
    return ", ".join(parts)


def sampled(runs: Sequence[RunLogits], voxels: int, seed: int) -> pd.DataFrame:
    """At most `voxels` voxels per run, set and true class, drawn uniformly without replacement, seeded."""
    rows = []
    for r_index, run in enumerate(runs):
        for s_index, set_name in enumerate(run.kinds):
            for c_index, class_name in enumerate(run.classes):
                values = run.values.get((set_name, class_name))
                if values is None or len(values) == 0:
                    continue
                rng = np.random.default_rng([seed, r_index, s_index, c_index])
                pick = values if len(values) <= voxels else values[np.sort(rng.choice(len(values), voxels, replace=False))]
                rows.append(pd.DataFrame({"run": run.label, "set": set_name, "true class": class_name, "margin": pick}))
    if not rows:
        raise DataError("no labelled voxels to draw: the runs' sets are empty")
    return pd.concat(rows, ignore_index=True)


def summary(runs: Sequence[RunLogits], sample: pd.DataFrame) -> pd.DataFrame:
    """Per run, set and true class: voxel counts, mean / median / quantiles over all voxels, the share on the
    foreground side of the boundary, and the mean of the sample the figure shows."""
    sample_means = sample.groupby(["run", "set", "true class"], sort=False)["margin"].agg(["mean", "size"])
    rows = []
    for run in runs:
        for (set_name, class_name), values in run.values.items():
            if len(values) == 0:
                continue
            key = (run.label, set_name, class_name)
            rows.append({
                "run": run.label, "run_id": run.config.get("run_id", ""), "method": run.config["method"],
                "seed": run.config["seed"], "train_fraction": run.config.get("train_fraction", 1.0),
                "set": set_name, "kind": run.kinds[set_name], "true_class": class_name,
                "quantity": "z_c - z_bg" if class_name != "background" else "max_c z_c - z_bg",
                "voxels": len(values), "mean": float(values.mean()), "median": float(np.median(values)),
                "q05": float(np.quantile(values, 0.05)), "q95": float(np.quantile(values, 0.95)),
                "share_foreground_side": float((values > 0).mean()),
                "voxels_drawn": int(sample_means.loc[key, "size"]), "mean_drawn": float(sample_means.loc[key, "mean"]),
            })
    return pd.DataFrame(rows)


def draw_logits(sample: pd.DataFrame, runs: Sequence[RunLogits], caption: str) -> Figure:
    """Rows: runs; columns: true classes; one step histogram (density) per set; the boundary at 0."""
    labels = [run.label for run in runs]
    classes = list(dict.fromkeys(c for run in runs for c in run.classes))
    sets = list(dict.fromkeys(s for run in runs for s in run.kinds))
    palette = dict(zip(sets, ["#222222", *sns.color_palette("colorblind", max(1, len(sets) - 1))]))
    bins = {}  # per column: the class's own range (0.2–99.8 %), the boundary always in view
    for class_name in classes:
        low, high = np.quantile(sample.loc[sample["true class"] == class_name, "margin"], [0.002, 0.998])
        bins[class_name] = np.linspace(min(low, -0.5), max(high, 0.5), 70)
    with theme():
        figure = Figure(figsize=(PANEL_INCHES[0] * len(classes) + 1.6, PANEL_INCHES[1] * len(runs) + 0.8), layout="constrained")
        axes = figure.subplots(len(runs), len(classes), squeeze=False, sharex="col")
        for row, label in enumerate(labels):
            for col, class_name in enumerate(classes):
                ax = axes[row, col]
                part = sample[(sample["run"] == label) & (sample["true class"] == class_name)]
                for set_name in sets:
                    values = part.loc[part["set"] == set_name, "margin"]
                    if len(values):
                        sns.histplot(x=values, bins=bins[class_name], stat="density", element="step", fill=False, ax=ax,
                                     color=palette[set_name], linewidth=2.0 if set_name == TRAINING else 1.2,
                                     label=set_name)
                ax.axvline(0, color="#b2182b", linestyle="--", linewidth=1)
                ax.xaxis.set_major_locator(MaxNLocator(6))
                ax.set_title(f"{label}\ntrue class: {class_name}", fontsize="small")
                ax.set_xlabel("foreground − background logit" if row == len(labels) - 1 else "")
                ax.set_ylabel("density" if col == 0 else "")
        handles, names = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, names, loc="outside right center", title="set")
        figure.suptitle("Logit margins on training cases and test sets (decision boundary at 0)", fontsize="large")
        figure.text(0.5, -0.01, caption, ha="center", va="top", fontsize="x-small", color="#555555", wrap=True)
    return figure


def plot_logits(run_dirs: Sequence[Path], out_dir: Path, *, voxels: int = 20000, seed: int = 0, name: str = "logits",
                device: str = "cpu", data_root: Path | None = None) -> list[Path]:
    """Write `<name>.png`, `<name>.pdf` and `<name>.csv` under `out_dir`; returns their paths."""
    if voxels < 1:
        raise ConfigError(f"--voxels must be at least 1, got {voxels}")
    if not run_dirs:
        raise ConfigError("pass at least one run folder")
    runs = [run_logits(Path(d), device=device, data_root=data_root) for d in run_dirs]
    suites = {run.config["suite"] for run in runs}
    if len(suites) > 1:
        raise ConfigError(f"the runs come from different suites ({', '.join(sorted(suites))}); draw one suite per figure")
    _disambiguate(runs)
    sample = sampled(runs, voxels, seed)
    caption = (
        f"{suites.pop()}: FTN logits at each run's test-time pre-processing (best checkpoint); per run, set and true "
        f"class a uniform sample of at most {voxels} voxels without replacement (NumPy seed {seed}); "
        "background voxels show max over foreground classes of z_c − z_bg"
    )
    figure = draw_logits(sample, runs, caption)
    paths = save_figure(figure, Path(out_dir), name)
    csv = Path(out_dir) / f"{name}.csv"
    table = summary(runs, sample).to_csv(index=False, float_format="%.5g").encode()
    atomic_write(csv, lambda f: f.write(table))
    return [*paths, csv]


def _disambiguate(runs: list[RunLogits]) -> None:
    """Two runs with the same label (same method, seed and fraction: other hparams) get their run ids appended."""
    counts = pd.Series([run.label for run in runs]).value_counts()
    for i, run in enumerate(runs):
        if counts[run.label] > 1:
            runs[i] = RunLogits(f"{run.label} ({run.config.get('run_id', '?')[:8]})", run.config, run.values, run.kinds, run.classes)
