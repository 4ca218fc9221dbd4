"""Analytic cost of one JEPA pretraining step: FLOPs (for MFU) and an estimate of its memory (for batch sizes).

Pure arithmetic on a `ModelConfig` and the mask lengths, so GPU runs can be planned without a GPU. FLOPs count the
matrix products of the model (linear layers and the two attention products), 2 FLOPs per multiply-add; backward
is twice the forward, except where only a weight gradient exists (patch and gradient embeddings, whose inputs need
no gradient). This is the "model FLOPs" of MFU: work a fused attention kernel repeats in its backward is not
counted. Element-wise work (norms, GELU, softmax, AdamW, EMA) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from brainjepa.models.config import ModelConfig


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one optimizer step on one batch, by network."""

    target: float  # EMA target encoder, forward only (no gradients)
    context: float  # context encoder, forward + backward
    predictor: float  # predictor, forward + backward

    @property
    def total(self) -> float:
        return self.target + self.context + self.predictor


def block_flops(queries: int, keys: int, dim: int, hidden: int) -> int:
    """Forward FLOPs of one pre-norm Transformer block for one sequence.

    `queries` tokens are updated and attend to `keys` tokens (equal for self-attention; the target encoder's last
    block updates only the target tokens against the full sequence).
    """
    q_and_out = 2 * queries * dim * dim * 2  # query projection + output projection
    kv = 2 * keys * dim * 2 * dim  # key and value projections
    attention = 2 * 2 * queries * keys * dim  # q @ k^T and attn @ v, over all heads
    mlp = 2 * 2 * queries * dim * hidden
    return q_and_out + kv + attention + mlp


def _hidden(cfg: ModelConfig, dim: int) -> int:
    return int(dim * cfg.mlp_ratio)


def _position_flops(cfg: ModelConfig, dim: int) -> int:
    """Linear(gradient [R, G] -> dim/2) of the 'mapping' positions: once per forward, not per sample."""
    return 2 * cfg.num_rois * cfg.gradient_dim * (dim // 2) if cfg.pos_embed == "mapping" else 0


def step_flops(cfg: ModelConfig, k_context: int, k_target: int, batch_size: int = 1) -> StepFlops:
    """FLOPs of `model(x, ctx, tgt)` + backward for a batch whose masks keep k_context / k_target tokens.

    Raises:
        ValueError: a mask length outside 1..num_patches, or batch_size < 1.
    """
    n, dim, pdim = cfg.num_patches, cfg.embed_dim, cfg.pred_embed_dim
    for name, k in (("k_context", k_context), ("k_target", k_target)):
        if not 1 <= k <= n:
            raise ValueError(f"{name}={k} must be between 1 and the {n} tokens of the model")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    hidden, phidden = _hidden(cfg, dim), _hidden(cfg, pdim)
    patch = 2 * n * cfg.patch_size * dim  # Linear(p -> D) over every token, before any selection
    enc_pos = _position_flops(cfg, dim)

    target = batch_size * (patch + (cfg.depth - 1) * block_flops(n, n, dim, hidden)
                           + block_flops(k_target, n, dim, hidden)) + enc_pos
    # backward of the patch and position embeddings: weight gradients only (x and the gradient need none)
    context = batch_size * (3 * cfg.depth * block_flops(k_context, k_context, dim, hidden) + 2 * patch) + 2 * enc_pos
    tokens = k_context + k_target
    pred_fwd = 2 * k_context * dim * pdim + cfg.pred_depth * block_flops(tokens, tokens, pdim, phidden) \
        + 2 * k_target * pdim * dim
    predictor = batch_size * 3 * pred_fwd + 2 * _position_flops(cfg, pdim)
    return StepFlops(float(target), float(context), float(predictor))


def parameter_count(cfg: ModelConfig) -> tuple[int, int]:
    """(encoder, predictor) trainable parameters; the target encoder has as many as the encoder."""

    def blocks(dim: int, depth: int) -> int:
        hidden = _hidden(cfg, dim)
        per = 4 * dim + (3 * dim * dim + 3 * dim * cfg.qkv_bias) + (dim * dim + dim) + 2 * dim * hidden + hidden + dim
        return depth * per

    def positions(dim: int) -> int:
        return cfg.gradient_dim * (dim // 2) + dim // 2 if cfg.pos_embed == "mapping" else 0

    dim, pdim = cfg.embed_dim, cfg.pred_embed_dim
    encoder = cfg.patch_size * dim + dim + positions(dim) + blocks(dim, cfg.depth) + 2 * dim
    predictor = (dim * pdim + pdim) + pdim + positions(pdim) + blocks(pdim, cfg.pred_depth) + 2 * pdim \
        + (pdim * dim + dim)
    return encoder, predictor


def step_memory_bytes(cfg: ModelConfig, k_context: int, k_target: int, batch_size: int, *, bf16: bool = True,
                      grad_checkpointing: bool = False) -> int:
    """Estimated peak GPU memory of one training step, in bytes: an estimate for planning, not a measurement.

    Model state: fp32 weights of encoder, predictor and target encoder, fp32 gradients and two AdamW moments of
    the trainable ones, plus autocast's bf16 weight copies. Activations kept for backward, per token of a block:
    with bf16 autocast about (22 + 4 * mlp_ratio) * D bytes (fp32 residual stream and LayerNorm inputs; bf16 inputs
    of the linear layers, q/k/v and the fused attention output; the MLP hidden layer twice), twice that in fp32;
    with checkpointing, each block's fp32 input plus one block recomputed at a time. The target pass comes first
    and frees its activations block by block (about (10 + 4 * mlp_ratio) * D bytes per token alive at its peak),
    so the step's peak is the larger of the two.
    """
    enc, pred = parameter_count(cfg)
    state = 4 * (2 * enc + pred) + 12 * (enc + pred) + (2 * (2 * enc + pred) if bf16 else 0)
    scale = 1 if bf16 else 2

    def per_token_block(dim: int) -> float:
        return scale * (22 + 4 * cfg.mlp_ratio) * dim

    def kept(tokens: int, dim: int, depth: int) -> float:
        if grad_checkpointing:
            return tokens * (4 * dim * depth + per_token_block(dim))
        return tokens * per_token_block(dim) * depth

    training = kept(k_context, cfg.embed_dim, cfg.depth) + kept(k_context + k_target, cfg.pred_embed_dim,
                                                                 cfg.pred_depth)
    target_pass = cfg.num_patches * scale * (10 + 4 * cfg.mlp_ratio) * cfg.embed_dim
    return int(state + batch_size * max(training, target_pass))
