"""Building blocks shared by the encoder, the predictor and downstream heads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainjepa.models import onednn_attention

InferenceKernel = Literal["sdpa", "onednn"]
INFERENCE_KERNELS: tuple[str, ...] = get_args(InferenceKernel)


def use_fused_attn() -> bool:
    """The path a new attention layer starts on: SDPA unless BRAINJEPA_FUSED_ATTN=0; `set_fused_attn` switches
    layers that exist."""
    return os.environ.get("BRAINJEPA_FUSED_ATTN", "1") != "0"


def set_fused_attn(module: nn.Module, enable: bool = True) -> None:
    """The one attention switch: every `Attention` inside `module` to SDPA (fused) or the explicit softmax path
    (the same numbers within 1e-5; the explicit path is the reference's, and the one FLOP counters can see)."""
    for m in module.modules():
        if isinstance(m, Attention):
            m.fused = enable


def set_inference_attention(module: nn.Module, kernel: InferenceKernel) -> None:
    """The kernel of every fused self-attention call inside `module` that needs no gradient and runs on a CPU in
    bf16 (embedding, the target encoder's pass): torch's SDPA, or oneDNN's fused attention
    (`models.onednn_attention`; 1.4x faster on a Zen 4 without AMX). Every other call runs SDPA whatever this says:
    a call that needs a gradient, in fp32, on a GPU, under torch.compile, or attending to a context.

    Raises:
        ValueError: an unknown kernel, or "onednn" where this torch build cannot reach it.
    """
    if kernel not in INFERENCE_KERNELS:
        raise ValueError(f"attention kernel must be one of {', '.join(INFERENCE_KERNELS)}, got {kernel!r}")
    if kernel == "onednn" and not onednn_attention.available():
        raise ValueError("attention kernel 'onednn': this torch build has no oneDNN fuser; use 'sdpa'")
    for m in module.modules():
        if isinstance(m, Attention):
            m.inference_kernel = kernel


@contextmanager
def inference_attention(module: nn.Module, kernel: InferenceKernel) -> Iterator[None]:
    """`set_inference_attention` for the duration of a block, restoring each layer's kernel after it."""
    layers = [m for m in module.modules() if isinstance(m, Attention)]
    before = [m.inference_kernel for m in layers]
    set_inference_attention(module, kernel)
    try:
        yield
    finally:
        for m, k in zip(layers, before, strict=True):
            m.inference_kernel = k


def check_token_indices(idx: object, name: str, batch: int, num_tokens: int, *, check_values: bool = True) -> None:
    """Refuse token indices that are not what the models take: a torch.Tensor [B, K] of int64 in [0, num_tokens).

    The values are checked when `check_values` (callers skip it on CUDA in training, where it would wait for the
    device every step, and under torch.compile); a CPU tensor costs nothing to check.

    Raises:
        TypeError: not a tensor, or not int64.
        ValueError: not [batch, K], or a value outside [0, num_tokens).
    """
    expect = f"a torch.Tensor [B, K] of int64 token indices in [0, R*P) = [0, {num_tokens})"
    if not isinstance(idx, Tensor):
        raise TypeError(f"{name} must be {expect}, got {type(idx).__module__}.{type(idx).__name__}"
                        + ("; convert it with torch.from_numpy(idx).long()" if hasattr(idx, "__array__") else ""))
    if idx.dtype != torch.int64:
        raise TypeError(f"{name} must be {expect}, got dtype {str(idx.dtype).removeprefix('torch.')}; convert it "
                        "with .long()")
    if idx.ndim != 2 or idx.shape[0] != batch:
        raise ValueError(f"{name} must be {expect} with B = {batch} (the input's batch), got shape {list(idx.shape)}")
    if check_values and idx.numel() and not torch.compiler.is_compiling():
        inside = ((idx >= 0) & (idx < num_tokens)).all()
        try:
            if idx.device.type == "cpu":  # raises here, without reading a value on the host (a training step)
                torch._assert_async(inside, "token index out of range")
            elif not inside:  # an eval-mode call on a device: one sync, before gather's device-side assert
                raise RuntimeError("token index out of range")
        except RuntimeError:
            low, high = (int(v) for v in torch.stack([idx.min(), idx.max()]).tolist())
            raise ValueError(f"{name} must be {expect}, got values from {low} to {high}") from None


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """Select tokens per sample: x [B, N, D], idx LongTensor [B, K] -> [B, K, D]."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """Fixed 1-D sin-cos code, [N] -> [N, dim]: first dim/2 channels sin, next dim/2 cos.

    omega_k = 1 / 10000^(k / (dim/2)), k = 0..dim/2-1 (MAE / I-JEPA convention, in float64 then cast).
    """
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention with a fused (SDPA) and a manual path that compute the same thing."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = use_fused_attn()  # switched with `set_fused_attn`
        self.inference_kernel: InferenceKernel = "sdpa"  # switched with `set_inference_attention`
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Self-attention of x [B, N, D]; with `context` [B, M, D], x's tokens attend to the context's instead."""
        B, N, D = x.shape
        if context is None:
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
        else:
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x, w[:D], None if b is None else b[:D])
            kv = F.linear(context, w[D:], None if b is None else b[D:])
            q = q.reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
            k, v = kv.reshape(B, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused and self.inference_kernel == "onednn" and context is None and onednn_attention.applies(q, k, v):
            x = onednn_attention.attention(q, k, v)  # self-attention only: its shape is the same every call
        elif self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample during training.

    The masks come from torch's default generator, which activation checkpointing saves and restores, so the
    recomputed forward drops the same samples; pretraining reseeds it from (seed, step) before each micro-batch.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(LN x), then x + MLP(LN x)."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """With `context` (the full sequence x was gathered from), only x's tokens are updated: the same outputs
        as running the block on the full sequence and gathering afterwards, at a fraction of the cost."""
        kv = None if context is None else self.norm1(context)
        x = x + self.drop_path(self.attn(self.norm1(x), kv))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Per-ROI temporal patches: [B, R, T] -> [B, R*P, D], ROI-major (token = r*P + t).

    A Linear over each ROI's patch_size consecutive frames (the reference's Conv2d with kernel (1, p) and
    stride (1, p) is the same map; its weight [D, 1, 1, p] reshapes to ours [D, p]).
    """

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(patch_size, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, R, T = x.shape
        return self.proj(x.reshape(B, R * (T // self.patch_size), self.patch_size))


class GradientPosEmbed(nn.Module):
    """Brain-gradient positioning: [temporal sin-cos (D/2) | spatial (D/2)] per token -> [R*P, D].

    `mapping`: spatial half = Linear(gradient [R, G]) min-max scaled to [-1, 1] over the whole table
    (recomputed every forward, differentiable), as in the reference's GradTs_2dPE. `sincos`: spatial half is a
    fixed sin-cos code of the ROI index. The gradient is a buffer saved with the weights.
    """

    def __init__(self, gradient: Tensor, num_time_patches: int, dim: int, kind: str = "mapping") -> None:
        super().__init__()
        if gradient.ndim != 2:
            raise ValueError(f"gradient must be [R, G], got shape {tuple(gradient.shape)}")
        self.kind = kind
        self.num_time_patches = num_time_patches
        self.register_buffer("gradient", gradient.detach().clone().float())
        half = dim // 2
        self.register_buffer("temporal", sincos_1d(torch.arange(num_time_patches), half), persistent=False)
        if kind == "mapping":
            self.proj = nn.Linear(gradient.shape[1], half)
        else:
            self.register_buffer("spatial", sincos_1d(torch.arange(gradient.shape[0]), half), persistent=False)

    def spatial_code(self) -> Tensor:
        if self.kind != "mapping":
            return self.spatial
        s = self.proj(self.gradient)
        lo, hi = s.min(), s.max()
        return 2.0 * (s - lo) / (hi - lo) - 1.0

    def forward(self) -> Tensor:
        spatial = self.spatial_code()
        R, P, half = spatial.shape[0], self.num_time_patches, spatial.shape[1]
        return torch.cat(
            [self.temporal.unsqueeze(0).expand(R, P, half), spatial.unsqueeze(1).expand(R, P, half)], dim=-1
        ).reshape(R * P, 2 * half)
