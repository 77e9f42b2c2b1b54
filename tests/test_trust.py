"""Defects found by trying bad inputs and faults, each with the test that failed before its fix.

The one-line-error cases live in the catalogue (test_bad_inputs.py); these are the ones whose
fix is a behaviour rather than a message: fingerprints, identity, locks, leftovers, file types.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from robench.benchmark.config import RunConfig
from robench.benchmark.fingerprint import DigestCache
from robench.benchmark.store import RunLock, remove_stale_temporaries
from robench.benchmark.suites import SuiteOptions, get_suite
from robench.benchmark.suites.acdc import discover_acdc
from robench.benchmark.suites.base import Case, CaseRef
from robench.benchmark.suites.cardiac import ACDC_TEST, ACDC_TRAIN, ACDC_VAL
from robench.errors import RunStateError
from tests.conftest import REPO
from tests.fixtures import heart_volume, write_acdc_hdf5

CVAL0 = sorted({*ACDC_TEST, *(f"patient{i:03d}" for i in ACDC_TRAIN[0] + ACDC_VAL[0])})


def _fingerprint(root: Path) -> str:
    return get_suite("cardiac").build(SuiteOptions(data_root=root, cval=0)).fingerprint


def test_fingerprint_follows_contents_not_names_and_sizes(tmp_path):
    root = write_acdc_hdf5(tmp_path / "h5", CVAL0)
    first = _fingerprint(root)
    assert _fingerprint(root) == first
    csv = root / "info.csv"
    text = csv.read_text()
    csv.write_text(text.replace(",1.5,1.5,8.0", ",1.6,1.5,8.0", 1))  # one spacing edited, same file size
    assert csv.stat().st_size == len(text.encode())
    second = _fingerprint(root)
    assert second != first
    volume = root / f"{ACDC_TEST[0]}_frame01.h5"
    data = bytearray(volume.read_bytes())
    data[-1] ^= 0xFF  # a byte changed at the same size
    volume.write_bytes(bytes(data))
    assert _fingerprint(root) != second


def test_digests_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    from robench.benchmark import fingerprint

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    cache = DigestCache(tmp_path / "cache.json")
    calls = []
    real = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda p: calls.append(p) or real(p))
    first = cache.digest(path)
    cache.save()
    again = DigestCache(tmp_path / "cache.json")
    assert again.digest(path) == first and len(calls) == 1  # read from the cache
    path.write_bytes(b"y" * 100)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert again.digest(path) != first and len(calls) == 2  # touched: hashed again


def test_the_hd95_variant_is_part_of_the_results_identity():
    a = RunConfig(suite="cardiac", method="standard", hd95_variant="max_directed")
    b = RunConfig(suite="cardiac", method="standard", hd95_variant="pooled")
    assert a.run_id() != b.run_id()


def test_info_csv_with_a_byte_order_mark_is_read(tmp_path):
    root = write_acdc_hdf5(tmp_path / "h5", ["patient001"])
    csv = root / "info.csv"
    csv.write_text(csv.read_text(), encoding="utf-8-sig")
    assert csv.read_bytes()[:3] == b"\xef\xbb\xbf"
    [subject] = discover_acdc(root).values()
    assert subject.spacing == (8.0, 1.5, 1.5)


def test_a_training_case_without_labelled_slices_is_reported(tmp_path):
    from robench.benchmark.config import get_budget
    from robench.benchmark.train import TrainingSlices

    rng = np.random.default_rng(0)
    image, label = heart_volume(rng)
    cases = [Case("good", image, label, (8.0, 1.5, 1.5)), Case("empty", image, np.zeros_like(label), (8.0, 1.5, 1.5))]
    refs = tuple(CaseRef(c.case_id, lambda c=c: c) for c in cases)
    data = TrainingSlices.from_cases(refs, get_budget("smoke"), __import__("torch").device("cpu"))
    assert len(data) > 0
    [warning] = data.warnings
    assert "empty" in warning and "no labelled slice" in warning


def test_leftover_temporaries_of_a_killed_writer_are_removed(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    leftover = run / "checkpoints" / ".last.pt.k2j3h4.tmp"
    leftover.write_bytes(b"half a checkpoint")
    keep = run / "checkpoints" / "last.pt"
    keep.write_bytes(b"ok")
    assert remove_stale_temporaries(run) == [leftover]
    assert not leftover.exists() and keep.exists()


def test_abandoned_generation_folders_are_removed_and_live_ones_kept(tmp_path):
    import socket

    from robench.benchmark.suites.synth.generate import remove_abandoned_generations

    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = tmp_path / f".cardiac-synth-v1-abc.tmp-{host}-{dead.pid}-deadbeef"
    live = tmp_path / f".cardiac-synth-v1-abc.tmp-{host}-{os.getpid()}-cafef00d"
    elsewhere = tmp_path / f".cardiac-synth-v1-abc.tmp-another-host-{dead.pid}-0badf00d"
    for folder in (abandoned, live, elsewhere):
        folder.mkdir()
    assert remove_abandoned_generations(tmp_path) == [abandoned]
    assert live.exists() and elsewhere.exists()


def test_a_second_process_is_refused_and_a_killed_owner_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from robench.benchmark.store import RunLock; import time; l = RunLock({str(folder)!r}).__enter__(); "
         "print('locked', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunStateError, match=rf"in use by another robench process \(pid {holder.pid} on "):
            RunLock(folder).__enter__()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(folder):  # kill -9 released it
        assert (folder / "run.lock").exists()


def test_predict_keeps_the_input_file_type(tmp_path, tiny_acdc):
    from robench.benchmark.external import mask_targets
    from robench.benchmark.suites.nifti import save_nifti

    source = tiny_acdc / "training" / "patient007" / "patient007_frame01.nii.gz"
    plain = tmp_path / "in" / "case.nii"
    plain.parent.mkdir()
    nib.save(nib.load(str(source)), str(plain))
    [target] = mask_targets([plain], tmp_path / "out")
    assert target.name == "case.nii"
    target.parent.mkdir()
    save_nifti(np.zeros((2, 3, 4), np.uint8), np.eye(4), target)
    assert target.read_bytes()[:2] != b"\x1f\x8b", "a .nii mask was written gzip-compressed"
    assert nib.load(str(target)).shape == (4, 3, 2)
    assert sorted(p.name for p in target.parent.iterdir()) == ["case.nii"]  # no temporary left


def test_make_run_resumes_an_interrupted_make_run():
    recipe = (REPO / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "robench run" in recipe and "--resume" in recipe


def test_evaluate_names_the_cases_it_skips_for_lack_of_a_label(tmp_path, tiny_acdc):
    from typer.testing import CliRunner

    from robench.benchmark.runner import RunRequest, execute
    from robench.cli import app

    run = execute(RunRequest(suite="cardiac", method="standard", budget="smoke", out=tmp_path / "runs",
                             options=SuiteOptions(data_root=tiny_acdc, cval=0), progress=False), log=lambda m: None)
    other = tmp_path / "other"
    for subject in ("patient007", "patient008"):
        shutil.copytree(tiny_acdc / "training" / subject, other / subject)
    (other / "patient008" / "patient008_frame09_gt.nii.gz").unlink()
    result = CliRunner().invoke(app, ["evaluate", str(run.folder.path), "--test-root", str(other), "--name", "Other"])
    assert result.exit_code == 0, result.output
    assert "1 cases have no label and were skipped: Other/patient008_ES" in result.output


def test_kill_9_mid_training_resumes_to_bit_identical_records(tiny_acdc, tmp_path):
    import pandas as pd

    command = [sys.executable, "-m", "robench", "run", "--suite", "cardiac", "--data-root", str(tiny_acdc),
               "--budget", "smoke", "--corruptions", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*command, "--out", str(tmp_path / "clean")], env=env, cwd=REPO, check=True, capture_output=True, timeout=900)
    killed = tmp_path / "killed"
    victim = subprocess.Popen([*command, "--out", str(killed)], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list(killed.glob("*/checkpoints/last.pt")) and victim.poll() is None:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL and not list(killed.glob("*/done.json")), "the run ended before the kill"
    resumed = subprocess.run([*command, "--out", str(killed), "--resume"], env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    [clean_records] = (tmp_path / "clean").glob("*/records.parquet")
    [resumed_records] = killed.glob("*/records.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(resumed_records), pd.read_parquet(clean_records))
    assert not list(killed.rglob("*.tmp"))
