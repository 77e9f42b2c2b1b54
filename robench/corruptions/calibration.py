"""How strong each severity is: image quality of corrupted stacks against their clean stacks.

Used to calibrate the graded tables (docs/corruptions.md): the numbers are measured on the
network's view, the 192² per-slice min-max stack, before and after the transform, with the
same per-case draws the test sets use.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from robench.benchmark.config import PAPER_SPACING_MM
from robench.benchmark.suites.base import Case
from robench.corruptions.frozen import derive_seed
from robench.corruptions.pipeline import paper_grid, run_transform
from robench.corruptions.recipe import Recipe
from robench.imageops import minmax_per_slice


def psnr(clean: np.ndarray, corrupted: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (peak 1)."""
    mse = float(np.mean((np.asarray(clean, np.float64) - np.asarray(corrupted, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(clean: np.ndarray, corrupted: np.ndarray, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004; Gaussian window σ = 1.5 px, data range 1) over 2-D slices."""
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for x, y in zip(np.asarray(clean, np.float64), np.asarray(corrupted, np.float64)):
        blur = lambda a: gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        values.append(np.mean(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))
    return float(np.mean(values))


def quality(source: Case, recipes: Iterable[Recipe], *, seed: int = 0) -> pd.DataFrame:
    """PSNR and SSIM of every recipe's copy 1 of one case against the clean stack."""
    _, stack = paper_grid(source)
    spacing = (float(source.spacing[0]), PAPER_SPACING_MM, PAPER_SPACING_MM)
    clean = stack.numpy()
    rows = []
    for recipe in recipes:
        parameters = recipe.draw(derive_seed(seed, recipe.stream, source.case_id, 1))
        corrupted = minmax_per_slice(run_transform(recipe, parameters, stack, spacing)).numpy()
        rows.append({"case_id": source.case_id, "set": recipe.name, "corruption": recipe.corruption,
                     "severity": recipe.severity, "psnr": psnr(clean, corrupted), "ssim": ssim(clean, corrupted)})
    return pd.DataFrame(rows)


def calibration_table(per_case: pd.DataFrame) -> pd.DataFrame:
    """Per (corruption, severity): mean PSNR/SSIM over cases, and for each measure the share of
    cases that get worse from the previous severity (1.0 = monotone for every case)."""
    graded = per_case[per_case["severity"] > 0]
    groups = graded.groupby(["corruption", "severity"], sort=False)
    table = groups[["psnr", "ssim"]].mean()
    for measure in ("psnr", "ssim"):
        wide = graded.pivot_table(index=["corruption", "case_id"], columns="severity", values=measure)
        worse = (wide.diff(axis=1) < 0).groupby(level="corruption").mean()
        table[f"{measure}_worse_than_previous"] = [worse.at[c, s] if s > 1 else np.nan for c, s in table.index]
    table["cases"] = groups["case_id"].nunique()
    return table.reset_index()
