"""benchmarks/bf16_goals.py judges the goals from the figures it ran: fake benchmark outputs, known verdicts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import bf16_goals  # noqa: E402

from brainjepa.precision import PrecisionChoice  # noqa: E402


def fake_runs(step_bf16: dict[str, float], reference: float, attention: float):
    """A `run` that answers each benchmark with a canned JSON row, as the real scripts print them."""

    def run(script: str, *args: str, env=None) -> list[dict]:
        if script == "bench_model.py":
            return [{"dtype": "fp32", "matmul_peak_tflops": 0.15, "encoder_full_share_of_peak": 0.75,
                     "context_predictor_share_of_peak": 0.69},
                    {"dtype": "bf16", "matmul_peak_tflops": 0.35, "encoder_full_share_of_peak": 0.66,
                     "context_predictor_share_of_peak": 0.40}]
        if script == "bench_pretrain.py":
            if "--reference-like" in args:
                return [{"median_s_per_step": reference}]
            return [{"median_s_per_step": step_bf16[args[args.index("--target-attention") + 1]]}]
        if script == "profile_step.py":
            return [{"step_s": 4.0, "share_of_peak": 0.45, "peak_gflops": 340,
                     "self_s_by_group": {"attention": attention, "matmul": 1.0}}]
        raise AssertionError(script)

    return run


def table(capsys, monkeypatch, parts: str, **kwargs) -> dict[str, str]:
    """The verdict column by the first words of each goal."""
    monkeypatch.setattr(bf16_goals, "run", fake_runs(**kwargs))
    monkeypatch.setattr(sys, "argv", ["bf16_goals.py", "--parts", parts])
    bf16_goals.main()
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0][2:]: cells[-1].rstrip(" |") for cells in rows[1:]} | {"text": out}


def test_each_share_is_judged_against_its_own_goal(capsys, monkeypatch):
    verdicts = table(capsys, monkeypatch, "model", step_bf16={}, reference=1.0, attention=0.0)
    got = {key.split(":")[0]: value for key, value in verdicts.items() if key.startswith("bench_model")}
    assert got == {"bench_model fp32 fwd+bwd, encoder, all tokens": "yes",  # 0.75 >= 0.70
                   "bench_model fp32 fwd+bwd, context encoder + predictor": "**no**",  # 0.69 < 0.70
                   "bench_model bf16 fwd+bwd, encoder, all tokens": "yes",  # 0.66 >= 0.65
                   "bench_model bf16 fwd+bwd, context encoder + predictor": "**no**"}  # 0.40 < 0.65


@pytest.mark.parametrize(("onednn", "reference", "ratio", "met"), [(3.0, 15.0, "5.00x", "yes"),
                                                                   (4.0, 15.0, "3.75x", "**no**")])
def test_the_step_ratio_takes_the_faster_kernel(capsys, monkeypatch, onednn, reference, ratio, met):
    monkeypatch.setattr(bf16_goals.onednn_attention, "available", lambda: True)
    verdicts = table(capsys, monkeypatch, "pretrain", step_bf16={"sdpa": 5.0, "onednn": onednn},
                     reference=reference, attention=0.0)
    (row,) = [key for key in verdicts if key.startswith("full step")]
    assert f"| {ratio} | {met} |" in verdicts["text"]
    assert f"onednn target pass {onednn} s" in row


@pytest.mark.parametrize(("attention", "words"), [(3.5, "exceeds"), (2.5, "is within")])
def test_attention_is_set_against_the_5x_budget(capsys, monkeypatch, attention, words):
    monkeypatch.setattr(bf16_goals.onednn_attention, "available", lambda: False)
    out = table(capsys, monkeypatch, "pretrain,profile", step_bf16={"sdpa": 4.0}, reference=15.0,
                attention=attention)["text"]
    assert f"Attention alone ({attention} s) {words} the 5x budget (3.00 s" in out


def test_auto_must_keep_fp32_without_native_bf16(capsys, monkeypatch):
    monkeypatch.setattr(bf16_goals, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr(bf16_goals, "choose_precision", lambda *a: PrecisionChoice(torch.bfloat16, "wrong"))
    verdicts = table(capsys, monkeypatch, "model", step_bf16={}, reference=1.0, attention=0.0)
    assert verdicts["`auto` precision on this CPU"] == "**no**"
    monkeypatch.setattr(bf16_goals, "choose_precision", lambda *a: PrecisionChoice(torch.float32, "no bf16"))
    verdicts = table(capsys, monkeypatch, "model", step_bf16={}, reference=1.0, attention=0.0)
    assert verdicts["`auto` precision on this CPU"] == "yes"
    monkeypatch.setattr(bf16_goals, "cpu_flags", lambda: None)  # no flags to read: auto times, either is right
    monkeypatch.setattr(bf16_goals, "choose_precision", lambda *a: PrecisionChoice(torch.bfloat16, "timed"))
    verdicts = table(capsys, monkeypatch, "model", step_bf16={}, reference=1.0, attention=0.0)
    assert verdicts["`auto` precision on this CPU"] == "yes"


def test_unknown_parts_are_refused_by_name(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bf16_goals.py", "--parts", "model,speed"])
    with pytest.raises(SystemExit):
        bf16_goals.main()
    assert "unknown parts speed" in capsys.readouterr().err
