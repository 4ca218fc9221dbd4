"""Which input scale lets the encoder work? A sweep of normalisations and gains on a real store (issue 16).

For each option, pretrain the default small model (configs/small_cpu.yaml) for a fixed number of steps on the store
as given ("demeaned" for the connattractor sample) and on a raw-offset copy (every ROI gets a scanner-like offset of
5,000-10,000 that varies 5% between subjects), holding out subjects (data.holdout). Then, independently of the
training run's own log, measure on the centre windows of the HELD-OUT subjects, with each model's own normalisation
record: the input SD, how much the blocks change the residual stream (block ratio), the share of the final
features' variance that differs between windows (run share), for the pretrained model and for its initial weights
(same seed), and the held-out JEPA loss before and after (from summary.json).

    python benchmarks/input_scale.py --store STORE --out runs/input_scale [--steps 60] [--options robust,auto ...]

Writes OUT/input_scale.json and prints a markdown table (pasted into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from brainjepa.config import load_config
from brainjepa.data.normalize import normalizer_from_dict
from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.models import BrainJEPA
from brainjepa.models.health import encoder_health
from brainjepa.training import pretrain

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "small_cpu.yaml"
# (name, normalization, input_gain): the reference's scaling, the same with a measured gain, unit-scale z-scores,
# and z-scores with the gain that matches patch and position norms (auto), half and twice that.
OPTIONS = {
    "robust x1 (reference)": ("robust", 1.0),
    "robust x auto": ("robust", "auto"),
    "roi_zscore x1": ("roi_zscore", 1.0),
    "roi_zscore x auto": ("roi_zscore", "auto"),
}


def raw_offset_copy(store: RunStore, out: Path, seed: int = 0) -> RunStore:
    """The store with a per-ROI offset U(5e3, 1e4) scaled by (1 + 0.05 z_subject): raw, undemeaned BOLD."""
    if (out / "manifest.csv").exists() or out.exists():
        return RunStore(out)
    rng = np.random.default_rng(seed)
    base = rng.uniform(5e3, 1e4, store.num_rois)
    subjects = store.manifest["subject"].astype(str).to_numpy()
    jitter = {s: 1 + 0.05 * rng.standard_normal() for s in np.unique(subjects)}
    extra = [c for c in store.manifest.columns if c not in ("subject", "run", "offset", "frames", "tr", "source")]
    with StoreWriter(out, store.num_rois, roi_labels=store.roi_labels) as writer:
        for i, row in enumerate(store.manifest.itertuples(index=False)):
            ts = store.run(i).astype(np.float64) + (base * jitter[subjects[i]])[:, None]
            writer.add(ts.astype(np.float32), subject=str(row.subject), run=str(row.run), tr=store.tr(i),
                       phenotypes={c: getattr(row, c) for c in extra})
    return RunStore(out)


def heldout_windows(store: RunStore, run_dir: Path, frames: int) -> list[np.ndarray]:
    """Centre windows (raw values) of the runs the run held out (the subjects absent from its training set)."""
    from brainjepa.training.watch import holdout_split

    cfg = load_config(run_dir / "config.yaml")
    _, held = holdout_split(store, cfg.data.holdout, cfg.meta.seed)
    out = []
    for i in held:
        n = store.frames(int(i))
        out.append(store.window(int(i), max(0, (n - frames) // 2), frames))
    return out


def measure(model: BrainJEPA, windows: list[np.ndarray]) -> dict[str, float]:
    normalizer = normalizer_from_dict(model.metadata["normalization"])
    x = torch.from_numpy(np.stack([normalizer(w) for w in windows]))
    return encoder_health(model.target_encoder, x).to_dict()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="a store (e.g. brainjepa samples prepare connattractor)")
    p.add_argument("--out", required=True, help="folder for the runs, the raw-offset copy and the JSON")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per run (default 60)")
    p.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated subset of {list(OPTIONS)}")
    p.add_argument("--copies", default="demeaned,raw-offset", help="demeaned (the store as given), raw-offset")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = RunStore(args.store)
    stores = {"demeaned": source}
    if "raw-offset" in args.copies:
        stores["raw-offset"] = raw_offset_copy(source, out / "raw_offset_store")
    results = []
    for copy in args.copies.split(","):
        store = stores[copy]
        for name in args.options.split(","):
            kind, gain = OPTIONS[name]
            tag = f"{copy}__{name.replace(' ', '_')}"
            run = out / tag
            if not (run / "summary.json").exists():
                cfg = load_config(CONFIG, [f"data.path={store.path}", f"data.crop_size=[{store.num_rois},160]",
                                           f"data.normalization={kind}", f"data.input_gain={gain}",
                                           f"optimization.max_steps={args.steps}", "logging.eval_every=1000"])
                pretrain(cfg, run)
            summary = json.loads((run / "summary.json").read_text())
            trained = BrainJEPA.from_pretrained(run / "model")
            torch.manual_seed(load_config(run / "config.yaml").meta.seed)  # the run's initial weights
            init = BrainJEPA(trained.config, trained.encoder.pos_embed.gradient, metadata=trained.metadata)
            windows = heldout_windows(store, run, trained.config.num_frames)
            row = {"copy": copy, "option": name, "gain": summary["input_gain"],
                   "heldout_loss_init": summary["start"]["heldout_loss"],
                   "heldout_loss_end": summary["end"]["heldout_loss"],
                   "init": measure(init, windows), "trained": measure(trained, windows)}
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    (out / "input_scale.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| data | option | gain | input SD | patch / position norm | block ratio init -> trained "
          "| run share init -> trained | held-out loss init -> trained |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        i, t = r["init"], r["trained"]
        change = 100 * (r["heldout_loss_end"] / r["heldout_loss_init"] - 1)
        print(f"| {r['copy']} | {r['option']} | {r['gain']:.3g} | {t['input_sd']:.3g} | "
              f"{t['patch_norm'] / t['pos_norm']:.2g} | {i['block_ratio']:.3f} -> **{t['block_ratio']:.3f}** | "
              f"{i['run_share']:.2f} -> **{t['run_share']:.2f}** | {r['heldout_loss_init']:.3f} -> "
              f"{r['heldout_loss_end']:.3f} ({change:+.0f}%) |")


if __name__ == "__main__":
    main()
