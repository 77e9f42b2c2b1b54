"""Re-measure the numbers of docs/performance.md on this machine and write them as Markdown.

    python benchmarks/performance_report.py [--out docs/performance-measured.md] [--quick]

Each section names the code path it times; every number is a median of repeated runs in a
fresh process where threads matter (torch keeps its thread pool per process). `make bench`
runs this after the pytest-benchmark suite. `--quick` skips the paper-setting updates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

UPDATE_SNIPPET = r"""
import json, sys, time, torch
from robench.benchmark.config import get_budget
from robench.benchmark.reopen import build_method
from robench.benchmark.train import Trainer
from robench.methods import get_method
from robench.precision import NumericChoice
sys.path.insert(0, "benchmarks")
from gpu_check import synthetic_slices
method_name, budget_name, prec, layout, steps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
budget = get_budget(budget_name)
m = build_method(method_name, budget.effective_hparams(get_method(method_name).hparams), 0, 4, torch.device("cpu"),
                 NumericChoice(prec, layout))
data = synthetic_slices(200, budget.pad, 4, torch.device("cpu"))
trainer = Trainer(m, budget, folder=None, seed=0, progress=False)
first = float(m.update(trainer.next_batch(data))["total"])
times = []
for _ in range(steps):
    t = time.perf_counter(); m.update(trainer.next_batch(data)); times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"median": times[len(times) // 2], "first_loss": first, "threads": torch.get_num_threads()}))
"""


def _python(args: list[str], env: dict[str, str] | None = None, timeout: int = 900) -> dict:
    out = subprocess.run([sys.executable, "-c", UPDATE_SNIPPET, *args], cwd=REPO, env={**os.environ, **(env or {})},
                         capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def update_times(method: str, budget: str, steps: int, threads: int = 1) -> list[tuple[str, dict]]:
    env = {"OMP_NUM_THREADS": str(threads)}
    rows = []
    for prec, layout in (("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"), ("bf16", "channels_last")):
        rows.append((f"{prec} {layout}", _python([method, budget, prec, layout, str(steps)], env)))
    return rows


def concurrent_updates(threads: int, wait_policy: str | None, steps: int = 30) -> list[float]:
    """Two processes updating `standard` (quick, bf16 + channels_last) side by side: each one's median."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    else:
        env.pop("OMP_WAIT_POLICY", None)
    args = ["standard", "quick", "bf16", "channels_last", str(steps)]
    procs = [subprocess.Popen([sys.executable, "-c", UPDATE_SNIPPET, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    return [json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1])["median"] for p in procs]


def evaluation_breakdown() -> dict[str, float]:
    """One ACDC-sized volume (10 x 224 x 222, 1.37 mm, quick): old path (per mode, class-axis argmax) vs new."""
    import numpy as np
    import torch

    from robench.benchmark.config import get_budget
    from robench.benchmark.metrics import case_metrics, case_metrics_modes
    from robench.benchmark.preprocess import prepare, resample_slices, test_slices
    from robench.benchmark.evaluate import predict_volumes
    from robench.benchmark.suites.base import Case
    from robench.imageops import uncrop
    from robench.labels import CARDIAC_CLASSES
    from robench.methods import get_method
    from robench.benchmark.reopen import build_method
    from robench.precision import NumericChoice

    torch.set_num_threads(1)
    budget = get_budget("quick")
    rng = np.random.default_rng(0)
    label = np.zeros((10, 224, 222), np.int16)
    label[:, 80:150, 70:140] = 2
    label[:, 95:135, 85:125] = 3
    label[:, 85:145, 30:68] = 1
    case = Case("v", (label / 3 + 0.1 * rng.normal(size=label.shape)).astype(np.float32), label, (10.0, 1.37, 1.37))
    cls = get_method("standard")
    out = {}
    for name, numerics in (("fp32", NumericChoice("fp32", "contiguous")), ("bf16", NumericChoice("bf16", "channels_last"))):
        method = build_method("standard", cls.hparams, 0, 4, torch.device("cpu"), numerics)
        method.eval()

        def old():
            vol = prepare(case, budget.spacing_mm)
            x = test_slices(vol, budget.crop)
            maps = {}
            with torch.no_grad():
                for mode in method.prediction_modes:
                    probs = torch.softmax(method.predict(x, mode), 1)
                    bg = torch.tensor([1.0, 0, 0, 0])
                    canvas = uncrop(probs, tuple(vol.image.shape[-2:]), bg)
                    maps[mode] = resample_slices(canvas, vol.original_shape[1:]).argmax(1).to(torch.int16).numpy()
            return [case_metrics(p, label, case.spacing, CARDIAC_CLASSES) for p in maps.values()]

        def new():
            (_, maps), = predict_volumes(method, [(None, case)], budget, method.prediction_modes)
            return case_metrics_modes({k: v.numpy() for k, v in maps.items()}, label, case.spacing, CARDIAC_CLASSES)

        for label_, fn in (("old", old), ("new", new)):
            fn()
            times = []
            for _ in range(7):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            out[f"{name} {label_}"] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "performance-measured.md"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "benchmarks"))
    import torch

    from robench.precision import native_bf16

    lines = [
        "# Performance, as measured by `make bench` (`python benchmarks/performance_report.py`)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable cores, "
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16: {native_bf16(torch.device('cpu'))[1]}. Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "## One `standard` update, 1 thread (median; batch drawn and augmented by the trainer)",
        "",
        "| setting | precision, layout | s/update | × fp32 contiguous | first-update loss |",
        "|---|---|---|---|---|",
    ]
    settings = [("quick (10 × 96²)", "quick", 15)] + ([] if args.quick else [("paper (20 × 192²)", "paper", 5)])
    for label, budget, steps in settings:
        rows = update_times("standard", budget, steps)
        base = rows[0][1]["median"]
        for name, r in rows:
            lines.append(f"| {label} | {name} | {r['median']:.3f} | {base / r['median']:.2f} | {r['first_loss']:.5f} |")
    coop = update_times("coop-latent", "quick", 8)
    lines += ["", "`coop-latent`, quick, 1 thread: " + ", ".join(f"{n} {r['median']:.3f} s" for n, r in coop), ""]

    lines += ["## Two training processes on the same cores (quick, bf16 + channels_last, median s/update of each)", "",
              "| threads each | OpenMP wait policy | process 1 | process 2 |", "|---|---|---|---|"]
    for t, policy in ((1, None), (2, None), (2, "PASSIVE"), (2, "ACTIVE")):
        a, b = concurrent_updates(t, policy)
        lines.append(f"| {t} | {policy or 'libgomp default'} | {a:.3f} | {b:.3f} |")
    alone = {t: _python(["standard", "quick", "bf16", "channels_last", "15"], {"OMP_NUM_THREADS": str(t)})["median"] for t in (1, 2)}
    lines += ["", f"Alone: 1 thread {alone[1]:.3f} s/update, 2 threads {alone[2]:.3f} s/update.", ""]

    ev = evaluation_breakdown()
    lines += ["## Evaluating one ACDC-sized volume (10 × 224 × 222, quick, both modes + metrics, 1 thread)", "",
              "| precision | before (per mode, class-axis argmax, per-mode metrics) | now | speed-up |", "|---|---|---|---|"]
    for p in ("fp32", "bf16"):
        lines.append(f"| {p} | {ev[f'{p} old']:.3f} s | {ev[f'{p} new']:.3f} s | {ev[f'{p} old'] / ev[f'{p} new']:.2f}× |")

    import gpu_check
    import reference_loop

    torch.set_num_threads(1)
    r = gpu_check.measure_method("standard", "quick", torch.device("cpu"), steps=8, warmup=2, train_slices=179, compile_nets=False)
    lines += ["", "## FLOPs (`benchmarks/gpu_check.py --device cpu --budget quick --methods standard`)", "",
              f"`standard`, quick: {r.gflop_per_update:.1f} GFLOP/update at {r.precision}, {r.seconds_per_update:.3f} s → "
              f"{r.achieved_tflops * 1e3:.0f} GFLOP/s on 1 thread.", ""]
    ref = reference_loop.main(["--budget", "quick", "--steps", "15", "--device", "cpu"])
    lines += ["## Against the reference loop (`benchmarks/reference_loop.py --budget quick`, 1 thread)", "",
              f"Per-sample NumPy/SciPy augmentation in a DataLoader, fp32: {ref['reference_seconds_per_update']:.3f} s/update; "
              f"robench fp32 {ref['robench_fp32_seconds_per_update']:.3f} s ({ref['speedup_fp32']:.2f}×); robench "
              f"{ref['auto_precision']} {ref['robench_auto_seconds_per_update']:.3f} s ({ref['speedup_auto']:.2f}×).", ""]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
