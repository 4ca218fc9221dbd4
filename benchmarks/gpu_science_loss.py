"""Held-out JEPA loss of pretrained models on a real store: the centre window of every run, fixed masks.

For each model folder (a `save_pretrained` folder or a run folder holding `model/`): its own normalisation record
(`normalizer_from_dict(model.metadata["normalization"])`, gain included) is applied to frames [(T - F) // 2, +F) of
every run of the store (F = the model's num_frames), masks are drawn once by `draw_masks` (default mask settings,
seed `--mask-seed`, the same for every model of the same grid), and the mean JEPA loss (eval mode, fp32) is
reported, with the same loss of a random-init twin (same architecture, gradient and normalisation record, weights
from `torch.manual_seed(--init-seed)`) for reference. Only public API is used: `BrainJEPA.from_pretrained`,
`brainjepa.masks.draw_masks`, `brainjepa.data.normalize.normalizer_from_dict`, `RunStore`.

    python benchmarks/gpu_science_loss.py --store STORE MODEL [MODEL ...] [--runs 0,1,5] [--device cuda] [--json F]

Used by benchmarks/gpu_science.py (data-scaling curve on surrogates: the whole real store is held out) and by
benchmarks/gpu_science_eval.py --recompute.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from brainjepa import BrainJEPA
from brainjepa.data.normalize import normalizer_from_dict
from brainjepa.data.store import RunStore
from brainjepa.masks import MaskConfig, draw_masks

MASK_SEED = 20240918
INIT_SEED = 0
BATCH = 16


def centre_windows(store: RunStore, model: BrainJEPA, runs: list[int] | None = None) -> torch.Tensor:
    """[N, R, F] float32: the model-normalised centre window of each run (all runs when `runs` is None)."""
    frames = model.config.num_frames
    normalizer = normalizer_from_dict(model.metadata["normalization"])
    out = []
    for i in range(len(store)) if runs is None else runs:
        t = store.frames(i)
        if t < frames:
            raise ValueError(f"{store.path}: run {i} has {t} frames, fewer than the model's {frames}")
        out.append(normalizer(store.window(i, (t - frames) // 2, frames)))
    return torch.from_numpy(np.stack(out).astype(np.float32))


@torch.no_grad()
def jepa_loss(model: BrainJEPA, x: torch.Tensor, *, device: str = "cpu", mask_seed: int = MASK_SEED,
              batch_size: int = BATCH) -> float:
    """Mean JEPA loss of `model` over windows x [N, R, F], masks of batch b from draw_masks(seed, epoch 0, b)."""
    cfg = model.config
    grid = (cfg.num_rois, cfg.num_frames // cfg.patch_size)
    was_training = model.training
    model.eval().to(device)
    total = 0.0
    try:
        for b, start in enumerate(range(0, len(x), batch_size)):
            xb = x[start:start + batch_size]
            ctx, tgt = draw_masks(MaskConfig(), *grid, seed=mask_seed, epoch=0, batch=b, batch_size=len(xb))
            total += float(model(xb.to(device), ctx.to(device), tgt.to(device)).loss) * len(xb)
    finally:
        model.train(was_training)
    return total / len(x)


def random_twin(model: BrainJEPA, seed: int = INIT_SEED) -> BrainJEPA:
    """The same architecture, gradient and metadata (normalisation record) with fresh weights."""
    torch.manual_seed(seed)
    return BrainJEPA(model.config, model.gradient.detach().cpu().numpy(), metadata=dict(model.metadata))


def real_losses(store: RunStore | str | Path, models: list[str | Path], *, runs: list[int] | None = None,
                device: str = "cpu", mask_seed: int = MASK_SEED, init_seed: int = INIT_SEED) -> list[dict]:
    """One row per model: {"model", "loss", "random_init_loss", "windows", "gain"}."""
    store = store if isinstance(store, RunStore) else RunStore(store)
    rows = []
    for path in models:
        model = BrainJEPA.from_pretrained(path).float()
        x = centre_windows(store, model, runs)
        rows.append({
            "model": str(path),
            "loss": jepa_loss(model, x, device=device, mask_seed=mask_seed),
            "random_init_loss": jepa_loss(random_twin(model, init_seed), x, device=device, mask_seed=mask_seed),
            "windows": len(x),
            "gain": model.metadata["normalization"].get("gain", 1.0),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="the real store (every run's centre window is scored)")
    p.add_argument("models", nargs="+", help="model folders or run folders")
    p.add_argument("--runs", help="comma-separated run indices (default: all runs)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    runs = [int(r) for r in args.runs.split(",")] if args.runs else None
    rows = real_losses(args.store, args.models, runs=runs, device=args.device)
    for row in rows:
        print(f"{row['model']}: JEPA loss {row['loss']:.5f} (random init {row['random_init_loss']:.5f}) on "
              f"{row['windows']} windows")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
