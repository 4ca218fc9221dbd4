"""Precision and worker choices from the machine's facts (the facts are monkeypatched: no timed tests)."""

from __future__ import annotations

import pytest
import torch

from brainjepa import precision
from brainjepa.errors import ConfigError
from brainjepa.precision import choose_precision, cpu_flags, default_num_workers


@pytest.fixture
def cpu(monkeypatch):
    """Set the CPU's flags and its measured bf16/fp32 matmul speed-up; fail if a decision should not time."""

    def set_facts(flags, speedup=None):
        monkeypatch.setattr(precision, "cpu_flags", lambda: flags)

        def timed():
            assert speedup is not None, "the flags alone should have decided"
            return speedup

        monkeypatch.setattr(precision, "bf16_matmul_speedup", timed)

    return set_facts


def test_cpu_without_bf16_flags_stays_fp32_without_timing(cpu):
    cpu({"avx2", "fma"})
    choice = choose_precision("cpu")
    assert choice.dtype == torch.float32 and "no native bf16" in choice.reason


def test_cpu_with_amx_uses_bf16(cpu):
    cpu({"avx512_bf16", "amx_bf16", "amx_tile"})
    assert choose_precision("cpu").dtype == torch.bfloat16


@pytest.mark.parametrize("flags", [{"avx512f", "avx512_bf16"}, None])
def test_inconclusive_flags_are_settled_by_the_matmul_check(cpu, flags):
    cpu(flags, speedup=2.0)
    fast = choose_precision("cpu")
    assert fast.dtype == torch.bfloat16 and "2.0x faster" in fast.reason
    cpu(flags, speedup=0.5)
    assert choose_precision("cpu").dtype == torch.float32


def test_explicit_precision_is_forced(cpu):
    cpu({"avx2"})
    assert choose_precision("cpu", "bf16") == (torch.bfloat16, "bf16 as requested")
    cpu({"amx_bf16"})
    assert choose_precision("cpu", "fp32").dtype == torch.float32
    with pytest.raises(ConfigError, match="precision must be one of auto, bf16, fp32, got 'half'"):
        choose_precision("cpu", "half")


@pytest.mark.parametrize("supported", [True, False])
def test_cuda_follows_bf16_support(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    choice = choose_precision("cuda")
    assert choice.dtype == (torch.bfloat16 if supported else torch.float32)
    assert "Some GPU" in choice.reason


def test_cpu_flags_parse_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize(("device", "cpus", "procs", "workers"), [
    ("cuda", 16, 1, 8), ("cuda", 16, 4, 3), ("cuda", 16, 8, 1), ("cuda", 2, 1, 1), ("cuda", 1, 1, 0),
    ("cpu", 2, 1, 0), ("cpu", 1, 1, 0), ("cpu", 16, 1, 1), ("cpu", 16, 8, 0),
])
def test_default_workers_fit_the_machine(monkeypatch, device, cpus, procs, workers):
    monkeypatch.setattr(precision, "available_cpus", lambda: cpus)
    assert default_num_workers(device, procs) == workers


def test_default_workers_read_torchrun_local_world_size(monkeypatch):
    monkeypatch.setattr(precision, "available_cpus", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_num_workers("cuda") == 3
