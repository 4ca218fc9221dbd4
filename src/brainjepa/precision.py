"""Compute precision chosen from what the machine has, with the reason in words (`brainjepa.runtime` turns it into
the run's device, autocast and DataLoader workers).

bf16 autocast pays only where the hardware multiplies bf16 natively: on a CPU without bf16 matrix units it is
several times slower than fp32 (a full ViT-B pretraining step took 99 s instead of 24 s on an AVX2-only EPYC).
So `auto` uses bf16 on CUDA devices that support it and, on a CPU, only when its flags say it has bf16 matrix
units (AMX) or, when they are inconclusive (AVX512-BF16 alone, or no /proc/cpuinfo), when a short matmul timing
shows bf16 faster. An explicit `bf16` or `fp32` is used as asked.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import torch

from brainjepa.errors import ConfigError

Precision = Literal["auto", "bf16", "fp32"]  # the one spelling of a precision setting (config, options, flags)
PRECISIONS: tuple[str, ...] = get_args(Precision)
CPUINFO = Path("/proc/cpuinfo")


class PrecisionChoice(NamedTuple):
    """The dtype to autocast to (float32: no autocast) and why, for one log line."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"


def _cpuinfo_field(keys: tuple[str, ...], path: Path) -> str | None:
    """The value of the first of `keys` in /proc/cpuinfo (its first processor), or None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return None


def cpu_flags(path: Path = CPUINFO) -> set[str] | None:
    """The CPU feature flags of the first processor in /proc/cpuinfo, or None where there is no such file."""
    flags = _cpuinfo_field(("flags", "Features"), path)
    return None if flags is None else set(flags.split())


def cpu_name(path: Path = CPUINFO) -> str:
    """The CPU's model name (/proc/cpuinfo), else the platform's processor string."""
    import platform

    return _cpuinfo_field(("model name", "Model", "CPU part"), path) or platform.processor() or platform.machine()


@functools.cache
def bf16_matmul_speedup(n: int = 768, reps: int = 5) -> float:
    """fp32 time / bf16 time of an n x n CPU matmul (> 1: bf16 is faster). Measured once per process."""
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up: oneDNN picks and builds its kernel on the first call
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        times[dtype] = time.perf_counter() - t0
    return times[torch.float32] / max(times[torch.bfloat16], 1e-12)


# bf16 must beat fp32 by this factor in the timing check: a tie is noise, and autocast adds casts of its own.
MIN_SPEEDUP = 1.25


def bf16_needs_timing(device: torch.device | str = "cpu") -> bool:
    """True on a CPU whose flags neither show bf16 matrix units (AMX) nor rule bf16 out (avx512_bf16 alone, or no
    flags to read): there only a timing tells whether bf16 is faster, and `auto` times."""
    if torch.device(device).type != "cpu":
        return False
    flags = cpu_flags()
    return flags is None or ("amx_bf16" not in flags and "avx512_bf16" in flags)


def _cpu_choice() -> PrecisionChoice:
    flags = cpu_flags()
    if flags is not None and "amx_bf16" in flags:
        return PrecisionChoice(torch.bfloat16, "auto: the CPU has bf16 matrix units (amx_bf16)")
    if not bf16_needs_timing():
        return PrecisionChoice(torch.float32, "auto: the CPU has no native bf16 (no amx_bf16 / avx512_bf16 flag)")
    speedup = bf16_matmul_speedup()
    what = "avx512_bf16 without AMX" if flags is not None else "CPU flags unknown"
    if speedup >= MIN_SPEEDUP:
        return PrecisionChoice(torch.bfloat16, f"auto: {what}, a bf16 matmul ran {speedup:.1f}x faster than fp32")
    return PrecisionChoice(torch.float32, f"auto: {what}, a bf16 matmul ran at {speedup:.2f}x the fp32 speed")


def choose_precision(device: torch.device | str, requested: Precision = "auto") -> PrecisionChoice:
    """bf16 or fp32 autocast for `device`: as requested, or by `auto` where bf16 is native and faster.

    Raises:
        ConfigError: `requested` is not auto, bf16 or fp32.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    device = torch.device(device)
    if requested != "auto":
        dtype = torch.bfloat16 if requested == "bf16" else torch.float32
        return PrecisionChoice(dtype, f"{requested} as requested")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice(torch.bfloat16, f"auto: {torch.cuda.get_device_name(device)} supports bf16")
        return PrecisionChoice(torch.float32, f"auto: {torch.cuda.get_device_name(device)} has no native bf16")
    if device.type == "cpu":
        return _cpu_choice()
    return PrecisionChoice(torch.float32, f"auto: fp32 on {device.type} (bf16 is chosen only on CUDA and CPUs)")
