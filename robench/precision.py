"""Precision and memory layout of a run: a recorded choice, resolved before the run id.

Why: bf16 autocast with channels_last networks is 2–3× faster than fp32 on CPUs with native
bf16 (AVX512_BF16, AMX) and on every CUDA GPU since Ampere, but it changes the floats, so the
concrete choice (never "auto") enters the run's config and id. On a CPU without native bf16
the same autocast is emulated and slower than fp32, so `auto` detects the instruction set
(what torch's own dispatcher reports, capped by `ONEDNN_MAX_CPU_ISA`) rather than guessing.
The pinned numeric path (robench.numerics) is fp32 and contiguous by definition.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from robench.errors import ConfigError
from robench.numerics import is_pinned

PRECISIONS = ("auto", "fp32", "bf16")
# oneDNN ISA caps below which its bf16 kernels are emulated (ONEDNN_MAX_CPU_ISA names, upper-cased)
_ISA_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI")


@dataclass(frozen=True)
class NumericChoice:
    """What a run computes in: `precision` fp32|bf16 (autocast), `memory_format` contiguous|channels_last."""

    precision: str = "fp32"
    memory_format: str = "contiguous"

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` computes bf16 in hardware, and the evidence."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        ok = major >= 8  # bf16 tensor cores since Ampere (compute capability 8.0)
        return ok, f"{torch.cuda.get_device_name(device)} (sm_{major}{minor}): {'native' if ok else 'no native'} bf16"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap in _ISA_WITHOUT_BF16:
        return False, f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below its bf16 kernels"
    flags = _cpu_bf16_flags()
    if flags:
        return True, f"CPU has {', '.join(flags)}"
    return False, "CPU has neither avx512_bf16 nor amx_bf16"


def _cpu_bf16_flags() -> list[str]:
    """The bf16 instruction sets torch's CPU probe reports (the kernels' flags, as its dispatcher sees them)."""
    found = []
    if torch.cpu._is_avx512_bf16_supported():
        found.append("avx512_bf16")
    if torch.cpu._is_amx_tile_supported():
        found.append("amx_tile")
    return found


def resolve(requested: str, device: torch.device) -> NumericChoice:
    """`--precision` → the concrete choice recorded in the run's config."""
    if requested not in PRECISIONS:
        raise ConfigError(f"--precision {requested!r} is unknown; use {', '.join(PRECISIONS)}")
    if is_pinned():
        if requested == "bf16":
            raise ConfigError("--pinned-numerics computes in fp32 only; drop --precision bf16 (or the pin)")
        return NumericChoice("fp32", "contiguous")
    if requested == "auto":
        requested = "bf16" if native_bf16(device)[0] else "fp32"
    return NumericChoice(requested, "channels_last")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast (no loss scaling: bf16 has fp32's exponent range) or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
