"""One look for every figure: a fixed colour and marker per method, the theme, and saving.

A method keeps its colour in every figure and every results folder, so readers can match
lines across figures without reading legends twice; the colours are the colour-blind-safe
seaborn palette, the reference method is near-black, and markers differ as well so
figures survive greyscale printing.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import seaborn as sns
from matplotlib.figure import Figure

from robench.benchmark.store import atomic_write

METHOD_COLOURS = {
    "standard": "#3c3c3c",
    "coop-standard": "#949494",
    "coop-latent": "#d55e00",
    "coop-latent-x": "#de8f05",
    "adv-bias": "#0173b2",
    "adv-noise": "#56b4e9",
    "rand-conv": "#029e73",
    "rand-mwm": "#cc78bc",
    "no-aug": "#ca9161",
    "heuristic": "#006374",
    "rand-augment": "#591e71",
    "learned-aug": "#17becf",
    # the class-imbalance family: one hue per technique, dark for the asymmetric variant, light for the symmetric
    "asym-margin": "#1f77b4", "margin": "#9ec3e6",
    "asym-focal": "#d62728", "focal": "#ff9896",
    "asym-adv": "#2ca02c", "adv": "#98df8a",
    "asym-mixup": "#9467bd", "mixup": "#c5b0d5",
    "asym-aug": "#bcbd22", "asym-combo": "#8c564b",
}
SPARE_COLOURS = ("#12711c", "#001c7f", "#a23582", "#b8850a", "#8c0800", "#fbafe4", "#592f0d")
METHOD_MARKERS = {
    "standard": "o", "coop-standard": "o", "coop-latent": "D", "coop-latent-x": "d", "adv-bias": "s",
    "adv-noise": "s", "rand-conv": "^", "rand-mwm": "v", "no-aug": "X", "heuristic": "P", "rand-augment": "*",
    "learned-aug": "H", "asym-margin": ">", "margin": ">", "asym-focal": "<", "focal": "<", "asym-adv": "h", "adv": "h",
    "asym-mixup": "p", "mixup": "p", "asym-aug": "8", "asym-combo": "d",
}
SPARE_MARKERS = ("h", "p", "<", ">", "8")
VARIANT_LINESTYLES = ("-", "--", ":", "-.")
CLASS_COLOURS = {"RV": "#0173b2", "MYO": "#029e73", "LV": "#d55e00"}


def class_colour(name: str, value: int) -> str:
    """The cardiac structures keep their colours; any other class takes the colour-blind palette by label value."""
    if name in CLASS_COLOURS:
        return CLASS_COLOURS[name]
    others = [c for c in sns.color_palette("colorblind").as_hex() if c not in CLASS_COLOURS.values()]
    return others[(value - 1) % len(others)]
FORMATS = ("png", "pdf")
PNG_DPI = 200


@dataclass(frozen=True)
class LineStyle:
    colour: str
    marker: str
    linestyle: str
    face: str  # marker face colour: the method's colour for its first setting, white (hollow) for the others


def method_colour(method: str) -> str:
    """The method's fixed colour; unregistered names get a spare colour chosen by a stable hash of the name."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return SPARE_COLOURS[zlib.crc32(method.encode()) % len(SPARE_COLOURS)]


def line_styles(rows: Iterable[tuple[str, str]]) -> dict[str, LineStyle]:
    """Style per legend label for (label, method) pairs: colour and marker from the method,
    line style and marker fill from the label's position among that method's settings (hparams
    variants), so variants stay apart in point-only figures too."""
    styles: dict[str, LineStyle] = {}
    variants: dict[str, int] = {}
    spare: dict[str, str] = {}  # unregistered methods of this figure: hashed colours, moved on where two collide
    for label, method in rows:
        if label in styles:
            continue
        index = variants.get(method, 0)
        variants[method] = index + 1
        marker = METHOD_MARKERS.get(method) or SPARE_MARKERS[zlib.crc32(method.encode()) % len(SPARE_MARKERS)]
        colour = method_colour(method)
        if method not in METHOD_COLOURS:
            if method not in spare:
                start = SPARE_COLOURS.index(colour)
                free = [SPARE_COLOURS[(start + k) % len(SPARE_COLOURS)] for k in range(len(SPARE_COLOURS))]
                spare[method] = next((c for c in free if c not in spare.values()), colour)
            colour = spare[method]
        linestyle = VARIANT_LINESTYLES[index % len(VARIANT_LINESTYLES)]
        styles[label] = LineStyle(colour, marker, linestyle, colour if index == 0 else "white")
    return styles


def theme(font_scale: float = 1.0) -> AbstractContextManager:
    """The figures' rcParams as a context, so plotting never changes the caller's global style."""
    rc = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("paper", font_scale=font_scale * 1.25),
        "axes.edgecolor": "#666666",
        "grid.color": "#e3e3e3",
        "legend.frameon": False,
        "pdf.fonttype": 42,  # TrueType in PDFs: text stays editable and searchable
        "svg.fonttype": "none",
    }
    return matplotlib.rc_context(rc)


def save_figure(figure: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write `<out_dir>/<name>.png` and `.pdf` atomically; no timestamps, so reruns give identical files."""
    paths = []
    for fmt in FORMATS:
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        path = Path(out_dir) / f"{name}.{fmt}"
        atomic_write(path, lambda f: figure.savefig(f, format=fmt, dpi=PNG_DPI, bbox_inches="tight", metadata=metadata))
        paths.append(path)
    return paths
