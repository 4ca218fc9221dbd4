"""Fine-tuning: layer-wise LR decay, drop path, the encoder's head, the schedule and per-epoch passes, learning,
label standardisation, early stopping, determinism, checkpoints (old folders too), result files, CLI and bad
inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from brainjepa import BrainJEPA, ModelConfig
from brainjepa.cli import main
from brainjepa.data.store import StoreWriter
from brainjepa.errors import CheckpointError, ConfigError, DataError, TrainingError
from brainjepa.evaluation.finetune import (
    FinetuneConfig,
    build_finetune_model,
    finetune,
    load_finetuned,
    save_finetuned,
)
from brainjepa.evaluation.finetune_loop import Fold, WarmupCosine, evaluate, set_lr, train_one_epoch
from brainjepa.models.layers import DropPath
from brainjepa.runtime import runtime
from brainjepa.training.schedules import Schedule
from conftest import cli_call, tiny_model

R, FRAMES, SUBJECTS = 8, 40, 32
CFG = ModelConfig(num_rois=R, num_frames=32, patch_size=16, embed_dim=32, depth=3, num_heads=2, pred_embed_dim=16,
                  pred_depth=1, gradient_dim=3)
FAST = FinetuneConfig(folds=2, val_fraction=0.25, epochs=12, batch_size=4, lr=3e-3, warmup_epochs=1, patience=4,
                      drop_path=0.0, normalization="none")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


def _model(seed: int = 0) -> BrainJEPA:
    return tiny_model(R, seed=seed, patch_size=16, depth=3)  # CFG


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Subject s has a level z_s ~ U(0, 1) added to every ROI (offset 3 z_s); `group` is z_s > 0.5 and `score`
    is 50 + 10 z_s, so both are learnable from the (un-normalised) series. Subject s0 has two runs; `site` is a
    constant column and `name` a text one."""
    path = tmp_path_factory.mktemp("ft") / "store"
    rng = np.random.default_rng(0)
    with StoreWriter(path, R) as writer:
        for s in range(SUBJECTS):
            z = (s + rng.uniform()) / SUBJECTS  # spread evenly over [0, 1): balanced classes
            for run in range(2 if s == 0 else 1):
                ts = rng.standard_normal((R, FRAMES)) + 3.0 * z
                writer.add(ts, subject=f"s{s}", run=str(run), tr=2.0,
                           phenotypes={"group": int(z > 0.5), "score": 50 + 10 * z, "site": 1, "name": f"n{s % 3}"})
    return path


@pytest.fixture(scope="module")
def classified(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft_out") / "group"
    return finetune(_model(), store, "group", config=FAST, out=out, progress=False), out


# ------------------------------------------------------------------------------------------- network parts
def test_layer_decay_gives_block_i_its_scaled_lr():
    net = build_finetune_model(_model(), 2)
    L, decay = CFG.depth, 0.5
    optimizer = torch.optim.AdamW(net.param_groups(0.05, decay), lr=1.0)
    set_lr(optimizer, 1e-3)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert len(group_of) == sum(1 for _ in net.parameters())  # every parameter in exactly one group
    for name, p in net.named_parameters():
        g = group_of[id(p)]
        if name.startswith(("patch_embed", "pos_embed")):
            layer = 0
        elif name.startswith("blocks."):
            layer = int(name.split(".")[1]) + 1
        else:
            layer = L + 1
        assert g["lr"] == pytest.approx(1e-3 * decay ** (L + 1 - layer)), name
        assert g["weight_decay"] == (0.05 if p.ndim > 1 else 0.0), name
    # Concretely: block 0 trains at lr * decay^L, the last block at lr * decay, the head at lr.
    assert group_of[id(net.blocks[0].attn.qkv.weight)]["lr"] == pytest.approx(1e-3 * decay**L)
    assert group_of[id(net.blocks[L - 1].mlp.fc1.weight)]["lr"] == pytest.approx(1e-3 * decay)
    assert group_of[id(net.head.weight)]["lr"] == pytest.approx(1e-3)


def test_drop_path_head_and_weights():
    model = _model()
    net = build_finetune_model(model, 3, drop_path=0.2)
    rates = [b.drop_path.p if isinstance(b.drop_path, DropPath) else 0.0 for b in net.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    for k, v in model.target_encoder.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    assert all(p.requires_grad for p in net.parameters())
    assert model.config.drop_path_rate == 0.0  # the pretrained model is left alone
    before = model.target_encoder.blocks[0].attn.qkv.weight.clone()
    net.blocks[0].attn.qkv.weight.data.add_(1.0)
    assert torch.equal(model.target_encoder.blocks[0].attn.qkv.weight, before)
    assert net.fc_norm.eps == 1e-6 and torch.all(net.head.bias == 0)
    assert 0 < net.head.weight.std() < 1e-4  # trunc-normal std 2e-5
    context = build_finetune_model(model, 3, encoder="context")
    assert torch.equal(context.blocks[0].attn.qkv.weight, model.encoder.blocks[0].attn.qkv.weight)


def test_forward_head_reads_out_mean_tokens_through_fc_norm_and_head():
    net = build_finetune_model(_model(), 3).eval()
    x = torch.randn(4, R, CFG.num_frames)
    with torch.no_grad():
        tokens = net.forward_features(x)
        pre = net.forward_head(tokens, pre_logits=True)
        torch.testing.assert_close(pre, torch.nn.functional.layer_norm(tokens.mean(1), (CFG.embed_dim,), eps=1e-6))
        logits = net.forward_head(tokens)
        torch.testing.assert_close(logits, pre @ net.head.weight.T + net.head.bias)
    assert logits.shape == (4, 3) and net.num_outputs == 3
    net.reset_classifier(5)  # a fresh head: new width, re-initialised
    assert net.forward_head(tokens).shape == (4, 5) and torch.all(net.head.bias == 0)
    net.reset_classifier(0)  # off again: no head weights, the pooled features come out
    assert net.num_outputs == 0 and not any(n.startswith(("head.", "fc_norm.")) for n in net.state_dict())
    assert torch.equal(net.forward_head(tokens), tokens.mean(1))


def test_pretraining_encoders_carry_no_head():
    model = _model()
    assert model.target_encoder.num_outputs == 0
    assert not any(".head." in n or ".fc_norm." in n for n in model.state_dict())


def test_finetuned_model_save_load_round_trip(tmp_path):
    net = build_finetune_model(_model(), 2).eval()
    save_finetuned(net, tmp_path / "ft", {"task": "classification", "classes": [0, 1]})
    loaded, meta = load_finetuned(tmp_path / "ft")
    x = torch.randn(3, R, CFG.num_frames)
    with torch.no_grad():
        assert torch.equal(loaded.forward_head(loaded(x)), net.forward_head(net(x)))
    assert meta["classes"] == [0, 1] and meta["num_outputs"] == 2 and not loaded.training


def test_folders_written_before_the_head_moved_onto_the_encoder_still_load(tmp_path):
    """Until issue 21 a fine-tuned folder held a wrapper's state dict: the encoder's tensors under ``encoder.``,
    then ``fc_norm.`` and ``head.``; finetune.json the same record."""
    from safetensors.torch import save_file

    net = build_finetune_model(_model(), 2).eval()
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([0.5, -0.5]))  # so the head's weights are seen to load
    old = {(n if n.startswith(("fc_norm.", "head.")) else f"encoder.{n}"): t.contiguous()
           for n, t in net.state_dict().items()}
    (tmp_path / "old").mkdir()
    save_file(old, str(tmp_path / "old" / "model.safetensors"), metadata={"format": "brainjepa-finetuned"})
    record = {"format": "brainjepa-finetuned", "version": 1, "model": CFG.to_dict(), "num_outputs": 2,
              "task": "classification", "classes": [0, 1]}
    (tmp_path / "old" / "finetune.json").write_text(json.dumps(record))
    loaded, meta = load_finetuned(tmp_path / "old")
    assert meta["classes"] == [0, 1]
    for name, tensor in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x = torch.randn(3, R, CFG.num_frames)
    with torch.no_grad():
        assert torch.equal(loaded.forward_head(loaded(x)), net.forward_head(net(x)))


def test_peak_lr_follows_the_blr_rule():
    assert FinetuneConfig().peak_lr == pytest.approx(1e-3 * 16 / 256)
    assert FinetuneConfig(batch_size=64, blr=2e-3).peak_lr == pytest.approx(5e-4)
    assert FinetuneConfig(lr=1e-4).peak_lr == 1e-4


def test_schedule_is_pretrainings_lr_rule_in_plain_numbers():
    """Warmup 0 -> base over warmup_steps, cosine to final at total_steps: the values pretraining's Schedule gives
    for the same numbers (start_lr 0), so moving off OptimizationConfig changed no fine-tuning LR."""
    from brainjepa.config import OptimizationConfig

    plain = WarmupCosine(warmup_steps=6, total_steps=20, base_lr=3e-3, final_lr=1e-5)
    pretraining = Schedule(OptimizationConfig(epochs=5, warmup=1.5, start_lr=0.0, lr=3e-3, final_lr=1e-5), 4)
    assert [plain.lr(s) for s in range(25)] == [pretraining.lr(s) for s in range(25)]
    assert plain.lr(0) == pytest.approx(3e-3 / 6) and plain.lr(5) == pytest.approx(3e-3)
    assert plain.lr(19) == pytest.approx(1e-5)  # the last step reaches the final LR
    assert WarmupCosine(0, 10, 1.0, 0.0).lr(0) == pytest.approx(0.5 * (1 + np.cos(np.pi / 10)))  # no warmup


def test_one_epoch_sets_the_lr_per_step_and_evaluate_scores_label_units():
    torch.manual_seed(0)
    net = build_finetune_model(_model(), 1)
    x, y = torch.randn(6, R, CFG.num_frames), torch.tensor([40.0, 45.0, 50.0, 55.0, 60.0, 65.0])
    loader = torch.utils.data.DataLoader([{"x": a, "y": b} for a, b in zip(x, y, strict=True)], batch_size=4)
    optimizer = torch.optim.AdamW(net.param_groups(0.05, 0.5), lr=1.0)
    schedule = WarmupCosine(warmup_steps=3, total_steps=10, base_lr=1e-3, final_lr=0.0)
    fold = Fold(0, "regression", None, mean=50.0, std=10.0)
    run = runtime("cpu", "fp32")
    loss = train_one_epoch(net, loader, optimizer, schedule, fold, epoch=2, run=run)
    assert net.training and np.isfinite(loss)
    # epoch 2 of 2-batch epochs: its last batch is step 5; every group got that LR times its layer scale
    assert [g["lr"] for g in optimizer.param_groups] == [schedule.lr(5) * g["lr_scale"] for g in optimizer.param_groups]
    val_loss, metrics = evaluate(net, loader, fold, run)
    with torch.no_grad():
        pred = net.forward_head(net(x))[:, 0]
    assert not net.training
    assert val_loss == pytest.approx(float(((pred - (y - 50) / 10) ** 2).mean()), rel=1e-5)
    assert metrics["mae"] == pytest.approx(float((pred * 10 + 50 - y).abs().mean()), rel=1e-5)  # label units


def test_training_loss_is_smoothed_and_averaged_over_samples_and_the_evaluation_loss_is_not_smoothed() -> None:
    """With a zero LR (weights fixed), one epoch's loss is the label-smoothed cross-entropy averaged over samples
    (a short last batch weighs its samples, not a whole batch), and `evaluate` scores the plain cross-entropy."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = build_finetune_model(_model(), 3)
    torch.nn.init.normal_(net.head.weight, std=1.0)  # logits far from uniform, where smoothing changes the loss
    x, y = torch.randn(6, R, CFG.num_frames), torch.tensor([0, 1, 2, 0, 1, 1])
    loader = torch.utils.data.DataLoader([{"x": a, "y": b} for a, b in zip(x, y, strict=True)], batch_size=4)
    optimizer = torch.optim.AdamW(net.param_groups(0.05, 0.5), lr=0.0)
    fold, run = Fold(0, "classification", [0, 1, 2]), runtime("cpu", "fp32")
    loss = train_one_epoch(net, loader, optimizer, WarmupCosine(1, 10, 0.0, 0.0), fold, epoch=0, run=run,
                           label_smoothing=0.3)
    with torch.no_grad():
        out = net.forward_head(net(x))
    assert loss == pytest.approx(float(F.cross_entropy(out, y, label_smoothing=0.3)), rel=1e-5)
    assert evaluate(net, loader, fold, run)[0] == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)


def test_fold_metrics_keep_every_class_when_a_fold_misses_one() -> None:
    """A 3-class fold whose rows hold classes 0 and 1 only: AUC is the one-vs-rest macro AUC of the classes
    present (each from its own probability column) and F1 the macro F1 of those classes, not a binary score read
    off the last column."""
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 6)
    logits = torch.from_numpy(rng.normal(size=(12, 3))) + 2.0 * torch.nn.functional.one_hot(torch.from_numpy(y), 3)
    logits[:, 2] -= 5.0  # class 2 is never predicted
    got = Fold(0, "classification", ["a", "b", "c"]).metrics(logits.float(), torch.from_numpy(y))
    prob, pred = logits.float().softmax(-1).numpy(), logits.argmax(1).numpy()
    assert got["auc"] == pytest.approx(np.mean([roc_auc_score(y == c, prob[:, c]) for c in (0, 1)]))
    assert got["f1"] == pytest.approx(f1_score(y, pred, average="macro"))


# ---------------------------------------------------------------------------------------------- training
def test_classification_learns_and_writes_results(classified):
    result, out = classified
    assert result.task == "classification" and result.classes == [0, 1]
    assert result.summary["balanced_acc"][0] > 0.8
    table = pd.read_csv(out / "finetune.csv", dtype={"fold": str})
    assert table["fold"].tolist() == ["1", "2", "mean", "std"]
    assert table.loc[2, "balanced_acc"] == pytest.approx(np.mean([f["balanced_acc"] for f in result.folds]))
    md = (out / "finetune.md").read_text()
    assert "| balanced_acc |" in md and "±" in md
    for k, history in enumerate(result.histories, start=1):
        saved = pd.read_csv(out / f"history_fold{k}.csv")
        assert {"epoch", "lr", "train_loss", "val_loss", "val_balanced_acc"} <= set(saved.columns)
        assert len(saved) == len(history)
        loaded, meta = load_finetuned(out / f"fold{k}")
        assert meta["best_epoch"] == result.best_epochs[k - 1] and meta["classes"] == [0, 1]
        assert meta["window"]["mode"] == "center" and meta["normalization"]["kind"] == "none"


def _check_best_and_stopping(result, cfg: FinetuneConfig) -> None:
    for best, history in zip(result.best_epochs, result.histories, strict=True):
        losses = [h["val_loss"] for h in history]
        assert best == int(np.argmin(losses)) + 1
        # Training stops exactly `patience` epochs after the last improvement (or at the epoch limit).
        assert len(history) == min(cfg.epochs, best + cfg.patience)


def test_best_epoch_is_the_lowest_validation_loss(classified):
    _check_best_and_stopping(classified[0], FAST)


def test_regression_standardises_labels_with_training_statistics(store, tmp_path):
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 10, "patience": 0})
    result = finetune(_model(), store, "score", config=cfg, out=tmp_path, progress=False)
    assert result.task == "regression" and result.classes is None
    assert result.summary["pearson_r"][0] > 0.7
    assert result.summary["mae"][0] < 2.0  # labels are 50 + 10 u (std 2.9): predictions are on the label scale
    _, meta = load_finetuned(tmp_path / "fold1")
    assert 45 < meta["label_mean"] < 55 and 1.5 < meta["label_std"] < 4.5


def test_same_seed_same_result_and_early_stopping(store):
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 8, "lr": 3e-2, "patience": 1, "drop_path": 0.1})
    a = finetune(_model(), store, "group", config=cfg, progress=False)
    b = finetune(_model(), store, "group", config=cfg, progress=False)
    assert a.folds == b.folds and a.histories == b.histories
    _check_best_and_stopping(a, cfg)
    assert any(len(h) < cfg.epochs for h in a.histories)  # patience 1 at a high LR stops early


def test_the_chosen_encoder_is_the_one_copied():
    """encoder="target" copies the EMA target encoder and "context" the context encoder; in a fresh model the
    two are equal, so they are made to differ here (a swap would fine-tune the other network's weights)."""
    model = _model()
    with torch.no_grad():
        for p in model.target_encoder.parameters():
            p.add_(1.0)
    for encoder, source in (("target", model.target_encoder), ("context", model.encoder)):
        net = build_finetune_model(model, 2, encoder=encoder)
        for name, tensor in source.state_dict().items():
            assert torch.equal(net.state_dict()[name], tensor), (encoder, name)


def test_label_statistics_come_from_the_fitting_subjects_only(store, tmp_path):
    """Regression targets are standardised with the mean and std of the fold's fitting subjects (its training
    subjects less the validation ones carved from them), never with the test subjects' labels."""
    from brainjepa.data.store import RunStore
    from brainjepa.evaluation.labels import read_labels
    from brainjepa.evaluation.metrics import grouped_splits

    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 1, "patience": 0})
    finetune(_model(), store, "score", config=cfg, out=tmp_path, progress=False)
    labels = read_labels(RunStore(store), "score", "regression", folds=cfg.folds)
    outer = grouped_splits(labels.targets, labels.groups, task="regression", folds=cfg.folds, seed=cfg.seed)
    for k, (train, test) in enumerate(outer):
        inner = grouped_splits(labels.targets[train], labels.groups[train], task="regression",
                               folds=round(1 / cfg.val_fraction), seed=cfg.seed + k)
        fit = train[inner[0][0]]
        assert not set(labels.groups[fit]) & set(labels.groups[test])
        _, meta = load_finetuned(tmp_path / f"fold{k + 1}")
        assert meta["label_mean"] == pytest.approx(labels.targets[fit].mean(), rel=1e-12)
        assert meta["label_std"] == pytest.approx(labels.targets[fit].std(), rel=1e-12)
        assert meta["label_mean"] != pytest.approx(labels.targets.mean(), rel=1e-9)  # the test would tell


def test_the_test_metrics_are_those_of_the_best_epochs_weights(store, monkeypatch):
    """After early stopping the best epoch's weights are restored before the test fold is scored: the weights
    `evaluate` sees on the test fold are those it saw on the validation rows in the best epoch, not the last."""
    import brainjepa.evaluation.finetune as ft

    seen = []

    def recording(net, loader, fold, run):
        seen.append({n: t.detach().clone() for n, t in net.state_dict().items()})
        return evaluate(net, loader, fold, run)

    monkeypatch.setattr(ft, "evaluate", recording)
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 5, "lr": 3e-2, "patience": 1})
    result = finetune(_model(), store, "group", config=cfg, progress=False)
    assert any(best < len(h) for best, h in zip(result.best_epochs, result.histories, strict=True))  # stopped late
    start = 0
    for best, history in zip(result.best_epochs, result.histories, strict=True):
        val_calls, test_call = seen[start:start + len(history)], seen[start + len(history)]
        for name, tensor in test_call.items():
            assert torch.equal(tensor, val_calls[best - 1][name]), name
        start += len(history) + 1
    assert start == len(seen)


def test_each_epochs_lr_follows_warmup_then_cosine_over_the_epochs(store):
    """warmup_epochs and epochs count epochs of optimizer steps: the LR reaches the peak at the end of the warmup
    epoch, and at the end of epoch e (0-based) it is min + (peak - min) (1 + cos(pi e / (E - 1))) / 2, whatever the
    steps per epoch (the history's LR is the top layer's, scale 1)."""
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 4, "patience": 0, "warmup_epochs": 1, "min_lr": 1e-4})
    result = finetune(_model(), store, "group", config=cfg, progress=False)
    peak, low, epochs = cfg.peak_lr, cfg.min_lr, cfg.epochs
    expected = [peak] + [low + (peak - low) * 0.5 * (1 + np.cos(np.pi * e / (epochs - 1))) for e in range(1, epochs)]
    for history in result.histories:
        assert [h["lr"] for h in history] == pytest.approx(expected, rel=1e-9)


def test_the_layer_decay_setting_reaches_the_optimizer(store, monkeypatch):
    """finetune.layer_decay sets the optimizer's groups: layer l of the depth-L encoder trains at
    lr * layer_decay ** (L + 1 - l), so the groups carry every scale from 1 down to layer_decay ** (L + 1)."""
    import brainjepa.evaluation.finetune as ft

    optimizers = []

    def recording(net, loader, optimizer, *args, **kwargs):
        optimizers.append(optimizer)
        return train_one_epoch(net, loader, optimizer, *args, **kwargs)

    monkeypatch.setattr(ft, "train_one_epoch", recording)
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 1, "folds": 2, "layer_decay": 0.5})
    finetune(_model(), store, "group", config=cfg, progress=False)
    for optimizer in optimizers:
        scales = sorted({g["lr_scale"] for g in optimizer.param_groups})
        assert scales == pytest.approx(sorted(0.5 ** k for k in range(CFG.depth + 2)))
        top = max(g["lr"] for g in optimizer.param_groups)
        assert all(g["lr"] == pytest.approx(top * g["lr_scale"]) for g in optimizer.param_groups)


# --------------------------------------------------------------------------------------------------- CLI
def test_cli_finetune(store, tmp_path, capsys):
    model_dir = _model().save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    code = main(["finetune", "--model", str(model_dir), "--data", str(store), "--label", "group", "--out", str(out),
                 "--folds", "2", "--val-fraction", "0.25", "--epochs", "1", "--warmup-epochs", "0.5",
                 "--batch-size", "8", "--no-progress", "--no-checkpoints"])
    assert code == 0
    assert "| balanced_acc |" in capsys.readouterr().out
    assert (out / "finetune.csv").is_file() and not (out / "fold1").exists()
    assert (out / "finetune.csv").read_text().splitlines()[1].split(",")[1] == "1"  # best_epoch: an integer

    code = main(["finetune", "--model", str(model_dir), "--data", str(store), "--label", "nope", "--out", str(out)])
    assert code == 2
    assert "no phenotype column 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- errors
def test_bad_labels_are_named(store, tmp_path):
    with pytest.raises(DataError, match=r"label 'site' has a single class \[1\]"):
        finetune(_model(), store, "site", config=FAST, progress=False)
    with pytest.raises(DataError, match="regression label 'name' has non-numeric values .*'n0'"):
        finetune(_model(), store, "name", config=FinetuneConfig(task="regression"), progress=False)
    with pytest.raises(DataError, match=r"no phenotype column 'age' \(available: \['group', 'score'"):
        finetune(_model(), store, "age", progress=False)
    other = BrainJEPA(CFG.replace(num_rois=6), np.zeros((6, 3), np.float32) + np.arange(6)[:, None])
    with pytest.raises(DataError, match="store has 8 ROIs but the model expects 6"):
        finetune(other, store, "group", progress=False)
    with pytest.raises(DataError, match="validation split of fold 1"):
        finetune(_model(), store, "group", config=FinetuneConfig(folds=12, val_fraction=0.05), progress=False)
    with pytest.raises(DataError, match=r"label 'site' is constant \(1 in all \d+ samples\): there is nothing"):
        finetune(_model(), store, "site", config=FinetuneConfig(task="regression", folds=2), progress=False)


def test_non_finite_loss_stops_with_the_fold_and_epoch(store):
    cfg = FinetuneConfig(**{**FAST.__dict__, "lr": 1e6, "warmup_epochs": 0.0, "epochs": 2})
    with pytest.raises(TrainingError, match="fold 1: non-finite training loss in epoch 1"):
        finetune(_model(), store, "score", config=cfg, progress=False)


def test_load_finetuned_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a fine-tuned model folder"):
        load_finetuned(tmp_path)
    save_finetuned(build_finetune_model(_model(), 2), tmp_path, {})
    (tmp_path / "finetune.json").write_text((tmp_path / "finetune.json").read_text().replace('"num_outputs": 2',
                                                                                          '"num_outputs": 3'))
    with pytest.raises(CheckpointError, match="weights do not match their config .*head.weight"):
        load_finetuned(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read fine-tuned model"):
        load_finetuned(tmp_path)


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="finetune.folds must be an integer >= 2, got 1"):
        FinetuneConfig(folds=1)
    with pytest.raises(ConfigError, match=r"finetune\.val_fraction must be a number > 0 and < 0\.5, got 0\.6"):
        FinetuneConfig(val_fraction=0.6)
    with pytest.raises(ConfigError, match=r"finetune\.layer_decay must be a number > 0 and <= 1, got 0"):
        FinetuneConfig(layer_decay=0)
    with pytest.raises(ConfigError, match="finetune.task must be one of"):
        FinetuneConfig(task="ranking")
    with pytest.raises(ConfigError, match=r"finetune\.lr must be a number > 0, got -1\.0"):
        FinetuneConfig(lr=-1.0)
    # a zero blr is refused by its own name before any schedule is built
    with pytest.raises(ConfigError, match=r"^finetune\.blr must be a number > 0, got 0$"):
        FinetuneConfig(blr=0)
    with pytest.raises(ConfigError, match=r"finetune\.target_tr must be a number >= 0\.05 and <= 30, got -2\.0"):
        FinetuneConfig(target_tr=-2.0)


def test_a_schedule_that_would_not_take_effect_is_refused(store):
    """Warmup longer than the run never reaches the requested LR; a final LR above the peak makes the cosine a
    constant; label smoothing does nothing to a regression loss. Each is refused by name, not run."""
    with pytest.raises(ConfigError, match=r"finetune\.warmup_epochs \(10\) exceeds finetune\.epochs \(2\)"):
        FinetuneConfig(epochs=2, warmup_epochs=10)
    FinetuneConfig(epochs=2, warmup_epochs=2)  # reached at the last epoch
    with pytest.raises(ConfigError, match=r"finetune\.min_lr \(0\.01\) exceeds the peak learning rate "
                       r"\(finetune\.lr = 0\.0001\)"):
        FinetuneConfig(lr=1e-4, min_lr=1e-2)
    with pytest.raises(ConfigError, match=r"\(finetune\.blr x finetune\.batch_size / 256 = 6\.25e-05\)"):
        FinetuneConfig(min_lr=1e-4)  # default blr 1e-3 x 16 / 256
    with pytest.raises(ConfigError, match="label_smoothing .* applies to classification only, and this task is "
                       "regression"):
        FinetuneConfig(task="regression", label_smoothing=0.1)
    # task "auto" reads regression from the labels: refused before any training
    with pytest.raises(ConfigError, match="this task is regression"):
        finetune(_model(), store, "score", config=FinetuneConfig(label_smoothing=0.1, folds=2), progress=False)


def test_cli_names_the_schedule_flags(store, tmp_path, capsys):
    assert main(["finetune", "--data", str(store), "--label", "group", "--model", "x", "--out",
                 str(tmp_path / "ft"), "--epochs", "2", "--warmup-epochs", "5"]) == 2
    err = capsys.readouterr().err
    assert "--warmup-epochs (5) exceeds --epochs (2)" in err and "Traceback" not in err


def test_every_cli_flag_reaches_the_finetune_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `brainjepa finetune` flag must reach the FinetuneConfig field it documents: a flag lost on the way
    would train silently with the default (no existing run of the CLI sets these to a value the results show)."""
    given = {"label_smoothing": 0.2, "min_lr": 2e-6, "weight_decay": 0.3, "layer_decay": 0.6, "num_workers": 2,
             "seed": 11, "normalization": "sample_zscore", "patience": 9, "drop_path": 0.05}
    defaults = FinetuneConfig()
    assert all(getattr(defaults, name) != value for name, value in given.items())  # each flag shows if it is lost
    argv = ["finetune", "--model", "m", "--data", "d", "--label", "group", "--out", str(tmp_path / "out"),
            "--task", "classification", "--grad-checkpointing", "--device", "cpu", "--no-progress"]
    for name, value in given.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    seen = cli_call(monkeypatch, "brainjepa.cli.finetune.finetune", argv)
    config = seen["config"]
    assert {name: getattr(config, name) for name in given} == given
    assert config.grad_checkpointing is True and config.task == "classification"
    assert seen["save_checkpoints"] is True and seen["progress"] is False
