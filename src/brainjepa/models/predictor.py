"""The narrow predictor: context tokens + mask tokens at target positions -> predicted target features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from brainjepa.models.config import ModelConfig
from brainjepa.models.encoder import run_blocks
from brainjepa.models.layers import Block, GradientPosEmbed, gather_tokens


class BrainPredictor(nn.Module):
    """Linear(D -> D_pred) + own positions; mask tokens at targets; blocks; LayerNorm; Linear(D_pred -> D)."""

    def __init__(self, cfg: ModelConfig, gradient: Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.pred_embed_dim
        self.embed = nn.Linear(cfg.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = GradientPosEmbed(gradient, cfg.num_time_patches, dim, cfg.pos_embed)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.pred_depth).tolist()
        self.blocks = nn.ModuleList(
            Block(dim, cfg.predictor_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias,
                  drop_path=rate, norm_eps=cfg.norm_eps)
            for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.proj = nn.Linear(dim, cfg.embed_dim)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, z: Tensor, context_idx: Tensor, target_idx: Tensor) -> Tensor:
        """z [B, K, D] context features at context_idx [B, K]; returns predictions [B, K_pred, D] at target_idx."""
        if context_idx.shape != z.shape[:2]:
            raise ValueError(f"context_idx {tuple(context_idx.shape)} does not match z {tuple(z.shape[:2])}")
        if target_idx.ndim != 2 or target_idx.shape[0] != z.shape[0]:
            raise ValueError(f"target_idx must be [B, K_pred] with B={z.shape[0]}, got {tuple(target_idx.shape)}")
        pos = self.pos_embed().unsqueeze(0).expand(z.shape[0], -1, -1)
        ctx = self.embed(z) + gather_tokens(pos, context_idx)
        queries = self.mask_token + gather_tokens(pos, target_idx)
        x = run_blocks(self.blocks, torch.cat([ctx, queries], dim=1), self.grad_checkpointing)
        return self.proj(self.norm(x[:, ctx.shape[1]:]))
