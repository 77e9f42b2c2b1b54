"""Data sets in the layouts nnU-Net made standard: nnU-Net v2 raw, and the original MSD layout (v1).

nnU-Net v2 raw: `dataset.json` with `channel_names` ({"0": "FLAIR", …}), `labels`
({"background": 0, "tumour": 1, …}) and `file_ending`; `imagesTr/<case>_0000<ending>`, one file
per channel; `labelsTr/<case><ending>`. The Medical Segmentation Decathlon: `dataset.json`
with `modality` ({"0": "MRI"}), `labels` as index → name and a `training` list of
{image, label} paths; a multi-channel image is one 4-D file (X, Y, Z, C).

A case is read onto robench's axes: slices along the axis of largest spacing (the last file
axis when all are equal), then rows and columns. Multi-channel images come back as
(Z, C, Y, X), single-channel ones as (Z, Y, X), as every other reader returns them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from robench.benchmark.config import Geometry
from robench.benchmark.fingerprint import fingerprint_files
from robench.benchmark.suites.base import (
    Case, CaseRef, SuiteData, SuiteOptions, TestSet, check_case, nested_subset, register_suite, seeded_split,
)
from robench.benchmark.suites.nifti import load_nifti, slice_axes, to_slices
from robench.errors import ConfigError, DataError

Layout = Literal["nnunet-v2", "msd"]
FILE_ENDINGS = (".nii.gz", ".nii")  # what robench reads; nnU-Net's other readers (.png, .tif, .mha) are refused by name


@dataclass(frozen=True)
class RawCase:
    case_id: str
    images: tuple[Path, ...]  # v2: one file per channel; MSD: one (3-D or 4-D) file
    label: Path


@dataclass(frozen=True)
class RawDataset:
    root: Path
    layout: Layout
    name: str
    channels: tuple[str, ...]  # channel names, in channel order
    classes: dict[str, int]  # foreground class name → label value
    cases: tuple[RawCase, ...]  # sorted by case id

    @property
    def description(self) -> str:
        return f"{self.name} ({self.layout}: {len(self.cases)} cases, channels {', '.join(self.channels)})"

    def files(self) -> list[Path]:
        """Every file whose contents determine a run's numbers."""
        return [self.root / "dataset.json", *(f for c in self.cases for f in (*c.images, c.label))]


def read_dataset(root: Path) -> RawDataset:
    """Parse and check `root/dataset.json` and the files it implies; every problem names the file and the fix."""
    root = Path(root).expanduser().resolve()
    spec_path = root / "dataset.json"
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; --data-root must point at a data set folder holding dataset.json")
    if not spec_path.is_file():
        raise DataError(f"{spec_path}: missing; an nnU-Net raw or MSD data set folder has a dataset.json describing it")
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{spec_path}: not valid JSON ({exc}); fix the file") from None
    if not isinstance(spec, dict):
        raise DataError(f"{spec_path}: expected a JSON object with labels and channel_names (or modality)")
    if "channel_names" in spec or "file_ending" in spec:
        return _read_v2(root, spec_path, spec)
    if "modality" in spec or "training" in spec:
        return _read_msd(root, spec_path, spec)
    raise DataError(
        f"{spec_path}: neither nnU-Net v2 (channel_names, labels, file_ending) nor MSD (modality, labels, training); "
        "add the missing keys"
    )


def _channel_names(spec_path: Path, names: object, key: str) -> tuple[str, ...]:
    if not isinstance(names, dict) or not names:
        raise DataError(f"{spec_path}: '{key}' must map channel indices to names, e.g. {{\"0\": \"FLAIR\"}}")
    try:
        order = sorted((int(k), str(v)) for k, v in names.items())
    except ValueError:
        raise DataError(f"{spec_path}: '{key}' keys must be channel indices 0, 1, …; got {list(names)}") from None
    if [i for i, _ in order] != list(range(len(order))):
        raise DataError(f"{spec_path}: '{key}' indices must be 0..{len(order) - 1} without gaps; got {[i for i, _ in order]}")
    return tuple(n for _, n in order)


def _foreground(spec_path: Path, pairs: list[tuple[str, object]]) -> dict[str, int]:
    """(name, value) pairs → foreground classes; region-based labels (lists of values) are refused."""
    classes: dict[str, int] = {}
    for name, value in pairs:
        if isinstance(value, (list, tuple)):
            raise DataError(
                f"{spec_path}: label {name!r} is region-based ({value}); robench scores disjoint classes — "
                "give every class its own integer value"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError(f"{spec_path}: label {name!r} has value {value!r}; label values are non-negative integers")
        if value in classes.values():
            raise DataError(f"{spec_path}: label value {value} is given twice; each class needs its own value")
        if value != 0:
            classes[str(name)] = value
    if 0 not in [v for _, v in pairs]:
        raise DataError(f"{spec_path}: no label with value 0 (background); add \"background\": 0")
    if not classes:
        raise DataError(f"{spec_path}: no foreground label; list at least one class besides the background")
    if sorted(classes.values()) != list(range(1, len(classes) + 1)):
        raise DataError(f"{spec_path}: label values {sorted(classes.values())} must be 1..{len(classes)} without gaps")
    return classes


def _required(spec_path: Path, spec: dict, keys: tuple[str, ...], what: str, fix: str, labels_form: str) -> dict:
    """Check a layout's required keys are present and return its `labels` mapping."""
    for key in keys:
        if key not in spec:
            raise DataError(f"{spec_path}: {what} '{key}' is missing; {fix}")
    if not isinstance(spec["labels"], dict):
        raise DataError(f"{spec_path}: 'labels' must map {labels_form}")
    return spec["labels"]


def _read_v2(root: Path, spec_path: Path, spec: dict) -> RawDataset:
    labels = _required(spec_path, spec, ("channel_names", "labels", "file_ending"), "nnU-Net v2 key",
                       "add it (see nnU-Net's dataset_format.md)", "class names to values, e.g. {\"background\": 0, \"tumour\": 1}")
    channels = _channel_names(spec_path, spec["channel_names"], "channel_names")
    classes = _foreground(spec_path, list(labels.items()))
    ending = str(spec["file_ending"])
    if ending not in FILE_ENDINGS:
        raise DataError(f"{spec_path}: file_ending {ending!r} is not supported; robench reads {', '.join(FILE_ENDINGS)} (convert the files)")
    label_dir, image_dir = root / "labelsTr", root / "imagesTr"
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: missing; an nnU-Net v2 raw data set has imagesTr/ and labelsTr/")
    labels_found = {p.name[: -len(ending)]: p for p in label_dir.iterdir() if p.name.endswith(ending) and not p.name.startswith(".")}
    image_cases = {p.name[: -len(ending) - 5] for p in image_dir.iterdir() if p.name.endswith(ending) and p.name[-len(ending) - 5] == "_"}
    unlabelled = sorted(image_cases - set(labels_found))
    if unlabelled:
        raise DataError(f"{label_dir}: no label file for {', '.join(unlabelled[:5])}{' …' if len(unlabelled) > 5 else ''}; add {unlabelled[0]}{ending} or remove the case's images")
    cases = []
    for case_id in sorted(labels_found):
        images = tuple(image_dir / f"{case_id}_{i:04d}{ending}" for i in range(len(channels)))
        missing = [p for p in images if not p.is_file()]
        if missing:
            raise DataError(f"{missing[0]}: missing; dataset.json lists {len(channels)} channel(s) ({', '.join(channels)}), one file per channel")
        cases.append(RawCase(case_id, images, labels_found[case_id]))
    if not cases:
        raise DataError(f"{label_dir}: no {ending} label files; the data set has no training cases")
    _check_count(spec_path, spec, len(cases))
    return RawDataset(root, "nnunet-v2", str(spec.get("name", root.name)), channels, classes, tuple(cases))


def _read_msd(root: Path, spec_path: Path, spec: dict) -> RawDataset:
    labels = _required(spec_path, spec, ("modality", "labels", "training"), "MSD key", "add it (or convert to nnU-Net v2)",
                       "values to class names, e.g. {\"0\": \"background\", \"1\": \"tumour\"}")
    channels = _channel_names(spec_path, spec["modality"], "modality")
    try:
        pairs = [(str(name), int(value)) for value, name in labels.items()]
    except ValueError:
        raise DataError(f"{spec_path}: MSD 'labels' keys are label values 0, 1, …; got {list(labels)}") from None
    classes = _foreground(spec_path, pairs)
    training = spec["training"]
    if not isinstance(training, list) or not training:
        raise DataError(f"{spec_path}: 'training' must list {{\"image\": …, \"label\": …}} entries; it is empty or not a list")
    cases, seen = [], set()
    for entry in training:
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise DataError(f"{spec_path}: training entry {entry!r} needs 'image' and 'label'")
        image, label = (root / str(entry["image"])).resolve(), (root / str(entry["label"])).resolve()
        ending = next((e for e in FILE_ENDINGS if image.name.endswith(e)), None)
        if ending is None:
            raise DataError(f"{image}: unsupported file type; robench reads {', '.join(FILE_ENDINGS)}")
        case_id = image.name[: -len(ending)]
        if case_id in seen:
            raise DataError(f"{spec_path}: case {case_id} is listed twice in 'training'; remove the duplicate")
        seen.add(case_id)
        for path in (image, label):
            if not path.is_file():
                raise DataError(f"{path}: missing; dataset.json lists it in 'training' — add the file or remove the entry")
        cases.append(RawCase(case_id, (image,), label))
    _check_count(spec_path, spec, len(cases))
    return RawDataset(root, "msd", str(spec.get("name", root.name)), channels, classes, tuple(sorted(cases, key=lambda c: c.case_id)))


def _check_count(spec_path: Path, spec: dict, found: int) -> None:
    stated = spec.get("numTraining")
    if stated is not None and int(stated) != found:
        raise DataError(f"{spec_path}: numTraining is {stated} but {found} labelled cases were found; fix numTraining or add the missing cases")


def check_slice_axis(axis: int | None) -> None:
    if axis not in (None, 0, 1, 2):
        raise ConfigError(f"--slice-axis must be 0, 1 or 2 (a file axis), got {axis}")


def slice_axis_of(spacing_xyz: tuple[float, ...], requested: int | None = None) -> int:
    """The file axis to slice along: `requested`, else the one of largest spacing (the last on a tie)."""
    if requested is not None:
        check_slice_axis(requested)
        return requested
    largest = max(spacing_xyz[:3])
    return max(i for i in range(3) if spacing_xyz[i] == largest)


def load_case(dataset: RawDataset, raw: RawCase, slice_axis: int | None = None, meta: dict | None = None) -> Case:
    """Read one case onto robench's axes and check it (shapes, affines, label values, NaNs)."""
    label, zooms, affine = load_nifti(raw.label)
    if label.ndim != 3:
        raise DataError(f"{raw.label}: label has {label.ndim} dimensions, expected 3")
    arrays = []
    for path in raw.images:
        data, image_zooms, image_affine = load_nifti(path)
        if data.ndim == 4 and dataset.layout == "msd":
            arrays.extend(data[..., c] for c in range(data.shape[3]))
        elif data.ndim == 3:
            arrays.append(data)
        else:
            raise DataError(f"{path}: image has {data.ndim} dimensions, expected 3 (or 4 with channels last in the MSD layout)")
        if data.shape[:3] != label.shape:
            raise DataError(f"{path}: image shape {data.shape[:3]} does not match its label {raw.label.name} {label.shape}; the pair must share one grid")
        if not np.allclose(image_affine, affine, atol=1e-3):
            raise DataError(f"{path}: affine differs from its label {raw.label.name}; the pair must share one grid (resample the label)")
    if len(arrays) != len(dataset.channels):
        raise DataError(f"{raw.images[0]}: {len(arrays)} channel(s), dataset.json lists {len(dataset.channels)} ({', '.join(dataset.channels)})")
    axis = slice_axis_of(zooms, slice_axis)
    spacing_xyz = [float(z) for z in zooms[:3]]
    spacing = tuple(spacing_xyz[a] for a in slice_axes(axis))
    channels = [to_slices(np.asarray(a, dtype=np.float32), axis) for a in arrays]
    label_slices = to_slices(np.asarray(label), axis)
    if not np.array_equal(label_slices, np.round(label_slices)):
        raise DataError(f"{raw.label}: label values are not integers; a label file holds class values 0..{len(dataset.classes)}")
    meta = {"subject": raw.case_id, "slice_axis": axis, **(meta or {})}
    if len(channels) == 1:
        case = Case(raw.case_id, channels[0], label_slices.astype(np.int16), spacing, meta, affine)
        return check_case(case, str(raw.images[0]), len(dataset.classes) + 1, label_source=str(raw.label))
    for c, path in zip(channels, raw.images * len(channels) if len(raw.images) == 1 else raw.images):
        check_case(Case(raw.case_id, c, label_slices.astype(np.int16), spacing), str(path), len(dataset.classes) + 1, label_source=str(raw.label))
    return Case(raw.case_id, np.stack(channels, axis=1), label_slices.astype(np.int16), spacing, meta, affine)


def case_refs(dataset: RawDataset, cases, slice_axis: int | None = None, meta_of=None) -> tuple[CaseRef, ...]:
    """Lazy refs of `cases`; `meta_of(raw)` adds metadata known without reading (site, …)."""
    refs = []
    for raw in cases:
        meta = meta_of(raw) if meta_of else {}
        refs.append(CaseRef(raw.case_id, functools.partial(load_case, dataset, raw, slice_axis, meta), {"subject": raw.case_id, **meta}))
    return tuple(refs)


def header_geometry(dataset: RawDataset, cases, slice_axis: int | None = None) -> Geometry:
    """The paper-budget grid of a data set from its label headers (no voxel data read): the median
    in-plane spacing, and a crop covering the median in-plane extent at that spacing."""
    spacings, extents = [], []
    for raw in cases:
        try:
            header = nib.load(str(raw.label)).header
        except Exception as exc:  # nibabel raises many types for foreign or truncated files
            raise DataError(f"{raw.label}: cannot read the NIfTI header ({exc.__class__.__name__}); re-export the file") from None
        shape, zooms = header.get_data_shape()[:3], [float(z) for z in header.get_zooms()[:3]]
        axis = slice_axis_of(zooms, slice_axis)
        plane = [a for a in range(3) if a != axis]
        spacings.append(float(np.median([zooms[a] for a in plane])))
        extents.append(max(shape[a] * zooms[a] for a in plane))
    spacing = float(np.median(spacings))
    return Geometry.covering(spacing, float(np.median(extents)) / spacing)


TEST_SHARE, VAL_SHARE = 0.2, 0.1  # of the labelled cases; the rest is the training pool


def fingerprint(dataset: RawDataset, options: SuiteOptions, **split: object) -> str:
    """The data's content plus everything that decides which case goes where and how it is sliced."""
    return json.dumps({
        "files": fingerprint_files(dataset.files(), dataset.root), "slice_axis": options.slice_axis,
        "train_fraction": options.train_fraction, **split,
    }, sort_keys=True)


class NnunetSuite:
    name = "nnunet"
    description = "any nnU-Net v2 raw or MSD data set: seeded 20 % test / 10 % validation / training pool (cval = split seed)"
    source = "user-supplied: --data-root DATASET_FOLDER (dataset.json, imagesTr/, labelsTr/; nnU-Net v2 raw or MSD)"

    def build(self, options: SuiteOptions) -> SuiteData:
        from robench.corruptions.testsets import suite_artefact_sets  # corruptions import the suites: here, not at the top

        if options.data_root is None:
            raise ConfigError("the nnunet suite needs --data-root pointing at a data set folder (dataset.json, imagesTr/, labelsTr/)")
        dataset = read_dataset(options.data_root)
        by_id = {c.case_id: c for c in dataset.cases}
        split = seeded_split(list(by_id), options.cval, TEST_SHARE, VAL_SHARE)
        train = nested_subset(split["train"], options.train_fraction)
        meta = {"site": dataset.name, "vendor": ""}

        def refs(ids):
            return case_refs(dataset, [by_id[i] for i in ids], options.slice_axis, lambda raw: meta)

        test = TestSet(dataset.name, "intra", refs(split["test"]), {"site": dataset.name})
        geometry = header_geometry(dataset, dataset.cases, options.slice_axis)
        data_fingerprint = fingerprint(dataset, options, split_seed=options.cval, shares=[TEST_SHARE, VAL_SHARE])
        artefacts = suite_artefact_sets(test, options, self.name, data_fingerprint, geometry) if len(dataset.channels) == 1 else ()
        return SuiteData(
            self.name, refs(train), refs(split["val"]), (test, *artefacts), dataset.classes, data_fingerprint,
            (f"{dataset.description}; split seed {options.cval}: {len(train)} training (of a pool of "
             f"{len(split['train'])}), {len(split['val'])} validation, {len(split['test'])} test cases",),
            geometry=geometry,
            splits={"train": train, "train_pool": split["train"], "val": split["val"], "test": split["test"]},
            channels=dataset.channels, training_slices="all", oversample_foreground=1 / 3,
        )


    def external_cases(self, root: Path, *, classes: dict[str, int], slice_axis: int | None = None) -> tuple[CaseRef, ...]:
        """Every labelled case of another data set folder, for `robench evaluate` of a finished run."""
        dataset, cases = external_dataset(root, classes)
        return case_refs(dataset, cases, slice_axis, lambda raw: {"site": dataset.name})


def external_dataset(root: Path, classes: dict[str, int]) -> tuple[RawDataset, tuple[RawCase, ...]]:
    """A data set to evaluate a run on: it must name the classes the run was trained on."""
    dataset = read_dataset(root)
    if dataset.classes != dict(classes):
        raise DataError(
            f"{dataset.root / 'dataset.json'}: labels {dataset.classes} differ from the run's {dict(classes)}; "
            "evaluate on a folder with the same label set"
        )
    return dataset, dataset.cases


register_suite(NnunetSuite())
