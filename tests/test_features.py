"""The encoder's feature API: forward_features, forward_intermediates, pool, param_groups, and the embedding,
fine-tuning, scikit-learn and pretraining code that goes through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, ModelConfig, embed
from brainjepa.data import WindowSpec, take_window
from brainjepa.data.normalize import SampleZScore
from brainjepa.errors import ConfigError
from brainjepa.evaluation.embed import EmbedOptions
from brainjepa.evaluation.finetune import build_finetune_model
from brainjepa.models.encoder import FISHER_CLIP, token_fc
from brainjepa.models.optim import param_groups

CFG = ModelConfig(num_rois=6, num_frames=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, pred_embed_dim=16,
                  pred_depth=2, gradient_dim=3)
R, P, D, DEPTH = CFG.num_rois, CFG.num_time_patches, CFG.embed_dim, CFG.depth


@pytest.fixture(scope="module")
def model() -> BrainJEPA:
    torch.manual_seed(0)
    m = BrainJEPA(CFG, np.random.default_rng(0).standard_normal((R, 3)).astype(np.float32)).eval()
    with torch.no_grad():  # non-trivial norm affine so that "norm applied or not" is visible
        for name, p in m.encoder.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(3, R, CFG.num_frames, generator=torch.Generator().manual_seed(1))


def _by_hand(enc, x, upto: int, context_idx=None) -> torch.Tensor:
    """Tokens after block `upto` (0-based), computed from the parts."""
    h = enc.patch_embed(x) + enc.pos_embed().unsqueeze(0)
    if context_idx is not None:
        h = torch.gather(h, 1, context_idx.unsqueeze(-1).expand(-1, -1, D))
    for block in enc.blocks[: upto + 1]:
        h = block(h)
    return h


# ------------------------------------------------------------------------------------------------ features
@torch.no_grad()
def test_forward_features_is_forward(model, x):
    enc = model.encoder
    assert torch.equal(enc.forward_features(x), enc(x))
    ctx = torch.arange(0, R * P, 2).repeat(3, 1)
    assert torch.equal(enc.forward_features(x, ctx), enc(x, ctx))
    torch.testing.assert_close(enc.forward_features(x), enc.norm(_by_hand(enc, x, DEPTH - 1)))


@torch.no_grad()
def test_last_intermediate_with_norm_is_forward_features(model, x):
    enc = model.encoder
    full = enc.forward_features(x)
    for indices in (1, [-1], [DEPTH - 1]):
        (out,) = enc.forward_intermediates(x, indices, norm=True)
        assert torch.equal(out, full), indices
    (raw,) = enc.forward_intermediates(x, [-1])
    assert not torch.allclose(raw, full, atol=1e-3)  # norm=False really leaves the norm out


@torch.no_grad()
def test_intermediate_blocks_equal_running_blocks_by_hand(model, x):
    enc = model.encoder
    outs = enc.forward_intermediates(x, [1, -3, 0])
    assert [o.shape for o in outs] == [(3, R * P, D)] * 3
    torch.testing.assert_close(outs[0], _by_hand(enc, x, 1))
    torch.testing.assert_close(outs[1], _by_hand(enc, x, DEPTH - 3))
    torch.testing.assert_close(outs[2], _by_hand(enc, x, 0))
    last_two = enc.forward_intermediates(x, 2, norm=True)
    torch.testing.assert_close(last_two[0], enc.norm(_by_hand(enc, x, DEPTH - 2)))
    ctx = torch.stack([torch.randperm(R * P, generator=torch.Generator().manual_seed(i))[:10] for i in range(3)])
    (at_ctx,) = enc.forward_intermediates(x, [1], context_idx=ctx)
    torch.testing.assert_close(at_ctx, _by_hand(enc, x, 1, ctx))


def test_intermediates_stop_after_the_last_requested_block(model, x):
    enc = model.encoder
    calls = [0] * DEPTH
    hooks = [b.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, b in enumerate(enc.blocks)]
    try:
        with torch.no_grad():
            enc.forward_intermediates(x, [0, 1])
    finally:
        for h in hooks:
            h.remove()
    assert calls == [1, 1] + [0] * (DEPTH - 2)


@torch.no_grad()
def test_intermediate_indices_at_the_bounds_are_taken(model, x):
    """The edges of the valid ranges are accepted: n = depth (every block) and index -depth (block 0)."""
    enc = model.encoder
    every = enc.forward_intermediates(x, DEPTH)
    assert len(every) == DEPTH
    torch.testing.assert_close(every[0], _by_hand(enc, x, 0))
    (first,) = enc.forward_intermediates(x, [-DEPTH])
    torch.testing.assert_close(first, _by_hand(enc, x, 0))


@pytest.mark.parametrize("indices", [0, DEPTH + 1, [DEPTH], [-DEPTH - 1], []])
def test_bad_intermediate_indices_are_refused(model, x, indices):
    with pytest.raises(ValueError, match="forward_intermediates"):
        model.encoder.forward_intermediates(x, indices)


def test_intermediates_train_with_grad_checkpointing(model, x):
    enc = build_finetune_model(model, 0)
    plain = enc.forward_intermediates(x, [1], norm=True)[0].sum()
    plain.backward()
    want = enc.blocks[0].attn.qkv.weight.grad.clone()
    enc.zero_grad()
    enc.set_grad_checkpointing(True)
    enc.forward_intermediates(x, [1], norm=True)[0].sum().backward()
    torch.testing.assert_close(enc.blocks[0].attn.qkv.weight.grad, want)
    assert enc.blocks[2].attn.qkv.weight.grad is None  # not run, so no gradient


# ------------------------------------------------------------------------------------------------- pooling
def test_pool_kinds_shapes_and_values(model):
    enc = model.encoder
    tokens = torch.randn(2, R * P, D)
    mean, roi, same = enc.pool(tokens, "mean"), enc.pool(tokens, "roi"), enc.pool(tokens, "tokens")
    assert mean.shape == (2, D) and roi.shape == (2, R, D) and same is tokens
    assert [enc.pooled_shape(k) for k in ("mean", "roi", "tokens")] == [(D,), (R, D), (R * P, D)]
    torch.testing.assert_close(mean, tokens.sum(1) / (R * P))
    r, want = 4, tokens[:, 4 * P:5 * P].mean(1)  # ROI-major: ROI r owns tokens r*P .. r*P + P - 1
    torch.testing.assert_close(roi[:, r], want)
    kept = tokens[:, :R * 3]  # e.g. a masked view keeping 3 patches of every ROI
    torch.testing.assert_close(enc.pool(kept, "roi")[:, 1], kept[:, 3:6].mean(1))
    with pytest.raises(ValueError, match="same number of tokens per ROI"):
        enc.pool(tokens[:, :-1], "roi")
    with pytest.raises(ValueError, match="pooling must be one of"):
        enc.pool(tokens, "max")
    with pytest.raises(ValueError, match="pooling must be one of"):
        enc.pooled_shape("max")


def _token_fc_numpy(tokens: np.ndarray, num_rois: int) -> np.ndarray:
    """Token FC by hand: per ROI, centre its [k, D] tokens over k and flatten; np.corrcoef between ROIs;
    arctanh of the upper triangle (k=1)."""
    out = []
    for sample in tokens:
        traj = sample.reshape(num_rois, -1, sample.shape[-1])
        traj = (traj - traj.mean(1, keepdims=True)).reshape(num_rois, -1)
        out.append(np.arctanh(np.corrcoef(traj)[np.triu_indices(num_rois, k=1)]))
    return np.stack(out)


def test_tokenfc_equals_a_numpy_reference(model):
    enc = model.encoder
    tokens = torch.randn(3, R * P, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want = _token_fc_numpy(tokens.numpy(), R)
    got = enc.pool(tokens, "tokenfc")
    assert got.shape == (3, R * (R - 1) // 2) == (3, *enc.pooled_shape("tokenfc")) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(enc.pool(tokens.float(), "tokenfc").numpy(), want, rtol=0, atol=1e-5)
    # pair order: row-major upper triangle, so entry 0 is ROIs (0, 1) and entry R-1 is ROIs (1, 2)
    a, b, c = (tokens[0].view(R, P, D)[i] for i in range(3))
    r01 = np.corrcoef((a - a.mean(0)).flatten(), (b - b.mean(0)).flatten())[0, 1]
    r12 = np.corrcoef((b - b.mean(0)).flatten(), (c - c.mean(0)).flatten())[0, 1]
    np.testing.assert_allclose(got[0, [0, R - 1]].numpy(), np.arctanh([r01, r12]), atol=1e-12)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the correlations are not rounded to bf16
        np.testing.assert_allclose(enc.pool(tokens.float(), "tokenfc").numpy(), want, rtol=0, atol=1e-5)


def test_tokenfc_ignores_a_per_roi_constant_but_not_its_time_course(model):
    enc = model.encoder
    tokens = torch.randn(2, R, P, D, generator=torch.Generator().manual_seed(4))
    offset = 5.0 * torch.randn(2, R, 1, D, generator=torch.Generator().manual_seed(5))  # per ROI, same every patch
    base = enc.pool(tokens.reshape(2, R * P, D), "tokenfc")
    torch.testing.assert_close(enc.pool((tokens + offset).reshape(2, R * P, D), "tokenfc"), base, atol=1e-5, rtol=0)
    scaled = tokens * torch.linspace(0.5, 3.0, R).view(1, R, 1, 1)  # a positive scale per ROI does not matter
    torch.testing.assert_close(enc.pool(scaled.reshape(2, R * P, D), "tokenfc"), base, atol=1e-5, rtol=0)
    shuffled = tokens.clone()
    shuffled[:, 0] = tokens[:, 0, torch.tensor([1, 0, *range(2, P)])]  # ROI 0's time patches reordered
    assert not torch.allclose(enc.pool(shuffled.reshape(2, R * P, D), "tokenfc")[:, : R - 1], base[:, : R - 1],
                              atol=1e-3)
    torch.testing.assert_close(enc.pool(shuffled.reshape(2, R * P, D), "tokenfc")[:, R - 1:], base[:, R - 1:],
                               atol=1e-6, rtol=0)  # pairs without ROI 0 are unchanged


def test_tokenfc_on_masked_subsets_and_its_edge_cases(model):
    enc = model.encoder
    tokens = torch.randn(2, R * P, D, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    keep = torch.tensor([0, 2, 3])  # a masked view keeping the same 3 patches of every ROI, ROI-major
    kept = tokens[:, (torch.arange(R)[:, None] * P + keep).flatten()]
    got = enc.pool(kept, "tokenfc")
    assert got.shape == (2, R * (R - 1) // 2)
    np.testing.assert_allclose(got.numpy(), _token_fc_numpy(kept.numpy(), R), atol=1e-12)
    with pytest.raises(ValueError, match="tokenfc pooling needs the same number of tokens per ROI"):
        enc.pool(tokens[:, :-1], "tokenfc")
    with pytest.raises(ValueError, match="at least 2 tokens per ROI"):
        enc.pool(tokens[:, ::P], "tokenfc")
    flat = tokens.view(2, R, P, D).clone()
    flat[:, 1] = flat[:, 0]  # ROIs 0 and 1 identical: r = 1, clipped as the FC baseline clips it
    flat[:, 2] = 7.0  # ROI 2 constant over time: r = 0 with every ROI, as FC sets a constant ROI's pairs
    z = token_fc(flat.reshape(2, R * P, D), R)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(z[:, 0], torch.full((2,), float(np.arctanh(FISHER_CLIP)), dtype=torch.float64))
    pairs = [(i, j) for i in range(R) for j in range(i + 1, R)]
    assert all(z[:, k].eq(0).all() for k, (i, j) in enumerate(pairs) if 2 in (i, j))


def test_fisher_clip_is_the_fc_baselines():
    from brainjepa.evaluation import baselines

    assert FISHER_CLIP == baselines._FISHER_CLIP


# ---------------------------------------------------------------------------------------------- embeddings
def _windows(x: torch.Tensor) -> torch.Tensor:
    """What `embed` feeds the encoder with default options (centre window, per-sample z-score)."""
    spec = WindowSpec(frames=CFG.num_frames, sampling_rate=1, mode="center")
    return torch.from_numpy(np.stack([SampleZScore()(take_window(s, spec)) for s in x.numpy()]))


@pytest.mark.parametrize("pooling", ["mean", "roi"])
def test_embed_is_forward_features_then_pool(model, x, pooling):
    with torch.no_grad():
        tokens = model.target_encoder.forward_features(_windows(x))
    want = model.target_encoder.pool(tokens.float(), pooling)
    assert torch.equal(embed(model, x, pooling=pooling), want)
    if pooling == "roi":  # by hand, without the API
        torch.testing.assert_close(want, tokens.view(3, R, P, D).mean(2))
    else:
        torch.testing.assert_close(want, tokens.mean(1))


def test_embed_layer_option(model, x):
    enc = model.target_encoder
    with torch.no_grad():
        want = enc.norm(_by_hand(enc, _windows(x), 1)).mean(1)
    torch.testing.assert_close(embed(model, x, options=EmbedOptions(layer=1)), want)
    torch.testing.assert_close(embed(model, x, options=EmbedOptions(layer=1 - DEPTH)), want)
    assert torch.equal(embed(model, x, options=EmbedOptions(layer=DEPTH - 1)), embed(model, x))
    views = embed(model, x, options=EmbedOptions(layer=1, masked_views=2, mask_keep=1.0))
    torch.testing.assert_close(views, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match=r"layer must be in \[-4, 4\) for this 4-block encoder, got 4"):
        embed(model, x, options=EmbedOptions(layer=DEPTH))
    with pytest.raises(ConfigError, match="layer must be an integer"):
        EmbedOptions(layer=1.5)


def test_sklearn_layer_option(model, x):
    from brainjepa.evaluation.sklearn import BrainJEPAEmbedder

    est = BrainJEPAEmbedder(model=model, pooling="roi", layer=2).fit(x.numpy())
    got = est.transform(x.numpy())
    assert got.shape == (3, R * D)
    np.testing.assert_array_equal(got, embed(model, x, pooling="roi", options=EmbedOptions(layer=2))
                                  .reshape(3, -1).numpy())


def test_sklearn_tokenfc_pooling(model, x):
    from brainjepa.evaluation.sklearn import BrainJEPAEmbedder

    est = BrainJEPAEmbedder(model=model, pooling="tokenfc").fit(x.numpy())
    got = est.transform(x.numpy())
    assert got.shape == (3, R * (R - 1) // 2)
    np.testing.assert_array_equal(got, embed(model, x, pooling="tokenfc").numpy())
    names = est.get_feature_names_out()
    assert len(names) == got.shape[1] and list(names[:2]) == ["fc_roi0_roi1", "fc_roi0_roi2"]
    assert names[R - 1] == "fc_roi1_roi2" and names[-1] == f"fc_roi{R - 2}_roi{R - 1}"


# ------------------------------------------------------------------------------------------ param groups
def _group_of(groups):
    out = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in out, "a parameter in two groups"
            out[id(p)] = g
    return out


def test_encoder_param_groups_rule_and_layer_decay(model):
    enc = build_finetune_model(model, 0)
    plain = _group_of(enc.param_groups(0.1))
    decay = 0.5
    layered = _group_of(enc.param_groups(0.1, decay))
    assert len(plain) == len(layered) == sum(1 for _ in enc.parameters())
    scales = {}
    for name, p in enc.named_parameters():
        exempt = p.ndim == 1 or "bias" in name
        for groups in (plain, layered):
            g = groups[id(p)]
            assert g["wd_exempt"] == exempt and g["weight_decay"] == (0.0 if exempt else 0.1), name
        assert plain[id(p)]["lr_scale"] == 1.0
        layer = 0 if name.startswith(("patch_embed", "pos_embed")) else (
            int(name.split(".")[1]) + 1 if name.startswith("blocks.") else DEPTH + 1)
        assert enc.layer_id(name) == layer, name
        assert layered[id(p)]["lr_scale"] == pytest.approx(decay ** (DEPTH + 1 - layer)), name
        scales[layer] = layered[id(p)]["lr_scale"]
    assert sorted(scales) == list(range(DEPTH + 2))
    assert all(scales[i] < scales[i + 1] for i in range(DEPTH + 1)) and scales[DEPTH + 1] == 1.0


def test_frozen_parameters_are_left_out(model):
    enc = build_finetune_model(model, 0)
    enc.patch_embed.requires_grad_(False)
    listed = _group_of(enc.param_groups(0.1, 0.5))
    assert id(enc.patch_embed.proj.weight) not in listed
    assert len(listed) == sum(p.requires_grad for p in enc.parameters())
    # the top layer stays the norm: frozen parameters do not shift the scales
    assert listed[id(enc.norm.weight)]["lr_scale"] == 1.0


def test_finetuned_model_puts_head_on_top_of_the_encoder_rule(model):
    net = build_finetune_model(model, 3)
    groups = _group_of(net.param_groups(0.05, 0.75))
    bare = build_finetune_model(model, 0)  # the same encoder without a head
    bare_groups, bare_params = _group_of(bare.param_groups(0.05, 0.75)), dict(bare.named_parameters())
    assert len(groups) == sum(1 for _ in net.parameters())
    for name, p in net.named_parameters():
        if name.startswith(("fc_norm.", "head.")):
            assert groups[id(p)]["lr_scale"] == 1.0, name  # the head trains at the full lr
        else:  # same scale and decay as the encoder alone
            alone = bare_groups[id(bare_params[name])]
            assert (groups[id(p)]["lr_scale"], groups[id(p)]["weight_decay"]) == \
                (alone["lr_scale"], alone["weight_decay"]), name
    assert groups[id(net.head.weight)]["weight_decay"] == 0.05 and groups[id(net.head.bias)]["wd_exempt"]


def test_pretraining_groups_use_the_same_rule(model):
    groups = model.param_groups(0.04)
    assert [g["wd_exempt"] for g in groups] == [False, True]
    assert all(g["lr_scale"] == 1.0 for g in groups)
    listed = _group_of(groups)
    online = [(f"{m}.{n}", p) for m in ("encoder", "predictor") for n, p in getattr(model, m).named_parameters()]
    assert len(listed) == len(online)  # the target encoder is not optimised
    for name, p in online:
        assert listed[id(p)]["wd_exempt"] == (p.ndim == 1 or "bias" in name), name
    assert listed[id(model.predictor.mask_token)]["weight_decay"] == 0.04  # 3-D: decayed, as in the reference


def test_param_groups_function_checks_its_arguments(model):
    with pytest.raises(ValueError, match="needs a layer_id"):
        param_groups(model.encoder.named_parameters(), 0.1, layer_decay=0.5)
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        param_groups(model.encoder.named_parameters(), 0.1, model.encoder.layer_id, 1.5)


def test_layer_decay_of_one_is_allowed_and_changes_no_scale(model):
    """layer_decay 1 (the documented upper end of (0, 1]) means no decay: every group trains at the full lr."""
    groups = param_groups(model.encoder.named_parameters(), 0.1, model.encoder.layer_id, 1.0)
    assert groups and all(g["lr_scale"] == 1.0 for g in groups)
    assert len(_group_of(groups)) == sum(1 for _ in model.encoder.parameters())


def test_layer_groups_are_ordered_by_layer_then_decayed_first(model):
    """The group order is part of an optimizer checkpoint (state is matched to groups by position): layer by
    layer, decayed before exempt, whatever order the module lists its parameters in (pre-norm blocks list
    their LayerNorm gains before their weights)."""
    groups = param_groups(model.encoder.named_parameters(), 0.1, model.encoder.layer_id, 0.5)
    order = [(-round(np.log2(g["lr_scale"])), g["wd_exempt"]) for g in groups]  # (layers below top, exempt)
    keys = [(DEPTH + 1 - below, exempt) for below, exempt in order]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_layer_decay_top_counts_frozen_parameters():
    """The top layer is the largest id among all parameters given, frozen or not: freezing the final norm must not
    move the last block up to the full lr."""
    def weight(trainable: bool = True) -> torch.nn.Parameter:
        return torch.nn.Parameter(torch.zeros(2, 2), requires_grad=trainable)

    named = [("low.weight", weight()), ("mid.weight", weight()), ("top.weight", weight(False))]
    layer = {"low.weight": 0, "mid.weight": 1, "top.weight": 2}
    groups = param_groups(named, 0.1, layer.__getitem__, 0.5)
    assert [g["lr_scale"] for g in groups] == [0.25, 0.5]
    assert [p is q for g, (_, q) in zip(groups, named, strict=False) for p in g["params"]] == [True, True]
