"""Sunnybrook Cardiac Data reader: GE cine DICOMs with expert endo- and epicardial contours.

Every contoured 2-D slice is one case (protocol.md §4): LV = inside the i-contour
(endocardium), MYO = inside the o-contour (epicardium) minus the LV, and only where an
o-contour exists, i.e. at ED. RV is never contoured, so each case lists the classes its
reference delineates in `meta["classes"]`, and all slices of one patient and phase share
`meta["unit"]` so they are aggregated as one observation.

Contours are matched to DICOMs by the InstanceNumber tag, never by file name, so both layouts
work (folder names above the patient folders do not matter; p1/p2 papillary contours are ignored):

- redistributed: `dicoms/<SCD id>/<n>.dcm`, `contourfiles/<original id>/{i,o}-contours/
  IM-0001-NNNN-{i,o}contour-manual.txt`, `link.csv` (patient_id, original_id);
- original release (Cardiac Atlas Project): `SCD_DeidentifiedImages/<SCD id>/<series>/
  IM-000S-NNNN.dcm`, beside long-axis and other series of the patient,
  `SCD_ManualContours/<original id, zero-padded as SC-HF-I-01>/contours-manual/IRCCI-expert/
  IM-0001-NNNN-{i,o}contour-manual.txt`, `scd_patientdata.csv` (PatientID, OriginalID).

A contour folder is named after the original id (SC-HF-I-1, zero padding ignored) or the SCD
id itself. Original ids map to SCD ids through any such CSV in the root or one level below,
else through the published 45-patient table (`CAP_SUBJECTS`). Uncontoured DICOMs are no cases;
an o-contour without an i-contour delineates no LV and is no case either (`epi_only`).
"""

from __future__ import annotations

import csv
import functools
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from matplotlib.path import Path as Polygon
from pydicom.pixels import apply_modality_lut

from robench.benchmark.suites.base import Case, CaseRef, TestSet, check_case
from robench.errors import DataError
from robench.labels import CARDIAC_CLASSES, NUM_CARDIAC_CLASSES

SITE, VENDOR = "Sunnybrook", "GE"
ED_CLASSES, ES_CLASSES = ("LV", "MYO"), ("LV",)

# scd_patientdata.csv of the Cardiac Atlas Project release: SCD00NN01 is the NN-th original id.
_CAP_ORIGINAL_IDS = (
    *(f"SC-HF-I-{n}" for n in (1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 40)),
    *(f"SC-HF-NI-{n}" for n in (3, 4, 7, 11, 12, 13, 14, 15, 31, 33, 34, 36)),
    *(f"SC-HYP-{n}" for n in (1, 3, 6, 7, 8, 9, 10, 11, 12, 37, 38, 40)),
    *(f"SC-N-{n}" for n in (2, 3, 5, 6, 7, 9, 10, 11, 40)),
)
CAP_SUBJECTS = {original: f"SCD{i:05d}01" for i, original in enumerate(_CAP_ORIGINAL_IDS, 1)}
ID_COLUMNS = (("patient_id", "original_id"), ("PatientID", "OriginalID"))

_ORIGINAL_ID = re.compile(r"^(SC-(?:HF-I|HF-NI|HYP|N))-0*(\d+)$", re.IGNORECASE)
_SCD_ID = re.compile(r"^SCD\d{7}$")
_CONTOUR_NAME = re.compile(r"^IM-\d+-(\d+)-([io])contour-manual\.txt$")


@dataclass(frozen=True)
class SunnybrookSlice:
    """One contoured image: the case unit. `epi` is None where only the endocardium was drawn."""

    instance: int
    frame: str  # "ED" | "ES"
    dicom: Path
    endo: Path
    epi: Path | None

    @property
    def classes(self) -> tuple[str, ...]:
        return ED_CLASSES if self.epi is not None else ES_CLASSES


@dataclass(frozen=True)
class SunnybrookPatient:
    subject: str  # SCD id, "SCD0000101"
    original_id: str  # "SC-HF-I-1"
    contour_dir: Path
    slices: tuple[SunnybrookSlice, ...]
    epi_only: tuple[Path, ...] = ()  # o-contours without an i-contour: no LV delineated, so no case


@dataclass(frozen=True)
class _Header:
    path: Path
    instance: int
    series: str
    series_name: str  # SeriesDescription and folder name, to recognise the short-axis cine
    location: float | tuple[float, ...] | None
    trigger: float | None
    spacing: tuple[float, float, float] | None


def canonical_original_id(name: str) -> str | None:
    """'SC-HF-I-01' and 'SC-HF-I-1' -> 'SC-HF-I-1'; None for anything else."""
    match = _ORIGINAL_ID.match(name)
    return f"{match.group(1).upper()}-{int(match.group(2))}" if match else None


def discover_sunnybrook(root: Path) -> dict[str, SunnybrookPatient]:
    """Every contoured patient under `root` by SCD id, with each contoured slice's DICOM and phase."""
    if not root.is_dir():
        raise DataError(f"{root}: Sunnybrook root does not exist; pass the folder holding the DICOMs and contour files")
    id_map, _ = _read_id_map(root)
    dicoms = sorted(root.rglob("*.dcm"))
    if not dicoms:
        raise DataError(f"{root}: no DICOM files (*.dcm) found; the Sunnybrook images are needed beside the contours")
    contours = _contours_by_folder(root, id_map)
    if not contours:
        raise DataError(f"{root}: no contour files (IM-0001-NNNN-icontour-manual.txt) found")
    dicoms_by_folder: dict[Path, list[Path]] = defaultdict(list)
    subjects = set(id_map.values())
    for path in dicoms:
        folder = _patient_folder(path, root, lambda name: name in subjects or bool(_SCD_ID.match(name)))
        if folder is not None:
            dicoms_by_folder[folder].append(path)
    dicom_folders: dict[str, list[Path]] = defaultdict(list)
    for folder in dicoms_by_folder:
        dicom_folders[folder.name].append(folder)
    patients = {}
    for folder, files in sorted(contours.items()):
        name = canonical_original_id(folder.name) or folder.name
        subject = name if _SCD_ID.match(name) else id_map.get(name)
        if subject is None:
            raise DataError(
                f"{folder}: contour folder {folder.name} maps to no SCD patient id; add a row "
                f"'<SCD id>,{name}' to a link.csv (patient_id,original_id) in {root}"
            )
        if subject not in dicom_folders:
            raise DataError(
                f"{folder}: the contours of {name} belong to {subject}, but no DICOM folder {subject} "
                f"was found under {root}; add that patient's DICOMs or remove its contours"
            )
        if subject in patients:
            raise DataError(f"{folder}: a second contour folder for {subject} (first {patients[subject].contour_dir})")
        if len(dicom_folders[subject]) > 1:
            raise DataError(f"{root}: several DICOM folders named {subject} ({', '.join(map(str, dicom_folders[subject]))}); keep one")
        dicom_folder = dicom_folders[subject][0]
        patients[subject] = _patient(subject, name, folder, files, dicom_folder, dicoms_by_folder[dicom_folder])
    return dict(sorted(patients.items()))


def _read_id_map(root: Path) -> tuple[dict[str, str], list[Path]]:
    """Original id -> SCD id: the published table, extended or overridden by id CSVs in the root."""
    id_map = dict(CAP_SUBJECTS)
    sources = []
    for path in sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv")):
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        columns = next((c for c in ID_COLUMNS if rows and all(k in rows[0] for k in c)), None)
        if columns is None:
            continue
        sources.append(path)
        for row in rows:
            subject, original = (row[k].strip() for k in columns)
            id_map[canonical_original_id(original) or original] = subject
    return id_map, sources


def _patient_folder(path: Path, root: Path, is_patient) -> Path | None:
    """The nearest folder above `path` (inside `root`) whose name says it is a patient's."""
    for parent in path.parents:
        if parent == root:
            return None
        if is_patient(parent.name):
            return parent
    return None


def _contours_by_folder(root: Path, id_map: dict[str, str]) -> dict[Path, dict[int, dict[str, Path]]]:
    """Contour folder -> instance -> {"i": endo file, "o": epi file}."""
    known = set(id_map) | set(id_map.values())

    def is_patient(name: str) -> bool:
        return canonical_original_id(name) is not None or bool(_SCD_ID.match(name)) or name in known

    found: dict[Path, dict[int, dict[str, Path]]] = defaultdict(lambda: defaultdict(dict))
    for path in sorted(root.rglob("*-[io]contour-manual.txt")):
        match = _CONTOUR_NAME.match(path.name)
        if match is None:
            raise DataError(f"{path}: not a Sunnybrook contour name (IM-0001-NNNN-icontour-manual.txt, NNNN = instance)")
        folder = _patient_folder(path, root, is_patient)
        if folder is None:
            raise DataError(
                f"{path}: no folder above it is named after a patient (SC-HF-I-1 or SCD0000101); "
                "keep contour files in their patient's folder"
            )
        found[folder][int(match.group(1))][match.group(2)] = path
    return found


def _patient(
    subject: str, original_id: str, folder: Path, files: dict[int, dict[str, Path]], dicom_folder: Path, dicoms: list[Path]
) -> SunnybrookPatient:
    contoured = {n: f for n, f in files.items() if "i" in f}
    epi_only = tuple(f["o"] for n, f in sorted(files.items()) if "i" not in f)
    for f in files.values():
        for path in f.values():
            read_contour(path)  # fail at discovery, not hours later at evaluation
    if not contoured:
        return SunnybrookPatient(subject, original_id, folder, (), epi_only)
    headers = _cine_series(subject, contoured, dicom_folder, dicoms)
    for n in contoured:
        if headers[n].spacing is None:
            raise _missing_spacing(headers[n].path)
    frames = assign_phases(contoured, headers, folder)
    slices = tuple(
        SunnybrookSlice(n, frames[n], headers[n].path, contoured[n]["i"], contoured[n].get("o")) for n in sorted(contoured)
    )
    return SunnybrookPatient(subject, original_id, folder, slices, epi_only)


def _read_header(path: Path) -> _Header | None:
    try:
        with pydicom.config.disable_value_validation():  # the release's UIDs break VR rules; harmless here
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if "InstanceNumber" not in ds or ds.InstanceNumber in (None, ""):
                return None  # not an image a contour can refer to
            if ds.get("SliceLocation") not in (None, ""):
                location = round(float(ds.SliceLocation), 1)
            elif ds.get("ImagePositionPatient"):
                location = tuple(round(float(v), 1) for v in ds.ImagePositionPatient)
            else:
                location = None
            trigger = float(ds.TriggerTime) if ds.get("TriggerTime") not in (None, "") else None
            series = str(ds.get("SeriesInstanceUID") or path.parent)
            name = f"{ds.get('SeriesDescription', '')} {path.parent.name}"
            return _Header(path, int(ds.InstanceNumber), series, name, location, trigger, _spacing(ds))
    except Exception as exc:
        raise DataError(f"{path}: cannot read DICOM header ({exc.__class__.__name__}: {exc}); re-download or remove this file") from None


def _cine_series(
    subject: str, contoured: dict[int, dict[str, Path]], folder: Path, dicoms: list[Path]
) -> dict[int, _Header]:
    """Instance -> header in the one series holding every contoured instance.

    The original release keeps long-axis, perfusion and scout series in the same patient folder,
    with overlapping instance numbers; if several series hold all contoured instances, the one
    named short-axis (SAX) wins.
    """
    series: dict[str, dict[int, _Header]] = defaultdict(dict)
    for path in dicoms:
        header = _read_header(path)
        if header is None:
            continue
        other = series[header.series].get(header.instance)
        if other is not None:
            raise DataError(f"{path}: instance {header.instance} also in {other.path} of the same series; remove the duplicate")
        series[header.series][header.instance] = header
    needed = set(contoured)
    covering = [s for s in series.values() if needed <= set(s)]
    if len(covering) > 1:
        covering = [s for s in covering if "SAX" in s[min(needed)].series_name.upper()] or covering
    if len(covering) == 1:
        return covering[0]
    if not covering:
        best = max(series.values(), key=lambda s: len(needed & set(s)), default={})
        missing = min(needed - set(best))
        raise DataError(
            f"{contoured[missing]['i']}: instance {missing} has no DICOM of {subject} (matched by the InstanceNumber "
            f"tag under {folder}); add the missing DICOM or remove the contour file"
        )
    paths = ", ".join(str(s[min(needed)].path.parent) for s in covering)
    raise DataError(f"{subject}: several DICOM series hold every contoured instance ({paths}); keep only the short-axis cine")


def assign_phases(contoured: dict[int, dict[str, Path]], headers: dict[int, _Header], folder: Path) -> dict[int, str]:
    """ED or ES for every instance with an endocardial contour.

    1. With an epicardial contour: ED (epicardium is drawn at ED only).
    2. Endocardium only, at a slice location that has an ED instance: ES.
    3. Endocardium only, at a location without epicardium (apex, base): the phase whose median
       TriggerTime over rules 1-2 is nearer. In the real data ED lies at the end of the RR
       interval (TriggerTime 690-730 ms, cine frame 19-20 of 20) and ES at 220-300 ms (frame 7-8).
    """
    frames = {n: "ED" for n, f in contoured.items() if "o" in f}
    ed_locations = {headers[n].location for n in frames if headers[n].location is not None}
    for n in contoured:
        if n not in frames and headers[n].location in ed_locations:
            frames[n] = "ES"
    undecided = sorted(set(contoured) - set(frames))
    if not undecided:
        return frames
    anchors = {
        phase: [_trigger(headers[n]) for n, f in frames.items() if f == phase] for phase in ("ED", "ES")
    }
    if not all(anchors.values()):
        raise DataError(
            f"{contoured[undecided[0]]['i']}: cannot tell ED from ES: {folder.name} needs epicardial contours "
            "with an endocardium-only partner at the same slice location to anchor the phases"
        )
    medians = {phase: statistics.median(times) for phase, times in anchors.items()}
    for n in undecided:
        t = _trigger(headers[n])
        frames[n] = min(medians, key=lambda phase: abs(t - medians[phase]))
    return frames


def _trigger(header: _Header) -> float:
    if header.trigger is None:
        raise DataError(f"{header.path}: no TriggerTime; it is needed to tell ED from ES on slices without epicardium")
    return header.trigger


def read_contour(path: Path) -> np.ndarray:
    """(N, 2) points, x = column, y = row, in pixels; at least 3, all numeric."""
    points = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            x, y = (float(v) for v in line.split())
        except ValueError:
            raise DataError(f"{path}: line {number} {line.strip()!r} is not an 'x y' pair of numbers; fix or remove this file") from None
        points.append((x, y))
    if len(points) < 3:
        raise DataError(f"{path}: {len(points)} points, a contour needs at least 3; fix or remove this file")
    return np.array(points)


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside the closed polygon.

    Pixel (row r, column c) has its centre at x = c, y = r: the DICOM convention (ImagePositionPatient
    is the centre of the first pixel) and the one the contour points use (x = column, y = row).
    """
    rows, cols = shape
    lo = np.clip(np.floor(points.min(0)).astype(int), 0, None)
    hi = np.minimum(np.ceil(points.max(0)).astype(int) + 1, (cols, rows))
    mask = np.zeros(shape, bool)
    if np.any(hi <= lo):
        return mask
    yy, xx = np.mgrid[lo[1] : hi[1], lo[0] : hi[0]]
    inside = Polygon(points).contains_points(np.column_stack([xx.ravel(), yy.ravel()]))
    mask[lo[1] : hi[1], lo[0] : hi[0]] = inside.reshape(yy.shape)
    return mask


def case_refs(patient: SunnybrookPatient, meta: dict[str, object]) -> list[CaseRef]:
    """One lazy case per contoured slice, id `<SCD id>_<ED|ES>_<instance:04d>`."""
    refs = []
    for s in patient.slices:
        case_meta = {
            **meta, "site": SITE, "vendor": VENDOR, "subject": patient.subject, "original_id": patient.original_id,
            "frame": s.frame, "instance": s.instance, "classes": s.classes, "unit": f"{patient.subject}_{s.frame}",
        }
        case_id = f"{patient.subject}_{s.frame}_{s.instance:04d}"
        refs.append(CaseRef(case_id, functools.partial(load_sunnybrook_case, case_id, s, case_meta), case_meta))
    return refs


def load_sunnybrook_case(case_id: str, s: SunnybrookSlice, meta: dict[str, object]) -> Case:
    image, spacing = _read_image(s.dicom)
    label = np.zeros(image.shape, np.int16)
    endo = polygon_mask(read_contour(s.endo), image.shape)
    if s.epi is not None:
        label[polygon_mask(read_contour(s.epi), image.shape)] = CARDIAC_CLASSES["MYO"]
    label[endo] = CARDIAC_CLASSES["LV"]
    case = Case(case_id, image[None], label[None], spacing, {**meta, "spacing_source": "header"}, None)
    return check_case(case, str(s.dicom), NUM_CARDIAC_CLASSES)


def _read_image(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(rows, columns) float32 in modality units (RescaleSlope/Intercept applied), and the spacing."""
    try:
        with pydicom.config.disable_value_validation():
            ds = pydicom.dcmread(path)
            image = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)
            spacing = _spacing(ds)
    except Exception as exc:
        raise DataError(f"{path}: cannot read DICOM image ({exc.__class__.__name__}: {exc}); re-download or remove this file") from None
    if image.ndim != 2:
        raise DataError(f"{path}: expected one 2-D image, found pixel data of shape {image.shape}")
    if spacing is None:
        raise _missing_spacing(path)
    return image, spacing


def _spacing(ds: pydicom.Dataset) -> tuple[float, float, float] | None:
    """(SliceThickness, else SpacingBetweenSlices; PixelSpacing row; PixelSpacing column) in mm, None if absent."""
    pixel = ds.get("PixelSpacing")
    z = ds.get("SliceThickness") or ds.get("SpacingBetweenSlices")
    if not pixel or len(pixel) != 2 or z in (None, ""):
        return None
    return float(z), float(pixel[0]), float(pixel[1])


def _missing_spacing(path: Path) -> DataError:
    return DataError(f"{path}: PixelSpacing or SliceThickness/SpacingBetweenSlices missing; the metrics need the voxel size in mm")


def sunnybrook_test_set(root: Path) -> tuple[TestSet, list[Path]]:
    """The cross-site test set "Sunnybrook", and the files that define its cases (for a data fingerprint)."""
    patients = discover_sunnybrook(root)
    refs = tuple(ref for p in patients.values() for ref in case_refs(p, {}))
    _, id_files = _read_id_map(root)
    files = [*id_files]
    for p in patients.values():
        files += [f for s in p.slices for f in (s.dicom, s.endo, s.epi) if f is not None]
        files += p.epi_only
    return TestSet("Sunnybrook", "cross-site", refs, {"site": SITE, "vendor": VENDOR}), files
