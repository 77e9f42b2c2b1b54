"""A pinned numeric path: the same floats on every x86-64 machine, for exact regression numbers.

Why: torch, oneDNN, MKL and NumPy each pick kernels by the CPU's instruction set (SSE, AVX2,
AVX-512), and kernels of different widths sum in different orders. Near chance a few updates
amplify a last-bit difference without bound, so exact numbers only hold across machines when
every library runs code that does not depend on the CPU. Measured on one AMD EPYC (AVX-512,
docs/numerics.md): `ONEDNN_MAX_CPU_ISA`, `MKL_CBWR`, disabling oneDNN and
`ATEN_CPU_CAPABILITY` (once oneDNN is off) each change the smoke-budget Dice.

The pin, all of it needed:
- oneDNN (mkldnn) and NNPACK off: both JIT or dispatch kernels per CPU and no variable pins
  them to a fixed code path, so convolutions fall back to ATen's own implementation;
- `ATEN_CPU_CAPABILITY=default`: ATen's kernels compiled for the x86-64 baseline, no AVX;
- `MKL_CBWR=COMPATIBLE`: MKL's conditional numerical reproducibility mode, the same results
  on any x86-64 processor (Intel's documented guarantee);
- `NPY_DISABLE_CPU_FEATURES`: NumPy's dispatched kernels above its x86-64-v2 baseline off;
- one thread everywhere (the order of a reduction split over threads depends on their number).

The variables are read when the libraries load, so the pin is applied to a fresh process:
`robench --pinned-numerics ...` re-executes itself with them set. It costs ~2× the time.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

PIN_MARKER = "ROBENCH_PINNED_NUMERICS"
PINNED_ENV: Mapping[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    PIN_MARKER: "1",
}
# what a machine with fewer instruction sets looks like to each library's dispatcher (tests, docs)
AVX2_HOST_ENV: Mapping[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
RECORDED_VARIABLES = (
    "ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "NPY_DISABLE_CPU_FEATURES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", PIN_MARKER,
)


def pinned_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the pin applied."""
    return {**(os.environ if base is None else base), **PINNED_ENV}


def is_pinned() -> bool:
    return os.environ.get(PIN_MARKER) == "1"


def reexec_pinned() -> None:
    """Replace this process by the same robench command under the pinned environment (once)."""
    if is_pinned():
        return
    os.execve(sys.executable, [sys.executable, "-m", "robench", *sys.argv[1:]], pinned_environment())


def apply_in_process() -> None:
    """Switch off the per-CPU backends in a process started under the pinned environment.

    Refuses a process whose libraries loaded before the variables were set: a half pin would
    record numbers as pinned that are not.
    """
    if not is_pinned():
        return
    import torch

    from robench.errors import ConfigError

    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        raise ConfigError(
            "pinned numerics: torch loaded before ATEN_CPU_CAPABILITY=default was set; start robench with "
            "--pinned-numerics (it restarts itself with the variables set)"
        )
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    torch.set_num_threads(1)


def numerics_record() -> dict[str, object]:
    """What decides the floats of a run, for environment.json."""
    import torch

    return {
        "pinned": is_pinned(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "nnpack": bool(torch._C._get_nnpack_enabled()),
        "threads": torch.get_num_threads(),
        "variables": {k: os.environ[k] for k in RECORDED_VARIABLES if k in os.environ},
    }
