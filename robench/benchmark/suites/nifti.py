"""NIfTI reading with clear errors; arrays come back as (Z, Y, X) with spacing (z, y, x)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from robench.errors import DataError


def load_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Return (data in file axis order, zooms, affine); corrupt or missing files raise DataError."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the data root and the dataset layout")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for truncated or foreign files
        raise DataError(f"{path}: cannot read NIfTI ({exc.__class__.__name__}: {exc}); re-download or remove this file") from None
    zooms = tuple(float(z) for z in img.header.get_zooms())
    if _spacing_missing(path, img):
        raise DataError(f"{path}: voxel spacing (pixdim) is missing or zero; metrics in mm need it — fix the header")
    return data, zooms, np.asarray(img.affine, dtype=np.float64)


def _spacing_missing(path: Path, img) -> bool:
    """nibabel silently replaces zero pixdims by 1 mm on load; read the raw header to catch that."""
    if not isinstance(img.header, nib.Nifti1Header):
        return False
    with nib.openers.ImageOpener(str(path)) as f:
        raw = type(img.header).from_fileobj(f, check=False)
    ndim = min(int(raw["dim"][0]), 3)
    return bool(np.any(~np.isfinite(raw["pixdim"][1 : ndim + 1])) or np.any(raw["pixdim"][1 : ndim + 1] <= 0))


def xyz_to_zyx(volume: np.ndarray) -> np.ndarray:
    """NIfTI (X, Y, Z) → robench (Z, Y, X): slices first, as every 2-D method consumes them."""
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))


def zyx_to_xyz(volume: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))


def slice_axes(axis: int) -> tuple[int, int, int]:
    """File axes in robench order when slicing along file axis `axis`: it first, the other two reversed
    (axis 2 gives xyz_to_zyx's (Z, Y, X))."""
    return (axis, *(a for a in (2, 1, 0) if a != axis))  # type: ignore[return-value]


def to_slices(volume: np.ndarray, axis: int) -> np.ndarray:
    """File (X, Y, Z[, …]) → (slice, row, column[, …]) along file axis `axis`."""
    return np.ascontiguousarray(np.transpose(volume, (*slice_axes(axis), *range(3, volume.ndim))))


def from_slices(volume: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of `to_slices` for a 3-D volume: back to the file's axis order."""
    return np.ascontiguousarray(np.transpose(volume, np.argsort(slice_axes(axis))))


def save_nifti(volume_zyx: np.ndarray, affine: np.ndarray, path: Path, slice_axis: int = 2) -> None:
    """Write a (slice, row, column) array, sliced along file axis `slice_axis`, with the source's affine,
    atomically (temp file + rename)."""
    img = nib.Nifti1Image(from_slices(volume_zyx, slice_axis), affine)
    img.header.set_xyzt_units("mm")
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"  # nibabel compresses by the name it writes
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    try:
        nib.save(img, str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
