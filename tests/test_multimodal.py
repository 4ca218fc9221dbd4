"""Multimodal alignment: projector shape, InfoNCE training, held-out retrieval, save/load, CLI and bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import brainjepa
from brainjepa.cli import main
from brainjepa.errors import CheckpointError, ConfigError, DataError
from brainjepa.evaluation.multimodal import (
    AlignConfig,
    AlignedProjectors,
    BrainJEPAProjector,
    align,
    load_projectors,
    retrieval_null,
    retrieval_recall,
)

N, D_BRAIN, D_OTHER = 300, 48, 24
SMALL = AlignConfig(hidden_dim=128, out_dim=64, epochs=12, batch_size=64, test_fraction=0.2, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Brain rows and a noisy linear map of them (the 'other modality' of the same subjects)."""
    rng = np.random.default_rng(seed)
    brain = rng.standard_normal((N, D_BRAIN)).astype(np.float32)
    mixing = rng.standard_normal((D_BRAIN, D_OTHER)) / np.sqrt(D_BRAIN)
    other = brain @ mixing + 0.3 * rng.standard_normal((N, D_OTHER))
    return brain, other.astype(np.float32)


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    out = tmp_path_factory.mktemp("align") / "paired"
    brain, other = _pair()
    return align(brain, other, config=SMALL, out=out, progress=False), out, brain, other


def test_projector_is_the_seed_design():
    proj = BrainJEPAProjector(48)
    kinds = [type(m) for m in proj.net]
    assert kinds == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear, nn.LayerNorm]
    assert (proj.net[0].in_features, proj.net[0].out_features, proj.net[3].out_features) == (48, 1024, 512)
    assert proj(torch.randn(5, 48)).shape == (5, 512)
    assert BrainJEPAProjector(48, hidden_dim=32, out_dim=16)(torch.randn(3, 48)).shape == (3, 16)
    assert brainjepa.BrainJEPAProjector is BrainJEPAProjector
    with pytest.raises(ConfigError, match="projector.hidden_dim must be an integer >= 1, got 0"):
        BrainJEPAProjector(48, hidden_dim=0)
    with pytest.raises(ConfigError, match=r"projector\.dropout must be a number >= 0 and < 1, got 1\.5"):
        BrainJEPAProjector(48, dropout=1.5)


def test_retrieval_recall_counts_ranks_and_breaks_ties_at_random():
    a = torch.eye(4)
    b = torch.eye(4)[[0, 2, 1, 3]]  # rows 1 and 2 point at each other's partner
    # queries 1 and 2: one better candidate, their partner tied with two others -> top 2 with probability 1/3
    assert retrieval_recall(a, b, ks=(1, 2, 4)) == pytest.approx({1: 0.5, 2: (2 + 2 / 3) / 4, 4: 1.0})
    # identical candidates (a collapsed projector) score chance, k / N, not a perfect recall
    assert retrieval_recall(torch.ones(10, 4), torch.ones(10, 4)) == pytest.approx({1: 0.1, 5: 0.5, 10: 1.0})


def test_the_retrieval_null_is_measured_on_the_rows():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 8, generator=g)
    b = a + 0.1 * torch.randn(40, 8, generator=g)
    null = retrieval_null(a, b, ks=(1, 5), n=400, seed=3)
    assert null.shape == (400, 2) and np.allclose(null.mean(0), [1 / 40, 5 / 40], atol=0.01)
    assert len(np.unique(null[:, 0])) > 2  # shuffled pairings, each its own
    assert np.array_equal(null, retrieval_null(a, b, ks=(1, 5), n=400, seed=3))  # the seed fixes them
    # one vector per subject on the other side (3 identical rows each): a partner tied with its two twins counts a
    # third, so the null stays at chance (counted as hits, ties put it at 3 / 60)
    other = torch.randn(20, 8, generator=g).repeat_interleave(3, 0)
    brain = other + 0.05 * torch.randn(60, 8, generator=g)
    assert abs(retrieval_null(brain, other, ks=(1,), n=400).mean() - 1 / 60) < 0.005


def test_paired_rows_are_retrieved_far_above_chance(paired):
    result, _, _, _ = paired
    m = result.metrics
    assert m["n_test"] == 60 and m["n_train"] == 240
    assert m["chance"] == {1: 1 / 60, 5: 5 / 60, 10: 10 / 60}
    for direction in ("brain_to_other", "other_to_brain"):
        assert m["recall"][direction][1] > 0.5  # chance is 0.017
        assert m["recall"][direction][10] > 0.9
        null = m["null"][direction][1]
        assert null["mean"] < 0.05 and null["p"] == pytest.approx(1 / 1001)
    assert result.history[-1] < result.history[0]
    assert set(result.train_rows).isdisjoint(result.test_rows)


def test_unpaired_rows_stay_near_chance():
    brain, other = _pair()
    shuffled = other[np.random.default_rng(1).permutation(N)]
    m = align(brain, shuffled, config=SMALL, progress=False).metrics
    for direction in ("brain_to_other", "other_to_brain"):
        assert m["recall"][direction][1] < 0.1
        assert m["recall"][direction][10] < m["chance"][10] + 0.15
        assert m["null"][direction][10]["p"] > 0.01


def test_save_and_load_give_the_same_projections(paired):
    result, out, brain, other = paired
    loaded = load_projectors(out)
    x_b, x_o = torch.from_numpy(brain[:7]), torch.from_numpy(other[:7])
    with torch.no_grad():
        assert torch.equal(loaded.encode_brain(x_b), result.projectors.eval().encode_brain(x_b))
        assert torch.equal(loaded.encode_other(x_o), result.projectors.encode_other(x_o))
    assert loaded.config == SMALL
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["recall"]["brain_to_other"]["1"] == pytest.approx(result.metrics["recall"]["brain_to_other"][1])
    # Training-row statistics travel with the projectors, so raw embeddings go in.
    assert torch.allclose(loaded.brain_mean, torch.from_numpy(brain[result.train_rows].mean(0)), atol=1e-5)


def test_temperature_fixed_or_learned():
    brain, other = _pair()
    cfg = AlignConfig(hidden_dim=32, out_dim=16, epochs=3, batch_size=64, temperature=0.2)
    fixed = align(brain, other, config=AlignConfig(**{**cfg.__dict__, "learn_temperature": False}), progress=False)
    learned = align(brain, other, config=cfg, progress=False)
    assert fixed.metrics["temperature"] == pytest.approx(0.2)
    assert "logit_scale" not in dict(fixed.projectors.named_parameters())
    assert learned.metrics["temperature"] != pytest.approx(0.2, abs=1e-4)


def test_weight_decay_spares_the_temperature():
    """One decay rule (models.optim.param_groups): lr * weight_decay = 1 wipes every decayed tensor each step, yet
    the learned temperature (a 0-d parameter, like biases and norm gains) keeps its value up to Adam's small steps."""
    brain, other = _pair()
    cfg = AlignConfig(hidden_dim=32, out_dim=16, epochs=1, batch_size=64, temperature=0.2, lr=1e-3, weight_decay=1e3)
    result = align(brain, other, config=cfg, progress=False)
    assert result.metrics["temperature"] == pytest.approx(0.2, rel=0.05)
    assert float(result.projectors.brain.net[0].weight.detach().abs().max()) < 0.05  # the matrices were decayed


def test_same_seed_same_result_and_subjects_stay_together():
    brain, other = _pair()
    subjects = np.repeat(np.arange(N // 3), 3)  # three rows per subject
    cfg = AlignConfig(hidden_dim=32, out_dim=16, epochs=2, batch_size=32)
    a = align(brain, other, subjects=subjects, config=cfg, progress=False)
    b = align(brain, other, subjects=subjects, config=cfg, progress=False)
    assert a.metrics == b.metrics and a.history == b.history
    assert set(subjects[a.train_rows]).isdisjoint(subjects[a.test_rows])
    assert len(a.test_rows) == 3 * round(0.2 * N / 3)


def test_bad_inputs_are_named():
    brain, other = _pair()
    with pytest.raises(DataError, match="brain has 300 rows but other has 299"):
        align(brain, other[:-1], progress=False)
    bad = other.copy()
    bad[7, 1] = np.nan
    with pytest.raises(DataError, match="other embeddings contain NaN or Inf .first in row 7"):
        align(brain, bad, progress=False)
    with pytest.raises(DataError, match=r"brain embeddings must be a numeric \[N, D\] array"):
        align(brain[:, 0], other, progress=False)
    with pytest.raises(DataError, match="3 subjects are too few"):
        align(brain[:3], other[:3], progress=False)
    with pytest.raises(DataError, match="299 subject ids for 300 paired rows"):
        align(brain, other, subjects=np.arange(299), progress=False)
    with pytest.raises(ConfigError, match="align.batch_size must be an integer >= 2, got 1"):
        AlignConfig(batch_size=1)
    with pytest.raises(ConfigError, match=r"align\.temperature must be a number > 0, got 0\.0"):
        AlignConfig(temperature=0.0)


def test_load_projectors_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a projector folder"):
        load_projectors(tmp_path)


@pytest.mark.parametrize(("where", "key", "value"), [("config", "learn_temperature", "false"),
                                                     ("config", "out_dim", "16"), ("", "brain_dim", "8"),
                                                     ("", "other_dim", 0)])
def test_load_projectors_refuses_a_projectors_json_value_of_the_wrong_type(tmp_path, where, key, value):
    """projectors.json is untyped: learn_temperature "false" would read as True and a string dim fail deep in
    torch. Each is refused in one line naming the folder and the key."""
    out = AlignedProjectors(8, 6, AlignConfig(hidden_dim=16, out_dim=4)).save(tmp_path / "p")
    record = json.loads((out / "projectors.json").read_text())
    (record[where] if where else record)[key] = value
    (out / "projectors.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(out))}: .*{key}"):
        load_projectors(out)


def test_cli_align(tmp_path, capsys):
    brain, other = _pair()
    np.save(tmp_path / "brain.npy", brain)
    np.save(tmp_path / "other.npy", other)
    out = tmp_path / "out"
    code = main(["align", "--brain", str(tmp_path / "brain.npy"), "--other", str(tmp_path / "other.npy"),
                 "--out", str(out), "--epochs", "2", "--hidden-dim", "32", "--out-dim", "16", "--no-progress",
                 "--fixed-temperature"])
    assert code == 0
    text = capsys.readouterr().out
    assert "| 1 |" in text and "chance" in text
    assert {p.name for p in out.iterdir()} == {"projectors.safetensors", "projectors.json", "metrics.json",
                                               "retrieval.png"}
    assert load_projectors(out).config.learn_temperature is False

    np.save(tmp_path / "short.npy", other[:10])
    code = main(["align", "--brain", str(tmp_path / "brain.npy"), "--other", str(tmp_path / "short.npy"),
                 "--out", str(out)])
    assert code == 2
    assert "brain has 300 rows but other has 10" in capsys.readouterr().err

    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    code = main(["align", "--brain", str(tmp_path / "objects.npy"), "--other", str(tmp_path / "other.npy"),
                 "--out", str(out)])
    assert code == 2
    assert "--brain: " in (err := capsys.readouterr().err) and "objects.npy: unreadable as a numeric .npy matrix (it " \
        "holds pickled Python objects, which are never unpickled)" in err
    np.savetxt(tmp_path / "other.csv", other, delimiter=",")  # a headerless CSV is read as the .npy is
    assert main(["align", "--brain", str(tmp_path / "brain.npy"), "--other", str(tmp_path / "other.csv"), "--out",
                 str(tmp_path / "csv"), "--epochs", "1", "--hidden-dim", "8", "--out-dim", "4", "--no-progress"]) == 0
    for flag, given in (("--other", "nosuch.npy"), ("--subjects", "nosuch.txt")):
        args = {"--brain": str(tmp_path / "brain.npy"), "--other": str(tmp_path / "other.npy"), flag: given}
        assert main(["align", *[a for pair in args.items() for a in pair], "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"brainjepa align: error: {flag}: nosuch") and "Traceback" not in err


def test_loss_is_the_symmetric_infonce_with_clips_temperature_cap() -> None:
    """The loss is the mean of the brain->other and other->brain cross-entropies of the scaled cosine logits, and
    the scale is capped at 1/T = 100 however small the temperature (CLIP's cap)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = AlignedProjectors(6, 4, AlignConfig(hidden_dim=8, out_dim=5, dropout=0.0, temperature=0.001)).eval()
    brain, other = torch.randn(5, 6), torch.randn(5, 4)
    with torch.no_grad():
        logits = 100.0 * model.encode_brain(brain) @ model.encode_other(other).T
        target = torch.arange(5)
        want = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        assert float(model.loss(brain, other)) == pytest.approx(float(want), rel=1e-5)
        assert float(F.cross_entropy(logits, target)) != pytest.approx(float(want), rel=1e-3)  # not symmetric
    assert model.temperature == pytest.approx(0.01)


def test_other_to_brain_recall_queries_with_the_other_side(paired: tuple) -> None:
    """metrics["recall"]["other_to_brain"] ranks held-out brain rows for each held-out other row (not the brain->other
    recall twice), and final_loss is the last epoch's."""
    result, _, brain, other = paired
    rows = result.test_rows
    with torch.no_grad():
        zb = result.projectors.encode_brain(torch.from_numpy(brain[rows]))
        zo = result.projectors.encode_other(torch.from_numpy(other[rows]))
    assert result.metrics["recall"]["other_to_brain"] == pytest.approx(retrieval_recall(zo, zb))
    assert result.metrics["recall"]["brain_to_other"] == pytest.approx(retrieval_recall(zb, zo))
    assert retrieval_recall(zo, zb) != retrieval_recall(zb, zo)  # the directions differ on these rows
    assert result.metrics["final_loss"] == result.history[-1]


def test_a_small_split_follows_its_seed_and_its_chance_and_null_stop_at_one() -> None:
    """The held-out subjects are drawn with the config's seed; with fewer test rows than k, recall@k is 1 for every
    pairing, so chance is 1 (not k / N) and the null's p is 1 (ties count against the recall)."""
    brain, other = _pair()
    cfg = AlignConfig(hidden_dim=8, out_dim=4, epochs=1, batch_size=16, test_fraction=0.2)
    splits = [align(brain[:20], other[:20], config=AlignConfig(**{**cfg.__dict__, "seed": s}), progress=False)
              for s in (0, 1)]
    assert not np.array_equal(splits[0].test_rows, splits[1].test_rows)
    m = splits[0].metrics
    assert m["n_test"] == 4 and m["chance"] == {1: 0.25, 5: 1.0, 10: 1.0}
    for side in ("brain_to_other", "other_to_brain"):
        assert m["recall"][side][5] == 1.0 and m["null"][side][5]["p"] == 1.0 and m["null"][side][10]["p"] == 1.0


def test_load_projectors_refuses_weights_that_lack_a_tensor(paired: tuple, tmp_path: Path) -> None:
    """A projector file missing a tensor (here the brain-side input mean) would load with its initial value and
    encode with the wrong standardisation: refused, naming the folder."""
    import shutil

    from safetensors.torch import load_file, save_file

    _, out, _, _ = paired
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    state = load_file(str(broken / "projectors.safetensors"))
    del state["brain_mean"]
    save_file(state, str(broken / "projectors.safetensors"))
    with pytest.raises(CheckpointError, match="weights do not match their config"):
        load_projectors(broken)


def test_cli_align_passes_every_setting_and_the_subjects(tmp_path: Path) -> None:
    """Each flag reaches its AlignConfig field (as stored in projectors.json) and --subjects keeps a subject's rows
    on one side: the CLI's metrics are those of `align` with the same settings and subjects."""
    brain, other = _pair()
    np.save(tmp_path / "brain.npy", brain)
    np.save(tmp_path / "other.npy", other)
    subjects = np.array([f"s{i // 20}" if i < 200 else f"u{i}" for i in range(N)])  # 10 subjects of 20 rows, 100 of 1
    (tmp_path / "subjects.txt").write_text("\n".join(subjects) + "\n")
    cfg = AlignConfig(hidden_dim=24, out_dim=8, dropout=0.2, temperature=0.1, learn_temperature=False, epochs=2,
                      batch_size=32, lr=2e-3, weight_decay=0.05, test_fraction=0.25, seed=3)
    out = tmp_path / "out"
    assert main(["align", "--brain", str(tmp_path / "brain.npy"), "--other", str(tmp_path / "other.npy"), "--out",
                 str(out), "--subjects", str(tmp_path / "subjects.txt"), "--hidden-dim", "24", "--out-dim", "8",
                 "--dropout", "0.2", "--temperature", "0.1", "--fixed-temperature", "--epochs", "2", "--batch-size",
                 "32", "--lr", "2e-3", "--weight-decay", "0.05", "--test-fraction", "0.25", "--seed", "3",
                 "--no-progress"]) == 0
    assert load_projectors(out).config == cfg
    api = align(brain, other, subjects=subjects, config=cfg, progress=False).metrics
    cli = json.loads((out / "metrics.json").read_text())
    assert (cli["n_test"], cli["n_train"]) == (api["n_test"], api["n_train"])
    assert cli["final_loss"] == pytest.approx(api["final_loss"])
    assert api["n_test"] != round(0.25 * N)  # 19 k + 28 rows for k of the 28 test subjects among the ten: never 75


def test_cli_align_keeps_a_subjects_rows_together_by_the_embed_index_beside_brain(tmp_path: Path, capsys) -> None:
    """`brainjepa embed` writes ``brain.npy.index.csv`` (subject, run, ...) beside ``brain.npy``. Its subjects keep
    each subject's runs on one side of the split, as --subjects does: split by row, a held-out subject's other runs
    would be trained on, and its recall would not be held out. A sidecar of another length is refused by name."""
    brain, other = _pair()
    np.save(tmp_path / "brain.npy", brain)
    np.save(tmp_path / "other.npy", other)
    subjects = np.array([f"s{i // 20}" if i < 200 else f"u{i}" for i in range(N)])  # 10 subjects of 20 runs, 100 of 1
    index = tmp_path / "brain.npy.index.csv"
    index.write_text("subject,run,source,tr\n" + "".join(f"{s},{i + 1},x.npy,\n" for i, s in enumerate(subjects)))
    out = tmp_path / "out"
    assert main(["align", "--brain", str(tmp_path / "brain.npy"), "--other", str(tmp_path / "other.npy"), "--out",
                 str(out), "--epochs", "1", "--hidden-dim", "8", "--out-dim", "4", "--no-progress"]) == 0
    cfg = AlignConfig(hidden_dim=8, out_dim=4, epochs=1)
    assert load_projectors(out).config == cfg
    api = align(brain, other, subjects=subjects, config=cfg, progress=False).metrics
    cli = json.loads((out / "metrics.json").read_text())
    assert (cli["n_test"], cli["n_train"]) == (api["n_test"], api["n_train"]) and cli["n_test"] != round(0.2 * N)
    capsys.readouterr()
    index.write_text("subject,run\ns0,1\n")
    assert main(["align", "--brain", str(tmp_path / "brain.npy"), "--other", str(tmp_path / "other.npy"), "--out",
                 str(out), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "brain.npy.index.csv has 1 subject ids for 300 rows" in err and "--subjects" in err


def test_the_config_seed_alone_fixes_the_result_whatever_the_global_rng() -> None:
    """The projector init and dropout draw from the config's seed, not from the caller's global torch RNG: two
    calls after different `torch.manual_seed`s give the same projectors, and the global RNG is left as it was."""
    brain, other = _pair()
    cfg = AlignConfig(hidden_dim=16, out_dim=8, epochs=1, batch_size=64)
    runs = []
    for seed in (1, 2):
        untouched = torch.rand(3, generator=torch.Generator().manual_seed(seed))  # the global RNG's next draw
        torch.manual_seed(seed)
        runs.append(align(brain[:60], other[:60], config=cfg, progress=False))
        assert torch.equal(torch.rand(3), untouched)
    assert runs[0].history == runs[1].history
    assert torch.equal(runs[0].projectors.brain.net[0].weight, runs[1].projectors.brain.net[0].weight)


def test_load_projectors_refuses_an_unknown_config_key_naming_it(tmp_path):
    """A projectors.json key no AlignConfig field reads would be ignored: it is refused by name instead."""
    out = AlignedProjectors(8, 6, AlignConfig(hidden_dim=16, out_dim=4)).save(tmp_path / "p")
    record = json.loads((out / "projectors.json").read_text())
    record["config"]["temprature"] = 0.1
    (out / "projectors.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"unknown align config key\(s\): align.temprature"):
        load_projectors(out)


def test_the_null_summary_is_that_of_the_shuffled_pairings_of_the_held_out_rows(paired: tuple) -> None:
    """metrics["null"] summarises `retrieval_null` of the held-out rows (the config's seed): its mean, its 95th
    percentile as "high" (not the median) and the p of the observed recall, ties counted against it."""
    result, _, brain, other = paired
    rows = result.test_rows
    with torch.no_grad():
        zb = result.projectors.encode_brain(torch.from_numpy(brain[rows]))
        zo = result.projectors.encode_other(torch.from_numpy(other[rows]))
    null = retrieval_null(zb, zo, seed=SMALL.seed)
    for i, k in enumerate((1, 5, 10)):
        got = result.metrics["null"]["brain_to_other"][k]
        assert got["mean"] == pytest.approx(null[:, i].mean())
        assert got["high"] == pytest.approx(np.quantile(null[:, i], 0.95))
        observed = result.metrics["recall"]["brain_to_other"][k]
        assert got["p"] == pytest.approx((1 + (null[:, i] >= observed).sum()) / (1 + len(null)))


def test_the_loss_history_is_the_mean_over_batches_and_a_last_row_alone_is_dropped() -> None:
    """With a huge fixed temperature every logit is ~0, so each batch of B rows has an InfoNCE loss of log(B). 160
    training rows in batches of 53 leave a last batch of one row, which has no negative: it is dropped, so every
    epoch's loss is log(53) (kept, its loss of 0 would pull the mean down; summed, the epoch would read 3 log 53)."""
    brain, other = _pair()
    cfg = AlignConfig(hidden_dim=8, out_dim=4, epochs=2, batch_size=53, temperature=1e6, learn_temperature=False)
    result = align(brain[:200], other[:200], config=cfg, progress=False)
    assert result.metrics["n_train"] == 160
    assert result.history == pytest.approx([np.log(53)] * 2, rel=1e-4)


def test_inputs_are_standardised_per_column_with_training_row_statistics() -> None:
    """Each side is standardised column by column before its projector: rescaling and shifting a column changes
    nothing in training, and a constant column (a dead embedding dimension) becomes 0, not NaN."""
    brain, other = _pair()
    cfg = AlignConfig(hidden_dim=16, out_dim=8, epochs=2, batch_size=64)
    base = align(brain[:100], other[:100], config=cfg, progress=False)
    scale = np.linspace(0.1, 10.0, D_BRAIN, dtype=np.float32)
    moved = align(brain[:100] * scale + 3.0, other[:100], config=cfg, progress=False)
    assert moved.history == pytest.approx(base.history, rel=1e-4)
    dead = brain[:100].copy()
    dead[:, 0] = 0.0
    result = align(dead, other[:100], config=cfg, progress=False)
    assert np.isfinite(result.history).all() and result.metrics["recall"]["brain_to_other"][10] > 0.5


def test_dropout_is_on_while_training() -> None:
    """The projectors train in train mode, so `dropout` is applied (and seeded): the same seed with dropout 0.5
    gives another loss curve than with dropout 0 (left in eval mode, the setting would be accepted and ignored)."""
    brain, other = _pair()
    histories = [align(brain[:100], other[:100], config=AlignConfig(hidden_dim=16, out_dim=8, epochs=1, batch_size=40,
                                                                    dropout=p), progress=False).history
                 for p in (0.0, 0.5)]
    assert histories[0] != pytest.approx(histories[1], rel=1e-3)


def test_retrieval_is_by_cosine_similarity() -> None:
    """Recall and its null rank candidates by cosine similarity: rescaling candidate rows (their norms) changes
    nothing, as a dot product would."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 6, generator=g)
    b = a + 0.8 * torch.randn(30, 6, generator=g)
    scaled = b * torch.linspace(0.1, 10.0, 30)[:, None]
    assert retrieval_recall(a, scaled) == pytest.approx(retrieval_recall(a, b))
    assert retrieval_recall(a, b)[1] < 1.0  # not every partner is first: the ranks can move
    np.testing.assert_allclose(retrieval_null(a, scaled, n=100), retrieval_null(a, b, n=100))


def test_an_unwritable_out_is_refused_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`out` is checked before any work: under a file it is refused at once, not after the training it would lose."""
    import brainjepa.evaluation.multimodal as multimodal
    from brainjepa.errors import OutputError

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(multimodal, "AlignedProjectors", no_training)
    (tmp_path / "file").write_text("x")
    brain, other = _pair()
    with pytest.raises(OutputError, match="is a file"):
        align(brain, other, out=tmp_path / "file" / "out", progress=False)
