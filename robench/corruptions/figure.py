"""The documentation figure: one slice under every graded corruption at severities 1–5, plus ACDC-C.

It shows the network's view (192² crop, per-slice min-max) with the same per-case draws the
test sets use, so what readers see is what a method is evaluated on. The committed figure
is drawn from the synthetic suite (`synth_figure`): derived images of ACDC may not be
redistributed.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from robench.benchmark.config import PAPER_SPACING_MM
from robench.benchmark.suites.base import Case
from robench.corruptions.acdc_c import acdc_c_recipes
from robench.corruptions.frozen import derive_seed
from robench.corruptions.graded import CORRUPTIONS, SEVERITIES, graded_recipe
from robench.corruptions.pipeline import paper_grid, run_transform
from robench.corruptions.recipe import Recipe
from robench.imageops import centre_crop, minmax_per_slice


def _corrupted_slice(recipe: Recipe, source: Case, stack, spacing, z: int, seed: int) -> np.ndarray:
    parameters = recipe.draw(derive_seed(seed, recipe.stream, source.case_id, 1))
    return minmax_per_slice(run_transform(recipe, parameters, stack, spacing))[z].numpy()


def plot_corruption_grid(source: Case, out: Path, *, seed: int = 0) -> Path:
    """Save a PNG: rows = graded types, columns = clean + severities 1–5; last row = ACDC-C copy 1."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from PIL import Image

    volume, stack = paper_grid(source)
    spacing = (float(source.spacing[0]), PAPER_SPACING_MM, PAPER_SPACING_MM)
    z = _largest_heart_slice(volume.label) if volume.label is not None else stack.shape[0] // 2
    clean = stack[z].numpy()
    acdc_c = acdc_c_recipes()
    rows = len(CORRUPTIONS) + 1
    fig, axes = plt.subplots(rows, 6, figsize=(6 * 1.25, rows * 1.38))
    for row, (name, corruption) in zip(axes, CORRUPTIONS.items()):
        panels = [(clean, "clean")]
        for severity in SEVERITIES:
            image = _corrupted_slice(graded_recipe(name, severity), source, stack, spacing, z, seed)
            panels.append((image, f"{severity}: {corruption.label(severity)}"))
        _draw_row(row, panels, name)
    panels = [(clean, "clean")] + [(_corrupted_slice(r, source, stack, spacing, z, seed), r.name) for r in acdc_c]
    _draw_row(axes[-1], panels, "ACDC-C")
    axes[-1][-1].set_visible(False)
    fig.suptitle(f"graded severities 1–5 (parameters as in docs/corruptions.md) and ACDC-C copy 1 — {source.case_id}, slice {z}",
                 fontsize=7.5)
    fig.tight_layout(rect=(0, 0, 1, 0.985), pad=0.3, h_pad=0.5, w_pad=0.2)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=90)
    plt.close(fig)
    # A 256-colour palette keeps the PNG small (noise does not compress) at no visible cost.
    Image.open(buffer).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def _draw_row(row, panels, label: str) -> None:
    for ax, (image, title) in zip(row, panels):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=6.5, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(label, fontsize=8.5, fontweight="bold")


def _largest_heart_slice(label) -> int:
    counts = (centre_crop(label, 192) > 0).flatten(1).sum(1)
    return int(counts.argmax())


def synth_figure(out: Path, *, seed: int = 0) -> Path:
    """The committed figure: first test case (ED) of the `cardiac-synth` suite's intra set."""
    from robench.benchmark.suites import SuiteOptions, get_suite

    data = get_suite("cardiac-synth").build(SuiteOptions())
    intra = next(t for t in data.test_sets if t.kind == "intra")
    return plot_corruption_grid(intra.cases[0].load(), out, seed=seed)
