"""Where a slice stack samples space: pixel centres, fine sub-samples, and their depths.

Why a layout of (slices, rows, k, columns, k): each pixel's k x k fine sub-samples sit on
their own axes, so partial volume is one mean over axes 2 and 4, and painters can work on a
window of pixels without copying the whole stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    rows: int
    cols: int
    spacing: float  # mm, in-plane
    k: int  # sub-samples per pixel and axis
    depths: tuple[float, ...]  # slice centres below the ED base, mm
    thickness: float  # mm, rectangular slice profile

    def x(self, cols: slice = slice(None)) -> np.ndarray:
        """Fine-sample x positions (mm, origin at the image centre), shape (1, 1, 1, n, k)."""
        return self._positions(self.cols, cols)[None, None, None]

    def y(self, rows: slice = slice(None)) -> np.ndarray:
        """Fine-sample y positions (mm, downwards), shape (1, n, k, 1, 1)."""
        return self._positions(self.rows, rows)[None, :, :, None, None]

    def depth(self) -> np.ndarray:
        """Slice depth plus a sub-sample offset spread over the slice profile (a Latin square),
        so partial volume across the slice comes at no extra cost; shape (slices, 1, k, 1, k)."""
        i, j = np.meshgrid(np.arange(self.k), np.arange(self.k), indexing="ij")
        order = ((i + j) % self.k) * self.k + (i + 2 * j) % self.k
        offsets = ((order + 0.5) / self.k**2 - 0.5) * self.thickness
        depth = np.asarray(self.depths)[:, None, None] + offsets[None]
        return depth.astype(np.float32)[:, None, :, None, :]

    def window(self, cx: float, cy: float, reach: float) -> tuple[slice, slice]:
        """Pixel rows and columns that hold every point within `reach` mm of (cx, cy)."""

        def span(centre: float, n: int) -> slice:
            first = int(np.floor((centre - reach) / self.spacing + 0.5 * n))
            last = int(np.ceil((centre + reach) / self.spacing + 0.5 * n))
            return slice(min(max(first, 0), n), min(max(last, 0), n))

        return span(cy, self.rows), span(cx, self.cols)

    def _positions(self, n: int, which: slice) -> np.ndarray:
        index = np.arange(n)[which]
        pos = index[:, None] + (np.arange(self.k) + 0.5) / self.k
        return (pos * self.spacing - 0.5 * n * self.spacing).astype(np.float32)
