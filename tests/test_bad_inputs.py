"""The bad-input and fault catalogue: what a demanding user tries, and what robench must answer.

Each case sets up one bad input or fault, runs the command line, and expects an exit code, a
fragment of the one-line message, no traceback, and — where something could be lost — a
check that nothing was: inputs unchanged, no training started on data that fails later, no
file written outside the run, finished results untouched, resumed results bit-identical.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from robench.benchmark.runner import RunRequest, execute
from robench.benchmark.store import RunLock
from robench.benchmark.suites import SuiteOptions
from robench.benchmark.suites.cardiac import ACDC_TEST, ACDC_TRAIN, ACDC_VAL
from robench.cli import app
from tests.fixtures import write_acdc_hdf5

runner = CliRunner()
CVAL0 = sorted({*ACDC_TEST, *(f"patient{i:03d}" for i in ACDC_TRAIN[0] + ACDC_VAL[0])})
TEST_SUBJECT = "patient007"  # a test subject of every cval


@dataclass
class World:
    """What a case may use: a private copy of tiny ACDC, a finished run, a scratch folder."""

    tmp: Path
    tiny_acdc: Path
    finished: Path  # a finished smoke run folder (shared: cases copy it before changing it)
    monkeypatch: pytest.MonkeyPatch
    notes: dict = field(default_factory=dict)
    cleanups: list = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.tmp / "runs"

    def acdc_copy(self) -> Path:
        root = self.tmp / "acdc"
        if not root.exists():
            shutil.copytree(self.tiny_acdc, root)
        return root

    def run_copy(self) -> Path:
        target = self.tmp / "copied-runs" / self.finished.name
        if not target.exists():
            shutil.copytree(self.finished, target)
        return target

    def run_args(self, root: Path | None = None, *extra: str) -> list[str]:
        root = root or self.tiny_acdc
        return ["run", "--suite", "cardiac", "--data-root", str(root), "--budget", "smoke", "--corruptions", "none",
                "--out", str(self.out), *extra]


@dataclass(frozen=True)
class Fault:
    id: str
    make: Callable[[World], list[str]]
    code: int
    message: str
    intact: Callable[[World], None] | None = None


# ------------------------------------------------------------------------------- data helpers


def _test_files(root: Path, frame: str = "01") -> tuple[Path, Path]:
    stem = root / "training" / TEST_SUBJECT / f"{TEST_SUBJECT}_frame{frame}"
    return Path(f"{stem}.nii.gz"), Path(f"{stem}_gt.nii.gz")


def _rewrite(path: Path, change: Callable[[np.ndarray], np.ndarray], affine: np.ndarray | None = None) -> None:
    img = nib.load(str(path))
    data = change(np.asarray(img.dataobj).copy())
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine), str(path))


def _with_image(change, affine=None):
    def make(w: World) -> list[str]:
        root = w.acdc_copy()
        _rewrite(_test_files(root)[0], change, affine)
        return w.run_args(root)
    return make


def _with_label(change):
    def make(w: World) -> list[str]:
        root = w.acdc_copy()
        _rewrite(_test_files(root)[1], change)
        return w.run_args(root)
    return make


def _nan(a):
    a = a.astype(np.float32)
    a[0, 0, 0] = np.nan
    return a


def _label7(a):
    a[1, 1, 1] = 7
    return a


def _corrupt_test_image(w: World) -> list[str]:
    root = w.acdc_copy()
    _test_files(root)[0].write_bytes(b"\x1f\x8b not a nifti at all")
    return w.run_args(root)


def _missing_test_label(w: World) -> list[str]:
    root = w.acdc_copy()
    _test_files(root)[1].unlink()
    return w.run_args(root)


def _zero_pixdim(w: World) -> list[str]:
    """nibabel repairs a zero pixdim when it saves, so the header bytes are edited (pixdim[1] at byte 80)."""
    import gzip
    import struct

    root = w.acdc_copy()
    path = _test_files(root)[0]
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[80:84] = struct.pack("<f", 0.0)
    path.write_bytes(gzip.compress(bytes(raw)))
    return w.run_args(root)


def _duplicate_subject(w: World) -> list[str]:
    root = w.acdc_copy()
    shutil.copytree(root / "training" / TEST_SUBJECT, root / "testing" / TEST_SUBJECT)
    return w.run_args(root)


def _hdf5(w: World, edit_csv: Callable[[str], str] | None = None, encoding: str = "utf-8") -> Path:
    root = write_acdc_hdf5(w.tmp / "h5", CVAL0)
    if edit_csv is not None:
        csv = root / "info.csv"
        csv.write_text(edit_csv(csv.read_text()), encoding=encoding)
    return root


def _hdf5_run(edit_csv, encoding="utf-8"):
    return lambda w: w.run_args(_hdf5(w, edit_csv, encoding))


def _duplicate_csv_row(text: str) -> str:
    lines = text.splitlines()
    return "\n".join([*lines, lines[1]]) + "\n"


def _spacing_in_csv(value: str):
    def edit(text: str) -> str:
        lines = text.splitlines()
        cells = lines[1].split(",")
        cells[-3] = value  # spacing_x
        lines[1] = ",".join(cells)
        return "\n".join(lines) + "\n"
    return edit


def _hdf5_without_csv(w: World) -> list[str]:
    root = _hdf5(w)
    (root / "info.csv").unlink()
    return w.run_args(root)


def _hdf5_truncated_volume(w: World) -> list[str]:
    root = _hdf5(w)
    path = root / f"{TEST_SUBJECT}_frame01.h5"
    path.write_bytes(path.read_bytes()[:200])
    return w.run_args(root)


def _hdf5_without_image_key(w: World) -> list[str]:
    root = _hdf5(w)
    path = root / f"{TEST_SUBJECT}_frame02.h5"
    with h5py.File(path, "r+") as f:
        del f["image"]
    return w.run_args(root)


def _no_training_started(w: World) -> None:
    assert not list(w.out.rglob("*.pt")), "a checkpoint was written for data that was refused"
    assert not [p for p in w.out.iterdir() if p.is_dir()] if w.out.exists() else True, "an empty run folder was left"


# ------------------------------------------------------------------------------- environment helpers


def _file_as_out(w: World) -> list[str]:
    w.tmp.mkdir(parents=True, exist_ok=True)
    (w.tmp / "afile").write_text("x")
    return [*w.run_args()[:-2], "--out", str(w.tmp / "afile")]


def _looping_out(w: World) -> list[str]:
    loop = w.tmp / "loop"
    os.symlink(loop, loop)
    return [*w.run_args()[:-2], "--out", str(loop / "runs")]


def _read_only_out(w: World) -> list[str]:
    """Root ignores permission bits, so the refusal of the file system is what is simulated."""
    import tempfile

    real = tempfile.TemporaryFile

    def refuse(*args, **kwargs):
        if str(kwargs.get("dir", "")).startswith(str(w.out)):
            raise PermissionError(errno.EACCES, "Permission denied", str(kwargs["dir"]))
        return real(*args, **kwargs)

    w.monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    return w.run_args()


def _home_is_a_file(w: World) -> list[str]:
    w.tmp.mkdir(parents=True, exist_ok=True)
    home = w.tmp / "home-file"
    home.write_text("")
    w.monkeypatch.setenv("ROBENCH_HOME", str(home))
    return w.run_args()


def _option(*extra: str):
    return lambda w: w.run_args(None, *extra)


# ------------------------------------------------------------------------------- run-state helpers


def _corrupt_records(w: World) -> list[str]:
    run = w.run_copy()
    (run / "records.parquet").write_bytes(b"PAR1 garbage")
    return [*w.run_args()[:-2], "--out", str(run.parent)]


def _done_kept(w: World) -> None:
    assert (w.tmp / "copied-runs" / w.finished.name / "done.json").exists()


def _truncated_best(w: World) -> list[str]:
    run = w.run_copy()
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    return ["evaluate", str(run), "--test-root", str(w.tiny_acdc), "--name", "Other"]


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _crafted_best(w: World) -> list[str]:
    run = w.run_copy()
    w.notes["marker"] = str(w.tmp / "payload-ran")
    import torch

    torch.save({"method": _Payload(w.notes["marker"]), "iteration": 1, "score": 1.0}, run / "checkpoints" / "best.pt",
               pickle_protocol=pickle.HIGHEST_PROTOCOL)
    image = _test_files(w.tiny_acdc)[0]
    return ["predict", str(run), str(image), "--out", str(w.tmp / "masks")]


def _payload_not_run(w: World) -> None:
    assert not Path(w.notes["marker"]).exists(), "the checkpoint's payload was executed"


def _interrupted(w: World) -> list[str]:
    run = w.run_copy()
    (run / "done.json").unlink()
    (run / "records.parquet").unlink()
    return [*w.run_args()[:-2], "--out", str(run.parent)]


def _locked(w: World) -> list[str]:
    args = _interrupted(w)
    lock = RunLock(w.tmp / "copied-runs" / w.finished.name)
    lock.__enter__()
    w.notes["lock"] = lock
    return [*args, "--resume"]


def _release_lock_and_resume(w: World) -> None:
    w.notes.pop("lock").__exit__(None, None, None)
    run = w.tmp / "copied-runs" / w.finished.name
    assert not (run / "done.json").exists(), "the locked run was finished by the second process"


def _name_outside(w: World) -> list[str]:
    run = w.run_copy()
    return ["evaluate", str(run), "--test-root", str(w.tiny_acdc), "--name", "../../escaped"]


def _nothing_outside(w: World) -> None:
    assert not list(w.tmp.rglob("escaped*"))
    assert not (w.tmp / "copied-runs" / w.finished.name / "evaluations").exists() or not list(
        (w.tmp / "copied-runs" / w.finished.name / "evaluations").glob("*escaped*"))


def _name_of_own_test_set(w: World) -> list[str]:
    return ["evaluate", str(w.run_copy()), "--test-root", str(w.tiny_acdc), "--name", "ACDC"]


def _evaluate_twice(w: World) -> list[str]:
    run = w.run_copy()
    other = write_acdc_hdf5(w.tmp / "other", ["patient101"], seed=3)
    first = runner.invoke(app, ["evaluate", str(run), "--test-root", str(other), "--name", "Other"])
    assert first.exit_code == 0, first.output
    w.notes["first"] = _digest(next((run / "evaluations").glob("Other-*.parquet")))
    return ["evaluate", str(run), "--test-root", str(other), "--name", "Other"]


def _first_evaluation_kept(w: World) -> None:
    run = w.tmp / "copied-runs" / w.finished.name
    assert _digest(next((run / "evaluations").glob("Other-*.parquet"))) == w.notes["first"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------- predict helpers


def _predict_into_input_folder(w: World) -> list[str]:
    folder = w.tmp / "images"
    folder.mkdir(parents=True)
    image = folder / "case.nii.gz"
    shutil.copy(_test_files(w.tiny_acdc)[0], image)
    w.notes["input"] = (image, _digest(image))
    return ["predict", str(w.finished), str(image), "--out", str(folder)]


def _input_unchanged(w: World) -> None:
    image, digest = w.notes["input"]
    assert _digest(image) == digest


def _predict_same_names(w: World) -> list[str]:
    a, b = w.tmp / "a", w.tmp / "b"
    for folder in (a, b):
        folder.mkdir(parents=True)
        shutil.copy(_test_files(w.tiny_acdc)[0], folder / "case.nii.gz")
    return ["predict", str(w.finished), str(a / "case.nii.gz"), str(b / "case.nii.gz"), "--out", str(w.tmp / "masks")]


def _no_masks(w: World) -> None:
    assert not (w.tmp / "masks").exists() or not list((w.tmp / "masks").iterdir())


def _predict_over_existing(w: World) -> list[str]:
    masks = w.tmp / "masks"
    masks.mkdir(parents=True)
    (masks / "patient007_frame01.nii.gz").write_text("an earlier result")
    return ["predict", str(w.finished), str(_test_files(w.tiny_acdc)[0]), "--out", str(masks)]


def _earlier_mask_kept(w: World) -> None:
    assert (w.tmp / "masks" / "patient007_frame01.nii.gz").read_text() == "an earlier result"


def _predict_text_file(w: World) -> list[str]:
    w.tmp.mkdir(parents=True, exist_ok=True)
    (w.tmp / "notes.txt").write_text("hello")
    return ["predict", str(w.finished), str(w.tmp / "notes.txt"), "--out", str(w.tmp / "masks")]


def _predict_4d(w: World) -> list[str]:
    w.tmp.mkdir(parents=True, exist_ok=True)
    path = w.tmp / "cine.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 4, 3)).astype(np.float32), np.eye(4)), str(path))
    return ["predict", str(w.finished), str(path), "--out", str(w.tmp / "masks")]


def _predict_missing_file(w: World) -> list[str]:
    return ["predict", str(w.finished), str(w.tmp / "absent.nii.gz"), "--out", str(w.tmp / "masks")]


def _predict_bad_mode(w: World) -> list[str]:
    return ["predict", str(w.finished), str(_test_files(w.tiny_acdc)[0]), "--out", str(w.tmp / "masks"),
            "--predict-mode", "nope"]


# ------------------------------------------------------------------------------- full disk


def _full_disk_at_checkpoint(w: World) -> list[str]:
    """A real full disk: --out on a 1 MB tmpfs, which the first checkpoint does not fit (torch's own
    writer then raises RuntimeError, not OSError). Needs root and mount(8); skipped otherwise."""
    import subprocess

    mount = w.tmp / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs mount (root): {done.stderr.strip() or done.returncode}")
    w.cleanups.append(lambda: subprocess.run(["umount", "-l", str(mount)], capture_output=True))
    w.notes["mount"] = mount
    return [*w.run_args()[:-2], "--out", str(mount / "runs")]


def _resume_after_freeing_space_is_bit_identical(w: World) -> None:
    import subprocess

    out = w.notes["mount"] / "runs"
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    assert not list(out.glob("*/done.json"))
    subprocess.run(["mount", "-o", "remount,size=512m", str(w.notes["mount"])], check=True)  # space freed
    again = runner.invoke(app, [*w.run_args()[:-2], "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    [records] = list(out.glob("*/records.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(records), pd.read_parquet(w.finished / "records.parquet"))


# ------------------------------------------------------------------------------- regress / leaderboard


def _regress_missing_baseline(w: World) -> list[str]:
    return ["regress", str(w.finished.parent), "--baseline", str(w.tmp / "absent.json")]


def _regress_garbage_baseline(w: World) -> list[str]:
    w.tmp.mkdir(parents=True, exist_ok=True)
    (w.tmp / "baseline.json").write_text("{not json")
    return ["regress", str(w.finished.parent), "--baseline", str(w.tmp / "baseline.json")]


def _regress_negative_tolerance(w: World) -> list[str]:
    w.tmp.mkdir(parents=True, exist_ok=True)
    (w.tmp / "baseline.json").write_text('{"tables": [{"suite": "s", "budget": "b", "metric": "dice", "view": "", '
                                          '"higher_is_better": true, "columns": [], "rows": []}]}')
    return ["regress", str(w.finished.parent), "--baseline", str(w.tmp / "baseline.json"), "--tolerance", "-1"]


def _empty_leaderboard(w: World) -> list[str]:
    w.tmp.mkdir(parents=True, exist_ok=True)
    return ["leaderboard", str(w.tmp)]


FAULTS = (
    # options, checked before any data is read
    Fault("device-foo", _option("--device", "foo"), 2, "is not a device"),
    Fault("device-tpu", _option("--device", "tpu"), 2, "--device 'tpu'"),
    Fault("seed-negative", _option("--seed", "-1"), 2, "--seed -1 is out of range"),
    Fault("seed-too-large", _option("--seed", str(2**32)), 2, "is out of range"),
    Fault("corruption-seed-negative", _option("--corruption-seed", "-3"), 2, "--corruption-seed -3 is out of range"),
    Fault("hparam-nan", _option("--hparam", "lr=nan"), 2, "expected a finite number"),
    Fault("hparam-inf", _option("--hparam", "lr=inf"), 2, "expected a finite number"),
    Fault("hparam-negative-lr", _option("--hparam", "lr=-0.1"), 2, "must be positive"),
    Fault("hparam-not-a-number", _option("--hparam", "lr=fast"), 2, "expected a float"),
    Fault("hparam-no-equals", _option("--hparam", "lr"), 2, "expects key=value"),
    Fault("hparam-unknown", _option("--hparam", "nope=1"), 2, "no hyperparameter 'nope'"),
    Fault("hd95-unknown", _option("--hd95", "mean"), 2, "--hd95 'mean' is unknown"),
    Fault("budget-unknown", _option("--budget", "huge"), 2, "unknown budget"),
    Fault("method-unknown", _option("--method", "nope"), 2, "unknown method"),
    Fault("suite-unknown", _option("--suite", "nope"), 2, "unknown suite"),
    Fault("cval-unknown", _option("--cval", "7"), 2, "--cval must be one of"),
    Fault("corruptions-unknown", _option("--corruptions", "rain"), 2, "unknown corruption family"),
    # the environment
    Fault("out-is-a-file", _file_as_out, 2, "cannot write there"),
    Fault("out-is-a-symlink-loop", _looping_out, 2, "loop of symbolic links"),
    Fault("out-read-only", _read_only_out, 2, "Permission denied"),
    Fault("robench-home-is-a-file", _home_is_a_file, 2, "is a file, not a folder"),
    # data, found before the first update
    Fault("data-root-missing", lambda w: w.run_args(w.tmp / "nowhere"), 2, "does not exist", _no_training_started),
    Fault("data-root-empty", lambda w: (w.tmp / "empty").mkdir(parents=True) or w.run_args(w.tmp / "empty"), 2,
          "unknown ACDC layout", _no_training_started),
    Fault("test-image-corrupt", _corrupt_test_image, 2, "cannot read NIfTI", _no_training_started),
    Fault("test-image-nan", _with_image(_nan), 2, "NaN", _no_training_started),
    Fault("test-image-all-zero", _with_image(np.zeros_like), 2, "is constant", _no_training_started),
    Fault("test-spacing-1e6", _with_image(lambda a: a, np.diag([1e6, 1e6, 8.0, 1.0])), 2, "is outside", _no_training_started),
    Fault("test-spacing-zero", _zero_pixdim, 2, "pixdim", _no_training_started),
    Fault("test-label-7", _with_label(_label7), 2, "_gt.nii.gz: unexpected label values [7]", _no_training_started),
    Fault("test-label-missing", _missing_test_label, 2, "has no label", _no_training_started),
    Fault("subject-twice", _duplicate_subject, 2, "patient007 is there twice", _no_training_started),
    Fault("info-csv-duplicate-row", _hdf5_run(_duplicate_csv_row), 2, "appears twice", _no_training_started),
    Fault("info-csv-spacing-text", _hdf5_run(_spacing_in_csv("wide")), 2, "info.csv: spacing of", _no_training_started),
    Fault("info-csv-spacing-1e6", _hdf5_run(_spacing_in_csv("1e6")), 2, "info.csv: spacing", _no_training_started),
    Fault("info-csv-missing", _hdf5_without_csv, 2, "info.csv: missing", _no_training_started),
    Fault("hdf5-truncated", _hdf5_truncated_volume, 2, "cannot read HDF5", _no_training_started),
    Fault("hdf5-no-image", _hdf5_without_image_key, 2, "no 'image' dataset", _no_training_started),
    # run folders
    Fault("records-corrupt", _corrupt_records, 2, "unreadable records", _done_kept),
    Fault("best-checkpoint-truncated", _truncated_best, 2, "unreadable checkpoint"),
    Fault("best-checkpoint-crafted", _crafted_best, 2, "refused to load", _payload_not_run),
    Fault("interrupted-without-resume", _interrupted, 2, "add --resume"),
    Fault("run-folder-in-use", _locked, 2, "in use by another robench process", _release_lock_and_resume),
    Fault("evaluate-name-escapes", _name_outside, 2, "--name '../../escaped'", _nothing_outside),
    Fault("evaluate-name-own-test-set", _name_of_own_test_set, 2, "one of this run's own test sets"),
    Fault("evaluate-twice", _evaluate_twice, 2, "already evaluated", _first_evaluation_kept),
    Fault("evaluate-not-a-run", lambda w: ["evaluate", str(w.tiny_acdc), "--test-root", str(w.tiny_acdc)], 2,
          "not a robench run folder"),
    Fault("full-disk-at-checkpoint", _full_disk_at_checkpoint, 2, "disk full", _resume_after_freeing_space_is_bit_identical),
    # predict
    Fault("predict-into-input-folder", _predict_into_input_folder, 2, "would overwrite the input image", _input_unchanged),
    Fault("predict-same-file-names", _predict_same_names, 2, "have the same file name", _no_masks),
    Fault("predict-over-existing-mask", _predict_over_existing, 2, "robench never overwrites", _earlier_mask_kept),
    Fault("predict-not-nifti", _predict_text_file, 2, "not a NIfTI file"),
    Fault("predict-4d", _predict_4d, 2, "expected a 3-D"),
    Fault("predict-missing-file", _predict_missing_file, 2, "file not found"),
    Fault("predict-unknown-mode", _predict_bad_mode, 2, "no prediction mode"),
    # leaderboards and regressions
    Fault("leaderboard-empty", _empty_leaderboard, 2, "no finished run"),
    Fault("regress-baseline-missing", _regress_missing_baseline, 2, "baseline not found"),
    Fault("regress-baseline-garbage", _regress_garbage_baseline, 2, "not a readable leaderboard JSON"),
    Fault("regress-negative-tolerance", _regress_negative_tolerance, 2, "--tolerance must be"),
)


@pytest.fixture(scope="module")
def finished_run(tiny_acdc, tmp_path_factory) -> Path:
    result = execute(RunRequest(suite="cardiac", method="standard", budget="smoke", out=tmp_path_factory.mktemp("runs"),
                                options=SuiteOptions(data_root=tiny_acdc, cval=0), progress=False), log=lambda m: None)
    return result.folder.path


def test_the_catalogue_covers_at_least_40_cases():
    assert len(FAULTS) >= 40 and len({f.id for f in FAULTS}) == len(FAULTS)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.id)
def test_bad_input_gets_one_clear_line_and_nothing_is_lost(fault, tiny_acdc, finished_run, tmp_path, monkeypatch):
    world = World(tmp_path / "world", tiny_acdc, finished_run, monkeypatch)
    world.tmp.mkdir()
    try:
        args = fault.make(world)
        result = runner.invoke(app, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code == fault.code, result.output
        assert fault.message in result.output, result.output
        assert "Traceback" not in result.output
        assert result.output.count("error:") == 1, result.output
        if fault.intact is not None:
            fault.intact(world)
    finally:
        for cleanup in reversed(world.cleanups):
            cleanup()
