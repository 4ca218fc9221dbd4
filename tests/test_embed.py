"""Embeddings: windows, normalisation, encoder choice, pooling, masked views, batching, files and CLI."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from brainjepa import BrainJEPA, embed
from brainjepa.cli import main
from brainjepa.data import RunStore, WindowSpec, make_normalizer, take_window, take_windows
from brainjepa.data.normalize import SampleZScore
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.embed import EmbedOptions, embed_store, load_embeddings, save_embeddings
from brainjepa.models.encoder import POOLINGS, token_fc
from conftest import tiny_model

R, T, F = 16, 64, 32  # store ROIs and frames; model window frames


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> RunStore:
    from brainjepa.data.simulate import SimulationConfig, simulate_store

    path = tmp_path_factory.mktemp("store") / "s"
    return simulate_store(path, SimulationConfig(subjects=10, rois=R, frames=T, seed=1), progress=False)


def _model(metadata: dict | None = None, rois: int = R) -> BrainJEPA:
    model = tiny_model(rois, F, gradient_dim=4, metadata=metadata).eval()
    # Make the target encoder differ from the context encoder, as after training.
    with torch.no_grad():
        for p in model.target_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def model(store) -> BrainJEPA:
    robust = make_normalizer("robust", store=store, progress=False)
    return _model({"normalization": robust.to_dict()})


def _manual(net, windows: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return net(torch.from_numpy(windows)).mean(1)


def test_pooling_shapes_agree(model, store):
    mean = embed_store(model, store, pooling="mean", progress=False).embeddings
    roi = embed_store(model, store, pooling="roi", progress=False).embeddings
    tokens = embed_store(model, store, pooling="tokens", progress=False).embeddings
    P = F // 8
    assert mean.shape == (10, 32) and roi.shape == (10, R, 32) and tokens.shape == (10, R * P, 32)
    assert mean.dtype == torch.float32 and mean.device.type == "cpu"
    torch.testing.assert_close(roi, tokens.view(10, R, P, 32).mean(2))
    torch.testing.assert_close(mean, roi.mean(1), atol=1e-6, rtol=1e-5)


def test_default_is_target_encoder_on_model_normalised_centre_window(model, store):
    norm = make_normalizer("robust", store=store, progress=False)
    spec = WindowSpec(frames=F, sampling_rate=1, mode="center")
    wins = np.stack([norm(take_window(store.run(i), spec)) for i in range(len(store))])
    got = embed_store(model, store, progress=False).embeddings
    torch.testing.assert_close(got, _manual(model.target_encoder, wins), atol=1e-5, rtol=1e-5)
    ctx = embed_store(model, store, options=EmbedOptions(encoder="context"), progress=False).embeddings
    torch.testing.assert_close(ctx, _manual(model.encoder, wins), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ctx, got, atol=1e-3)


def test_no_normalisation_record_means_sample_zscore(store):
    bare = _model()
    x = np.stack([store.run(i) for i in range(4)])
    spec = WindowSpec(frames=F, sampling_rate=1, mode="center")
    wins = np.stack([SampleZScore()(take_window(s, spec)) for s in x])
    torch.testing.assert_close(embed(bare, x), _manual(bare.target_encoder, wins), atol=1e-5, rtol=1e-5)
    raw = embed(bare, x, options=EmbedOptions(normalization="none"))
    assert not torch.allclose(raw, embed(bare, x), atol=1e-3)


def test_k_windows_average_and_sampling_rate(model, store):
    x = np.stack([store.run(i) for i in range(3)])
    norm = make_normalizer("robust", store=store, progress=False)
    spec = WindowSpec(frames=F, sampling_rate=2, mode="center")
    per_window = [_manual(model.target_encoder, np.stack([norm(w) for w in take_windows(s, spec, 3)])) for s in x]
    want = torch.stack([e.mean(0) for e in per_window])
    got = embed(model, x, options=EmbedOptions(windows=3, sampling_rate=2))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_batching_does_not_change_results(model, store):
    x = np.stack([store.run(i) for i in range(7)])
    one = embed(model, x, options=EmbedOptions(batch_size=1, windows=2))
    many = embed(model, x, options=EmbedOptions(batch_size=64, windows=2))
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-5)


def test_masked_views_are_seeded_and_batch_invariant(model, store):
    x = np.stack([store.run(i) for i in range(5)])
    a = embed(model, x, options=EmbedOptions(masked_views=3, batch_size=2, encoder="context"))
    b = embed(model, x, options=EmbedOptions(masked_views=3, batch_size=50, encoder="context"))
    c = embed(model, x, options=EmbedOptions(masked_views=3, seed=1, encoder="context"))
    full = embed(model, x, options=EmbedOptions(encoder="context"))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, c, atol=1e-4) and not torch.allclose(a, full, atol=1e-4)
    # keep = 1 keeps every token: identical to the full input.
    torch.testing.assert_close(embed(model, x, options=EmbedOptions(masked_views=2, mask_keep=1.0)),
                               embed(model, x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="masked views average pooled embeddings; use pooling 'mean', 'roi' or "
                       "'tokenfc'"):
        embed(model, x, pooling="tokens", options=EmbedOptions(masked_views=2))


def test_tokenfc_is_the_token_fc_of_the_embedded_tokens(model, store):
    tokens = embed_store(model, store, pooling="tokens", progress=False).embeddings
    fc = embed_store(model, store, pooling="tokenfc", progress=False).embeddings
    assert fc.shape == (10, R * (R - 1) // 2) and fc.dtype == torch.float32
    torch.testing.assert_close(fc, token_fc(tokens, R), atol=1e-5, rtol=1e-5)
    x = np.stack([store.run(i) for i in range(3)])
    two = embed(model, x, pooling="tokenfc", options=EmbedOptions(windows=2))  # windows average the z's
    one = [embed(model, x[:, :, start:start + F], pooling="tokenfc") for start in (0, T - F)]
    torch.testing.assert_close(two, (one[0] + one[1]) / 2, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("masked_views", [0, 2])
def test_batch_size_below_the_windows_of_a_run_is_honoured(model, store, masked_views):
    """--batch-size is windows per forward pass, also when one run has more windows than that."""
    net = copy.deepcopy(model)
    seen: list[int] = []
    net.target_encoder.blocks[0].register_forward_hook(lambda mod, args, out: seen.append(len(out)))
    runs = [store.run(i) for i in range(3)]
    common = {"windows": 3, "masked_views": masked_views, "precision": "fp32"}
    if masked_views:
        common["mask_keep"] = 0.5
    small = embed(net, runs, pooling="mean", options=EmbedOptions(batch_size=2, **common))
    health_pass = 3 if masked_views else 0  # masked views: the health check's own pass, one window per run
    assert seen and max(seen) == 2 and sum(seen) == 3 * 3 * max(masked_views, 1) + health_pass
    seen.clear()
    whole = embed(net, runs, pooling="mean", options=EmbedOptions(batch_size=9, **common))
    assert max(seen) == 9
    torch.testing.assert_close(small, whole, atol=1e-5, rtol=1e-5)


def test_tokenfc_masked_views_average_the_fisher_z(model, store):
    from brainjepa.evaluation.embed import _encode, _view_indices

    net, P = model.target_encoder, F // 8
    x = torch.from_numpy(np.stack([SampleZScore()(store.run(i)[:, :F]) for i in range(3)]))
    options = EmbedOptions(masked_views=3, mask_keep=0.5, seed=2)
    idx = _view_indices(0, 3, options, R, P)
    assert idx.shape == (3, 3, R * 2)  # views x samples x (2 of 4 patches of every ROI)
    with torch.no_grad():
        want = sum(net.pool(net.forward_features(x, idx[v]), "tokenfc") for v in range(3)) / 3
    # passes of at most 2 windows: the views' token indices stay with their windows
    torch.testing.assert_close(_encode(net, x, "tokenfc", options, 0, 3, 2), want, atol=1e-6, rtol=1e-6)
    runs = [store.run(i) for i in range(3)]
    full = embed(model, runs, pooling="tokenfc")
    same = embed(model, runs, pooling="tokenfc", options=EmbedOptions(masked_views=2, mask_keep=1.0))
    torch.testing.assert_close(same, full, atol=1e-4, rtol=1e-4)  # keep = 1: every token, the full input
    viewed = embed(model, runs, pooling="tokenfc", options=EmbedOptions(masked_views=2, mask_keep=0.5))
    assert viewed.shape == full.shape and not torch.allclose(viewed, full, atol=1e-3)
    with pytest.raises(ConfigError, match=r"tokenfc pooling correlates .* mask_keep 0.25 keeps 1 of 4 time patches"):
        embed(model, runs, pooling="tokenfc", options=EmbedOptions(masked_views=2, mask_keep=0.25))


def test_cli_tokenfc(model, store, tmp_path, capsys):
    folder = model.save_pretrained(tmp_path / "m")
    base = ["embed", "--model", str(folder), "--data", str(store.path), "--no-progress", "--pooling", "tokenfc"]
    out = tmp_path / "fc.npy"
    assert main(base + ["--out", str(out)]) == 0
    emb = np.load(out)
    assert emb.shape == (10, R * (R - 1) // 2)
    np.testing.assert_allclose(emb, embed_store(model, store, pooling="tokenfc", progress=False).embeddings.numpy(),
                               atol=1e-5)
    pq = tmp_path / "fc.parquet"  # one vector per run: parquet holds it as emb_0 .. emb_{R(R-1)/2 - 1}
    assert main(base + ["--out", str(pq)]) == 0
    np.testing.assert_allclose(load_embeddings(pq).embeddings.numpy(), emb, atol=1e-6)
    with pytest.raises(SystemExit):  # the choices are the encoder's POOLINGS
        main(base[:-2] + ["--pooling", "max", "--out", str(out)])
    assert "invalid choice: 'max' (choose from " + ", ".join(map(repr, POOLINGS)) in capsys.readouterr().err


def test_inputs_of_any_length_and_bf16(model, store):
    runs = [store.run(0), store.run(1)[:, :40]]
    out = embed(model, runs)
    torch.testing.assert_close(out[1], embed(model, runs[1][None])[0], atol=1e-5, rtol=1e-5)
    bf16 = embed(model, runs, options=EmbedOptions(precision="bf16"))
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, out, atol=0.05, rtol=0.05)


def test_bad_inputs_name_the_sample(model, store):
    x = np.stack([store.run(i) for i in range(2)])
    msg = rf"sample 1: series has shape \[{R + 1}, {T}\] but the model expects \[{R}, T\]"
    with pytest.raises(DataError, match=msg):
        embed(model, [x[0], np.vstack([x[1], x[1][:1]])])
    with pytest.raises(DataError, match=r"sample 0.*20 frames.*needs 32.*--pad"):
        embed(model, x[:, :, :20])
    padded = embed(model, x[:, :, :20], options=EmbedOptions(pad=True))
    assert torch.isfinite(padded).all()
    with pytest.raises(DataError, match=r"expects series \[N, R, T\]"):
        embed(model, x[0])
    other = _model(rois=R + 2)
    with pytest.raises(DataError, match=rf"store has {R} ROIs but the model expects {R + 2}"):
        embed_store(other, store, progress=False)


def test_option_errors_name_the_option(model, store):
    with pytest.raises(ConfigError, match="embed.windows must be an integer >= 1, got 0"):
        EmbedOptions(windows=0)
    with pytest.raises(ConfigError, match=r"embed\.mask_keep must be a number > 0 and <= 1, got 1\.5"):
        EmbedOptions(mask_keep=1.5)
    with pytest.raises(ConfigError, match="embed.encoder must be one of"):
        EmbedOptions(encoder="online")
    # the masked views' settings without masked views would change nothing
    with pytest.raises(ConfigError, match=r"^embed\.mask_keep and embed\.seed set how masked views are drawn, and "
                       "there are none"):
        EmbedOptions(mask_keep=0.2, seed=9)
    with pytest.raises(ConfigError, match=r"^embed\.seed set"):
        EmbedOptions(seed=9)
    assert EmbedOptions(masked_views=2, mask_keep=0.2, seed=9).seed == 9
    with pytest.raises(ConfigError, match="pooling must be one of"):
        embed(model, np.stack([store.run(0)]), pooling="max")


def test_cli_refuses_view_flags_without_views(model, store, tmp_path, capsys):
    folder = model.save_pretrained(tmp_path / "m")
    assert main(["embed", "--model", str(folder), "--data", str(store.path), "--out", str(tmp_path / "e.npy"),
                 "--mask-keep", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--mask-keep set how masked views are drawn, and there are none: set --masked-views" in err
    assert not (tmp_path / "e.npy").exists()


def test_cli_npy_and_parquet(model, store, tmp_path, capsys):
    folder = model.save_pretrained(tmp_path / "m")
    out = tmp_path / "emb.npy"
    assert main(["embed", "--model", str(folder), "--data", str(store.path), "--out", str(out), "--no-progress"]) == 0
    emb = np.load(out)
    index = pd.read_csv(str(out) + ".index.csv", dtype={"subject": str, "run": str})
    assert emb.shape == (10, 32)
    assert list(index.columns[:2]) == ["subject", "run"] and {"coupling", "group"} <= set(index.columns)
    assert index["subject"].tolist() == store.manifest["subject"].tolist()
    np.testing.assert_allclose(emb, embed_store(model, store, progress=False).embeddings.numpy(), atol=1e-5)

    pq = tmp_path / "emb.parquet"
    assert main(["embed", "--model", str(folder), "--data", str(store.path), "--out", str(pq), "--no-progress"]) == 0
    table = pd.read_parquet(pq)
    assert [c for c in table.columns if c.startswith("emb_")] == [f"emb_{d}" for d in range(32)]
    back = load_embeddings(pq)
    np.testing.assert_allclose(back.embeddings.numpy(), emb, atol=1e-6)
    assert back.index["subject"].tolist() == index["subject"].tolist()

    roi = tmp_path / "roi.npy"
    assert main(["embed", "--model", str(folder), "--data", str(store.path), "--out", str(roi), "--pooling", "roi",
                 "--no-progress"]) == 0
    assert np.load(roi).shape == (10, R, 32)
    # --layer reaches the embedding (values per layer: tests/test_features.py); this model has one block
    assert main(["embed", "--model", str(folder), "--data", str(store.path), "--out", str(roi), "--layer", "1",
                 "--no-progress"]) == 2
    assert "--layer must be in [-1, 1) for this 1-block encoder, got 1" in capsys.readouterr().err


def test_file_errors(model, store, tmp_path, capsys, monkeypatch):
    folder = model.save_pretrained(tmp_path / "m")
    base = ["embed", "--model", str(folder), "--data", str(store.path), "--no-progress", "--out"]
    assert main(base + [str(tmp_path / "e.txt")]) == 2
    assert "written to .npy or .parquet, not '.txt'" in capsys.readouterr().err
    assert main(base + [str(tmp_path / "r.parquet"), "--pooling", "roi"]) == 2
    assert "parquet holds [N, D] embeddings only" in capsys.readouterr().err
    result = embed_store(model, store, indices=[0, 1], progress=False)
    with monkeypatch.context() as patch, pytest.raises(ConfigError, match=r"parquet needs pyarrow.*brainjepa\[data\]"):
        patch.setitem(sys.modules, "pyarrow", None)
        save_embeddings(result, tmp_path / "x.parquet")
    save_embeddings(result, tmp_path / "ok.npy")
    Path(str(tmp_path / "ok.npy") + ".index.csv").unlink()
    with pytest.raises(DataError, match="index sidecar ok.npy.index.csv is missing"):
        load_embeddings(tmp_path / "ok.npy")
    assert main(["embed", "--model", str(tmp_path / "nope"), "--data", str(store.path), "--out", "x.npy"]) == 2
    assert "no such model folder or checkpoint file" in capsys.readouterr().err


def test_file_layout_flags_reach_the_reader(model, store, tmp_path, capsys):
    """A table the reader refuses as ambiguous names --header/--no-header, which `embed` must then accept."""
    folder = str(model.save_pretrained(tmp_path / "m"))
    whole = np.arange(T * R).reshape(T, R) % 7  # frames x ROIs of whole numbers under a 0..R-1 header
    pd.DataFrame(whole).to_csv(tmp_path / "w.csv", index=False)
    base = ["embed", "--model", folder, "--file", str(tmp_path / "w.csv"), "--no-progress", "--out"]
    assert main(base + [str(tmp_path / "a.npy")]) == 2
    assert "give header=True or False (--header or --no-header)" in capsys.readouterr().err
    assert main(base + [str(tmp_path / "h.npy"), "--header"]) == 0
    assert main(base + [str(tmp_path / "n.npy"), "--no-header"]) == 0  # the header row read as a 65th frame
    with_header, without = load_embeddings(tmp_path / "h.npy"), load_embeddings(tmp_path / "n.npy")
    assert with_header.embeddings.shape == without.embeddings.shape == (1, model.config.embed_dim)
    assert not np.allclose(with_header.embeddings, without.embeddings)
    assert main(base + [str(tmp_path / "o.npy"), "--header", "--orientation", "rois-x-time"]) == 2
    assert "has shape [64, 16] but the model expects [16, T]" in capsys.readouterr().err  # 64 rows as ROIs
    data = ["embed", "--model", folder, "--data", str(store.path), "--out", str(tmp_path / "d.npy"), "--no-header"]
    assert main(data) == 2 and "--header/--no-header: for --file inputs" in capsys.readouterr().err


def test_embed_leaves_model_mode_alone(model, store):
    trained = copy.deepcopy(model).train()
    embed(trained, np.stack([store.run(0)]))
    assert trained.target_encoder.training and trained.encoder.training
    evaluated = copy.deepcopy(model).eval()  # and a model in eval mode stays in eval mode (no dropout after embed)
    embed(evaluated, np.stack([store.run(0)]))
    assert not evaluated.target_encoder.training and not evaluated.encoder.training


def test_short_store_run_is_named(model, tmp_path):
    from brainjepa.data import StoreWriter

    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "s", R) as w:
        w.add(rng.normal(size=(R, T)), subject="a")
        w.add(rng.normal(size=(R, 20)), subject="b", run="2")
    with pytest.raises(DataError, match=r"subject 'b' run '2'.*20 frames but a 32-frame window"):
        embed_store(model, tmp_path / "s", options=EmbedOptions(normalization="sample_zscore"), progress=False)
    padded = embed_store(model, tmp_path / "s", options=EmbedOptions(normalization="sample_zscore", pad=True),
                         progress=False)
    assert padded.embeddings.shape == (2, 32) and padded.index["run"].tolist() == ["1", "2"]


def test_embed_store_rows_follow_the_given_indices(model: BrainJEPA, store: RunStore) -> None:
    """Row i of `embed_store(indices=...)` is run ``indices[i]``, its embedding and its index row alike; the index
    holds ids and phenotypes, not the manifest's bookkeeping (offset, frames, tr, source)."""
    order = [3, 1, 7]
    some = embed_store(model, store, indices=order, progress=False)
    every = embed_store(model, store, progress=False)
    torch.testing.assert_close(some.embeddings, every.embeddings[order], atol=1e-5, rtol=1e-5)
    pd.testing.assert_frame_equal(some.index, every.index.iloc[order].reset_index(drop=True))
    assert some.index["subject"].tolist() == store.manifest["subject"].iloc[order].tolist()
    assert not {"offset", "frames", "tr", "source"} & set(every.index.columns)


def test_each_store_run_is_resampled_from_its_own_tr(model: BrainJEPA, tmp_path: Path) -> None:
    """With target_tr, each run of a store is resampled from its own TR: its row is what `embed` gives for its
    series at its TR (a store can mix scanners)."""
    from brainjepa.data import StoreWriter

    rng = np.random.default_rng(0)
    runs = [(rng.normal(size=(R, 96)), 0.8), (rng.normal(size=(R, 96)), 1.6)]
    with StoreWriter(tmp_path / "s", R) as w:
        for i, (ts, tr) in enumerate(runs):
            w.add(ts, subject=f"s{i}", tr=tr)
    options = EmbedOptions(normalization="sample_zscore", target_tr=1.6)
    got = embed_store(model, tmp_path / "s", options=options, progress=False).embeddings
    for i, (ts, tr) in enumerate(runs):
        torch.testing.assert_close(got[i], embed(model, ts[None], options=options, tr=tr)[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(embed(model, runs[1][0][None], options=options, tr=0.8), got[1:], atol=1e-3)


def test_runs_off_the_models_clock_are_named_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A model pretrained on frames 2 s apart, given runs at TR 0.72 s and no target_tr, sees time run 2.8x faster
    than it learned: they are embedded (a stride may be meant), but never silently: one warning names the runs,
    both spacings and --target-tr. Runs on the model's clock, or resampled to it, say nothing."""
    model = _model({"training": {"frame_spacing_s": 2.0}})
    x = np.random.default_rng(0).normal(size=(2, R, 200))
    options = EmbedOptions(normalization="sample_zscore")
    with caplog.at_level("WARNING", logger="brainjepa.evaluation.embed"):
        embed(model, x, tr=0.72, options=options)
    (line,) = [r.getMessage() for r in caplog.records if "apart" in r.getMessage()]
    assert "2 of 2 runs (sample 0, sample 1) have frames 0.72 s apart" in line
    assert "pretrained on frames 2 s apart" in line and "--target-tr 2" in line
    caplog.clear()
    with caplog.at_level("WARNING", logger="brainjepa.evaluation.embed"):
        embed(model, x, tr=2.0, options=options)
        embed(model, x, tr=0.72, options=EmbedOptions(normalization="sample_zscore", target_tr=2.0))
        embed(model, x, options=options)  # no TR: nothing to compare
    assert not [r for r in caplog.records if "apart" in r.getMessage()]


def test_masked_views_keep_each_rois_own_patches_drawn_per_sample() -> None:
    """Token r * P + t belongs to ROI r: a view keeps `keep` distinct time patches of every ROI, each ROI its own;
    samples draw their own subsets from (seed, sample index), whatever the batch they are in."""
    from brainjepa.evaluation.embed import _view_indices

    P, rois = 8, 5
    options = EmbedOptions(masked_views=3, mask_keep=0.5, seed=4)
    idx = _view_indices(0, 6, options, rois, P).numpy()  # [views, samples, R * keep]
    assert idx.shape == (3, 6, rois * 4)
    per_roi = idx.reshape(3, 6, rois, 4)
    np.testing.assert_array_equal(per_roi // P, np.broadcast_to(np.arange(rois)[:, None], per_roi.shape))
    assert (np.diff(per_roi, axis=-1) > 0).all()  # distinct and sorted within each ROI
    assert len({tuple(idx[0, i]) for i in range(6)}) > 1  # not one subset for every sample
    np.testing.assert_array_equal(_view_indices(4, 2, options, rois, P).numpy(), idx[:, 4:])


@pytest.mark.parametrize(("mask_keep", "kept"), [(0.9, 4), (0.6, 2), (0.1, 1)])
def test_a_masked_view_keeps_the_nearest_whole_number_of_patches(mask_keep: float, kept: int) -> None:
    """mask_keep x P patches per ROI, rounded to the nearest whole number (at least 1): 0.9 of 4 patches keeps 4,
    not the truncated 3 (which would mask a patch in every view when asked to keep nearly all)."""
    from brainjepa.evaluation.embed import _view_indices

    idx = _view_indices(0, 1, EmbedOptions(masked_views=1, mask_keep=mask_keep), 2, 4)
    assert idx.shape == (1, 1, 2 * kept)


def test_load_embeddings_refuses_an_index_of_another_length(model: BrainJEPA, store: RunStore, tmp_path: Path) -> None:
    """A sidecar whose rows do not pair up with the array's would attach labels to the wrong runs."""
    out = save_embeddings(embed_store(model, store, indices=[0, 1, 2], progress=False), tmp_path / "e.npy")
    sidecar = Path(f"{out}.index.csv")
    index = pd.read_csv(sidecar, dtype=str)
    index.iloc[:2].to_csv(sidecar, index=False)
    with pytest.raises(DataError, match="index has 2 rows"):
        load_embeddings(out)


def test_cli_file_inputs_take_pooling_and_tr(model: BrainJEPA, tmp_path: Path) -> None:
    """--pooling and --tr reach file inputs: a .npy run (no TR of its own) embedded per ROI with --tr and
    --target-tr is what the API gives for it at that TR."""
    folder = str(model.save_pretrained(tmp_path / "m"))
    x = np.random.default_rng(5).normal(size=(R, 96)).astype(np.float32)
    np.save(tmp_path / "sub-01.npy", x)
    out = tmp_path / "roi.npy"
    assert main(["embed", "--model", folder, "--file", str(tmp_path / "sub-01.npy"), "--out", str(out), "--pooling",
                 "roi", "--tr", "0.8", "--target-tr", "1.6", "--no-progress"]) == 0
    want = embed(model, x[None], pooling="roi", options=EmbedOptions(target_tr=1.6), tr=0.8)
    np.testing.assert_allclose(np.load(out), want.numpy(), atol=1e-5)


def test_cli_refuses_an_output_before_loading_or_embedding(store: RunStore, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An output the pooling cannot be written to is refused before the model is loaded or any run embedded."""
    from brainjepa.cli import embed as cli_embed

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(cli_embed.BrainJEPA, "load", no_work)
    monkeypatch.setattr(cli_embed, "embed_store", no_work)
    assert main(["embed", "--model", "m", "--data", str(store.path), "--out", str(tmp_path / "r.parquet"),
                 "--pooling", "tokens", "--no-progress"]) == 2
    assert "parquet holds [N, D] embeddings only" in capsys.readouterr().err
