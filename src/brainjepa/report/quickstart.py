"""`brainjepa quickstart`: real fMRI in, a pretrained Brain-JEPA, probes against baselines, and a report out.

Each step calls the same public functions as the CLI commands, so `report.md` can list the command line that
reproduces each part.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from brainjepa.config import load_config
from brainjepa.data.gradients import gradients_file
from brainjepa.data.prepare import save_robust_stats
from brainjepa.data.samples import prepare_sample
from brainjepa.data.simulate import SimulationConfig, simulate_store
from brainjepa.errors import DataError
from brainjepa.evaluation.baselines import functional_connectivity, random_init_like
from brainjepa.evaluation.embed import embed_store
from brainjepa.evaluation.probe import probe_models
from brainjepa.masks import draw_masks, mask_grid
from brainjepa.models import BrainJEPA
from brainjepa.precision import PrecisionChoice
from brainjepa.report import figures
from brainjepa.report.markdown import write_report
from brainjepa.training import pretrain
from brainjepa.training.distributed import DistEnv
from brainjepa.training.loop import Trainer

logger = logging.getLogger(__name__)

DataChoice = Literal["connattractor", "simulated"]
LABELS = {"connattractor": "condition", "simulated": "group"}


@dataclass
class QuickstartResult:
    """What the run produced; `report` is the markdown file."""

    out: Path
    report: Path
    facts: dict[str, Any] = field(default_factory=dict)


def _step(title: str) -> None:
    logger.info("=== %s", title)


def load_data(choice: DataChoice, out: Path, cache: Path | None, seed: int):
    """The store: the connattractor heat-pain sample from PyPI, or simulated BOLD with known labels."""
    if choice == "simulated":
        return simulate_store(out, SimulationConfig(subjects=120, rois=100, frames=200, seed=seed), overwrite=True)
    try:
        return prepare_sample(choice, out, cache, overwrite=True)
    except DataError as err:
        raise DataError(f"could not get the {choice} sample ({err}). Without access to PyPI, run "
                        "`brainjepa quickstart --data simulated` instead.") from err


def pretrain_config(store, gradient_csv: Path, *, epochs: int, seed: int, frames: int):
    """A small model for a laptop CPU: 96-d, depth 4, on `frames`-frame windows without striding (TR 2 s data);
    precision `auto`: bf16 only where it is faster (brainjepa.precision)."""
    return load_config(None, [
        f"data.path={store.path}", f"data.crop_size=[{store.num_rois},{frames}]", "data.batch_size=8",
        # windows and masks cost ~5 ms a batch: a worker process would only compete for the 2 cores
        "data.num_workers=0", "data.pin_mem=false", "data.sampling_rate=1", f"data.gradient_csv_path={gradient_csv}",
        "meta.model_name=vit_tiny", "meta.embed_dim=96", "meta.depth=4", "meta.num_heads=4", "meta.pred_emb_dim=48",
        "meta.pred_depth=2", "meta.accumulation_steps=1",
        f"meta.seed={seed}", f"optimization.epochs={epochs}", f"optimization.warmup={max(1, epochs // 10)}",
        "optimization.start_lr=1e-4", "optimization.lr=1e-3", "optimization.final_lr=1e-5",
        "optimization.final_weight_decay=0.1", "logging.log_every=50", "logging.checkpoint_every=1000000",
        "logging.keep_last=1", "logging.collapse_every=10",
    ])


def seconds_per_step(cfg) -> tuple[float, PrecisionChoice]:
    """Time a few real training steps of this config (throwaway run) to size the epochs to the time budget; also
    the precision the trainer chose (the run makes the same choice)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), DistEnv(), resume=False)
        batches = trainer.micro_batches()
        trainer.train_step([next(batches)])  # warm-up
        t0 = time.perf_counter()
        for _ in range(5):
            trainer.train_step([next(batches)])
        return (time.perf_counter() - t0) / 5, trainer.precision


def quickstart(out: str | Path = "runs/quickstart", *, minutes: float = 10.0, data: DataChoice = "connattractor",
               cache: str | Path | None = None, seed: int = 0, folds: int = 5, seeds: int = 3) -> QuickstartResult:
    """Run the whole pipeline and write `out/report.md`. See docs/quickstart.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    facts: dict[str, Any] = {"data": data, "minutes": minutes, "seed": seed, "torch": torch.__version__,
                             "python": platform.python_version(), "threads": torch.get_num_threads()}
    started = time.perf_counter()

    _step("1/6 data: fetch, validate and prepare")
    store = load_data(data, out / "store", Path(cache) if cache else None, seed)
    label = LABELS[data]
    frames = store.manifest["frames"].to_numpy()
    facts.update(store=str(store.path), runs=len(store), subjects=int(store.manifest["subject"].nunique()),
                 rois=store.num_rois, frames_min=int(frames.min()), frames_max=int(frames.max()),
                 tr=store.tr(0), label=label, label_counts=store.manifest[label].astype(str).value_counts().to_dict(),
                 atlas=store.metadata.get("atlas", "simulated modular network"),
                 sample=store.metadata.get("sample"))
    window = int(min(160, frames.min()) // 16 * 16)
    if "normalization" not in store.metadata:  # the reference's robust scaling, fitted once, kept with the store
        save_robust_stats(store)

    _step("2/6 brain gradients from the group FC (BrainSpace)")
    gradient_csv = out / "gradients.csv"
    n_grad = min(30, store.num_rois - 2)
    gradient = gradients_file(gradient_csv, store=store, n_components=n_grad)
    figures.gradients_figure(gradient, fig_dir / "gradients.png")
    facts["gradient_components"] = n_grad

    _step("3/6 pretraining")
    probe_cfg = pretrain_config(store, gradient_csv, epochs=1, seed=seed, frames=window)
    per_step, precision = seconds_per_step(probe_cfg)
    steps_per_epoch = len(store) // probe_cfg.data.batch_size
    # 5% margin for what the timed steps leave out (logging, epoch boundaries, the final checkpoint)
    epochs = max(2, int(0.95 * minutes * 60 / (per_step * steps_per_epoch)))
    cfg = pretrain_config(store, gradient_csv, epochs=epochs, seed=seed, frames=window)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    facts.update(precision=precision.name, precision_reason=precision.reason, seconds_per_step=round(per_step, 3),
                 epochs=epochs, steps=epochs * steps_per_epoch, window=window)
    t0 = time.perf_counter()
    pretrain(cfg, run_dir)
    facts["pretrain_minutes"] = round((time.perf_counter() - t0) / 60, 2)
    grid = (cfg.model.num_rois, cfg.model.num_time_patches)
    ctx, tgt = draw_masks(cfg.mask, *grid, seed=seed, epoch=0, batch=0, batch_size=1)
    figures.mask_figure(mask_grid(ctx[0], tgt[0], *grid).numpy(), fig_dir / "masks.png", cfg.model.patch_size)
    shutil.copy(run_dir / "training_curves.png", fig_dir / "training_curves.png")

    _step("4/6 embeddings of every run")
    model = BrainJEPA.from_pretrained(run_dir)
    features = {
        "Brain-JEPA (pretrained)": embed_store(model, store).embeddings.numpy(),
        "Brain-JEPA (random init)": embed_store(random_init_like(model, seed + 1), store).embeddings.numpy(),
        "FC (Fisher z)": functional_connectivity(store.run(i) for i in range(len(store))),
    }
    labels = store.manifest[label].astype(str).to_numpy()
    figures.pca_figure({k: v for k, v in features.items() if "Brain-JEPA" in k}, labels, fig_dir / "pca.png", label)

    _step("5/6 probes (subject-grouped CV)")
    table = probe_models(features, labels, store.manifest["subject"].astype(str).to_numpy(), label=label,
                         folds=folds, seeds=seeds)
    table.save(out)

    _step("6/6 report")
    facts["total_minutes"] = round((time.perf_counter() - started) / 60, 2)
    (out / "facts.json").write_text(json.dumps(facts, indent=2, default=str))
    report = write_report(out, facts, table, metrics_csv=run_dir / "metrics.csv")
    logger.info("report: %s (%.1f min in all)", report, facts["total_minutes"])
    return QuickstartResult(out, report, facts)

