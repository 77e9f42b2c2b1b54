"""A figure of one mid-ventricular ED and ES slice per site with its labels, read back from the written files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from robench.benchmark.suites import acdc, mnms  # noqa: E402

COLOURS = {"RV": (0.2, 0.5, 1.0), "MYO": (0.1, 0.85, 0.3), "LV": (1.0, 0.25, 0.2)}
VALUES = {"RV": 1, "MYO": 2, "LV": 3}


def _overlay(ax, image: np.ndarray, label: np.ndarray, title: str) -> None:
    ax.imshow(image, cmap="gray", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99))
    rgba = np.zeros((*label.shape, 4))
    for name, value in VALUES.items():
        rgba[label == value] = (*COLOURS[name], 0.35)
    ax.imshow(rgba)
    for name, value in VALUES.items():
        if (label == value).any():
            ax.contour(label == value, levels=[0.5], colors=[COLOURS[name]], linewidths=0.6)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def plot_synth_sites(root: Path, out: Path) -> Path:
    root = Path(root)
    cases = {"A": acdc.case_refs(next(iter(acdc.discover_acdc(root / "siteA").values())), {})}
    for s in mnms.discover_mnms(root / "mnms").values():
        cases.setdefault(f"{s.vendor}", mnms.case_refs(s, {}))
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
    for col, site in enumerate(sorted(cases)):
        for row, ref in enumerate(cases[site]):
            case = ref.load()
            z = int(np.argmax((case.label > 0).sum(axis=(1, 2))))  # a mid-ventricular slice with all labels
            _overlay(axes[row, col], case.image[z], case.label[z], f"site {site} · {ref.meta['frame']} · slice {z}")
    fig.legend(handles=[Patch(color=c, label=n) for n, c in COLOURS.items()], loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
