"""The knobs of the synthetic cardiac suite: generator version, tissues, sites, groups.

Why a table: the domain shifts between sites are the point of the suite, so every one of
them is a named number here that docs and tests can quote, not a constant buried in code.
Changing any number changes the generated data, so bump `GENERATOR_VERSION` with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Mapping

GENERATOR_VERSION = 1


class Tissue(IntEnum):
    """Tissue classes painted on the fine grid; each site maps them to intensities."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    LUNG = 3
    SOFT_TISSUE = 4
    LIVER = 5
    MARROW = 6
    BONE = 7
    CSF = 8
    BLOOD = 9
    MYOCARDIUM = 10


def _table(values: dict[str, float]) -> dict[str, float]:
    missing = {t.name.lower() for t in Tissue} - set(values)
    if missing:
        raise ValueError(f"tissue table lacks {sorted(missing)}")
    return dict(values)


@dataclass(frozen=True)
class SiteParameters:
    """How one (synthetic) scanner turns anatomy into a stored image.

    Intensities are relative (site A blood = 1) before gamma, bias and noise; `snr` is the
    blood signal over the noise standard deviation; `intensity_scale` is the stored value
    of a signal of 1 in the file's dtype.
    """

    name: str
    vendor_name: str
    centre: int
    pixel_spacing: float  # mm, in-plane, square pixels
    matrix: tuple[int, int]  # rows, columns
    slice_spacing: float  # mm between slice centres
    slice_thickness: float  # mm, rectangular slice profile
    supersampling: int  # fine-grid samples per pixel and axis (partial volume)
    intensities: Mapping[str, float]
    texture: float  # relative amplitude of the smooth tissue texture
    texture_scale_mm: float
    gamma: float
    psf_fwhm_mm: float
    bias_strength: float  # largest |log gain| of the bias field over the field of view
    snr: float
    dtype: str
    intensity_scale: float
    quantisation: float = 0.0  # float dtypes: values are multiples of 1/quantisation (a rescaled
    # integer, as scanners export floats); 0 = none
    cine_frames: int = 5  # frames per 4-D M&Ms volume (ED at 0)
    tissue_texture: Mapping[str, float] = field(
        default_factory=lambda: {"lung": 3.0, "blood": 0.6, "fat": 0.8, "marrow": 1.5}
    )  # per-tissue multiplier of `texture` (1 when not listed)

    @property
    def field_of_view(self) -> tuple[float, float]:
        return (self.matrix[0] * self.pixel_spacing, self.matrix[1] * self.pixel_spacing)


_BSSFP = {
    "air": 0.0,
    "fat": 0.88,
    "muscle": 0.22,
    "lung": 0.035,
    "soft_tissue": 0.33,
    "liver": 0.36,
    "marrow": 0.55,
    "bone": 0.06,
    "csf": 0.95,
    "blood": 1.0,
    "myocardium": 0.26,
}

SITE_PARAMETERS: Mapping[str, SiteParameters] = MappingProxyType(
    {
        # Training site: clean bSSFP, good blood/myocardium contrast, ACDC-like grid.
        "A": SiteParameters(
            name="A", vendor_name="SynthA", centre=1,
            pixel_spacing=1.40, matrix=(224, 224), slice_spacing=10.0, slice_thickness=8.0,
            supersampling=2, intensities=_table(_BSSFP), texture=0.06, texture_scale_mm=3.0,
            gamma=1.0, psf_fwhm_mm=1.6, bias_strength=0.12, snr=28.0,
            dtype="int16", intensity_scale=700.0,
        ),
        # Lower blood/myocardium contrast, lower SNR, softer PSF, float storage.
        "B": SiteParameters(
            name="B", vendor_name="SynthB", centre=2,
            pixel_spacing=1.25, matrix=(240, 240), slice_spacing=10.0, slice_thickness=10.0,
            supersampling=2,
            intensities=_table(_BSSFP | {"blood": 0.85, "myocardium": 0.42, "muscle": 0.36,
                                         "soft_tissue": 0.45, "liver": 0.48, "fat": 0.78}),
            texture=0.09, texture_scale_mm=2.5,
            gamma=1.0, psf_fwhm_mm=2.4, bias_strength=0.2, snr=8.0,
            dtype="float32", intensity_scale=0.8, quantisation=4096.0,
        ),
        # Strong surface-coil bias field and a gamma curve that lifts dark tissue.
        "C": SiteParameters(
            name="C", vendor_name="SynthC", centre=3,
            pixel_spacing=1.50, matrix=(208, 208), slice_spacing=9.0, slice_thickness=8.0,
            supersampling=2, intensities=_table(_BSSFP), texture=0.06, texture_scale_mm=3.0,
            gamma=0.55, psf_fwhm_mm=1.8, bias_strength=0.8, snr=22.0,
            dtype="uint16", intensity_scale=3000.0,
        ),
        # Coarse pixels, thick slices, blurrier; fat brighter than blood, darker blood pool.
        "D": SiteParameters(
            name="D", vendor_name="SynthD", centre=4,
            pixel_spacing=2.00, matrix=(160, 160), slice_spacing=10.0, slice_thickness=10.0,
            supersampling=3,
            intensities=_table(_BSSFP | {"blood": 0.72, "fat": 1.0, "myocardium": 0.24,
                                         "liver": 0.42, "soft_tissue": 0.38}),
            texture=0.08, texture_scale_mm=4.0,
            gamma=1.0, psf_fwhm_mm=3.0, bias_strength=0.18, snr=20.0,
            dtype="int16", intensity_scale=2000.0,
        ),
    }
)

SITE_INDEX: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate(SITE_PARAMETERS)})


@dataclass(frozen=True)
class GroupParameters:
    """Sampling ranges of one ACDC pathology group (uniform within each range).

    `lv_edv` and `lv_ef` are what the label files measure (tests check them with a small
    margin for partial volume); `wall` is the ED wall thickness in mm.
    """

    name: str
    lv_edv: tuple[float, float]  # ml
    lv_ef: tuple[float, float]
    wall: tuple[float, float]  # mm
    length: tuple[float, float]  # mm, LV cavity base to apex at ED
    septal_hypertrophy: tuple[float, float] = (0.0, 0.1)
    infarct: bool = False
    rv_scale: tuple[float, float] = (0.9, 1.1)
    rv_ef: tuple[float, float] = (0.45, 0.62)


GROUP_PARAMETERS: Mapping[str, GroupParameters] = MappingProxyType(
    {
        "NOR": GroupParameters("NOR", lv_edv=(115, 165), lv_ef=(0.55, 0.68), wall=(8.0, 10.0),
                               length=(80, 92)),
        "DCM": GroupParameters("DCM", lv_edv=(210, 300), lv_ef=(0.15, 0.36), wall=(6.5, 8.5),
                               length=(90, 100), rv_scale=(1.0, 1.2), rv_ef=(0.30, 0.48)),
        "HCM": GroupParameters("HCM", lv_edv=(90, 135), lv_ef=(0.62, 0.78), wall=(12.5, 16.0),
                               length=(74, 86), septal_hypertrophy=(0.2, 0.45)),
        "MINF": GroupParameters("MINF", lv_edv=(160, 240), lv_ef=(0.22, 0.40), wall=(7.5, 10.0),
                                length=(86, 98), infarct=True, rv_ef=(0.38, 0.55)),
        "ARV": GroupParameters("ARV", lv_edv=(100, 145), lv_ef=(0.50, 0.64), wall=(7.5, 9.5),
                               length=(78, 90), rv_scale=(1.35, 1.6), rv_ef=(0.20, 0.38)),
    }
)

GROUPS: tuple[str, ...] = tuple(GROUP_PARAMETERS)
