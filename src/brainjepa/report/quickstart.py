"""`brainjepa quickstart`: real fMRI in, a pretrained Brain-JEPA, the evaluation suite against its baselines, and a
report out.

Each step calls the same public functions as the CLI commands, so `report.md` can list the command line that
reproduces each part. The evaluation is `brainjepa evaluate` on the quickstart's own model and store, for the
suite's tasks of that data (connattractor: identification, condition, rating; simulated: group, coupling).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from brainjepa.config import DataConfig, LoggingConfig, MetaConfig, OptimizationConfig, TrainConfig
from brainjepa.data.gradients import gradients_file
from brainjepa.data.samples import prepare_sample
from brainjepa.data.simulate import SimulationConfig, simulate_store
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.suite import SuiteOptions, default_tasks, evaluate
from brainjepa.io import atomic_write_text
from brainjepa.masks import draw_masks, mask_grid
from brainjepa.models import BrainJEPA
from brainjepa.models.config import ModelConfig
from brainjepa.report import figures
from brainjepa.report.markdown import STUDY_STEPS, write_report
from brainjepa.training import pretrain
from brainjepa.training.estimate import estimate_run

logger = logging.getLogger(__name__)

DataChoice = Literal["connattractor", "simulated"]
LABELS = {"connattractor": "condition", "simulated": "group"}  # the label that colours the PCA figure
SUITE_DATASET = {"connattractor": "connattractor", "simulated": "simulation"}  # evaluation-suite data set
STEPS = ("data", "gradients", "pretraining", "evaluation")
MIN_EPOCHS = 2  # one epoch of warmup (pretrain_config's), then at least one at the peak learning rate and its decay


@dataclass
class QuickstartResult:
    """What the run produced; `report` is the markdown file."""

    out: Path
    report: Path
    facts: dict[str, Any] = field(default_factory=dict)


def load_data(choice: DataChoice, out: Path, cache: Path | None, seed: int, *, progress: bool = True):
    """The store: the connattractor heat-pain sample from PyPI, or simulated BOLD with known labels."""
    if choice == "simulated":
        return simulate_store(out, SimulationConfig(subjects=120, rois=100, frames=200, seed=seed), overwrite=True,
                              progress=progress)
    try:
        return prepare_sample(choice, out, cache, overwrite=True, progress=progress)
    except DataError as err:
        raise DataError(f"could not get the {choice} sample ({err}). Without access to PyPI, run "
                        "`brainjepa quickstart --data simulated` instead.") from err


def pretrain_config(store, gradient_csv: Path, *, epochs: int, seed: int, frames: int) -> TrainConfig:
    """A small model for a laptop CPU: 96-d, depth 4, on `frames`-frame windows of the store's ROIs without
    striding (TR 2 s data); precision `auto`: bf16 only where it is faster (brainjepa.precision)."""
    return TrainConfig(
        model=ModelConfig(num_rois=store.num_rois, num_frames=frames, embed_dim=96, depth=4, num_heads=4,
                          pred_embed_dim=48, pred_depth=2),
        # windows and masks cost ~5 ms a batch: a worker process would only compete for the 2 cores
        data=DataConfig(path=str(store.path), batch_size=8, num_workers=0, pin_mem=False, sampling_rate=1,
                        gradient_csv_path=str(gradient_csv)),
        optimization=OptimizationConfig(epochs=epochs, warmup=float(max(1, epochs // 10)), start_lr=1e-4, lr=1e-3,
                                        final_lr=1e-5, final_weight_decay=0.1),
        logging=LoggingConfig(log_every=50, checkpoint_every=1_000_000, keep_last=1, collapse_every=10),
        meta=MetaConfig(seed=seed, accumulation_steps=1),
    )


@contextmanager
def _step(seconds: dict[str, float], name: str, title: str) -> Iterator[None]:
    """Log the step and record its wall-clock seconds under `name` (the report's time table)."""
    logger.info("=== %s/%d %s", len(seconds) + 1, len(STEPS), title)
    t0 = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - t0, 1)


def suite_options(data: DataChoice, store, *, folds: int, seeds: int, seed: int,
                  cache: str | Path | None = None) -> SuiteOptions:
    """The evaluation suite's tasks for this data, on the store the quickstart prepared, with the quickstart's
    sample cache (the GLM row reads event files from it); embedding and probe settings are the suite's defaults.
    The random-init encoder is drawn with `seed + 1`: with `seed` it would be the pretrained model's own starting
    weights (pretraining draws them with `seed` too), the same draw rather than an independent one."""
    dataset = SUITE_DATASET[data]
    return SuiteOptions(tasks=default_tasks(dataset), folds=folds, seeds=seeds, random_init_seeds=(seed + 1,),
                        stores={dataset: str(store.path)}, cache=str(cache) if cache else None)


def quickstart(out: str | Path = "runs/quickstart", *, steps: int = STUDY_STEPS, minutes: float = 10.0,
               data: DataChoice = "connattractor", cache: str | Path | None = None, seed: int = 0, folds: int = 5,
               seeds: int = 1, progress: bool = True) -> QuickstartResult:
    """Run the whole pipeline and write `out/report.md`. See docs/quickstart.md.

    Args:
        steps: optimizer steps of pretraining (rounded up to whole epochs); the default is the confirmatory
            study's budget (benchmarks/RESULTS.md): on the sample's 92 training runs, 1,045 steps lost effective
            rank (21 -> 8) and second-order subject identification (0.89 -> 0.19 of random init's).
        minutes: upper bound on pretraining time: fewer epochs when the timed steps say `steps` would not fit.
        folds, seeds: the evaluation suite's subject-grouped folds and split seeds (5 x 1 keeps it to about a
            minute on a laptop CPU).
        progress: progress bars of the data, gradients, pretraining and evaluation steps (log lines stay).

    Raises:
        ConfigError: `cache` with ``data="simulated"`` (the cache holds the PyPI sample, which that data skips).
    """
    if cache is not None and data == "simulated":
        raise ConfigError("quickstart: --cache is the folder of the PyPI sample, and --data simulated makes its "
                          "own data: remove --cache")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    seconds: dict[str, float] = {}
    facts: dict[str, Any] = {"data": data, "steps_asked": steps, "minutes": minutes, "seed": seed,
                             "torch": torch.__version__, "python": platform.python_version(),
                             "threads": torch.get_num_threads(), "step_seconds": seconds}
    started = time.perf_counter()

    with _step(seconds, "data", "data: fetch, validate and prepare"):
        store = load_data(data, out / "store", Path(cache) if cache else None, seed, progress=progress)
        # checked before pretraining, so bad suite settings fail in seconds, not after the time budget
        options = suite_options(data, store, folds=folds, seeds=seeds, seed=seed, cache=cache)
        label = LABELS[data]
        frames = store.manifest["frames"].to_numpy()
        facts.update(store=str(store.path), runs=len(store), subjects=int(store.manifest["subject"].nunique()),
                     rois=store.num_rois, frames_min=int(frames.min()), frames_max=int(frames.max()),
                     tr=store.tr(0), label=label,
                     label_counts=store.manifest[label].astype(str).value_counts().to_dict(),
                     atlas=store.metadata.get("atlas", "simulated modular network"),
                     sample=store.metadata.get("sample"))
        window = int(min(160, frames.min()) // 16 * 16)

    with _step(seconds, "gradients", "brain gradients from the group FC"):
        gradient_csv = out / "gradients.csv"
        n_grad = min(30, store.num_rois - 2)
        gradient = gradients_file(gradient_csv, store=store, n_components=n_grad, progress=progress)
        figures.gradients_figure(gradient, fig_dir / "gradients.png")
        facts["gradient_components"] = n_grad

    with _step(seconds, "pretraining", "pretraining"):
        run_dir = _pretrain(store, gradient_csv, out, facts, steps=steps, minutes=minutes, seed=seed, window=window,
                            progress=progress)

    with _step(seconds, "evaluation", f"evaluation suite ({', '.join(options.tasks)})"):
        suite = evaluate(BrainJEPA.from_pretrained(run_dir), out / "evaluate", options, progress=progress)
        if SUITE_DATASET[data] not in suite.embeddings:  # the suite skipped the store's tasks: say why, in one line
            raise DataError(f"the evaluation suite could not use {store.path}: {suite.results[0].reason}")
        # the PCA figure reuses the suite's embeddings of every run (store order), computed once
        encoded = {name: x.reshape(len(x), -1) for name, x in suite.embeddings[SUITE_DATASET[data]].items()}
        labels = store.manifest[label].astype(str).to_numpy()
        figures.pca_figure(encoded, labels, fig_dir / "pca.png", label)

    facts["suite"] = {"tasks": list(options.tasks), "folds": folds, "seeds": seeds,
                      "bootstrap": options.bootstrap, "random_init_seeds": list(options.random_init_seeds)}
    facts["total_minutes"] = round((time.perf_counter() - started) / 60, 2)
    atomic_write_text(out / "facts.json", json.dumps(facts, indent=2, default=str))
    report = write_report(out, facts, suite, metrics_csv=run_dir / "metrics.csv")
    logger.info("report: %s (%.1f min in all)", report, facts["total_minutes"])
    return QuickstartResult(out, report, facts)


def plan_epochs(steps: int, minutes: float, per_step: float, steps_per_epoch: int) -> tuple[int, str]:
    """(epochs, what set them): "steps" (whole epochs covering `steps`), "minutes" (fewer: `steps` would not fit in
    `minutes` at `per_step` seconds, with a 5% margin for logging, epoch boundaries and the final checkpoint), or
    "minimum" (`MIN_EPOCHS`, more than either asks for)."""
    fit = int(0.95 * minutes * 60 / (per_step * steps_per_epoch))
    wanted = math.ceil(steps / steps_per_epoch)
    if min(wanted, fit) < MIN_EPOCHS:
        return MIN_EPOCHS, "minimum"
    return (wanted, "steps") if wanted <= fit else (fit, "minutes")


def _pretrain(store, gradient_csv: Path, out: Path, facts: dict[str, Any], *, steps: int, minutes: float, seed: int,
              window: int, progress: bool) -> Path:
    """Pretrain into `out/run` for whole epochs covering `steps` optimizer steps, fewer if a few timed steps say
    they would not fit in `minutes` (timed as `brainjepa pretrain --print-config` times them); draw its figures."""
    probe_cfg = pretrain_config(store, gradient_csv, epochs=1, seed=seed, frames=window)
    timed = estimate_run(probe_cfg, timed_steps=5)  # train_runs: data.holdout's subjects are held out
    per_step = timed.step_seconds
    steps_per_epoch = timed.train_runs // probe_cfg.data.batch_size
    epochs, facts["budget"] = plan_epochs(steps, minutes, per_step, steps_per_epoch)
    cfg = pretrain_config(store, gradient_csv, epochs=epochs, seed=seed, frames=window)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    facts.update(seconds_per_step=round(per_step, 3), epochs=epochs, steps=epochs * steps_per_epoch, window=window,
                 embed_dim=cfg.model.embed_dim, patch_size=cfg.model.patch_size)
    t0 = time.perf_counter()
    pretrain(cfg, run_dir, progress=progress)
    facts["pretrain_minutes"] = round((time.perf_counter() - t0) / 60, 2)
    summary = json.loads((run_dir / "summary.json").read_text())  # encoder health and held-out loss, start / end
    facts.update(precision=summary["precision"], precision_reason=summary["precision_reason"])  # the run's choice
    facts["health"] = {key: summary[key] for key in ("input_gain", "heldout_subjects", "start", "end")}
    facts["normalization"] = cfg.data.normalization
    fig_dir = out / "figures"
    grid = (cfg.model.num_rois, cfg.model.num_time_patches)
    ctx, tgt = draw_masks(cfg.mask, *grid, seed=seed, epoch=0, batch=0, batch_size=1)
    figures.mask_figure(mask_grid(ctx[0], tgt[0], *grid).numpy(), fig_dir / "masks.png", cfg.model.patch_size)
    shutil.copy(run_dir / "training_curves.png", fig_dir / "training_curves.png")
    return run_dir
