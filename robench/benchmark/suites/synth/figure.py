"""The documentation figure: one mid-ventricular ED and ES slice per site, with labels.

Why read the files back: the figure then shows what the readers get (orientation, label
order, spacing), not what the generator meant to write.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

# Colours by class name; both layouts are mapped to names before drawing.
_COLOURS = {"LV": "#e8433a", "MYO": "#37c45a", "RV": "#3d8bff"}
_ACDC = {"RV": 1, "MYO": 2, "LV": 3}
_MNMS = {"LV": 1, "MYO": 2, "RV": 3}


def plot_synth_sites(root: Path, out: Path, *, crop_mm: float = 200.0) -> Path:
    """Save a PNG grid: rows = sites A-D, columns = ED, ES (image, then labels over it)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    root, out = Path(root), Path(out)
    panels = [("A", *_site_a(root))] + _sites_mnms(root)
    fig, axes = plt.subplots(len(panels), 4, figsize=(8.0, 2.1 * len(panels)))
    axes = np.atleast_2d(axes)
    for row, (site, spacing, frames) in zip(axes, panels):
        for column, (phase, (image, masks)) in enumerate(frames.items()):
            z = _mid_ventricular(masks["LV"])
            shown = _crop(image[z], spacing, crop_mm)
            low, high = np.percentile(shown, [1, 99.5])
            for offset, with_labels in ((0, False), (1, True)):
                ax = row[2 * column + offset]
                ax.imshow(shown, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
                if with_labels:
                    for name, colour in _COLOURS.items():
                        mask = _crop(masks[name][z].astype(float), spacing, crop_mm)
                        overlay = np.zeros((*mask.shape, 4))
                        overlay[..., :3] = matplotlib.colors.to_rgb(colour)
                        overlay[..., 3] = 0.45 * mask
                        ax.imshow(overlay, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if offset == 0:
                    ax.set_title(f"site {site} {phase}  ({spacing:.2f} mm)", fontsize=8, loc="left")
    handles = [Patch(color=colour, alpha=0.6, label=name) for name, colour in _COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1), pad=0.4, h_pad=1.2)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80)
    plt.close(fig)
    # A 256-colour palette keeps the PNG small (noise does not compress) at no visible cost.
    Image.open(buffer).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def _read(path: Path) -> tuple[np.ndarray, float]:
    """Image as (Z, Y, X[, T]) and its in-plane spacing."""
    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)
    axes = (2, 1, 0) if data.ndim == 3 else (2, 1, 0, 3)
    return np.transpose(data, axes), float(image.header.get_zooms()[0])


def _masks(label: np.ndarray, convention: dict[str, int]) -> dict[str, np.ndarray]:
    return {name: label == value for name, value in convention.items()}


def _site_a(root: Path):
    training = root / "siteA" / "training"
    patient = sorted(p for p in training.iterdir() if p.is_dir())[0]
    info = dict(line.split(": ", 1) for line in (patient / "Info.cfg").read_text().splitlines())
    frames = {}
    for phase in ("ED", "ES"):
        stem = f"{patient.name}_frame{int(info[phase]):02d}"
        image, spacing = _read(patient / f"{stem}.nii.gz")
        label, _ = _read(patient / f"{stem}_gt.nii.gz")
        frames[phase] = (image.astype(np.float32), _masks(label, _ACDC))
    return spacing, frames


def _sites_mnms(root: Path):
    with (root / "mnms" / "mnms_dataset_info.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    panels = []
    for vendor in sorted({row["Vendor"] for row in rows}):
        row = next(r for r in rows if r["Vendor"] == vendor)
        folder = root / "mnms" / "Training" / "Labeled" / row["External code"]
        image, spacing = _read(folder / f"{row['External code']}_sa.nii.gz")
        label, _ = _read(folder / f"{row['External code']}_sa_gt.nii.gz")
        frames = {
            phase: (image[..., int(row[phase])].astype(np.float32), _masks(label[..., int(row[phase])], _MNMS))
            for phase in ("ED", "ES")
        }
        panels.append((vendor, spacing, frames))
    return panels


def _mid_ventricular(lv: np.ndarray) -> int:
    slices = np.flatnonzero(lv.reshape(len(lv), -1).any(axis=1))
    return int(slices[len(slices) // 2]) if slices.size else len(lv) // 2


def _crop(plane: np.ndarray, spacing: float, crop_mm: float) -> np.ndarray:
    """Central crop of `crop_mm` (the whole plane when smaller)."""
    n = int(round(crop_mm / spacing))
    rows, cols = plane.shape
    r0, c0 = max((rows - n) // 2, 0), max((cols - n) // 2, 0)
    return plane[r0:r0 + n, c0:c0 + n]
