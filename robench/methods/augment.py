"""The paper's training augmentation (policy ``ACDC_affine_elastic_intensity``), batched, on any torch device.

Specification: ``methods.md`` §1b "Training augmentation" (COOP ``medseg/dataset_loader/transform.py``).
Applied, in this order, to a batch of padded slices ``(B, C, P, P)`` with labels ``(B, P, P)``:

1. horizontal flip (p=0.2) and vertical flip (p=0.2), independent, per sample;
2. brightness/contrast (p=0.5): ``x <- x*U(0.8,1.2) + U(-0.1,0.1)``, clipped to the slice's original [min, max];
3. random affine: rotation U(-15°,15°), translation U(-0.1,0.1)×size per axis, zoom U(0.8,1.1) per axis, no shear;
4. rotation by a multiple of 45° drawn uniformly from {0, 45, ..., 315} (always applied);
5. elastic (p=0.5): Gaussian-smoothed U(-1,1) noise, σ = size·U(0.1,0.2)·¾ px, scaled by α = size·U(1.5,2);
6. centre crop to ``crop``, per-slice min-max to [0, 1].

Why hand-written rather than TorchIO: TorchIO transforms operate on one subject at a time on the CPU
(NumPy/SimpleITK inside), while training needs the whole batch augmented on the device the network runs
on, in one vectorised call, reproducibly from an explicit ``torch.Generator``. Nothing here round-trips
through NumPy or SciPy.

Design decisions (and where they depart from the reference code):

* **One resampling.** Flips, the random affine, the 45° rotation and the elastic field are all sampling maps
  "output pixel -> input position", so they compose into a single grid (``F.affine_grid`` for the affine part
  plus the elastic displacement pushed through the affine's linear part) and the image is interpolated once.
  The reference resamples three times (affine, rotation, elastic), which blurs the image three times and loses
  content at the border at every step; composing keeps the image as sharp as one bilinear interpolation
  allows. Flips are folded in as the outermost factor; this is exact because the brightness/contrast step
  between flips and affine is pointwise (and its clip range is flip-invariant), so it commutes with them.
* **Only the crop is resampled.** Step 6's centre crop is applied to the sampling grid, not to the output,
  so only ``crop × crop`` pixels are interpolated; the result is identical to "warp the padded slice, then crop".
* **Conventions of the reference code** (torchsample, Keras lineage): matrices are *sampling* matrices (they map
  output coordinates to input coordinates, about the image centre), composed as rotation · translation · zoom;
  so a zoom factor z < 1 magnifies the content, as in the reference's mechanics. Translation is in pixels,
  U(-0.1, 0.1)·size per axis.
* **Interpolation / padding.** Image: bilinear, ``padding_mode="zeros"``. The slices reaching this function are
  zero-padded to P, so zero is what lies outside the field of view anyway, zero padding keeps image and
  label consistent (outside = black image + background label), and unlike ``"border"`` it does not smear
  edge intensities into streaks when a slice fills the whole field. The reference uses border clamping
  (torchsample) and reflection (scipy elastic) on images — which are zero at the padded border, so the
  difference is confined to slices that were cropped, not padded, to P.
  Labels: the foreground one-hot maps are warped bilinearly together with the image (one ``grid_sample``
  call), background = 1 - Σ foreground (so anything sampled from outside the slice is background), and the
  argmax is taken. This never mixes classes (every output is a class present in the input or background) and
  is the smooth equivalent of the reference's per-class interpolation thresholded at 0.5.
* **Elastic on the device.** The Gaussian smoothing is a separable convolution with zero padding (scipy's
  ``gaussian_filter(mode="constant", truncate=4)``), evaluated as two batched matrix products with banded
  Toeplitz Gaussian matrices ``G_y · N · G_x`` — the same linear operator as two 1-D convolutions, but a
  per-sample σ is just a per-sample matrix, and one ``bmm`` beats a grouped 1-D convolution with a
  269-tap kernel by an order of magnitude on CPU. Interpolation is bilinear instead of the reference's cubic.
* **Resolution scaling.** Geometry is defined relative to the paper's 224-pixel grid (``reference_size``) so
  that a coarser budget (P=112, P=56) sees the same relative deformation. Rotation, zoom and translation are
  already relative; σ scales with P. α must scale with P²/224, not P: smoothed white noise has an amplitude
  ∝ 1/σ ∝ 1/P, so α ∝ P would give displacements that are constant in *pixels* (i.e. 4× larger relative to the
  image at P=56). At P=224 both readings give the paper's α = 224·U(1.5, 2).
* All per-sample parameters are drawn in one vectorised ``torch.rand`` call from the caller's generator, on the
  data's device, in a fixed order, so a seed reproduces a batch exactly (per device: CPU and CUDA generators
  produce different streams).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from robench.errors import ConfigError
from robench.imageops import centre_crop, minmax_per_slice

__all__ = [
    "AugmentationPolicy",
    "augment_batch",
    "elastic_displacement",
]


@dataclass(frozen=True)
class AugmentationPolicy:
    """Parameters of ``ACDC_affine_elastic_intensity``; the defaults are the paper's values.

    Ranges are closed intervals ``(low, high)`` of a uniform draw; set ``low == high`` to fix a value and a
    probability to 0 to switch a step off. Pixel-valued quantities are expressed relative to the image size
    (see the module docstring for how they scale with P).
    """

    hflip_p: float = 0.2
    vflip_p: float = 0.2
    intensity_p: float = 0.5
    contrast_range: tuple[float, float] = (0.8, 1.2)
    brightness_range: tuple[float, float] = (-0.1, 0.1)
    rotation_range: tuple[float, float] = (-15.0, 15.0)  # degrees
    translation_range: tuple[float, float] = (-0.1, 0.1)  # fraction of the size, per axis
    zoom_range: tuple[float, float] = (0.8, 1.1)  # per axis, sampling-matrix convention (<1 magnifies)
    discrete_rotations: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)  # degrees
    elastic_p: float = 0.5
    elastic_sigma_range: tuple[float, float] = (0.1, 0.2)  # fraction of the size ...
    elastic_sigma_factor: float = 0.75  # ... times this factor, in pixels
    elastic_alpha_range: tuple[float, float] = (1.5, 2.0)  # multiples of the size at reference_size
    elastic_truncate: float = 4.0  # Gaussian kernel radius in σ (scipy's default)
    reference_size: int = 224  # the paper's pad size; α is scaled by (size / reference_size)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise ConfigError(f"AugmentationPolicy.{f.name} must be a probability in [0, 1], got {value}")
            if f.name.endswith("_range") and (len(value) != 2 or value[0] > value[1]):
                raise ConfigError(f"AugmentationPolicy.{f.name} must be (low, high) with low <= high, got {value}")
        if not self.discrete_rotations:
            raise ConfigError("AugmentationPolicy.discrete_rotations must hold at least one angle (use (0.0,))")
        if self.zoom_range[0] <= 0 or self.elastic_sigma_range[0] < 0 or self.elastic_sigma_factor < 0:
            raise ConfigError("AugmentationPolicy: zoom must be > 0 and elastic σ must be >= 0")
        if self.reference_size <= 0 or self.elastic_truncate <= 0:
            raise ConfigError("AugmentationPolicy: reference_size and elastic_truncate must be > 0")

    @classmethod
    def identity(cls) -> AugmentationPolicy:
        """Every random step switched off: the output is ``minmax_per_slice(centre_crop(x))``."""
        return cls(
            hflip_p=0.0,
            vflip_p=0.0,
            intensity_p=0.0,
            contrast_range=(1.0, 1.0),
            brightness_range=(0.0, 0.0),
            rotation_range=(0.0, 0.0),
            translation_range=(0.0, 0.0),
            zoom_range=(1.0, 1.0),
            discrete_rotations=(0.0,),
            elastic_p=0.0,
        )


def _uniform(u: Tensor, bounds: tuple[float, float]) -> Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _gaussian_toeplitz(length: int, sigma: Tensor, truncate: float, max_radius: int) -> Tensor:
    """(n, L, L) matrices whose product with a signal is a 1-D Gaussian filter with zero padding.

    Row i holds the kernel centred at i, cut at radius ``int(truncate·σ + 0.5)`` and normalised over the whole
    kernel (not the part inside the signal), exactly like ``scipy.ndimage.gaussian_filter1d(mode="constant")``.
    """
    dev, dt = sigma.device, sigma.dtype
    s = sigma.clamp_min(1e-6)[:, None]
    radius = torch.floor(truncate * s + 0.5)
    taps = torch.arange(-max_radius, max_radius + 1, device=dev, dtype=dt)
    kern = torch.exp((-0.5 * (taps / s) ** 2).clamp_min(-60.0)) * (taps.abs() <= radius)
    norm = kern.sum(-1)  # (n,)
    idx = torch.arange(length, device=dev, dtype=dt)
    off = idx[:, None] - idx[None, :]  # (L, L)
    # the exponent is clamped so the far (masked-out) entries never become float32 denormals, which are slow
    mat = torch.exp((-0.5 * (off / s[:, :, None]) ** 2).clamp_min(-60.0)) * (off.abs() <= radius[:, :, None])
    return mat / norm[:, None, None]


def _gaussian_smooth(noise: Tensor, sigma: Tensor, truncate: float = 4.0, sigma_max: float | None = None) -> Tensor:
    """Separable Gaussian filter (zero padding) of ``noise`` (n, c, H, W) with a per-sample σ (n,) in pixels.

    Evaluated as ``G_y @ noise @ G_x`` with banded Toeplitz matrices: the same operator as a separable
    convolution, but batched over per-sample kernels with a single matmul per axis (fast on CPU and GPU).
    ``sigma_max`` (an upper bound on σ, known from the policy) sizes the kernel used for normalisation without
    reading σ back from the device; if omitted it is read (one device sync).
    """
    h, w = noise.shape[-2:]
    if sigma_max is None:
        sigma_max = float(sigma.max()) if sigma.numel() else 0.0
    max_radius = int(truncate * sigma_max + 0.5) + 1
    gy = _gaussian_toeplitz(h, sigma, truncate, max_radius)
    gx = gy if w == h else _gaussian_toeplitz(w, sigma, truncate, max_radius)
    return gy[:, None] @ noise @ gx[:, None]  # G_x is symmetric


def elastic_displacement(
    n: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    policy: AugmentationPolicy = AugmentationPolicy(),
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw ``n`` elastic displacement fields ``(n, 2, H, W)`` in pixels (channel 0: x/width, 1: y/height).

    The scipy-style elastic of the reference: U(-1, 1) noise per pixel and axis, Gaussian-smoothed with
    σ = size·U(σ-range)·factor, times α = size·U(α-range)·(size / reference_size), where
    size = sqrt(H·W). The extra size/reference factor keeps the deformation the same *relative to the image*
    at any resolution (see module docstring). Not gated by ``elastic_p`` — ``augment_batch`` does that.
    """
    device = torch.device(device) if device is not None else generator.device
    size = math.sqrt(height * width)
    u = torch.rand(n, 2, generator=generator, device=device, dtype=dtype)
    sigma = size * policy.elastic_sigma_factor * _uniform(u[:, 0], policy.elastic_sigma_range)
    alpha = size * (size / policy.reference_size) * _uniform(u[:, 1], policy.elastic_alpha_range)
    noise = torch.rand(n, 2, height, width, generator=generator, device=device, dtype=dtype) * 2 - 1
    sigma_max = size * policy.elastic_sigma_factor * policy.elastic_sigma_range[1]
    smooth = _gaussian_smooth(noise, sigma, policy.elastic_truncate, sigma_max=sigma_max)
    return smooth * alpha[:, None, None, None]


def _rotation(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _discrete_rotation_table(angles: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    """(K, 2, 2) rotation matrices with exact zeros/ones for multiples of 90°, so 90° turns are pixel-exact."""
    mats = []
    for deg in angles:
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        c, s = (0.0 if abs(c) < 1e-12 else c), (0.0 if abs(s) < 1e-12 else s)
        mats.append([[c, -s], [s, c]])
    return torch.tensor(mats, device=device, dtype=dtype)


@torch.no_grad()
def augment_batch(
    images: Tensor,
    labels: Tensor,
    *,
    crop: int,
    generator: torch.Generator,
    policy: AugmentationPolicy = AugmentationPolicy(),
) -> tuple[Tensor, Tensor]:
    """Augment a batch of padded slices with the paper's policy; return ``(images, labels)`` cropped to ``crop``.

    ``images``: (B, C, H, W) floating point (C = 1 for the paper; every channel gets the same geometry and
    intensity change); ``labels``: (B, H, W) integer class maps (0 = background, non-negative). Returns
    images (B, C, crop, crop) in [0, 1] (per-slice and channel min-max) with the input's dtype
    and device, and labels (B, crop, crop) int64 whose values are input classes or background.
    All randomness comes from ``generator``, which must live on the data's device. Inputs are not modified.
    """
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a floating (B, C, H, W) tensor, got {tuple(images.shape)} {images.dtype}")
    if labels.shape != (images.shape[0], *images.shape[2:]):
        expected = (images.shape[0], *images.shape[2:])
        raise ValueError(f"labels must be (B, H, W) = {expected}, got {tuple(labels.shape)}")
    dev, dt = images.device, images.dtype
    # parameters and the sampling grid are computed in at least float32 (half precision would quantise the
    # geometry); only grid_sample's inputs are cast to the data's dtype
    pdt = torch.float64 if dt == torch.float64 else torch.float32
    if generator.device.type != dev.type:
        raise ValueError(f"generator is on {generator.device}, data on {dev}: create it on the data's device")
    b, c, h, w = images.shape
    p = policy

    # ---- per-sample parameters: one vectorised draw, fixed column order --------------------------------------
    u = torch.rand(b, 11, generator=generator, device=dev, dtype=pdt)
    hflip = u[:, 0] < p.hflip_p
    vflip = u[:, 1] < p.vflip_p
    do_intensity = u[:, 2] < p.intensity_p
    contrast = _uniform(u[:, 3], p.contrast_range)
    brightness = _uniform(u[:, 4], p.brightness_range)
    angle = torch.deg2rad(_uniform(u[:, 5], p.rotation_range))
    shift = _uniform(u[:, 6:8], p.translation_range) * torch.tensor([w, h], device=dev, dtype=pdt)  # px (x, y)
    zoom = _uniform(u[:, 8:10], p.zoom_range)  # (x, y)
    table = _discrete_rotation_table(p.discrete_rotations, dev, pdt)
    k = (u[:, 10] * len(p.discrete_rotations)).long().clamp_max(len(p.discrete_rotations) - 1)

    # ---- 2. brightness/contrast (pointwise, before the geometry; commutes with the flips) ------------------
    # Unselected samples get contrast 1 and brightness 0, for which the clip is a no-op: x·1 + 0 == x exactly.
    x = images
    if p.intensity_p > 0:
        lo = x.amin(dim=(-2, -1), keepdim=True)
        hi = x.amax(dim=(-2, -1), keepdim=True)
        gain = torch.where(do_intensity, contrast, 1.0).to(dt).view(b, 1, 1, 1)
        bias = torch.where(do_intensity, brightness, 0.0).to(dt).view(b, 1, 1, 1)
        x = torch.minimum(torch.maximum(x * gain + bias, lo), hi)

    # ---- 1, 3, 4: one sampling matrix per sample, in pixel coordinates about the centre ---------------------
    # Sampling maps compose in reverse order of application: with q = R45 · (p_out + d(p_out)) (rotation by the
    # multiple of 45°, after the elastic displacement d), the input position is p_in = Flip·R·(Zoom·q + shift).
    # Linear part L = Flip·R·Zoom·R45, offset t = Flip·R·shift.
    flip = torch.stack([1 - 2 * hflip.to(pdt), 1 - 2 * vflip.to(pdt)], -1)  # (B, 2): -1 flips that axis
    rot = _rotation(angle)
    lin = flip[:, :, None] * (rot * zoom[:, None, :]) @ table[k]
    off = flip * (rot @ shift[:, :, None]).squeeze(-1)
    # to grid_sample's normalised coordinates (align_corners=False): x_n = x_px · 2 / W, y_n = y_px · 2 / H
    scale = torch.tensor([2.0 / w, 2.0 / h], device=dev, dtype=pdt)
    theta = torch.cat([scale[:, None] * lin / scale[None, :], (scale * off)[:, :, None]], -1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, H, W, 2)

    # ---- 6a. crop the *grid*, so only crop×crop pixels are interpolated (same pixels as centre_crop) -----
    ch, cw = min(crop, h), min(crop, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    grid = grid[:, top : top + ch, left : left + cw]

    # ---- 5. elastic: displacement in output pixels, pushed through L and added to the affine grid ----------
    # The field is drawn and smoothed on the whole P×P slice (its statistics depend on P), then cropped.
    if p.elastic_p > 0:
        gate = (torch.rand(b, generator=generator, device=dev, dtype=pdt) < p.elastic_p).to(pdt)
        disp = elastic_displacement(b, h, w, generator=generator, policy=p, device=dev, dtype=pdt)
        disp = disp[:, :, top : top + ch, left : left + cw] * gate[:, None, None, None]
        grid = grid + torch.einsum("bij,bjhw->bhwi", scale[:, None] * lin, disp)
    grid = grid.to(dt)

    # ---- resample image + foreground one-hot once; background = 1 - Σ foreground ---------------------------
    n_cls = int(labels.max()) + 1 if labels.numel() else 1
    lab = labels.long()
    planes = torch.empty(b, c + n_cls - 1, h, w, device=dev, dtype=dt)  # [image channels, one-hot of classes 1..K-1]
    planes[:, :c] = x
    if n_cls > 1:
        planes[:, c:] = lab[:, None] == torch.arange(1, n_cls, device=dev).view(1, -1, 1, 1)
    warped = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out_img = warped[:, :c]
    if n_cls > 1:
        # argmax over [background, foreground...] as a running comparison over the (few) classes: a strided
        # argmax over dim 1 is ~50x slower on CPU. Strict ">" keeps the lowest class on ties, like argmax.
        fg_w = warped[:, c:]
        best = 1 - fg_w.sum(1)
        out_lab = torch.zeros_like(best, dtype=torch.long)
        for c in range(1, n_cls):
            better = fg_w[:, c - 1] > best
            out_lab = torch.where(better, c, out_lab)
            best = torch.where(better, fg_w[:, c - 1], best)
    else:
        out_lab = torch.zeros(b, *warped.shape[-2:], dtype=torch.long, device=dev)

    # ---- 6b. pad if crop exceeds the slice, then per-slice min-max ----------------------------------------
    out_img = centre_crop(out_img, crop)
    out_lab = centre_crop(out_lab, crop)
    return minmax_per_slice(out_img), out_lab
