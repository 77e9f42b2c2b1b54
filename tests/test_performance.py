"""Performance machinery: precision choice, thread governor, batched evaluation, shared metric work,
the GPU check (on CPU, tiny) and the reference loop. Speed itself is measured in benchmarks/."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robench import precision, threads
from robench.benchmark.config import RunConfig, get_budget
from robench.benchmark.evaluate import predict_volume, predict_volumes
from robench.benchmark.metrics import case_metrics, case_metrics_modes
from robench.benchmark.metrics_torch import case_metrics_modes_torch
from robench.benchmark.preprocess import labels_on_original_grid, prepare, resample_slices
from robench.benchmark.suites.base import Case, CaseRef
from robench.benchmark.suites.base import TestSet as Set_
from robench.benchmark.train import Trainer, TrainState
from robench.corruptions.testsets import by_source, first_sources
from robench.errors import ConfigError, RunStateError
from robench.imageops import uncrop
from robench.labels import CARDIAC_CLASSES
from robench.precision import NumericChoice
from tests.toys import build_method, toy_batch

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


# ---------------------------------------------------------------- precision and layout


def test_auto_precision_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: (True, "test"))
    assert precision.resolve("auto", CPU) == NumericChoice("bf16", "channels_last")
    monkeypatch.setattr(precision, "native_bf16", lambda device: (False, "test"))
    assert precision.resolve("auto", CPU) == NumericChoice("fp32", "channels_last")
    assert precision.resolve("bf16", CPU).precision == "bf16"  # asked for explicitly: emulated, but honoured
    with pytest.raises(ConfigError, match="--precision 'fp16'"):
        precision.resolve("fp16", CPU)


def test_an_isa_cap_below_bf16_means_no_native_bf16(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    ok, why = precision.native_bf16(CPU)
    assert not ok and "AVX2" in why


def test_pinned_numerics_are_fp32_contiguous(monkeypatch):
    monkeypatch.setenv("ROBENCH_PINNED_NUMERICS", "1")
    assert precision.resolve("auto", CPU) == NumericChoice("fp32", "contiguous")
    with pytest.raises(ConfigError, match="fp32 only"):
        precision.resolve("bf16", CPU)


def test_precision_and_layout_are_part_of_the_run_id():
    base = RunConfig(suite="s", method="m")
    assert len({base.run_id(), RunConfig(suite="s", method="m", precision="bf16").run_id(),
                RunConfig(suite="s", method="m", memory_format="channels_last").run_id()}) == 3


def test_bf16_channels_last_method_computes_in_bf16_with_channels_last_weights():
    method = build_method("standard").use_numerics(NumericChoice("bf16", "channels_last"))
    conv = next(m for m in method.net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    hook = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    losses = method.update(toy_batch())
    hook.remove()
    assert seen and seen[0] == torch.bfloat16
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert method.predict(toy_batch().images).dtype == torch.float32  # logits leave autocast as fp32


def test_bf16_changes_the_floats_but_not_the_prediction_much():
    torch.manual_seed(0)
    batch = toy_batch()
    fp32 = build_method("standard", seed=3)
    bf16 = build_method("standard", seed=3).use_numerics(NumericChoice("bf16", "channels_last"))
    a, b = fp32.update(batch), bf16.update(batch)
    assert float(a["total"]) != float(b["total"])
    assert float(b["total"]) == pytest.approx(float(a["total"]), rel=2e-2)


# ---------------------------------------------------------------- threads


def test_usable_cores_is_capped_by_a_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_quota_cores(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_quota_cores(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert threads.cgroup_quota_cores(v1) == 1.0
    assert 1 <= threads.usable_cores() <= len(__import__("os").sched_getaffinity(0))


def test_explicit_threads_and_omp_num_threads_fix_the_count(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        fixed = threads.ThreadGovernor(requested=1)
        assert fixed.start() == 1 and not fixed.adaptive and "--threads" in fixed.changes[0]
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        from_env = threads.ThreadGovernor()
        assert not from_env.adaptive and from_env.start() == 1 and "OMP_NUM_THREADS" in from_env.changes[0]
        with pytest.raises(ConfigError, match="--threads 0"):
            threads.ThreadGovernor(requested=0)
    finally:
        torch.set_num_threads(before)


def test_governor_maps_other_load_to_the_free_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    gov = threads.ThreadGovernor(usable=4)
    assert [gov._target(x) for x in (None, 0.0, 0.9, 1.6, 3.0, 7.0)] == [4, 4, 3, 2, 1, 1]


def test_other_load_on_a_many_core_host_counts_as_its_share_of_a_smaller_quota():
    load = threads.CpuLoad()
    load.cpus = list(range(8))
    samples = iter([(0.0, 0.0, 0.0), (1.0, 5.0, 1.0)])  # 1 s: 5 busy cores on the host, 1 of them ours
    load._sample = lambda: next(samples)
    load._last = load._sample()
    assert load.other_cores(usable=2) == pytest.approx(4.0 * 2 / 8)


def test_cpu_load_sees_a_busy_neighbour_and_the_governor_steps_down(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<4: pass"])
    try:
        time.sleep(0.3)
        load = threads.CpuLoad()
        time.sleep(1.0)
        other = load.other_cores()
        assert other is not None and other > 0.6, other  # one core spinning, seen as another process's
        gov = threads.ThreadGovernor(usable=2, interval_s=0.0)
        gov.start(probe_s=0.5)
        assert torch.get_num_threads() == 1, gov.changes  # one of the two cores is taken
    finally:
        spinner.kill()
        spinner.wait()
        torch.set_num_threads(before)
    gov.record()  # serialisable summary of what it did
    assert gov.record()["adaptive"] and gov.record()["usable_cores"] == 2


# ---------------------------------------------------------------- losses gathered, not read per update


def test_losses_are_gathered_in_bulk_and_a_non_finite_one_stops_the_run():
    method = build_method("standard")
    trainer = Trainer(method, get_budget("smoke"), folder=None, seed=0, progress=False)  # type: ignore[arg-type]
    trainer.state = TrainState(iteration=3)
    trainer._pending = [{"total": torch.tensor(v), "seg": torch.tensor(v / 2)} for v in (1.0, 2.0, 3.0)]
    trainer.gather_losses()
    assert [h["iteration"] for h in trainer.state.history] == [1, 2, 3]
    assert trainer.state.history[-1] == {"iteration": 3, "total": 3.0, "seg": 1.5}
    trainer.state.iteration = 5
    trainer._pending = [{"total": torch.tensor(1.0)}, {"total": torch.tensor(float("nan"))}]
    with pytest.raises(RunStateError, match="non-finite loss at iteration 5"):
        trainer.gather_losses()


def test_update_returns_detached_tensors():
    losses = build_method("coop-latent").update(toy_batch())
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in losses.values())


# ---------------------------------------------------------------- evaluation


def _case(seed: int, z: int = 4) -> Case:
    rng = np.random.default_rng(seed)
    label = np.zeros((z, 60, 50), np.int16)
    label[:, 20:40, 15:35] = 2
    label[:, 25:35, 20:30] = 3
    label[:, 22:38, 5:14] = 1
    image = (label / 3 + 0.1 * rng.normal(size=label.shape)).astype(np.float32)
    return Case(f"c{seed}", image, label, (8.0, 1.6, 1.5))


def test_every_mode_from_one_pass_equals_each_mode_alone():
    method = build_method("coop-latent")
    method.eval()
    x = toy_batch().images
    together = method.predict_modes(x, method.prediction_modes)
    for mode in method.prediction_modes:
        torch.testing.assert_close(together[mode], method.predict(x, mode), rtol=0, atol=0)


def test_batched_inference_across_volumes_gives_the_labels_of_one_volume_at_a_time():
    method = build_method("standard", seed=1)
    budget = get_budget("smoke")
    cases = [_case(s, z) for s, z in ((0, 3), (1, 5), (2, 2), (3, 6))]
    batched = dict(predict_volumes(method, [(c.case_id, c) for c in cases], budget, method.prediction_modes, batch_slices=7))
    for case in cases:
        alone = predict_volume(method, case, budget, method.prediction_modes)
        for mode, labels in alone.items():
            got = batched[case.case_id][mode].numpy()
            assert got.shape == case.label.shape
            assert (got == labels).mean() > 0.999, (case.case_id, mode)  # batch size may pick other kernels


def _evaluation_sets(tmp_path):
    from robench.corruptions.testsets import artefact_test_sets

    cases = {f"c{s}": _case(s, z) for s, z in ((0, 3), (1, 5), (2, 2))}
    intra = Set_("A", "intra", tuple(CaseRef(cid, lambda cid=cid: cases[cid]) for cid in cases))
    return [intra, *artefact_test_sets(intra, cache_dir=tmp_path)[:2]]


def test_evaluation_on_worker_threads_gives_the_records_of_one_case_at_a_time_and_of_batches(tmp_path):
    from robench.benchmark.evaluate import evaluate

    method = build_method("standard", seed=1)
    sets = _evaluation_sets(tmp_path)
    threads_before = torch.get_num_threads()
    runs = {w: evaluate(method, sets, get_budget("smoke"), CARDIAC_CLASSES, {}, progress=False, workers=w) for w in (1, 3, 0)}
    assert torch.get_num_threads() == threads_before  # the workers' single intra-op thread is not left behind
    one = runs[1].records
    assert len(one) == 3 * 7 * 2 * 3  # cases (3 clean + 2 sets × 3 copies) × modes × classes
    assert list(one.case_id.unique()[:3]) == ["c0", "c1", "c2"]  # order fixed: clean cases, then by source
    for w in (3, 0):
        assert runs[w].records[["test_set", "case_id", "mode", "class"]].equals(one[["test_set", "case_id", "mode", "class"]])
        assert runs[w].seconds_per_volume > 0
    # one case per worker: bit for bit whatever the number of workers; batches may pick other kernels
    np.testing.assert_array_equal(runs[3].records.dice.to_numpy(), one.dice.to_numpy())
    np.testing.assert_allclose(runs[0].records.dice.to_numpy(), one.dice.to_numpy(), atol=1e-3)


def test_an_unreadable_case_stops_evaluation_without_reading_the_rest():
    from robench.benchmark.evaluate import evaluate
    from robench.errors import DataError

    read = []

    def load(i):
        read.append(i)
        if i == 2:
            raise DataError(f"case {i}: corrupt file")
        return _case(i, 2)

    test_set = Set_("A", "intra", tuple(CaseRef(f"c{i}", lambda i=i: load(i)) for i in range(40)))
    for workers in (2, 0):
        read.clear()
        with pytest.raises(DataError, match="case 2"):
            evaluate(build_method("standard"), [test_set], get_budget("smoke"), CARDIAC_CLASSES, {}, progress=False, workers=workers)
        assert len(read) < 20, workers  # the cases not started were cancelled


def test_contiguous_argmax_gives_the_labels_of_the_class_axis_argmax():
    vol = prepare(_case(0), 4 * 1.36719)
    probs = torch.softmax(torch.randn(len(vol.image), 4, 48, 48, generator=torch.Generator().manual_seed(0)), 1)
    background = torch.tensor([1.0, 0, 0, 0])
    expected = resample_slices(uncrop(probs, tuple(vol.image.shape[-2:]), background), vol.original_shape[1:]).argmax(1)
    assert torch.equal(labels_on_original_grid(probs, vol), expected.to(torch.int16))


def test_artefact_copies_of_one_source_are_visited_together_and_smoke_keeps_two_sources():
    refs = [CaseRef(f"s{i}", lambda: None) for i in range(3)]
    intra = Set_("A", "intra", tuple(refs))
    art = [Set_(name, "artefact", tuple(CaseRef(f"s{i}_copy{k}", lambda: None, {"source_case": f"s{i}"})
                                            for i in range(3) for k in (1, 2)), {"source": "A"}) for name in ("X", "Y")]
    order = by_source([(t, c) for t in (intra, *art) for c in t.cases])
    assert [c.case_id for _, c in order[:3]] == ["s0", "s1", "s2"]
    sources = [c.meta["source_case"] for _, c in order[3:]]
    assert sources == sorted(sources)  # s0's four copies, then s1's, then s2's
    cut = first_sources((intra, *art), 2)
    assert cut[0] is intra and [len(t.cases) for t in cut[1:]] == [4, 4]
    assert get_budget("smoke").artefact_sources == 2 and get_budget("quick").artefact_sources is None


# ---------------------------------------------------------------- metrics


def test_metrics_of_several_modes_equal_each_mode_alone():
    ref = _case(0).label
    rng = np.random.default_rng(1)
    preds = {m: np.roll(ref, s, axis=2) * (rng.random(ref.shape) > 0.05) for m, s in (("a", 1), ("b", -3))}
    together = case_metrics_modes(preds, ref, (8.0, 1.6, 1.5), CARDIAC_CLASSES)
    for mode, pred in preds.items():
        assert together[mode] == case_metrics(pred.astype(np.int16), ref, (8.0, 1.6, 1.5), CARDIAC_CLASSES)


@pytest.mark.parametrize("variant", ["max_directed", "pooled"])
def test_torch_metric_path_matches_the_numpy_path(variant):
    ref = _case(0).label
    rng = np.random.default_rng(2)
    pred = (np.roll(ref, 2, axis=1) * (rng.random(ref.shape) > 0.1)).astype(np.int16)
    pred[1, 2:5, 2:5] = 1  # a far false positive
    spacing = (8.0, 1.6, 1.5)
    a = case_metrics_modes({"m": pred}, ref, spacing, CARDIAC_CLASSES, hd95_variant=variant)["m"]
    b = case_metrics_modes_torch({"m": torch.from_numpy(pred)}, torch.from_numpy(ref), spacing, CARDIAC_CLASSES,
                                 hd95_variant=variant)["m"]
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key, value in x.items():
            if isinstance(value, float):
                np.testing.assert_allclose(y[key], value, rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=key)
            else:
                assert y[key] == value, key
    empty = case_metrics_modes_torch({"m": torch.zeros_like(torch.from_numpy(ref))}, torch.from_numpy(ref), spacing,
                                     {"LV": 3}, hd95_variant=variant)["m"][0]
    assert empty["missed"] and empty["dice"] == 0.0


# ---------------------------------------------------------------- GPU check and reference loop (CPU, tiny)


def test_gpu_check_runs_tiny_on_cpu(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    report = gpu_check.main(["--tiny", "--device", "cpu", "--json", str(tmp_path / "gpu.json")])
    assert {m["method"] for m in report["methods"]} == {"standard", "coop-latent"}
    by = {m["method"]: m for m in report["methods"]}
    assert by["coop-latent"]["gflop_per_update"] > 1.5 * by["standard"]["gflop_per_update"] > 0
    assert all(m["images_per_second"] > 0 and m["updates_per_run"] == 12 for m in report["methods"])
    assert set(by["standard"]["breakdown_ms"]) == {"batch", "forward", "backward", "optimiser"}
    assert report["protocol"]["projected_gpu_hours"] > 0 and (tmp_path / "gpu.json").exists()


def test_gpu_check_counts_the_flops_of_a_quick_standard_update():
    """52.6 GFLOP per quick update (FlopCounterMode, issue 12): the counter's formulas, independent of speed."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    r = gpu_check.measure_method("standard", "quick", CPU, steps=1, warmup=0, train_slices=20, compile_nets=False)
    assert r.gflop_per_update == pytest.approx(52.6, rel=0.01)


def test_reference_loop_runs_tiny(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import reference_loop
    finally:
        sys.path.pop(0)
    report = reference_loop.main(["--budget", "smoke", "--steps", "1", "--device", "cpu"])
    assert report["reference_seconds_per_update"] > 0 and report["robench_fp32_seconds_per_update"] > 0
