"""GPU readiness check: throughput, step-time breakdown, achieved TFLOP/s and the projected cost
of the full `cardiac` protocol, in one command that finishes in minutes on an H100/H200.

    python benchmarks/gpu_check.py                  # every method at the paper setting
    python benchmarks/gpu_check.py --tiny           # smoke-sized, any device (the test suite runs this)
    python benchmarks/gpu_check.py --json out.json  # also write the numbers

Training data are synthetic slices resident on the device (the loop's speed does not depend on
the pixels), batches are drawn and augmented on the device by the trainer's own `next_batch`,
and each method runs under the precision and layout `robench run --precision auto` would pick.
FLOPs per update come from `torch.utils.flop_counter`'s formulas (forward + backward of every pass the
method makes); the projection multiplies each method's measured step time by the protocol's
updates (600 epochs over the cval-0 training slices, × 3 cvals) and leaves evaluation out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from robench import precision
from robench.benchmark.config import get_budget
from robench.benchmark.reopen import build_method
from robench.benchmark.train import Trainer, TrainingSlices, pick_device
from robench.methods import METHODS

ACDC_CVAL0_TRAINING_SLICES = 179  # labelled slices of the 10 cval-0 training subjects, ED + ES (run logs)
PROTOCOL_CVALS = 3
# dense tensor-core peaks (TFLOP/s) from the vendors' data sheets, by a substring of the device name
PEAK_TFLOPS = {
    "H200": {"bf16": 989.4, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.1, "fp32": 91.6},
}
TARGETS = {"standard paper run (minutes)": 5.0, "cardiac protocol (GPU-hours)": 1.0}


class FlopCount(TorchDispatchMode):
    """FLOPs of every op torch has a formula for (matmuls, convolutions, their backward).

    Why not `FlopCounterMode`: its per-module tracker hooks into autograd and fails inside the
    `torch.autograd.grad` calls of the adversarial and masking methods; the totals are the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


@dataclass
class MethodResult:
    method: str
    precision: str
    memory_format: str
    gflop_per_update: float
    seconds_per_update: float
    images_per_second: float
    achieved_tflops: float
    fraction_of_peak: float | None
    kernel_fraction: float | None  # device kernel time / wall time of the profiled steps (CUDA only)
    breakdown_ms: dict[str, float] = field(default_factory=dict)
    updates_per_run: int = 0
    projected_run_minutes: float = 0.0


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_slices(n: int, pad: int, num_classes: int, device: torch.device) -> TrainingSlices:
    """Smooth random images with nested-disc labels, on the device."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(pad), torch.arange(pad), indexing="ij")
    centre = torch.randint(pad // 3, 2 * pad // 3, (n, 2), generator=g)
    r = ((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2).float().sqrt()
    radius = pad * (0.08 + 0.1 * torch.rand(n, 1, 1, generator=g))
    labels = torch.zeros(n, pad, pad, dtype=torch.int64)
    for k in range(1, num_classes):
        labels[r < radius * (num_classes - k) / (num_classes - 1)] = k
    images = (0.3 + 0.2 * labels.float() + 0.05 * torch.randn(n, pad, pad, generator=g)).clamp(0, 1)
    return TrainingSlices(images.to(device), labels.to(device))


def measure_method(name: str, budget_name: str, device: torch.device, steps: int, warmup: int,
                   train_slices: int, compile_nets: bool) -> MethodResult:
    budget = get_budget(budget_name)
    cls = METHODS[name]
    numerics = precision.resolve("auto", device)
    method = build_method(name, budget.effective_hparams(cls.hparams), 0, 4, device, numerics)
    if compile_nets:
        for module in method.modules().values():
            module.compile()
    data = synthetic_slices(max(train_slices, budget.batch_size), budget.pad, 4, device)
    trainer = Trainer(method, budget, folder=None, seed=0, progress=False)  # type: ignore[arg-type]

    with FlopCount() as counter:
        method.update(trainer.next_batch(data))
    flops = counter.total

    for _ in range(warmup):
        method.update(trainer.next_batch(data))
    synchronise(device)
    started = time.perf_counter()
    for _ in range(steps):
        method.update(trainer.next_batch(data))
    synchronise(device)
    step = (time.perf_counter() - started) / steps

    breakdown = _breakdown(method, trainer, data, device, max(2, steps // 4))
    kernel_fraction = _kernel_fraction(method, trainer, data, device) if device.type == "cuda" else None
    achieved = flops / step / 1e12
    peak = _peak(device, numerics.precision)
    updates = budget.total_iterations(train_slices)
    return MethodResult(
        name, numerics.precision, numerics.memory_format, flops / 1e9, step, budget.batch_size / step, achieved,
        None if peak is None else achieved / peak, kernel_fraction, breakdown, updates, updates * step / 60,
    )


def _breakdown(method, trainer, data, device, steps: int) -> dict[str, float]:
    """Milliseconds per update of: batch (sampling + augmentation), and the update itself; for the
    dual-network methods the update is split into forward (all losses), backward and optimiser."""
    totals = {"batch": 0.0, "update": 0.0}
    split = hasattr(method, "standard_losses") and method.name in ("standard", "coop-standard")
    if split:
        totals.update(forward=0.0, backward=0.0, optimiser=0.0)
        del totals["update"]
    for _ in range(steps):
        synchronise(device)
        t0 = time.perf_counter()
        batch = trainer.next_batch(data)
        synchronise(device)
        t1 = time.perf_counter()
        totals["batch"] += t1 - t0
        if not split:
            method.update(batch)
            synchronise(device)
            totals["update"] += time.perf_counter() - t1
            continue
        method.train()
        with method.autocast():
            losses = method.standard_losses(batch.images, batch.labels).losses
        total = sum(losses.values())
        synchronise(device)
        t2 = time.perf_counter()
        for opt in method.optimisers().values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        synchronise(device)
        t3 = time.perf_counter()
        for opt in method.optimisers().values():
            opt.step()
        synchronise(device)
        t4 = time.perf_counter()
        totals["forward"] += t2 - t1
        totals["backward"] += t3 - t2
        totals["optimiser"] += t4 - t3
    return {k: 1e3 * v / steps for k, v in totals.items()}


def _kernel_fraction(method, trainer, data, device, steps: int = 5) -> float:
    from torch.profiler import ProfilerActivity, profile

    synchronise(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        for _ in range(steps):
            method.update(trainer.next_batch(data))
        synchronise(device)
        wall = time.perf_counter() - started
    from torch.autograd import DeviceType

    # the kernels themselves (CUDA events); the CPU ops that launched them carry the same time again
    kernel_us = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type == DeviceType.CUDA)
    return kernel_us / 1e6 / wall


def _peak(device: torch.device, precision_name: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[precision_name]
    return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget", default="paper")
    parser.add_argument("--methods", default="all", help="comma list, or all registered methods")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--train-slices", type=int, default=ACDC_CVAL0_TRAINING_SLICES)
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks first (measures its gain)")
    parser.add_argument("--tiny", action="store_true", help="smoke budget, 2 steps, standard + coop-latent")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.tiny:
        args.budget, args.steps, args.warmup = "smoke", 2, 1
        if args.methods == "all":
            args.methods = "standard,coop-latent"
    device = pick_device(args.device)
    names = sorted(METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",")]
    torch.manual_seed(0)
    started = time.perf_counter()
    results = []
    for name in names:
        results.append(measure_method(name, args.budget, device, args.steps, args.warmup, args.train_slices, args.compile))
        r = results[-1]
        print(f"{r.method:16s} {r.precision} {r.gflop_per_update:8.1f} GFLOP/update {1e3 * r.seconds_per_update:8.1f} ms/update "
              f"{r.images_per_second:8.0f} img/s {r.achieved_tflops:7.2f} TFLOP/s"
              + ("" if r.fraction_of_peak is None else f" ({100 * r.fraction_of_peak:.1f} % of peak)")
              + ("" if r.kernel_fraction is None else f" kernels {100 * r.kernel_fraction:.0f} % of step")
              + f"  breakdown ms: {', '.join(f'{k} {v:.1f}' for k, v in r.breakdown_ms.items())}", flush=True)
    protocol_hours = sum(r.projected_run_minutes for r in results) * PROTOCOL_CVALS / 60
    protocol_pflop = sum(r.gflop_per_update * r.updates_per_run for r in results) * PROTOCOL_CVALS / 1e6
    standard = next((r for r in results if r.method == "standard"), None)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__, "budget": args.budget, "steps": args.steps, "compile": args.compile,
        "methods": [asdict(r) for r in results],
        "protocol": {"methods": len(results), "cvals": PROTOCOL_CVALS, "pflop": protocol_pflop,
                     "projected_gpu_hours": protocol_hours, "training_only": True},
        "standard_run_minutes": None if standard is None else standard.projected_run_minutes,
        "seconds": time.perf_counter() - started,
    }
    print(f"protocol: {len(results)} methods x {PROTOCOL_CVALS} cvals at {args.budget}: {protocol_pflop:.1f} PFLOP, "
          f"projected {protocol_hours:.2f} device-hours of training on {report['device']}")
    if standard is not None and args.budget == "paper":
        for label, value, target in (
            ("standard paper run (minutes)", standard.projected_run_minutes, TARGETS["standard paper run (minutes)"]),
            ("cardiac protocol (GPU-hours)", protocol_hours, TARGETS["cardiac protocol (GPU-hours)"]),
        ):
            print(f"target {label}: {value:.2f} (target <= {target}: {'met' if value <= target else 'MISSED'})")
    print(f"check took {report['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
