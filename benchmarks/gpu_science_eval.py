"""Tables of what benchmarks/gpu_science.sh wrote to OUT, on CPU (no GPU needed).

    python benchmarks/gpu_science_eval.py OUT                         # from OUT/gpu_science.json
    python benchmarks/gpu_science_eval.py OUT --recompute --store S   # also re-score the returned (bf16) weights

G1: one row per run (scale, seed): steps, input gain, held-out JEPA loss at step 0 and at the end (the run's own
held-out subjects, from summary.json), its change, the final training loss, and the encoder health at the end
(block ratio, run share), then mean +- SD over seeds per scale. G2: one row per surrogate count: epochs, the
surrogates' own held-out loss at the end, the JEPA loss on the real store (all runs, centre windows, fixed masks)
of the pretrained model and of its random-init twin, their ratio, and a power-law fit loss = a x N^b over the
sizes. With --recompute, the tars' models are scored again here with benchmarks/gpu_science_loss.py (G2: every real
run; G1: the run's held-out subjects, as split by its seed), in fp32 from the bf16 weights; BrainSpace is not
needed. --markdown FILE writes the tables as well.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _end(rec: dict[str, Any], key: str, when: str = "end") -> float | None:
    summary = rec.get("summary") or {}
    return (summary.get(when) or {}).get(key)


def g1_table(result: dict[str, Any], recomputed: dict[str, float]) -> list[str]:
    plan = result["plan"].get("g1", {})
    probe = result["plan"].get("g1_probe")
    head = (f"G1: seed variance ({plan.get('model', '?')}, batch {plan.get('batch')}, {plan.get('steps')} steps of "
            f"{plan.get('wanted')} wanted" + (f"; probe {probe['step_s'] * 1000:.1f} ms/step with all runs in "
                                              "parallel" if probe else "") + ")")
    lines = [head, "", "| run | steps | gain | held-out loss start | end | change | final train loss | block ratio | "
             "run share |" + (" held-out loss (CPU) |" if recomputed else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if recomputed else "")]
    by_scale: dict[str, list[dict[str, Any]]] = {}
    for rec in result.get("g1", []):
        scale = rec["name"].split("_")[1]
        start, end = _end(rec, "heldout_loss", "start"), _end(rec, "heldout_loss")
        change = (end - start) / start if start and end is not None else None
        summary = rec.get("summary") or {}
        row = {"start": start, "end": end, "change": change, "final": rec.get("final_loss"),
               "block": _end(rec, "block_ratio"), "share": _end(rec, "run_share")}
        by_scale.setdefault(scale, []).append(row)
        cpu = f" {_f(recomputed.get(rec['name']))} |" if recomputed else ""
        lines.append(f"| {rec['name']} | {summary.get('steps', rec.get('steps_logged'))} | "
                     f"{_f(summary.get('input_gain'), 3)} | {_f(start)} | {_f(end)} | {_f(change, 3)} | "
                     f"{_f(row['final'])} | {_f(row['block'], 3)} | {_f(row['share'], 3)} |{cpu}")
    for scale, rows in by_scale.items():
        cells = []
        for key in ("start", "end", "change", "final", "block", "share"):
            vals = [r[key] for r in rows if r[key] is not None]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.4f} +- {sd:.4f}" if vals else "-")
        done = sum(r["end"] is not None for r in rows)  # a seed that failed has no values to average
        failed = f" ({len(rows) - done} failed)" if done < len(rows) else ""
        lines.append(f"| **{scale}: mean +- SD over {done} seeds{failed}** | | | " + " | ".join(cells) + " |"
                     + (" |" if recomputed else ""))
    return lines


def power_law(sizes: list[float], losses: list[float]) -> tuple[float, float] | None:
    """(a, b) of loss = a N^b by least squares in log-log; None with fewer than 2 sizes."""
    if len(sizes) < 2:
        return None
    x = [math.log(n) for n in sizes]
    y = [math.log(v) for v in losses]
    mx, my = statistics.mean(x), statistics.mean(y)
    b = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y, strict=True)) / sum((xi - mx) ** 2 for xi in x)
    return math.exp(my - b * mx), b


def g2_table(result: dict[str, Any], recomputed: dict[str, float]) -> list[str]:
    plan = result["plan"].get("g2", {})
    lines = [f"G2: data scaling on surrogates ({plan.get('model', '?')}, batch {plan.get('batch')}, "
             f"{plan.get('steps')} steps for every size)", "",
             "| surrogate subjects | epochs | surrogate held-out loss end | real-data loss | random init | "
             "pretrained / random |" + (" real-data loss (CPU) |" if recomputed else ""),
             "|---|---|---|---|---|---|" + ("---|" if recomputed else "")]
    sizes, losses = [], []
    for rec in result.get("g2", []):
        real = rec.get("real") or {}
        loss, rand = real.get("loss"), real.get("random_init_loss")
        ratio = loss / rand if loss is not None and rand else None
        epochs = plan.get("epochs", {}).get(str(rec["subjects"]), plan.get("epochs", {}).get(rec["subjects"]))
        cpu = f" {_f(recomputed.get(rec['name']))} |" if recomputed else ""
        lines.append(f"| {rec['subjects']} | {epochs} | {_f(_end(rec, 'heldout_loss'))} | {_f(loss)} | {_f(rand)} | "
                     f"{_f(ratio, 3)} |{cpu}")
        if loss is not None:
            sizes.append(rec["subjects"])
            losses.append(loss)
    order = sorted(range(len(sizes)), key=sizes.__getitem__)  # by N, whatever order --sizes listed them in
    sizes, losses = [sizes[i] for i in order], [losses[i] for i in order]
    fit = power_law(sizes, losses)
    if fit:
        monotone = all(b < a for a, b in zip(losses, losses[1:], strict=False))
        lines += ["", f"power law: real-data loss = {fit[0]:.4g} x N^{fit[1]:.4f} over N = {sizes}; falls "
                  f"monotonically with N: {'yes' if monotone else 'no'} (one seed per size: a description of "
                  "these runs, with no interval)"]
    return lines


def recompute(out: Path, result: dict[str, Any], store: str) -> dict[str, float]:
    """Re-score the returned weights on CPU: {run name: loss}."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_science_loss import real_losses

    from brainjepa.data.store import RunStore
    from brainjepa.training.watch import holdout_split

    real = RunStore(store)
    scores: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in result.get("files", []):
            with tarfile.open(out / entry["file"]) as tar:
                tar.extractall(tmp, filter="data")
        for rec in result.get("g1", []):
            model = Path(tmp) / rec["name"] / "model"
            if model.is_dir():
                seed = int(rec["name"].rsplit("_s", 1)[1])
                _, held = holdout_split(real, 0.05, seed)
                scores[rec["name"]] = real_losses(real, [model], runs=[int(i) for i in held])[0]["loss"]
        for rec in result.get("g2", []):
            model = Path(tmp) / rec["name"] / "model"
            if model.is_dir():
                scores[rec["name"]] = real_losses(real, [model])[0]["loss"]
    return scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the folder gpu_science.sh wrote ($OUT)")
    p.add_argument("--recompute", action="store_true", help="re-score the returned weights here (needs --store)")
    p.add_argument("--store", help="the real store the run used (for --recompute)")
    p.add_argument("--markdown", help="also write the tables to this file")
    args = p.parse_args(argv)
    out = Path(args.out)
    path = out / "gpu_science.json"
    if not path.is_file():
        print(f"gpu_science_eval: no {path}", file=sys.stderr)
        return 2
    result = json.loads(path.read_text())
    if args.recompute and not args.store:
        print("gpu_science_eval: --recompute needs --store", file=sys.stderr)
        return 2
    scores = recompute(out, result, args.store) if args.recompute else {}
    timings = result.get("timings", {})
    made = result.get("surrogates", {})
    surrogates = ", ".join(f"{s['subjects']} in {s['compute_s']} s" for s in made.get("sizes", []))
    lines = [f"GPU science run on {result.get('environment', {}).get('gpu', result.get('device'))}: "
             f"{timings.get('total_s')} s of {result.get('budget_s')} s budget; surrogates generated ({surrogates}; "
             f"fit {made.get('fit_s')} s, {made.get('wall_s')} s wall)",
             "", *g1_table(result, {k: v for k, v in scores.items() if k.startswith("g1_")}), "",
             *g2_table(result, {k: v for k, v in scores.items() if k.startswith("g2_")})]
    if result.get("failures"):
        lines += ["", "FAILURES: " + "; ".join(result["failures"])]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
