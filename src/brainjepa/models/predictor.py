"""The narrow predictor: context tokens + mask tokens at target positions -> predicted target features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from brainjepa.models.config import ModelConfig
from brainjepa.models.encoder import run_blocks
from brainjepa.models.layers import Block, GradientPosEmbed, check_token_indices, gather_tokens


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
        """z [B, K, D] context features at context_idx [B, K]; returns predictions [B, K_pred, D] at target_idx.

        Raises:
            TypeError / ValueError: indices that are not int64 [B, K] in [0, R*P), or context_idx not matching z.
        """
        if not isinstance(z, torch.Tensor) or z.ndim != 3 or z.shape[-1] != self.cfg.embed_dim:
            got = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"the predictor takes context features z [B, K, {self.cfg.embed_dim}], got {got}")
        check_values = z.device.type == "cpu" or not self.training
        for name, idx in (("context_idx", context_idx), ("target_idx", target_idx)):
            check_token_indices(idx, name, z.shape[0], self.cfg.num_patches, check_values=check_values)
        if context_idx.shape != z.shape[:2]:
            raise ValueError(f"context_idx {list(context_idx.shape)} does not match z {list(z.shape[:2])}")
        pos = self.pos_embed().unsqueeze(0).expand(z.shape[0], -1, -1)
        ctx = self.embed(z) + gather_tokens(pos, context_idx)
        queries = self.mask_token + gather_tokens(pos, target_idx)
        x = run_blocks(self.blocks, torch.cat([ctx, queries], dim=1), self.grad_checkpointing)
        return self.proj(self.norm(x[:, ctx.shape[1]:]))
