"""The Brain-JEPA encoder: a ViT over ROI x time-patch tokens."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from brainjepa.models.config import ModelConfig
from brainjepa.models.layers import Block, GradientPosEmbed, PatchEmbed, gather_tokens


def run_blocks(blocks: nn.ModuleList, x: Tensor, grad_checkpointing: bool) -> Tensor:
    """Apply blocks in order, recomputing activations in backward when checkpointing is on."""
    for block in blocks:
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x


class BrainEncoder(nn.Module):
    """Patch embedding + gradient positions -> (optional context selection) -> blocks -> LayerNorm.

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
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory: recompute each block's activations during backward."""
        self.grad_checkpointing = enable

    def forward(self, x: Tensor, context_idx: Tensor | None = None) -> Tensor:
        """x [B, R, T] or [B, 1, R, T] -> tokens [B, R*P, D], or [B, K, D] at context_idx [B, K]."""
        x = self._check_input(x)
        tokens = self.patch_embed(x) + self.pos_embed().unsqueeze(0)
        if context_idx is not None:
            tokens = gather_tokens(tokens, context_idx)
        return self.norm(run_blocks(self.blocks, tokens, self.grad_checkpointing))

    def forward_at(self, x: Tensor, idx: Tensor) -> Tensor:
        """Full-sequence features gathered at idx [B, K]: equal to `gather(forward(x), idx)`, but the last block
        updates only the K selected tokens (they still attend to all tokens); used for JEPA targets."""
        x = self._check_input(x)
        tokens = self.patch_embed(x) + self.pos_embed().unsqueeze(0)
        tokens = run_blocks(self.blocks[:-1], tokens, self.grad_checkpointing)
        return self.norm(self.blocks[-1](gather_tokens(tokens, idx), tokens))

    def _check_input(self, x: Tensor) -> Tensor:
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        R, T = self.cfg.num_rois, self.cfg.num_frames
        if x.ndim != 3 or x.shape[1:] != (R, T):
            raise ValueError(f"encoder expects input [B, {R}, {T}] or [B, 1, {R}, {T}], got {tuple(x.shape)}")
        return x


def _check_gradient(gradient: Tensor, cfg: ModelConfig) -> None:
    expected = (cfg.num_rois, cfg.gradient_dim)
    if tuple(gradient.shape) != expected:
        raise ValueError(f"gradient must have shape {list(expected)} (ROIs x components), got {list(gradient.shape)}")
    if not torch.isfinite(gradient).all():
        raise ValueError("gradient contains NaN or Inf")
