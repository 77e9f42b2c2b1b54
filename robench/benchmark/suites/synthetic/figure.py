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


def _show(ax, image: np.ndarray, label: np.ndarray | None, title: str, zoom: bool) -> None:
    if zoom:  # crop around the heart so the contours can be judged against the image
        ys, xs = np.nonzero(label > 0)
        m = 12
        window = (slice(max(ys.min() - m, 0), ys.max() + m), slice(max(xs.min() - m, 0), xs.max() + m))
        image, label = image[window], label[window]
    ax.imshow(image, cmap="gray", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99.5))
    if label is not None and zoom:
        for name, value in VALUES.items():
            if (label == value).any():
                ax.contour(label == value, levels=[0.5], colors=[COLOURS[name]], linewidths=1.0)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def plot_synth_sites(root: Path, out: Path) -> Path:
    """Per site: the full field of view at ED, then the heart at ED and ES with label contours."""
    root = Path(root)
    cases = {"A": acdc.case_refs(next(iter(acdc.discover_acdc(root / "siteA").values())), {})}
    for s in mnms.discover_mnms(root / "mnms").values():
        cases.setdefault(f"{s.vendor}", mnms.case_refs(s, {}))
    fig, axes = plt.subplots(3, 4, figsize=(9, 7.4))
    for col, site in enumerate(sorted(cases)):
        ed, es = (ref.load() for ref in cases[site])
        z = ed.label.shape[0] // 3  # a mid-ventricular slice (base is slice 0)
        _show(axes[0, col], ed.image[z], ed.label[z], f"site {site} · ED · slice {z} · {ed.spacing[1]:.1f} mm", zoom=False)
        _show(axes[1, col], ed.image[z], ed.label[z], f"site {site} · ED (heart)", zoom=True)
        _show(axes[2, col], es.image[z], es.label[z], f"site {site} · ES (heart)", zoom=True)
    fig.legend(handles=[Patch(color=c, label=n) for n, c in COLOURS.items()], loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=85)
    plt.close(fig)
    return out
