"""The Brain-JEPA encoder: a ViT over ROI x time-patch tokens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from brainjepa.models.config import ModelConfig
from brainjepa.models.layers import Block, GradientPosEmbed, PatchEmbed, check_token_indices, gather_tokens
from brainjepa.models.optim import param_groups

Pooling = Literal["mean", "roi", "tokens", "tokenfc"]
POOLINGS = ("mean", "roi", "tokens", "tokenfc")
FISHER_CLIP = 1.0 - 1e-7  # |r| = 1 would give an infinite Fisher z; the clip of evaluation.baselines' FC


def run_blocks(blocks: Iterable[nn.Module], x: Tensor, grad_checkpointing: bool) -> Tensor:
    """Apply blocks in order, recomputing activations in backward when checkpointing is on."""
    for block in blocks:
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x


class BrainEncoder(nn.Module):
    """Patch embedding + gradient positions -> (optional context selection) -> blocks -> LayerNorm, and for
    fine-tuning a head on top (timm's split): `forward_features` gives tokens, `forward_head` reads them out.

    The head is absent (`nn.Identity`, no weights) until `reset_classifier` puts one on, so pretraining and its
    checkpoints never see it. `forward` stays `forward_features`: the JEPA objective needs tokens, not logits.

    Args:
        cfg: the architecture.
        gradient: brain gradients [R, G] of the ROIs, in the model's ROI order.
    """

    def __init__(self, cfg: ModelConfig, gradient: Tensor) -> None:
        super().__init__()
        _check_gradient(gradient, cfg)
        self.cfg = cfg
        self.embed_dim = self.num_features = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.pos_embed = GradientPosEmbed(gradient, cfg.num_time_patches, cfg.embed_dim, cfg.pos_embed)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias,
                  drop_path=rate, norm_eps=cfg.norm_eps)
            for rate in rates
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.num_outputs = 0
        self.fc_norm: nn.Module = nn.Identity()
        self.head: nn.Module = nn.Identity()
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory: recompute each block's activations during backward."""
        self.grad_checkpointing = enable

    # ------------------------------------------------------------------------------------------- features
    def forward(self, x: Tensor, context_idx: Tensor | None = None) -> Tensor:
        """Same as `forward_features`."""
        return self.forward_features(x, context_idx)

    def forward_features(self, x: Tensor, context_idx: Tensor | None = None) -> Tensor:
        """x [B, R, T] or [B, 1, R, T] -> tokens after the final norm [B, R*P, D] (ROI-major, token = r*P + t),
        or [B, K, D] for the tokens at context_idx [B, K] only."""
        return self.norm(run_blocks(self.blocks, self._embed(x, context_idx), self.grad_checkpointing))

    def forward_intermediates(self, x: Tensor, indices: int | Sequence[int], *, norm: bool = False,
                              context_idx: Tensor | None = None) -> list[Tensor]:
        """Token features after chosen blocks; blocks after the last requested one are not run.

        Args:
            x: input [B, R, T] or [B, 1, R, T].
            indices: n (the last n blocks) or a list of block indices (negative counts from the end).
            norm: apply the final LayerNorm to each output (with the last block this equals `forward_features`).
            context_idx: run on the tokens at these indices [B, K] only, as `forward_features` does.

        Returns:
            one [B, N, D] tensor per requested block, in the order requested (N = R*P, or K with context_idx).

        Raises:
            ValueError: an index outside [-depth, depth) or n outside [1, depth].
        """
        wanted = self._block_indices(indices)
        h = self._embed(x, context_idx)
        taken: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks[: max(wanted) + 1]):
            h = run_blocks([block], h, self.grad_checkpointing)
            if i in wanted:
                taken[i] = self.norm(h) if norm else h
        return [taken[i] for i in wanted]

    def forward_at(self, x: Tensor, idx: Tensor) -> Tensor:
        """Full-sequence features gathered at idx [B, K]: equal to `gather(forward(x), idx)`, but the last block
        updates only the K selected tokens (they still attend to all tokens); used for JEPA targets."""
        tokens = self._embed(x, None)
        self._check_indices(idx, "target_idx", tokens)
        tokens = run_blocks(self.blocks[:-1], tokens, self.grad_checkpointing)
        return self.norm(self.blocks[-1](gather_tokens(tokens, idx), tokens))

    def pool(self, tokens: Tensor, kind: Pooling = "mean") -> Tensor:
        """Pool ROI-major tokens [B, R*k, D] (all k = P time patches per ROI, or the same k kept per ROI).

        Args:
            tokens: encoder tokens, token r*k + t belonging to ROI r.
            kind: ``"mean"`` over all tokens -> [B, D] (the reference's global pool); ``"roi"`` over each
                ROI's tokens -> [B, R, D]; ``"tokens"`` -> unchanged [B, R*k, D]; ``"tokenfc"`` ("token FC",
                a second-order readout, `token_fc`) -> the Fisher-z ROI x ROI correlation of each ROI's centred
                token trajectory, upper triangle [B, R(R-1)/2].

        Raises:
            ValueError: an unknown kind, a token count that is not a multiple of R (roi, tokenfc), or fewer
                than 2 tokens per ROI (tokenfc).
        """
        if kind == "mean":
            return tokens.mean(1)
        if kind == "roi":
            B, N, D = tokens.shape
            R = self.cfg.num_rois
            if N % R:
                raise ValueError(f"roi pooling needs the same number of tokens per ROI: {N} tokens, {R} ROIs")
            return tokens.view(B, R, N // R, D).mean(2)
        if kind == "tokens":
            return tokens
        if kind == "tokenfc":
            return token_fc(tokens, self.cfg.num_rois)
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {kind!r}")

    # ----------------------------------------------------------------------------------------------- head
    def reset_classifier(self, num_outputs: int, *, init_std: float = 2e-5) -> None:
        """Put a fresh head on for fine-tuning (the reference's downstream readout): ``fc_norm`` LayerNorm (eps
        1e-6) -> Linear to `num_outputs` (classes, or 1 for a regression) with trunc-normal(`init_std`) weights
        and a zero bias. 0 takes the head off again."""
        self.num_outputs = num_outputs
        if num_outputs == 0:
            self.fc_norm, self.head = nn.Identity(), nn.Identity()
            return
        like = {"device": self.norm.weight.device, "dtype": self.norm.weight.dtype}
        self.fc_norm = nn.LayerNorm(self.embed_dim, eps=1e-6, **like)
        self.head = nn.Linear(self.embed_dim, num_outputs, **like)
        nn.init.trunc_normal_(self.head.weight, std=init_std)
        nn.init.zeros_(self.head.bias)

    def forward_head(self, tokens: Tensor, pre_logits: bool = False) -> Tensor:
        """Tokens [B, N, D] (`forward_features`) -> mean over tokens -> ``fc_norm`` -> head: [B, num_outputs];
        with `pre_logits`, the normed pooled features [B, D] (the input of the head)."""
        x = self.fc_norm(self.pool(tokens, "mean"))
        return x if pre_logits else self.head(x)

    def pooled_shape(self, kind: Pooling) -> tuple[int, ...]:
        """Shape of one sample's `pool` output over all tokens: (D,), (R, D), (R*P, D) or (R(R-1)/2,)."""
        if kind not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {kind!r}")
        cfg = self.cfg
        return {"mean": (cfg.embed_dim,), "roi": (cfg.num_rois, cfg.embed_dim),
                "tokens": (cfg.num_patches, cfg.embed_dim),
                "tokenfc": (cfg.num_rois * (cfg.num_rois - 1) // 2,)}[kind]

    # ------------------------------------------------------------------------------------------ optimiser
    @property
    def top_layer_id(self) -> int:
        """Layer id of the final norm and of the head (`reset_classifier`): depth + 1."""
        return len(self.blocks) + 1

    def layer_id(self, name: str) -> int:
        """Layer of a parameter name of this module: patch and positional embeddings 0, ``blocks.i`` i + 1,
        everything else (the final norm, ``fc_norm`` and the head) `top_layer_id`."""
        parts = name.split(".")
        if parts[0] in ("patch_embed", "pos_embed"):
            return 0
        if parts[0] == "blocks":
            return int(parts[1]) + 1
        return self.top_layer_id

    def param_groups(self, weight_decay: float, layer_decay: float | None = None) -> list[dict[str, Any]]:
        """AdamW groups (`brainjepa.models.optim.param_groups`): decay on weight matrices only; with
        `layer_decay`, layer l of `layer_id` trains at ``lr * layer_decay ** (depth + 1 - l)`` (``lr_scale``)."""
        return param_groups(self.named_parameters(), weight_decay, self.layer_id, layer_decay)

    # ------------------------------------------------------------------------------------------- internals
    def _embed(self, x: Tensor, context_idx: Tensor | None) -> Tensor:
        """Patch tokens plus positions [B, R*P, D], then the context selection [B, K, D] if any."""
        x = self._check_input(x)
        if context_idx is not None:
            self._check_indices(context_idx, "context_idx", x)
        tokens = self.patch_embed(x) + self.pos_embed().unsqueeze(0)
        return tokens if context_idx is None else gather_tokens(tokens, context_idx)

    def _block_indices(self, indices: int | Sequence[int]) -> list[int]:
        depth = len(self.blocks)
        if isinstance(indices, int):
            if not 1 <= indices <= depth:
                raise ValueError(f"forward_intermediates: n must be in [1, {depth}] (last n blocks), got {indices}")
            return list(range(depth - indices, depth))
        bad = [i for i in indices if not -depth <= i < depth]
        if bad or not len(indices):
            raise ValueError(f"forward_intermediates: block indices must be in [{-depth}, {depth}) "
                             f"(depth {depth}), got {list(indices)}")
        return [i % depth for i in indices]

    def _check_input(self, x: Tensor) -> Tensor:
        """x as [B, R, T] in the model's dtype, or a TypeError / ValueError saying what the encoder takes."""
        R, T = self.cfg.num_rois, self.cfg.num_frames
        dtype = self.patch_embed.proj.weight.dtype
        name = str(dtype).removeprefix("torch.")
        expect = f"a torch.Tensor [B, {R}, {T}] (or [B, 1, {R}, {T}]) of {name}, the model's dtype"
        if not isinstance(x, Tensor):
            kind = f"{type(x).__module__}.{type(x).__name__}"
            fix = f"; convert it with torch.from_numpy(x).to(torch.{name})" if hasattr(x, "__array__") else ""
            raise TypeError(f"the encoder takes {expect}, got a {kind}{fix}")
        if x.dtype != dtype:
            raise TypeError(f"the encoder takes {expect}, got dtype {str(x.dtype).removeprefix('torch.')}; convert "
                            f"it with x.to(torch.{name}) (under torch.autocast, keep {name} inputs)")
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3 or x.shape[1:] != (R, T):
            raise ValueError(f"the encoder takes {expect}, got shape {list(x.shape)}")
        return x

    def _check_indices(self, idx: Tensor, name: str, x: Tensor) -> None:
        """Token indices [B, K] int64 in [0, R*P) (values checked on CPU, and on CUDA outside training)."""
        check_token_indices(idx, name, x.shape[0], self.cfg.num_patches,
                            check_values=x.device.type == "cpu" or not self.training)


def token_fc(tokens: Tensor, num_rois: int) -> Tensor:
    """Token FC: the functional connectivity of the encoder's token trajectories, a second-order readout.

    Each ROI's tokens [k, D] (its time patches in order) are centred over time (each feature minus its mean over
    the ROI's k tokens) and flattened to a trajectory of k*D values; the Pearson correlation of every ROI pair's
    trajectories is Fisher z-transformed (``arctanh``, |r| clipped to `FISHER_CLIP` as
    `brainjepa.evaluation.baselines.functional_connectivity` does) and its upper triangle (row-major, diagonal
    excluded) returned. A ROI whose trajectory is constant gets r = 0 with every other ROI, as constant ROIs do
    in that FC. Adding a constant per ROI (the same vector to each of its tokens) leaves the output unchanged.

    It is computed in float32 (float64 input stays float64) with autocast off, so a bf16 forward pass does not
    round the correlations.

    Args:
        tokens: ROI-major tokens [B, R*k, D], token r*k + t of ROI r; all P time patches, or the same k >= 2
            kept per ROI (masked views).
        num_rois: R.

    Returns:
        [B, R(R-1)/2] Fisher-z correlations, pairs (0, 1), (0, 2), ..., (R-2, R-1).

    Raises:
        ValueError: N not a multiple of R, or fewer than 2 tokens per ROI (no trajectory to correlate).
    """
    B, N, D = tokens.shape
    R = num_rois
    if N % R:
        raise ValueError(f"tokenfc pooling needs the same number of tokens per ROI: {N} tokens, {R} ROIs")
    if N // R < 2:
        raise ValueError(f"tokenfc pooling needs at least 2 tokens per ROI to correlate trajectories, got {N // R}")
    with torch.autocast(tokens.device.type, enabled=False):
        x = tokens if tokens.dtype in (torch.float32, torch.float64) else tokens.float()
        x = x.reshape(B, R, N // R, D)
        x = (x - x.mean(2, keepdim=True)).reshape(B, R, -1)
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)  # zero stays zero: r = 0
        r = x @ x.transpose(1, 2)
        upper = torch.triu_indices(R, R, offset=1, device=x.device)
        return torch.atanh(r[:, upper[0], upper[1]].clamp(-FISHER_CLIP, FISHER_CLIP))


def _check_gradient(gradient: Tensor, cfg: ModelConfig) -> None:
    expected = (cfg.num_rois, cfg.gradient_dim)
    if tuple(gradient.shape) != expected:
        raise ValueError(f"gradient must have shape {list(expected)} (ROIs x components), got {list(gradient.shape)}")
    if not torch.isfinite(gradient).all():
        raise ValueError("gradient contains NaN or Inf")
