"""The quickstart's `report.md`: what the run measured, with its pictures and the commands that reproduce it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainjepa.io import atomic_write_text
from brainjepa.report.findings import findings
from brainjepa.report.tables import suite_tables
from brainjepa.training.monitor import COLLAPSE_STD, collapse_warning, rank_floor

if TYPE_CHECKING:
    from brainjepa.evaluation.results import SuiteResult


def _collapse_summary(metrics_csv: Path, dim: int, patch_size: int) -> str:
    """The training monitor's own collapse test (`collapse_warning`: std and effective-rank floor), read back."""
    rows = [r for r in csv.DictReader(open(metrics_csv)) if r.get("target_std")]
    if not rows:
        return "No collapse statistics were logged."
    first, last = rows[0], rows[-1]
    stats = [{k: float(r[k]) for k in ("target_std", "target_rank")} for r in rows]
    low = [r["step"] for r, st in zip(rows, stats, strict=True) if collapse_warning(st, dim, patch_size)]
    verdict = (f"**the monitor warned at {len(low)} of {len(rows)} checks** (first at step {low[0]}): std below "
               f"{COLLAPSE_STD} or effective rank below {rank_floor(dim, patch_size):g}, the span of a "
               f"{patch_size}-frame patch's linear map; the features are losing dimensions"
               if low else f"no sign of collapse (std above {COLLAPSE_STD}, effective rank above "
               f"{rank_floor(dim, patch_size):g} at every check)")
    return (f"Target-feature std across tokens and samples went from {float(first['target_std']):.3f} (step "
            f"{first['step']}) to {float(last['target_std']):.3f} (step {last['step']}); effective rank from "
            f"{float(first['target_rank']):.1f} to {float(last['target_rank']):.1f}; {verdict}.")


STUDY_STEPS = 297  # the confirmatory study's pretraining budget (benchmarks/RESULTS.md, issue 18)
# The confirmatory study's verdict (benchmarks/RESULTS.md, issue 18), pre-registered and measured once for this
# recipe; a single quickstart run (one seed, one random-init seed) cannot settle the question, the study can.
STUDY_VERDICT = """**What the confirmatory study found** (`benchmarks/confirmatory_study.sh`, results in
benchmarks/RESULTS.md): the quickstart's default recipe (its model and input, the connattractor sample, 297 steps),
3 pretraining seeds against 3 random-init seeds, intervals over seeds and subjects. Pre-registered success,
pretrained - random init >= +0.05 with the 95% interval excluding 0, was **not met**: pretrained on the sample's
real runs, identification (token FC) +0.002 [-0.042, +0.048], regulation -0.002 [-0.051, +0.049] (linear, ROI mean)
and +0.029 [-0.012, +0.076] (tuned attentive); pretrained on 2,000 surrogate subjects only, -0.002 [-0.052, +0.052],
+0.029 [-0.024, +0.086] and +0.027 [-0.027, +0.091]. The encoders were healthy; every interval includes 0: at this
scale no detectable difference between pretrained and random init, which is not the same as showing them equal."""


def _study_line(facts: dict[str, Any]) -> str:
    """The study's verdict, and whether this run is that recipe or another setting (then only a pointer)."""
    same = facts.get("data") == "connattractor" and facts.get("steps") == STUDY_STEPS
    if same:
        return STUDY_VERDICT + " This run used that recipe, with one seed of each."
    return (STUDY_VERDICT + f" This run is **another setting** ({facts.get('data')} data, {facts.get('steps')} "
            "steps), so the study says nothing about it directly.")


def _budget_line(facts: dict[str, Any]) -> str:
    if facts.get("budget") == "minimum":
        return (f"the quickstart's minimum of {facts['epochs']} epochs (one of warmup, then the peak learning rate "
                f"and its decay), **more than asked**: {facts['steps_asked']} steps within {facts['minutes']} "
                "minutes.")
    if facts.get("budget") == "minutes":
        return (f"fewer than the {facts['steps_asked']} steps asked, as the timed steps said they would not fit in "
                f"{facts['minutes']} minutes.")
    return (f"{facts['steps_asked']} steps asked (rounded up to whole epochs; the default is the confirmatory "
            "study's budget, benchmarks/RESULTS.md).")


def _loss_summary(metrics_csv: Path) -> str:
    loss = [float(r["loss"]) for r in csv.DictReader(open(metrics_csv))]
    k = max(1, len(loss) // 20)
    start, end = sum(loss[:k]) / k, sum(loss[-k:]) / k
    return (f"{len(loss)} optimizer steps; mean loss over the first {k} steps {start:.4f}, over the last {k} "
            f"{end:.4f} ({(end - start) / start:+.0%}).")


def _health_summary(facts: dict[str, Any]) -> str:
    """Does the encoder see the data (issue 16)? The run's encoder health and held-out loss, before and after."""
    health = facts.get("health")
    if not health or not health.get("start") or not health.get("end"):
        return "Encoder health: not recorded for this run."
    start, end = health["start"], health["end"]

    def held(row: dict[str, Any]) -> str:
        return "n/a" if row.get("heldout_loss") is None else f"{row['heldout_loss']:.4f}"

    return (f"Encoder health (input `{facts.get('normalization', '?')}` x gain {health['input_gain']:.3g}; "
            "healthy: blocks change the stream by >= 10%, 15-85% of the feature variance between windows): "
            f"blocks change the stream by {100 * start['block_ratio']:.1f}% at init and "
            f"{100 * end['block_ratio']:.1f}% after pretraining; {100 * start['run_share']:.0f}% -> "
            f"{100 * end['run_share']:.0f}% of the feature variance between windows; JEPA loss on "
            f"{health['heldout_subjects']} held-out subject(s) {held(start)} -> {held(end)}. Since the previous "
            "version of this report: the sample's run-1 files are attached to their true subjects, the input is a "
            "per-window ROI z-score times a gain that balances patch and position embeddings (robust scaling of "
            "these demeaned runs had made the encoder a per-patch linear map), and the suite reports "
            "up- vs down-regulation, within-subject rating and permutation nulls (docs/evaluation.md).")


def _settings(suite: SuiteResult) -> str:
    o = suite.options
    return (f"{o.folds} subject-grouped folds x {o.seeds} seed(s); encoder rows: {o.head} head on "
            f"`{o.encoder_pooling}` pooling, layer {o.embed.layer}, {o.embed.windows} window(s), normalisation "
            f"`{o.embed.normalization}`, {o.embed.encoder} encoder; random-init weight seeds "
            f"{' '.join(map(str, o.random_init_seeds))}; {o.permutations} permutations per null")


def _evaluate_command(suite: SuiteResult, out: Path) -> str:
    o = suite.options
    stores = " ".join(f"--store {name}={path}" for name, path in o.stores.items())
    cache = f" --cache {o.cache}" if o.cache else ""
    return (f"brainjepa evaluate --model {out}/run --out {out}/evaluate --tasks {' '.join(o.tasks)} {stores} "
            f"--folds {o.folds} --seeds {o.seeds} --bootstrap {o.bootstrap} --permutations {o.permutations} "
            f"--random-init-seeds {' '.join(map(str, o.random_init_seeds))}{cache}")


def _data_command(facts: dict[str, Any]) -> str:
    """The command that makes the quickstart's store again (it refuses bad runs, so it is the validation too)."""
    if facts["data"] == "simulated":
        return (f"brainjepa simulate --out {facts['store']} --subjects {facts['subjects']} --rois {facts['rois']} "
                f"--frames {facts['frames_max']} --seed {facts['seed']} --overwrite")
    return f"brainjepa samples prepare {facts['data']} --out {facts['store']} --overwrite"


def _time_table(seconds: dict[str, float]) -> str:
    rows = "\n".join(f"| {step} | {s:.0f} |" for step, s in seconds.items())
    return f"| step | seconds |\n|---|---|\n{rows}"


def write_report(out: Path, facts: dict[str, Any], suite: SuiteResult, *, metrics_csv: Path) -> Path:
    """Assemble report.md in `out` from the facts, the evaluation suite's result and the figures written beside
    it (`figures/`, and the suite's `evaluate/evaluate.png`)."""
    counts = facts["label_counts"]
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
    simulated = facts["data"] == "simulated"
    tasks = ", ".join(f"`{t}`" for t in suite.options.tasks)
    text = f"""# Brain-JEPA quickstart report

Everything below was measured by this run (`brainjepa quickstart --data {facts['data']}
--steps {facts['steps_asked']} --minutes {facts['minutes']} --out {o}`, seed {facts['seed']}, torch {facts['torch']},
{facts['threads']} CPU threads, {facts['total_minutes']} minutes in all; the time of each step is in
section 8).{" **The data are simulated.**" if simulated else ""}

## 1. Data

{data_line} Source: {source}.
`{label}` per run: {", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))}. Evaluated on these data: {tasks}
(section 6).

```bash
{_data_command(facts)}
```

## 2. Brain gradients

The first three of {facts['gradient_components']} diffusion-map gradients of the group functional connectivity
(BrainSpace's diffusion map in numpy, cosine kernel), which give each ROI its position code.

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
{facts['pretrain_minutes']} minutes; {_budget_line(facts)} {_loss_summary(metrics_csv)}

![curves](figures/training_curves.png)

Collapse monitor: {_collapse_summary(metrics_csv, facts['embed_dim'], facts['patch_size'])}

{_health_summary(facts)}

```bash
brainjepa pretrain --config {o}/run/config.yaml --out {o}/run-again
```

## 5. Embeddings

The evaluation suite's embeddings of each run (section 6; `{suite.options.encoder_poolings[0]}` pooling, flattened),
pretrained (`brainjepa`) and at random init (`random-init`); first two principal components, coloured by
`{label}`.

![pca](figures/pca.png)

```bash
brainjepa embed --model {o}/run --data {store} --out {o}/embeddings.npy
```

## 6. Evaluation suite

`brainjepa evaluate` on this run's model and store (`docs/evaluation.md` in the brainjepa repository explains the
tasks, rows, nulls and intervals): the pretrained encoder (`brainjepa`) and the same architecture with random
weights (`random-init`), each read out per ROI (ROI mean) and second-order (token FC); a no-learning patch
embedding; the raw window; GLM betas (when the data have events); Fisher-z functional connectivity (`FC`) and
tangent-space connectivity (`tangent`) on the frames the encoders see, and whole-run FC; each scored on the same
units against its own permutation null; {_settings(suite)}. The differences are fixed in advance: brainjepa minus
random init with the same readout, and minus FC. Files: `evaluate/evaluate.csv` (every score, null and
difference), `evaluate/evaluate_units.csv` (every prediction), `evaluate/evaluate.md`.

{suite_tables(suite)}

![evaluation](evaluate/evaluate.png)

```bash
{_evaluate_command(suite, o)}
```

## 7. Findings

{findings(suite, simulated=simulated)}

Scale: the paper pretrains a ViT-B on ~32,000 UK Biobank subjects for 300 epochs; this run trained the small
model above for {facts['pretrain_minutes']} minutes on {facts['runs']} runs of {facts['subjects']} subjects.

{_study_line(facts)}

## 8. Time

Wall-clock seconds of each step of this run ({facts['threads']} CPU threads); pretraining was asked for
{facts['steps_asked']} steps within {facts['minutes']} minutes, the other steps are sized to stay short (the
evaluation: {suite.options.folds} folds x
{suite.options.seeds} seed(s)).

{_time_table(facts['step_seconds'])}
"""
    path = out / "report.md"
    atomic_write_text(path, text)
    return path


__all__ = ["write_report"]
