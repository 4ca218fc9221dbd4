"""`brainjepa quickstart` end to end on simulated data (the real-data path differs only in where the store comes
from; `tests/test_samples.py` covers fetching it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brainjepa.config import load_config, save_config
from brainjepa.data.store import RunStore
from brainjepa.report.quickstart import pretrain_config
from conftest import cli_call

R = 20  # ROIs of the conftest `store` fixture


def test_quickstart_simulated_writes_a_complete_report(quickstart_run):
    out = quickstart_run.out
    assert quickstart_run.code == 0, quickstart_run.stderr[-2000:]
    assert "%|" not in quickstart_run.stderr  # stderr not a terminal: no step draws a bar (data ... evaluation)
    report = (out / "report.md").read_text()
    for figure in ("figures/gradients", "figures/masks", "figures/training_curves", "figures/pca",
                   "evaluate/evaluate"):
        assert (out / f"{figure}.png").stat().st_size > 5000
        assert f"{figure}.png" in report
    assert "**The data are simulated.**" in report
    assert "Encoder health (input `roi_zscore` x gain" in report and "held-out subject(s)" in report
    facts = json.loads((out / "facts.json").read_text())
    assert facts["runs"] == 120 and facts["label"] == "group"
    assert facts["suite"]["tasks"] == ["simulation/group", "simulation/coupling"]
    assert (facts["suite"]["folds"], facts["suite"]["seeds"]) == (2, 1)
    table = (out / "evaluate" / "evaluate.md").read_text()
    header = "| row | simulation/group | simulation/coupling |"
    rows = [line for line in table.splitlines() if line.startswith("| brainjepa, ")]
    assert header in report and len(rows) == 8 and all(row in report for row in rows)  # scores, nulls, differences
    assert f"--store simulation={out / 'store'}" in report
    assert not (out / "evaluate" / "stores").exists()
    findings = report[report.index("## 7. Findings"):report.index("## 8. Time")]
    for task in ("simulation/group", "simulation/coupling"):
        assert f"**{task}**" in findings
    for readout in ("ROI mean", "token FC"):
        for other in (f"random-init, {readout}", "FC"):
            row = f"brainjepa, {readout}"
            verdicts = (f"{row} and {other} do not differ", f"**{row} scores higher than {other}**",
                        f"**{row} scores lower than {other}**", f"{row} vs {other}: difference")
            assert sum(findings.count(v) for v in verdicts) == 2  # once per task
    assert "nominal chance 0.500" in findings and "simulated data" in findings
    assert "| evaluation |" in report


def test_pretrain_config_is_the_reference_form_config_in_schema_form(store, tmp_path):
    """The quickstart builds its TrainConfig from the dataclasses; it is the config its earlier reference-style
    overrides gave, to the saved config.yaml."""
    runs = RunStore(store)
    csv = tmp_path / "gradients.csv"
    schema = pretrain_config(runs, csv, epochs=23, seed=7, frames=48)
    reference = load_config(None, [
        f"data.path={runs.path}", f"data.crop_size=[{R},48]", "data.batch_size=8", "data.num_workers=0",
        "data.pin_mem=false", "data.sampling_rate=1", f"data.gradient_csv_path={csv}", "meta.model_name=vit_tiny",
        "meta.embed_dim=96", "meta.depth=4", "meta.num_heads=4", "meta.pred_emb_dim=48", "meta.pred_depth=2",
        "meta.accumulation_steps=1", "meta.seed=7", "optimization.epochs=23", "optimization.warmup=2",
        "optimization.start_lr=1e-4", "optimization.lr=1e-3", "optimization.final_lr=1e-5",
        "optimization.final_weight_decay=0.1", "logging.log_every=50", "logging.checkpoint_every=1000000",
        "logging.keep_last=1", "logging.collapse_every=10",
    ])
    assert schema == reference
    save_config(schema, tmp_path / "schema.yaml")
    save_config(reference, tmp_path / "reference.yaml")
    assert (tmp_path / "schema.yaml").read_text() == (tmp_path / "reference.yaml").read_text()


def test_the_sample_cache_reaches_the_evaluation(store, tmp_path):
    """`quickstart --cache` is where the sample's event files are: the suite's GLM row reads them from there, and
    the report's evaluate line passes it on."""
    from types import SimpleNamespace

    from brainjepa.report.markdown import _evaluate_command
    from brainjepa.report.quickstart import suite_options

    runs = RunStore(store)
    options = suite_options("connattractor", runs, folds=2, seeds=1, seed=0, cache=tmp_path / "cache")
    assert options.cache == str(tmp_path / "cache")
    assert _evaluate_command(SimpleNamespace(options=options), tmp_path).endswith(f" --cache {tmp_path / 'cache'}")
    assert suite_options("connattractor", runs, folds=2, seeds=1, seed=0).cache is None


def test_a_cache_for_simulated_data_is_refused_before_any_work(tmp_path):
    import pytest

    from brainjepa.errors import ConfigError
    from brainjepa.report.quickstart import quickstart

    with pytest.raises(ConfigError, match="--data simulated makes its own data: remove --cache"):
        quickstart(tmp_path / "qs", data="simulated", cache=tmp_path / "cache")
    assert not (tmp_path / "qs").exists()


def test_the_epochs_and_the_budget_line_say_what_set_them():
    """Whole epochs covering --steps; fewer when --minutes would be exceeded; never under 2 epochs, and the report
    then says it ran more than asked (it used to say "fewer than the 1 steps asked" after 28 steps)."""
    from brainjepa.report.markdown import _budget_line
    from brainjepa.report.quickstart import MIN_EPOCHS, plan_epochs

    assert plan_epochs(297, 10, per_step=0.1, steps_per_epoch=11) == (27, "steps")  # 27 x 11 = 297
    assert plan_epochs(297, 1, per_step=0.5, steps_per_epoch=11) == (10, "minutes")  # 0.95 * 60 / 5.5 s per epoch
    assert plan_epochs(1, 10, per_step=0.1, steps_per_epoch=14) == (MIN_EPOCHS, "minimum")
    assert plan_epochs(297, 0.02, per_step=0.1, steps_per_epoch=14) == (MIN_EPOCHS, "minimum")
    facts = {"budget": "minimum", "epochs": 2, "steps_asked": 1, "minutes": 0.02}
    assert "**more than asked**: 1 steps within 0.02 minutes" in _budget_line(facts)
    assert "fewer than" in _budget_line({**facts, "budget": "minutes", "steps_asked": 297, "minutes": 1})


def test_every_cli_flag_reaches_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `brainjepa quickstart` flag must reach `quickstart` (the end-to-end run uses the default --seed, --seeds
    and no --cache, so a lost one would go unseen there)."""
    seen = cli_call(monkeypatch, "brainjepa.cli.quickstart.quickstart",
                    ["quickstart", "--out", str(tmp_path / "qs"), "--steps", "40", "--minutes", "3", "--data",
                     "simulated", "--cache", str(tmp_path / "cache"), "--seed", "6", "--folds", "3", "--seeds", "2",
                     "--no-progress"])
    assert seen == {"out": str(tmp_path / "qs"), "steps": 40, "minutes": 3.0, "data": "simulated",
                    "cache": str(tmp_path / "cache"), "seed": 6, "folds": 3, "seeds": 2, "progress": False}


def test_the_budget_says_minutes_only_when_it_cut_the_epochs() -> None:
    """"minutes" means `steps` would not fit and fewer epochs run; when the timed steps fit the budget exactly, the
    asked-for epochs run and the reason is "steps" (the report's budget line reads it)."""
    from brainjepa.report.quickstart import plan_epochs

    steps, per_step, steps_per_epoch = 120, 0.37, 6
    wanted = -(-steps // steps_per_epoch)
    seen = set()
    for hundredth in range(1, 400):  # budgets fine enough to reach every whole number of epochs that fits
        epochs, why = plan_epochs(steps, hundredth / 100, per_step, steps_per_epoch)
        seen.add(epochs)
        if why == "minutes":
            assert epochs < wanted, (hundredth / 100, epochs, why)
        elif why == "steps":
            assert epochs == wanted
    assert wanted in seen and wanted - 1 in seen


def test_the_random_init_row_is_not_the_pretrained_models_starting_point(store, tmp_path):
    """Pretraining draws its first weights with `seed`, and so would a random-init encoder of the same seed: the
    baseline row would then be the pretrained model before training, one fixed draw tied to it. The quickstart's
    random-init encoder is drawn with another seed."""
    from dataclasses import replace

    import numpy as np
    import torch

    from brainjepa.evaluation.baselines import random_init_like
    from brainjepa.report.quickstart import suite_options
    from brainjepa.training.distributed import DistEnv
    from brainjepa.training.loop import Trainer

    runs = RunStore(store)
    seed = 5
    np.savetxt(tmp_path / "gradients.csv", np.random.default_rng(0).normal(size=(R, 5)), delimiter=",")
    cfg = pretrain_config(runs, tmp_path / "gradients.csv", epochs=1, seed=seed, frames=48)
    cfg = replace(cfg, model=replace(cfg.model, gradient_dim=5))
    model = Trainer(cfg, tmp_path / "run", DistEnv(), resume=False).model  # its weights before any step
    start = model.encoder.state_dict()

    def same_as_start(other) -> bool:
        return all(torch.equal(value, start[name]) for name, value in other.encoder.state_dict().items())

    assert same_as_start(random_init_like(model, seed=seed))  # why the seeds must differ
    (fresh_seed,) = suite_options("connattractor", runs, folds=2, seeds=1, seed=seed).random_init_seeds
    assert not same_as_start(random_init_like(model, seed=fresh_seed))
