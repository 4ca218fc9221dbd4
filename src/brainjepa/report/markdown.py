"""The quickstart's `report.md`: what the run measured, with its pictures and the commands that reproduce it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from brainjepa.report.findings import findings


def _collapse_summary(metrics_csv: Path) -> str:
    rows = [r for r in csv.DictReader(open(metrics_csv)) if r.get("target_std")]
    if not rows:
        return "No collapse statistics were logged."
    first, last = rows[0], rows[-1]
    low = [r["step"] for r in rows if float(r["target_std"]) < 0.05]
    verdict = (f"the std fell below 0.05 at steps {', '.join(low[:5])}: the representation may be collapsing"
               if low else "no sign of collapse (the std stayed above 0.05)")
    return (f"Target-feature std across tokens and samples went from {float(first['target_std']):.3f} (step "
            f"{first['step']}) to {float(last['target_std']):.3f} (step {last['step']}); effective rank from "
            f"{float(first['target_rank']):.1f} to {float(last['target_rank']):.1f}; {verdict}.")


def _loss_summary(metrics_csv: Path) -> str:
    loss = [float(r["loss"]) for r in csv.DictReader(open(metrics_csv))]
    k = max(1, len(loss) // 20)
    start, end = sum(loss[:k]) / k, sum(loss[-k:]) / k
    return (f"{len(loss)} optimizer steps; mean loss over the first {k} steps {start:.4f}, over the last {k} "
            f"{end:.4f} ({(end - start) / start:+.0%}).")


def write_report(out: Path, facts: dict[str, Any], table, *, metrics_csv: Path) -> Path:
    """Assemble report.md in `out` from the facts, the probe table and the figures written beside it."""
    counts = facts["label_counts"]
    majority = max(counts.values()) / sum(counts.values())
    chance = 1 / len(counts)  # balanced accuracy of any classifier that ignores the features
    data_line = (
        f"**{facts['runs']} runs** of **{facts['subjects']} subjects**, **{facts['rois']} ROIs** "
        f"({facts['atlas']}), {facts['frames_min']}-{facts['frames_max']} frames per run at TR {facts['tr']} s."
    )
    sample = facts.get("sample") or {}
    source = (f"the `{sample.get('requirement')}` wheel from PyPI (sha256 {sample.get('sha256', '')[:12]}..., "
              f"licence {sample.get('licence')}); ROIs dropped as constant in some run: "
              f"{', '.join(sample.get('dropped_rois') or []) or 'none'}"
              if sample else "simulated coupled oscillators on a modular connectome (`brainjepa simulate`)")
    store, o = facts["store"], out
    label = facts["label"]
    text = f"""# Brain-JEPA quickstart report

Everything below was measured by this run (`brainjepa quickstart --data {facts['data']} --minutes {facts['minutes']}
--out {o}`, seed {facts['seed']}, torch {facts['torch']}, {facts['threads']} CPU threads, {facts['total_minutes']}
minutes in all).

## 1. Data

{data_line} Source: {source}.
Label probed: `{label}`, per run: {", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))} (majority-class
accuracy {majority:.3f}, balanced-accuracy chance {chance:.3f}).

```bash
brainjepa samples prepare {facts['data']} --out {store}   # (simulated: brainjepa simulate --out {store} ...)
brainjepa validate {store}
```

## 2. Brain gradients

The first three of {facts['gradient_components']} diffusion-map gradients of the group functional connectivity
(BrainSpace, cosine kernel), which give each ROI its position code.

![gradients](figures/gradients.png)

```bash
brainjepa gradients --data {store} --out {o}/gradients.csv --n-components {facts['gradient_components']}
```

## 3. Masks

One sample's observation (context) block and its targets on the ROI x time-patch grid
({facts['window']}-frame windows, 16-frame patches). The context never includes the last time patch, and
targets never overlap the context.

![masks](figures/masks.png)

## 4. Pretraining

A 96-d, depth-4 encoder with a 48-d, depth-2 predictor, {facts['epochs']} epochs ({facts['steps']} optimizer steps,
batch 8, {facts['seconds_per_step']} s per step measured before the run, precision {facts['precision']}:
{facts['precision_reason']}),
{facts['pretrain_minutes']} minutes. {_loss_summary(metrics_csv)}

![curves](figures/training_curves.png)

Collapse monitor: {_collapse_summary(metrics_csv)}

```bash
brainjepa pretrain --config {o}/run/config.yaml --out {o}/run-again
```

## 5. Embeddings

Mean-pooled target-encoder embeddings of each run's centre window; first two principal components, coloured by
`{label}`.

![pca](figures/pca.png)

```bash
brainjepa embed --model {o}/run --data {store} --out {o}/embeddings.npy
```

## 6. Probe

Standardised features, logistic regression with inner grouped CV over C, outer
subject-grouped folds repeated over seeds; mean ± std over all folds. Rows: the pretrained encoder, the same
architecture with random weights, and the functional-connectivity matrix (upper triangle, Fisher z).

{table.to_markdown()}

```bash
brainjepa probe --data {store} --label {label} --model {o}/run --out {o}/probe
```

## 7. Findings

{findings(table, chance=chance, simulated=facts["data"] == "simulated")}

Scale: the paper pretrains a ViT-B on ~32,000 UK Biobank subjects for 300 epochs; this run trained the small
model above for {facts['pretrain_minutes']} minutes on {facts['runs']} runs of {facts['subjects']} subjects.
"""
    path = out / "report.md"
    path.write_text(text)
    return path


__all__ = ["write_report"]
