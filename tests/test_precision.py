"""Precision and worker choices from the machine's facts (the facts are monkeypatched: no timed tests)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from brainjepa import BrainJEPA, model_config, precision, runtime
from brainjepa.config import load_config
from brainjepa.errors import ConfigError
from brainjepa.evaluation.embed import EmbedOptions, embed
from brainjepa.evaluation.finetune import FinetuneConfig
from brainjepa.precision import choose_precision, cpu_flags
from brainjepa.runtime import default_num_workers
from brainjepa.training.distributed import DistEnv
from brainjepa.training.loop import Trainer


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


def test_a_matmul_exactly_min_speedup_faster_is_enough_for_bf16(cpu):
    """`MIN_SPEEDUP` is the least gain that chooses bf16: a speed-up of exactly 1.25 does."""
    cpu({"avx512f", "avx512_bf16"}, speedup=precision.MIN_SPEEDUP)
    assert choose_precision("cpu").dtype == torch.bfloat16


@pytest.mark.parametrize(("flags", "times"), [({"amx_bf16", "avx512_bf16"}, False), ({"avx512_bf16"}, True),
                                              (None, True), ({"avx2"}, False)])
def test_only_inconclusive_cpu_flags_need_a_timing(monkeypatch, flags, times):
    """`bf16_needs_timing` (what `brainjepa tune` asks before timing precisions): AMX settles bf16 and no bf16
    flag settles fp32; only avx512_bf16 alone or unknown flags leave it to a timing. Never on a GPU."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert precision.bf16_needs_timing("cpu") is times
    assert precision.bf16_needs_timing("cuda") is False


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


def test_cpu_flags_are_the_first_processors_and_arm_features_count(tmp_path: Path) -> None:
    """The first processor's flags decide (a later one's are not read), and an ARM cpuinfo's "Features" line is its
    flags: a CPU whose flags are known is not timed (no bf16 flag there: fp32 by rule)."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2\n\nprocessor\t: 1\nflags\t\t: fpu avx2 amx_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx2"}
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16\nCPU part\t: 0xd4f\n")
    assert cpu_flags(info) == {"fp", "asimd", "sve", "bf16"}


def test_a_small_matmul_gain_is_a_tie_and_the_speedup_is_fp32_time_over_bf16_time(
        cpu: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 must beat fp32 by MIN_SPEEDUP: a 1.1x matmul gain stays fp32. The speed-up is fp32 time / bf16 time
    (a clock that gives fp32 2 s and bf16 1 s reads 2x)."""
    from types import SimpleNamespace

    ticks = iter([0.0, 2.0, 10.0, 11.0])  # fp32 is timed first, then bf16
    monkeypatch.setattr(precision, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    assert precision.bf16_matmul_speedup.__wrapped__(n=8, reps=1) == pytest.approx(2.0)
    cpu({"avx512_bf16"}, speedup=1.1)
    assert choose_precision("cpu").dtype == torch.float32


def test_auto_is_fp32_on_devices_other_than_cuda_and_cpu() -> None:
    """bf16 is chosen only on CUDA and CPUs; elsewhere (mps, meta) auto is fp32, as its reason says."""
    choice = choose_precision("meta")
    assert choice.dtype == torch.float32 and "fp32 on meta" in choice.reason


@pytest.mark.parametrize(("device", "cpus", "procs", "workers"), [
    ("cuda", 16, 1, 8), ("cuda", 16, 4, 3), ("cuda", 16, 8, 1), ("cuda", 2, 1, 1), ("cuda", 1, 1, 0),
    ("cpu", 2, 1, 0), ("cpu", 1, 1, 0), ("cpu", 16, 1, 1), ("cpu", 16, 8, 0),
])
def test_default_workers_fit_the_machine(monkeypatch, device, cpus, procs, workers):
    monkeypatch.setattr(runtime, "available_cpus", lambda: cpus)
    assert default_num_workers(device, procs) == workers


def test_default_workers_read_torchrun_local_world_size(monkeypatch):
    monkeypatch.setattr(runtime, "available_cpus", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_num_workers("cuda") == 3


# ------------------------------------------------------------------------------------- the settings and their use
R, T = 20, 64


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from brainjepa.data.simulate import SimulationConfig, simulate_store

    path = tmp_path_factory.mktemp("store") / "s"
    simulate_store(path, SimulationConfig(subjects=8, rois=R, frames=80, seed=0), progress=False)
    return path


def _overrides(store, **extra) -> list[str]:
    base = {"data.path": str(store), "data.crop_size": f"[{R},{T}]", "data.batch_size": 4, "data.sampling_rate": 1,
            "data.pin_mem": "false", "data.gradient_components": 8, "data.gradient_sparsity": 0.5,
            "mask.patch_size": 16, "meta.model_name": "vit_tiny", "meta.embed_dim": 32, "meta.depth": 1,
            "meta.num_heads": 2, "meta.pred_emb_dim": 16, "meta.pred_depth": 1, "meta.accumulation_steps": 1,
            "optimization.epochs": 2, "optimization.warmup": 1, **extra}
    return [f"{k}={v}" for k, v in base.items()]


@pytest.mark.parametrize(("given", "expected"), [
    ([], "auto"), (["meta.use_bfloat16=true"], "auto"), (["meta.use_bfloat16=false"], "fp32"),
    (["meta.use_bfloat16=true", "meta.precision=fp32"], "fp32"), (["meta.precision=bf16"], "bf16"),
])
def test_reference_use_bfloat16_maps_onto_precision(given, expected):
    """One source (a file, or the overrides): use_bfloat16 true -> auto unless it gives meta.precision too."""
    assert load_config(None, given).meta.precision == expected


def test_contradicting_or_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="meta.use_bfloat16 and meta.precision both set meta.precision"):
        load_config(None, ["meta.use_bfloat16=false", "meta.precision=bf16"])
    with pytest.raises(ConfigError, match=r"meta.precision has value 'half'; expected one of \['auto', 'bf16'"):
        load_config(None, ["meta.precision=half"])


@pytest.mark.parametrize(("flags", "setting", "dtype", "reason"), [
    ({"avx2"}, "meta.use_bfloat16=true", torch.float32, "auto: the CPU has no native bf16"),  # the 4x slower case
    ({"amx_bf16"}, "meta.precision=auto", torch.bfloat16, "auto: the CPU has bf16 matrix units"),
    ({"avx2"}, "meta.precision=bf16", torch.bfloat16, "bf16 as requested"),
    ({"amx_bf16"}, "meta.precision=fp32", torch.float32, "fp32 as requested"),
])
def test_pretraining_logs_and_applies_its_precision(store, tmp_path, monkeypatch, caplog, flags, setting, dtype,
                                                    reason):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    caplog.set_level(logging.INFO, logger="brainjepa.training.loop")
    trainer = Trainer(load_config(None, _overrides(store, **{"data.num_workers": 0}) + [setting]), tmp_path,
                      DistEnv(), resume=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision: ")]
    assert len(lines) == 1 and lines[0].startswith(f"precision: {'bf16' if dtype == torch.bfloat16 else 'fp32'} "
                                                   f"({reason}")
    batch = next(trainer.micro_batches())
    with trainer.autocast():
        out = trainer.forward(batch.x, batch.context_idx, batch.target_idx)
    assert out.prediction.dtype == dtype


def test_pretraining_workers_default_to_the_machine(store, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "available_cpus", lambda: 16)
    auto = Trainer(load_config(None, _overrides(store)), tmp_path / "a", DistEnv(), resume=False)
    assert auto.cfg.data.num_workers is None and auto.num_workers == default_num_workers("cpu") == 1
    assert next(auto.micro_batches()).x.shape == (4, R, T)  # the loader runs with that worker
    given = Trainer(load_config(None, _overrides(store, **{"data.num_workers": 0})), tmp_path / "b", DistEnv(),
                    resume=False)
    assert given.num_workers == 0


@pytest.mark.parametrize(("flags", "dtype"), [({"amx_bf16"}, torch.bfloat16), ({"avx2"}, torch.float32)])
def test_embedding_auto_precision_equals_the_chosen_one(monkeypatch, caplog, flags, dtype):
    model = BrainJEPA(model_config("vit_tiny", num_rois=R, num_frames=T, embed_dim=32, depth=1, num_heads=2,
                                   pred_embed_dim=16, pred_depth=1, gradient_dim=8), torch.rand(R, 8).numpy())
    x = torch.randn(3, R, T)
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    caplog.set_level(logging.INFO, logger="brainjepa.evaluation.embed")
    auto = embed(model, x, options=EmbedOptions(device="cpu"))
    name = "bf16" if dtype == torch.bfloat16 else "fp32"
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision: ")] == [
        f"precision: {name} ({choose_precision('cpu').reason})"]
    assert torch.equal(auto, embed(model, x, options=EmbedOptions(device="cpu", precision=name)))
    other = embed(model, x, options=EmbedOptions(device="cpu", precision="fp32" if name == "bf16" else "bf16"))
    assert not torch.equal(auto, other)  # so the equality above says which precision ran


@pytest.mark.parametrize(("flags", "requested", "dtype"), [
    ({"amx_bf16"}, "auto", torch.bfloat16), ({"avx2"}, "auto", torch.float32), ({"avx2"}, "bf16", torch.bfloat16),
])
def test_finetuning_resolves_logs_and_applies_its_precision(monkeypatch, caplog, flags, requested, dtype):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 2)
    caplog.set_level(logging.INFO, logger="brainjepa.evaluation.finetune")
    cfg = FinetuneConfig(device="cpu", precision=requested).for_machine()
    name = "bf16" if dtype == torch.bfloat16 else "fp32"
    assert (cfg.precision, cfg.num_workers) == (name, 0)  # what finetune.json records
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [f"precision: {name}"]
    with cfg.runtime().autocast():  # what train_one_epoch and evaluate enter
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == dtype


@pytest.mark.parametrize(("available", "expected"), [(True, torch.device("cuda", 1)), (False, torch.device("cpu"))])
def test_auto_device_is_this_processs_gpu_where_there_is_one(monkeypatch, available, expected):
    """device auto (or None) means CUDA where a GPU is visible, each process on cuda:LOCAL_RANK, else the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.resolve_device("auto", local_rank=1, world_size=2) == expected
    assert runtime.resolve_device(None, local_rank=1, world_size=2) == expected
