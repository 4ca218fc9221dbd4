"""Embedding's precision and batch size chosen by timing the encoder (brainjepa.tuning). The timings
are replaced by given ones: these tests check the decisions, never the machine's speed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from brainjepa import embed, precision, tuning
from brainjepa.evaluation.embed import EmbedOptions
from brainjepa.runtime import runtime
from conftest import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")
R, F = 6, 32


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path):
    """Timing on (conftest turns it off) with a fresh decision file per test."""
    monkeypatch.setattr(tuning, "MIN_WINDOWS", 32)
    monkeypatch.setattr(tuning, "KERNEL_SHARE", 0.1)
    monkeypatch.setattr(tuning, "cache_root", lambda: tmp_path)
    return tmp_path / "tuning.json"


@pytest.fixture
def timings(monkeypatch):
    """Give seconds per window by (batch, dtype) and kernel; record every timing asked for (and its kernel)."""
    asked: list[tuple[int, torch.dtype]] = []
    kernels: list[str] = []

    def give(table, onednn: float = 1.0):
        """`table(batch, dtype)` seconds per window with SDPA; oneDNN's attention takes `onednn` times that."""
        def fake(net, x, dtype, kernel="sdpa"):
            asked.append((len(x), dtype))
            kernels.append(kernel)
            return table(len(x), dtype) * (onednn if kernel == "onednn" else 1.0)

        monkeypatch.setattr(tuning, "_seconds_per_window", fake)
        return asked

    give.kernels = kernels
    return give


@pytest.fixture
def avx512_bf16(monkeypatch):
    """A CPU whose flags leave bf16 open (avx512_bf16, no AMX); its matmul check says bf16 is 2x faster."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(precision, "bf16_matmul_speedup", lambda: 2.0)


def _plan(precision_auto=True, batch_size=None, windows=64, requested="auto", depth=1):
    model = tiny_model(R, F, depth=depth)
    return tuning.plan_embedding(model.target_encoder.eval(), torch.zeros(1, R, F), runtime("cpu", requested),
                                 precision_auto=precision_auto, batch_size=batch_size, windows=windows)


@pytest.mark.usefixtures("avx512_bf16")
@pytest.mark.parametrize(("bf16_seconds", "chosen"), [(1.2, torch.float32), (0.7, torch.bfloat16),
                                                      (0.98, torch.float32)])  # 0.98: within noise, fp32 stays
def test_the_encoders_own_timing_overrules_the_matmul_check(timings, bf16_seconds, chosen):
    timings(lambda b, dtype: 1.0 if dtype == torch.float32 else bf16_seconds)
    plan = _plan(batch_size=4)
    assert plan.run.precision.dtype == chosen and "timed on this encoder" in plan.run.precision.reason
    assert plan.batch_size == 4


@pytest.mark.usefixtures("avx512_bf16")
def test_an_explicit_precision_is_never_timed(timings):
    asked = timings(lambda b, dtype: 1.0)
    plan = _plan(precision_auto=False, batch_size=4, requested="fp32")
    assert plan.run.precision.dtype == torch.float32 and asked == []


def test_flags_that_decide_are_not_timed(timings):  # conftest: a CPU with avx2 only, so auto is fp32
    asked = timings(lambda b, dtype: 1.0 / b)
    plan = _plan()
    assert plan.run.precision.dtype == torch.float32
    assert {dtype for _, dtype in asked} == {torch.float32}  # only the batch size was timed


def test_batch_grows_while_it_pays_and_stops_at_the_first_that_does_not(timings):
    per_window = {1: 1.0, 2: 0.8, 4: 0.79, 8: 0.1}
    asked = timings(lambda b, dtype: per_window[b])
    plan = _plan(windows=64)
    assert plan.batch_size == 2  # 4 gains 1%: noise; 8 is never tried
    assert [b for b, _ in asked] == [1, 2, 4] and "2: 0.8 s" in plan.why_batch


def test_batch_sweep_stops_at_max_batch(timings):
    asked = timings(lambda b, dtype: 1.0 / b)
    assert _plan(windows=40).batch_size == tuning.MAX_BATCH == max(b for b, _ in asked)


@pytest.mark.usefixtures("avx512_bf16")
def test_a_decision_is_stored_and_reused_so_reruns_agree(timings, cache):
    asked = timings(lambda b, dtype: (1.0 if dtype == torch.float32 else 0.5) / min(b, 2))
    first = _plan()
    assert first.run.precision.dtype == torch.bfloat16 and first.batch_size == 2 and asked
    asked.clear()
    timings(lambda b, dtype: 1.0 if dtype == torch.bfloat16 else 0.1)  # the machine would now say otherwise
    again = _plan()
    assert asked == [] and (again.run.precision.dtype, again.batch_size) == (torch.bfloat16, 2)
    assert f"stored in {cache}" in again.run.precision.reason and f"stored in {cache}" in again.why_batch
    assert "fp32 1 s, bf16 0.5 s" in again.run.precision.reason
    cache.write_text('{"garbage": 1, "x": {"precision": ["bf17", "?"]}}')  # others' entries, malformed: no crash, timed
    # afresh (this machine's key is gone; invalid values under it: test_invalid_stored_values_under_this_machines_key)
    assert _plan().run.precision.dtype == torch.float32 and asked
    cache.write_text("not json")
    assert _plan().run.precision.dtype == torch.float32


def test_short_calls_and_given_settings_are_not_timed(timings):
    asked = timings(lambda b, dtype: 1.0 / min(b, 4))
    assert _plan(windows=tuning.MIN_WINDOWS - 1).batch_size == tuning.DEFAULT_BATCH
    assert _plan(batch_size=3).batch_size == 3
    assert asked == []
    assert _plan(windows=tuning.MIN_WINDOWS).batch_size == 4 and asked  # timed once, stored ...
    asked.clear()
    assert _plan(windows=2).batch_size == 4 and asked == []  # ... and used by short calls from then on


def test_embed_with_a_timed_batch_equals_embed_with_a_given_one(timings, caplog):
    timings(lambda b, dtype: {1: 1.0, 2: 0.5}.get(b, 0.5))  # batch 2 wins
    model = tiny_model(R, F)
    x = np.random.default_rng(0).standard_normal((tuning.MIN_WINDOWS, R, 40)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="brainjepa"):
        auto = embed(model, x)
    assert ("batch: 2 windows per forward pass (timed on this encoder's first block, per window at batch 1: 1 s, "
            "2: 0.5 s") in caplog.text
    given = embed(model, x, options=EmbedOptions(batch_size=5))
    torch.testing.assert_close(auto, given, rtol=1e-5, atol=1e-6)


def test_real_timing_returns_seconds_per_window():
    model = tiny_model(R, F)
    seconds = tuning._seconds_per_window(model.target_encoder.eval(), torch.zeros(2, R, F), torch.float32)
    assert 0 < seconds < 10


@pytest.mark.usefixtures("avx512_bf16")
def test_info_shows_what_auto_picks_and_the_stored_timings(timings, cache, capsys):
    from brainjepa.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "precision auto on cpu: bf16 (auto: avx512_bf16 without AMX, a bf16 matmul ran 2.0x faster" in out
    assert f"timings: none stored yet ({cache})" in out
    assert "bf16 attention without gradient on cpu: SDPA or oneDNN's fused kernel, whichever" in out
    timings(lambda b, dtype: 1.0 if dtype == torch.float32 else 0.5)
    _plan()
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"timings stored in {cache}" in out and "precision bf16, attention bf16 sdpa, batch bf16 1" in out


@pytest.mark.usefixtures("avx512_bf16")
def test_bf16_on_a_cpu_times_the_attention_kernel_and_the_batch_with_it(timings, cache, caplog):
    asked = timings(lambda b, dtype: (1.0 if dtype == torch.float32 else 0.6) / min(b, 2), onednn=0.7)
    plan = _plan()
    assert plan.run.precision.dtype == torch.bfloat16 and plan.attention == "onednn" and plan.batch_size == 2
    assert "SDPA 0.6 s, oneDNN 0.42 s per window" in plan.why_attention
    # each candidate timed once: bf16/SDPA at batch 1 serves precision and kernel, oneDNN at batch 1 kernel and batch
    assert list(zip(asked, timings.kernels, strict=True)) == [
        ((1, torch.float32), "sdpa"), ((1, torch.bfloat16), "sdpa"), ((1, torch.bfloat16), "onednn"),
        ((2, torch.bfloat16), "onednn"), ((4, torch.bfloat16), "onednn")]
    asked.clear()
    with caplog.at_level(logging.INFO, logger="brainjepa"):
        plan.log(logging.getLogger("brainjepa.test"))
    assert "attention: onednn (timed on this encoder's first block in bf16" in caplog.text
    again = _plan()  # stored, so reruns agree
    assert asked == [] and (again.attention, again.batch_size) == ("onednn", 2)


@pytest.mark.usefixtures("avx512_bf16")
def test_a_short_call_times_only_the_kernel_where_that_pays(timings):
    asked = timings(lambda b, dtype: 1.0 if dtype == torch.float32 else 0.6, onednn=0.7)
    # 12 blocks: the kernel's 6 block passes are 10% of a 5-window call's 60, more than 10% of a 4-window call's 48
    assert _plan(windows=4, depth=12).attention == "sdpa" and asked == []
    assert _plan(windows=31, depth=1).attention == "sdpa" and asked == []  # one block: from MIN_WINDOWS only
    plan = _plan(windows=5, depth=12)
    assert (plan.attention, plan.batch_size) == ("onednn", tuning.DEFAULT_BATCH)
    assert plan.run.precision.dtype == torch.bfloat16 and "matmul" in plan.run.precision.reason  # by rule, not timed
    assert list(zip(asked, timings.kernels, strict=True)) == [((1, torch.bfloat16), "sdpa"),
                                                              ((1, torch.bfloat16), "onednn")]
    asked.clear()
    assert _plan(windows=4, depth=12).attention == "onednn" and asked == []  # stored: shorter calls use it too


@pytest.mark.usefixtures("avx512_bf16")
@pytest.mark.parametrize("onednn", [0.97, 1.3])  # within noise, or slower: SDPA stays
def test_the_kernel_stays_sdpa_unless_onednn_is_clearly_faster(timings, onednn):
    timings(lambda b, dtype: 1.0 if dtype == torch.float32 else 0.5, onednn=onednn)
    assert _plan(batch_size=4).attention == "sdpa"


def test_fp32_never_times_the_kernel(timings):  # conftest: an avx2-only CPU, so auto is fp32
    timings(lambda b, dtype: 1.0, onednn=0.1)
    plan = _plan(batch_size=4)
    assert (plan.attention, plan.why_attention, timings.kernels) == ("sdpa", "", [])


def test_embed_applies_the_timed_kernel_and_restores_the_models(timings, monkeypatch):
    from brainjepa.models import onednn_attention
    from brainjepa.models.layers import Attention

    timings(lambda b, dtype: 1.0, onednn=0.5)
    seen = []
    real = onednn_attention.attention
    monkeypatch.setattr(onednn_attention, "attention", lambda q, k, v: seen.append(q.shape) or real(q, k, v))
    model = tiny_model(R, F)
    x = np.random.default_rng(0).standard_normal((tuning.MIN_WINDOWS, R, 40)).astype(np.float32)
    fast = embed(model, x, options=EmbedOptions(precision="bf16", batch_size=8))
    assert len(seen) == model.config.depth * tuning.MIN_WINDOWS // 8  # every block of every pass
    assert {m.inference_kernel for m in model.modules() if isinstance(m, Attention)} == {"sdpa"}
    plain = embed(model, x, options=EmbedOptions(precision="fp32", batch_size=8))
    torch.testing.assert_close(fast, plain, rtol=0.05, atol=0.05)


@pytest.mark.usefixtures("avx512_bf16")
def test_pretraining_times_the_target_pass_kernel_only_for_long_bf16_runs(timings, cache):
    timings(lambda b, dtype: 1.0, onednn=0.5)
    net = tiny_model(R, F).target_encoder
    batch = torch.zeros(4, R, F)
    short = tuning.plan_target_attention(net, batch, runtime("cpu", "bf16"), steps=tuning.MIN_STEPS - 1)
    assert short[0] == "sdpa" and "not timed" in short[1] and timings.kernels == []
    assert tuning.plan_target_attention(net, batch, runtime("cpu", "fp32"), steps=10**6) == ("sdpa", "")
    kernel, why = tuning.plan_target_attention(net, batch, runtime("cpu", "bf16"), steps=tuning.MIN_STEPS)
    assert kernel == "onednn" and "SDPA 1 s, oneDNN 0.5 s" in why and timings.kernels == ["sdpa", "onednn"]
    kernel, why = tuning.plan_target_attention(net, batch, runtime("cpu", "bf16"), steps=1)  # stored: reused
    assert kernel == "onednn" and f"stored in {cache}" in why


@pytest.mark.usefixtures("avx512_bf16")
def test_embed_with_an_explicit_precision_times_only_the_batch(timings: Callable,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """precision fp32 is used as asked even where the flags leave bf16 open and bf16 would time faster: only the
    batch size (which the user left open) is timed, in fp32."""
    asked = timings(lambda b, dtype: (1.0 if dtype == torch.float32 else 0.1) / min(b, 2))
    x = np.random.default_rng(0).standard_normal((tuning.MIN_WINDOWS, R, 40)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="brainjepa"):
        embed(tiny_model(R, F), x, options=EmbedOptions(precision="fp32"))
    assert "precision: fp32 (fp32 as requested)" in caplog.text
    assert asked and {dtype for _, dtype in asked} == {torch.float32}


def test_a_call_is_timed_by_its_windows_not_its_runs(timings: Callable, caplog: pytest.LogCaptureFixture) -> None:
    """MIN_WINDOWS counts windows: half as many runs with two windows each is a call long enough to time."""
    asked = timings(lambda b, dtype: 1.0 / min(b, 2))
    x = np.random.default_rng(0).standard_normal((tuning.MIN_WINDOWS // 2, R, 80)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="brainjepa"):
        embed(tiny_model(R, F), x, options=EmbedOptions(windows=2))
    assert asked and "batch: 2 windows per forward pass (timed on this encoder's first block" in caplog.text


def test_a_stored_decision_belongs_to_its_thread_count_and_input_shape(timings: Callable) -> None:
    """The key of a stored decision holds what a timing depends on: with another thread count or another input
    shape (same width, heads and patch) the encoder is timed afresh, not given another setting's batch."""
    asked = timings(lambda b, dtype: 1.0 / min(b, 4))
    assert _plan().batch_size == 4 and asked
    asked.clear()
    assert _plan().batch_size == 4 and asked == []  # the same setting: reused
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        _plan()
    finally:
        torch.set_num_threads(threads)
    assert asked
    asked.clear()
    wider = tiny_model(R + 2, F).target_encoder.eval()
    tuning.plan_embedding(wider, torch.zeros(1, R + 2, F), runtime("cpu", "auto"), precision_auto=True,
                          batch_size=None, windows=64)
    assert asked


def test_a_batch_decision_is_stored_per_precision(timings: Callable) -> None:
    """A batch size timed in fp32 is not the answer for bf16 passes: each precision has its own stored batch."""
    timings(lambda b, dtype: 1.0 / min(b, 2 if dtype == torch.float32 else 8))
    assert _plan(precision_auto=False, requested="fp32").batch_size == 2
    assert _plan(precision_auto=False, requested="bf16").batch_size == 8


def test_seconds_per_window_is_the_best_timed_pass_per_window_in_its_precision(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up pass is left out whatever it took, the best of the REPS timed passes counts, it is divided by
    the windows of the pass, and a bf16 timing runs under bf16 autocast (a clock and a forward that record)."""
    from types import SimpleNamespace

    net = tiny_model(R, F).target_encoder.eval()
    clock, autocast, durations = [0.0], [], []

    def forward(x: torch.Tensor, indices: list[int]) -> None:
        autocast.append(torch.is_autocast_enabled("cpu"))
        clock[0] += durations.pop(0)

    monkeypatch.setattr(tuning, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(net, "forward_intermediates", forward)
    for dtype in (torch.float32, torch.bfloat16):
        durations[:] = [1.0, 3.0, 2.0][:tuning.REPS + 1]  # warm-up first: the fastest, yet not counted
        assert tuning._seconds_per_window(net, torch.zeros(4, R, F), dtype) == pytest.approx(2.0 / 4)
        assert autocast == [dtype == torch.bfloat16] * (tuning.REPS + 1)
        autocast.clear()


def test_a_gpu_call_is_not_timed(timings: Callable) -> None:
    """Only CPUs are timed: on a GPU the batch is DEFAULT_BATCH unless given, whatever a timing would say."""
    from brainjepa.precision import PrecisionChoice
    from brainjepa.runtime import Runtime

    asked = timings(lambda b, dtype: 1.0 / b)
    net = tiny_model(R, F).target_encoder.eval()
    run = Runtime(torch.device("cuda"), PrecisionChoice(torch.float32, "test"))
    plan = tuning.plan_embedding(net, torch.zeros(1, R, F), run, precision_auto=True, batch_size=None, windows=64)
    assert plan.batch_size == tuning.DEFAULT_BATCH and asked == []


@pytest.mark.usefixtures("avx512_bf16")
@pytest.mark.parametrize(("what", "bad"), [
    pytest.param("precision", ["bf17", "?"], id="unknown dtype"),
    pytest.param("precision", ["bf16"], id="no reason"),
    pytest.param("batch bf16", [0, "?"], id="batch 0"),
    pytest.param("batch bf16", [2 * tuning.MAX_BATCH, "?"], id="batch over MAX_BATCH"),
    pytest.param(None, ["not", "a", "table"], id="the key's entry"),
])
def test_invalid_stored_values_under_this_machines_key_are_timed_afresh(timings: Callable, cache: Path,
                                                                       what: str | None, bad: list) -> None:
    """An entry of this machine and encoder whose value is not a decision (an unknown dtype, a missing reason, a
    batch out of range, a key holding no table, as a hand edit or another version might leave) is timed again and
    replaced, not used (nor a crash)."""
    import json

    asked = timings(lambda b, dtype: (1.0 if dtype == torch.float32 else 0.5) / min(b, 2))
    first = _plan()
    stored = json.loads(cache.read_text())
    (key,) = stored
    if what is None:
        stored[key] = bad
    else:
        stored[key][what] = bad
    cache.write_text(json.dumps(stored))
    asked.clear()
    again = _plan()
    assert asked and (again.run.precision.dtype, again.batch_size) == (first.run.precision.dtype, first.batch_size)
    assert "stored in" not in (again.why_batch if what == "batch bf16" else again.run.precision.reason)
    entries = json.loads(cache.read_text())[key]  # replaced by the new timing
    assert (entries["precision"][0], entries["batch bf16"][0]) == (first.run.precision.name, first.batch_size)


def test_an_unwritable_cache_only_costs_the_timing_next_time(timings: Callable, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """A cache folder that cannot be written (here: under a file) does not stop the call: the timed decision is used
    but not stored, so the next call times again."""
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(tuning, "cache_root", lambda: tmp_path / "a-file" / "cache")
    asked = timings(lambda b, dtype: 1.0 / min(b, 4))
    assert _plan().batch_size == 4 and asked
    asked.clear()
    assert _plan().batch_size == 4 and asked


def test_a_stored_decision_belongs_to_its_brainjepa_version(timings: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernels timed are partly ours (oneDNN's attention in query blocks): another brainjepa version times
    afresh instead of reusing a decision its predecessor's kernels earned."""
    asked = timings(lambda b, dtype: 1.0 / min(b, 4))
    _plan()
    asked.clear()
    _plan()
    assert asked == []  # same version: reused
    monkeypatch.setattr(tuning, "__version__", "0.0.0-other")
    _plan()
    assert asked
