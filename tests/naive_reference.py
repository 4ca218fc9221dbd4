"""An independent, deliberately naive re-statement of the reference forward pass (from spec/reference.md).

Used to check our model at shapes the golden tensors do not cover. Loops over heads, a Conv2d patch embedding,
token-by-token positional tables: slow and obvious, sharing no code with brainjepa.models.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def sincos(pos: int, dim: int) -> torch.Tensor:
    quarter = dim // 2
    vals = [pos / 10000 ** (k / quarter) for k in range(quarter)]
    return torch.tensor([math.sin(v) for v in vals] + [math.cos(v) for v in vals])


def pos_table(sd, prefix, R, P, dim, gradient):
    temporal = torch.stack([sincos(n % P, dim // 2) for n in range(R * P)])
    spatial = gradient @ sd[prefix + "proj.weight"].T + sd[prefix + "proj.bias"]
    spatial = spatial.repeat_interleave(P, dim=0)
    spatial = (spatial - spatial.min()) / (spatial.max() - spatial.min()) * 2 - 1
    return torch.cat([temporal, spatial], dim=1)


def attention(x, sd, p, heads):
    B, N, D = x.shape
    hd = D // heads
    qkv = x @ sd[p + "qkv.weight"].T + sd[p + "qkv.bias"]
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
    outs = []
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd), dim=-1)
        outs.append(a @ v[..., sl])
    return torch.cat(outs, -1) @ sd[p + "proj.weight"].T + sd[p + "proj.bias"]


def block(x, sd, p, heads, eps):
    x = x + attention(layer_norm(x, sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps), sd, p + "attn.", heads)
    h = layer_norm(x, sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
    h = F.gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
    return x + h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]


def encoder(sd, cfg, x, gradient, idx=None):
    P, D = cfg.num_frames // cfg.patch_size, cfg.embed_dim
    w = sd["patch_embed.proj.weight"].reshape(D, 1, 1, cfg.patch_size)
    t = F.conv2d(x[:, None], w, sd["patch_embed.proj.bias"], stride=(1, cfg.patch_size))  # [B, D, R, P]
    t = t.flatten(2).transpose(1, 2) + pos_table(sd, "pos_embed.", cfg.num_rois, P, D, gradient)
    if idx is not None:
        t = torch.stack([t[b, idx[b]] for b in range(t.shape[0])])
    for i in range(cfg.depth):
        t = block(t, sd, f"blocks.{i}.", cfg.num_heads, cfg.norm_eps)
    return layer_norm(t, sd["norm.weight"], sd["norm.bias"], cfg.norm_eps)


def predictor(sd, cfg, z, ctx, tgt, gradient):
    P, Dp = cfg.num_frames // cfg.patch_size, cfg.pred_embed_dim
    pos = pos_table(sd, "pos_embed.", cfg.num_rois, P, Dp, gradient)
    c = z @ sd["embed.weight"].T + sd["embed.bias"] + torch.stack([pos[i] for i in ctx])
    m = sd["mask_token"][0] + torch.stack([pos[i] for i in tgt])
    x = torch.cat([c, m], 1)
    for i in range(cfg.pred_depth):
        x = block(x, sd, f"blocks.{i}.", cfg.predictor_heads, cfg.norm_eps)
    x = layer_norm(x, sd["norm.weight"], sd["norm.bias"], cfg.norm_eps)[:, c.shape[1]:]
    return x @ sd["proj.weight"].T + sd["proj.bias"]
