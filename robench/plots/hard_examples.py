"""The paper's hard-example figure: what latent masking makes of training slices, from a run's best checkpoint.

Rows are training slices; columns are the original image, the hard image decoded from the
masked image code z_i, their difference, the reference label, and the corrupted shape
decoded from the masked shape code z_s (segmentations drawn over the original image). The
slices are a seeded pick among the training slices that show every structure, centre-cropped
as the trainer crops the un-augmented half of a batch, so the figure can be remade exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from robench.benchmark.reopen import reopen, run_suite
from robench.benchmark.store import CONFIG, RunFolder
from robench.benchmark.train import TrainingSlices
from robench.errors import ConfigError, DataError
from robench.imageops import centre_crop
from robench.methods import METHODS, Batch, get_method
from robench.plots.style import class_colour, save_figure, theme

LABEL_ALPHA = 0.55
PANEL_INCHES = 1.75


@dataclass(frozen=True)
class HardExamples:
    """Numpy arrays (n, H, W) of one batch; a missing code's entries are None."""

    images: np.ndarray
    labels: np.ndarray
    hard_images: np.ndarray | None
    corrupted_shapes: np.ndarray | None
    image_mask: str
    shape_mask: str
    classes: Mapping[str, int]
    caption: str


def methods_with_hard_examples() -> list[str]:
    return sorted(name for name, cls in METHODS.items() if callable(getattr(cls, "hard_examples", None)))


def hard_examples(run_dir: Path, *, n: int = 4, seed: int = 0, device: str = "cpu",
                  data_root: Path | None = None) -> HardExamples:
    """Rebuild the run's method from its best checkpoint and let it make hard examples of `n` training slices.

    The training data are read from the data root recorded in the run's config.json, or from
    `data_root` when the data have moved since.
    """
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    folder = RunFolder(Path(run_dir))
    if not (folder.path / CONFIG).exists():
        raise ConfigError(f"{folder.path} is not a run folder (no {CONFIG}); pass a folder written by `robench run`")
    config = folder.config()
    if not callable(getattr(get_method(config["method"]), "hard_examples", None)):
        raise ConfigError(
            f"{folder.path}: method {config['method']!r} makes no hard examples; "
            f"runs of {', '.join(methods_with_hard_examples())} do"
        )
    suite = run_suite(config, data_root)
    run = reopen(folder, device, finished=False)
    method, budget, checkpoint = run.method, run.budget, run.checkpoint
    data = TrainingSlices.from_cases(suite.train, budget, method.device, all_slices=suite.training_slices == "all")
    batch = example_batch(data, budget.crop, n, seed)
    out = method.hard_examples(batch)
    as_numpy = lambda key: out[key].detach().cpu().numpy() if key in out else None  # noqa: E731
    images, hard = as_numpy("images")[:, 0], as_numpy("hard_images")
    caption = (
        f"{config['method']} run {config.get('run_id', folder.path.name)} ({config['suite']}, {config['budget']} budget, "
        f"seed {config['seed']}, cval {config['cval']}), best checkpoint of iteration {checkpoint['iteration']}; "
        f"slices picked with seed {seed}"
    )
    return HardExamples(
        images=images, labels=as_numpy("labels"), hard_images=None if hard is None else hard[:, 0],
        corrupted_shapes=as_numpy("corrupted_shapes"), image_mask=str(out.get("image_mask", "")),
        shape_mask=str(out.get("shape_mask", "")), classes=dict(suite.classes), caption=caption,
    )


def example_batch(data: TrainingSlices, crop: int, n: int, seed: int) -> Batch:
    """`n` centre-cropped training slices, a seeded pick preferring slices that show every structure."""
    labels = centre_crop(data.labels, crop)
    present = torch.stack([(labels == k).flatten(1).any(1) for k in range(1, int(data.labels.max()) + 1)], 1)
    complete = np.flatnonzero(present.all(1).cpu().numpy())
    pool = complete if len(complete) >= n else np.arange(len(data))
    if len(pool) == 0:
        raise DataError("the run's training split has no slices to show")
    pick = np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=len(pool) < n))
    index = torch.as_tensor(pick, device=data.images.device)
    return Batch(centre_crop(data.images_at(index), crop), labels[index], 0)


def plot_hard_examples(run_dir: Path, out_dir: Path, n: int = 4, seed: int = 0, *, name: str = "hard_examples",
                       device: str = "cpu", data_root: Path | None = None, difference: bool = True) -> list[Path]:
    """Write `<name>.png` and `<name>.pdf` under `out_dir`; returns their paths."""
    examples = hard_examples(run_dir, n=n, seed=seed, device=device, data_root=data_root)
    figure = draw_hard_examples(examples, difference=difference)
    return save_figure(figure, Path(out_dir), name)


def draw_hard_examples(examples: HardExamples, *, difference: bool = True) -> Figure:
    columns = [("image", "original image\n$x$")]
    if examples.hard_images is not None:
        columns.append(("hard", f"hard image $x_h$\n({examples.image_mask} mask on $z_i$)"))
        if difference:
            columns.append(("difference", "difference\n$x_h - x$"))
    columns.append(("label", "label\n$y$"))
    if examples.corrupted_shapes is not None:
        columns.append(("shape", f"corrupted shape\n({examples.shape_mask} mask on $z_s$)"))
    n = len(examples.images)
    colours = _label_colours(examples.classes)
    limit = 1e-6
    if examples.hard_images is not None:
        limit = max(limit, float(np.percentile(np.abs(examples.hard_images - examples.images), 99.5)))
    with theme():
        figure = Figure(figsize=(PANEL_INCHES * len(columns) + 0.4, PANEL_INCHES * n + 0.9), layout="constrained")
        axes = figure.subplots(n, len(columns), squeeze=False)
        shown = None
        for row in range(n):
            image = examples.images[row]
            low, high = np.percentile(image, [0.5, 99.5])
            for col, (key, title) in enumerate(columns):
                ax = axes[row, col]
                if key == "image":
                    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
                elif key == "hard":
                    ax.imshow(examples.hard_images[row], cmap="gray", vmin=low, vmax=high, interpolation="nearest")
                elif key == "difference":
                    shown = ax.imshow(examples.hard_images[row] - image, cmap="RdBu_r", vmin=-limit, vmax=limit,
                                      interpolation="nearest")
                else:
                    segmentation = examples.labels[row] if key == "label" else examples.corrupted_shapes[row]
                    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
                    ax.imshow(colours[segmentation], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if row == 0:
                    ax.set_title(title, fontsize="medium")
        if shown is not None:
            column = [k for k, _ in columns].index("difference")
            figure.colorbar(shown, ax=axes[:, column], location="bottom", shrink=0.85, aspect=18, pad=0.01)
        handles = [Patch(color=class_colour(name, examples.classes[name]), label=name) for name in _class_order(examples.classes)]
        figure.legend(handles=handles, loc="outside right center", title="structure")
        figure.suptitle("Hard examples from latent-space masking", fontsize="large")
        figure.text(0.5, -0.01, examples.caption, ha="center", va="top", fontsize="x-small", color="#555555", wrap=True)
    return figure


def _label_colours(classes: Mapping[str, int]) -> np.ndarray:
    """RGBA per label value: transparent background, a fixed colour per structure."""
    table = np.zeros((max(classes.values()) + 1, 4))
    for name, value in classes.items():
        table[value] = to_rgba(class_colour(name, value), LABEL_ALPHA)
    return table


def _class_order(classes: Mapping[str, int]) -> list[str]:
    usual = ("LV", "MYO", "RV")
    return sorted(classes, key=lambda name: (usual.index(name) if name in usual else len(usual), classes[name]))
