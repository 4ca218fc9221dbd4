"""benchmarks/gpu_science.sh works before any GPU session: a tiny CPU dry run end to end (surrogates, 2 parallel G1
runs, 2 G2 sizes, real-data losses, tars, JSON) and the CPU evaluation of what it wrote; the timing probe's
arithmetic and polling on fake processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainjepa.data.simulate import event_design
from brainjepa.data.store import StoreWriter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_science  # noqa: E402
import gpu_science_eval  # noqa: E402

R, FRAMES, TR = 40, 170, 2.0  # R > 30: the 30 gradient columns must be independent


def _inputs(root: Path) -> tuple[Path, Path, Path]:
    """A small 'real' store (8 subjects x 2 runs, demeaned, with heat/rating responses), its events and a
    random 30-column gradient CSV."""
    rng = np.random.default_rng(0)
    (root / "events").mkdir(parents=True)
    mix = rng.standard_normal((R, 3))
    with StoreWriter(root / "store", R, roi_labels=[f"roi{i}" for i in range(R)]) as writer:
        for s in range(8):
            for run in ("1", "2"):
                onsets = np.arange(8.0 + run.__len__(), FRAMES * TR - 20, 36.0)
                events = pd.DataFrame([(o, 12.0, "heat") for o in onsets] + [(o + 18, 10.0, "rating") for o in onsets],
                                      columns=["onset", "duration", "trial_type"])
                events.to_csv(root / "events" / f"sub-{s:02d}_run-{run}_events.tsv", sep="\t", index=False)
                x = rng.standard_normal((FRAMES, R)) + rng.standard_normal((FRAMES, 3)) @ mix.T
                x = np.cumsum(x, axis=0) * 0.3 + x  # slow drifts
                x += event_design(events, FRAMES, TR, ["heat", "rating"]) @ rng.normal(0, 1, (2, R))
                writer.add((100 * (x - x.mean(0))).T.astype(np.float32), subject=f"{s:02d}", run=run, tr=TR)
    np.savetxt(root / "gradients.csv", rng.standard_normal((R, 30)), delimiter=",")
    return root / "store", root / "gradients.csv", root / "events"


def test_dry_run_end_to_end(tmp_path, capsys):
    store, gradients, events = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_science.sh"), "--device", "cpu", "--store",
                           str(store), "--gradients", str(gradients), "--events", str(events), "--work",
                           str(tmp_path / "work")], env=env, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "gpu_science.json").read_text())
    assert not result["failures"]
    assert [r["name"] for r in result["g1"]] == ["g1_robust_s0", "g1_zscore_s0"]
    for rec in result["g1"]:
        assert rec["exit"] == 0 and rec["summary"]["steps"] == 3 and rec["summary"]["end"]["heldout_loss"] > 0
    assert result["g1"][0]["summary"]["input_gain"] == 1.0 and result["g1"][1]["summary"]["input_gain"] != 1.0
    assert [r["subjects"] for r in result["g2"]] == [16, 32]
    for rec in result["g2"]:
        assert rec["summary"]["steps"] == 3 and 0 < rec["real"]["loss"] < 10 and rec["real"]["windows"] == 16
    assert [s["subjects"] for s in result["surrogates"]["sizes"]] == [16, 32]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["g1_robust.tar.gz", "g1_zscore.tar.gz", "g2_16.tar.gz", "g2_32.tar.gz", "gpu_science.json",
                     "gpu_science.log"]
    assert all((out / n).stat().st_size < 16 * 2**20 for n in names)
    with tarfile.open(out / "g2_32.tar.gz") as tar:
        members = set(tar.getnames())
    assert {"g2_32/model/model.safetensors", "g2_32/model/config.json", "g2_32/metrics.csv",
            "g2_32/summary.json"} <= members
    assert not (tmp_path / "work").exists()  # scratch removed
    # the CPU evaluation of what came back, re-scoring the returned bf16 weights
    assert gpu_science_eval.main([str(out), "--recompute", "--store", str(store), "--markdown",
                                  str(tmp_path / "table.md")]) == 0
    text = capsys.readouterr().out
    assert text == (tmp_path / "table.md").read_text()
    assert "| g1_robust_s0 | 3 | 1.000 |" in text and "| 32 | 1 |" in text and "power law: real-data loss" in text
    cpu = [float(line.rsplit("|", 2)[1]) for line in text.splitlines() if line.startswith("| 16 |")][0]
    assert cpu == pytest.approx(result["g2"][0]["real"]["loss"], abs=0.02)  # bf16 weights, same windows and masks
    with capsys.disabled():
        print(f"\ndry run (gpu_science.sh --device cpu): {took:.1f} s")


def test_probe_timing_and_step_fit(tmp_path):
    """run_all records when metrics.csv reaches each step; probe_rate and fit_steps turn that into steps."""
    script = ("import sys, time\nf = open(sys.argv[1], 'w'); f.write('step\\n'); f.flush()\ntime.sleep(0.3)\n"
              "for s in range(1, 21):\n    f.write(f'{s}\\n'); f.flush()\n    time.sleep(0.05)\n")
    kids = []
    for i in range(2):
        run = tmp_path / f"r{i}"
        run.mkdir()
        kids.append(gpu_science.Child(f"fake{i}", [sys.executable, "-c", script, str(run / "metrics.csv")], run,
                                      tmp_path / f"r{i}.log"))
    gpu_science.run_all(kids, dict(os.environ), time.monotonic() + 60, marks=(5, 20))
    rate = gpu_science.probe_rate(kids, 5, 20)
    assert 0.04 < rate["step_s"] < 0.2 and 0 < rate["startup_s"] < 5 and rate["exit_s"] < 2
    assert 4490 <= gpu_science.fit_steps({"step_s": 0.02, "startup_s": 10, "exit_s": 5}, 115, 5280, 50) <= 4500
    assert gpu_science.fit_steps({"step_s": 0.02, "startup_s": 10, "exit_s": 5}, 1000, 5280, 50) == 5280
    assert gpu_science.fit_steps({"step_s": 1.0, "startup_s": 10, "exit_s": 5}, 20, 5280, 50) == 50
    assert gpu_science.schedule(5280, 11) == ["optimization.epochs=480", "optimization.warmup=48",
                                              "optimization.max_steps=5280"]
    with pytest.raises(RuntimeError, match="did not reach step 30"):
        gpu_science.probe_rate(kids, 5, 30)


def test_deadline_stops_a_process(tmp_path):
    kid = gpu_science.Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], None,
                            tmp_path / "s.log")
    start = time.monotonic()
    gpu_science.run_all([kid], dict(os.environ), time.monotonic() + 0.5)
    assert kid.rc != 0 and kid.signalled and time.monotonic() - start < 10


def test_the_tables_order_sizes_by_n_and_count_only_seeds_that_ran():
    """G2's trend is read in order of N, not of --sizes; G1's mean row counts the seeds that have values."""
    g2 = [{"name": f"g2_{n}", "subjects": n, "real": {"loss": loss, "random_init_loss": 1.0}}
          for n, loss in ((4000, 0.30), (1000, 0.40), (16000, 0.20))]
    lines = gpu_science_eval.g2_table({"plan": {"g2": {}}, "g2": g2}, {})
    assert lines[-1].startswith("power law") and "over N = [1000, 4000, 16000]" in lines[-1]
    assert "falls monotonically with N: yes" in lines[-1]
    ran = {"summary": {"start": {"heldout_loss": 0.5}, "end": {"heldout_loss": 0.4}}}
    g1 = [{"name": f"g1_zscore_{i}", **(ran if i < 2 else {"summary": None, "exit": -9})} for i in range(4)]
    mean_row = gpu_science_eval.g1_table({"plan": {"g1": {}}, "g1": g1}, {})[-1]
    assert "**zscore: mean +- SD over 2 seeds (2 failed)**" in mean_row
