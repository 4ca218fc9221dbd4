"""Does the encoder compute something on this data? Diagnostics of the residual stream on real windows.

Two regimes make a Brain-JEPA encoder useless while every loss and probe still runs:

* **patch-dominated**: the input is so large that the patch embedding outweighs the positional code and the
  blocks' updates (e.g. robust scaling of demeaned runs: window SD ~400). The encoder is then LayerNorm(W patch):
  a per-patch linear map, identical at random init and after pretraining.
* **position-dominated**: the input is so small that the token features are mostly the positional code (unit-scale
  input into a fresh model); JEPA targets are then predictable from position and the loss falls to ~0.

`encoder_health` measures, on normalised windows, where a model sits: the input SD, the token norms of the patch
embedding and of the positions, how much the blocks change the residual stream, and the share of the final
features' variance that differs between windows (content) rather than between token positions. `calibrate_gain`
gives the input gain at which patch and position norms match (the rule behind `data.input_gain: auto`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from brainjepa.models.encoder import BrainEncoder

# Healthy ranges (issue 16): the blocks change the stream by >= 10%, and between 15% and 85% of the final features'
# variance differs between windows (the rest is the token position).
MIN_BLOCK_RATIO = 0.1
RUN_SHARE_RANGE = (0.15, 0.85)
PATCH_DOMINANCE = 3.0  # patch/position token-norm ratio above which small block updates mean a per-patch map
HEALTH_FIELDS = ("input_sd", "patch_norm", "pos_norm", "block_ratio", "run_share")


@dataclass(frozen=True)
class Health:
    """Residual-stream diagnostics of an encoder on a set of windows (medians over tokens).

    input_sd: SD of the normalised input windows. patch_norm / pos_norm: median token norm of the patch embedding
    (bias excluded) and of the positional embedding. block_ratio: median over tokens of |x_L - x_0| / |x_0|, x_0 the
    embedded tokens (patch + position) and x_L the stream after the last block (before the final norm).
    run_share: the share of the final features' sum of squares (about each channel's mean) that is each token's
        spread across windows, in [0, 1] (content vs position: the rest is the spread between token positions).
    """

    input_sd: float
    patch_norm: float
    pos_norm: float
    block_ratio: float
    run_share: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def problems(self) -> list[str]:
        """One sentence per degenerate regime this model is in on these windows, naming the cause and the fix.

        Patch-dominated: the patch embedding outweighs the position code (> `PATCH_DOMINANCE` x) and the blocks change
        the stream by less than `MIN_BLOCK_RATIO` (a fresh shallow model with balanced input also has small block
        updates, which training grows: that alone is not warned about). Position-dominated: less than the low end of
        `RUN_SHARE_RANGE` of the feature variance differs between windows.
        """
        out = []
        ratio = self.patch_norm / max(self.pos_norm, 1e-12)
        if self.block_ratio < MIN_BLOCK_RATIO and ratio > PATCH_DOMINANCE:
            out.append(
                f"the blocks change the residual stream by only {100 * self.block_ratio:.1f}% (healthy >= "
                f"{100 * MIN_BLOCK_RATIO:.0f}%): input SD {self.input_sd:.3g} makes the patch embedding {ratio:.3g}x "
                "the position code, so the encoder is close to a per-patch linear map. Use data.normalization="
                "roi_zscore with data.input_gain=auto (the default), or a smaller data.input_gain")
        if self.run_share < RUN_SHARE_RANGE[0]:
            out.append(
                f"only {100 * self.run_share:.1f}% of the feature variance differs between windows (healthy >= "
                f"{100 * RUN_SHARE_RANGE[0]:.0f}%): the features are mostly the token position (input SD "
                f"{self.input_sd:.3g}, patch/position norm {ratio:.3g}), so JEPA targets are predictable from position "
                "alone. Raise data.input_gain (auto matches patch and position norms)")
        return out

    def summary(self) -> str:
        return (f"input SD {self.input_sd:.3g}, |patch| {self.patch_norm:.3g} vs |position| {self.pos_norm:.3g}, "
                f"blocks change the stream by {100 * self.block_ratio:.1f}%, {100 * self.run_share:.1f}% of feature "
                "variance between windows")


def _token_norm(x: Tensor) -> Tensor:
    return x.float().norm(dim=-1)


class HealthMeter:
    """`Health` accumulated over batches of windows whose last-block stream the caller has already computed.

    An embedding call feeds it from its own forward passes, so the check costs a patch embedding and a few
    reductions per window instead of a second pass of the whole encoder. Sums are float64 over windows, on the CPU; the
    medians keep one value per token.
    """

    def __init__(self, encoder: BrainEncoder):
        self.encoder = encoder
        self.windows = 0
        self._moments = [0.0, 0.0, 0.0]  # of the input: count, sum, sum of squares
        self._patch: list[Tensor] = []  # per-token norms of the patch embedding (bias excluded)
        self._ratio: list[Tensor] = []  # per-token |x_L - x_0| / |x_0|
        self._sum: Tensor | None = None  # [N, D] sums of the final features over windows, and of their squares
        self._sq: Tensor | None = None

    @torch.no_grad()
    def add(self, x: Tensor, stream: Tensor) -> None:
        """Take windows x [B, R, T] (normalised) and the stream after the encoder's last block on them [B, N, D].

        Call it under the autocast the stream was computed in: the embedded tokens x_0 are recomputed here, and
        must round as the stream's own did.
        """
        if len(x) != len(stream):
            raise ValueError(f"HealthMeter.add: {len(x)} windows but a stream of {len(stream)}")
        enc = self.encoder
        x = x.float()
        patch = enc.patch_embed(x).float()  # in bf16 under autocast, as in the encoder
        bias = enc.patch_embed.proj.bias
        content = patch - bias.float() if bias is not None else patch
        x0 = patch + enc.pos_embed().float()
        stream = stream.float()
        self._moments = [a + float(b) for a, b in zip(self._moments, (x.numel(), x.double().sum(),
                                                                       x.double().square().sum()), strict=True)]
        self._patch.append(_token_norm(content).flatten().cpu())
        self._ratio.append((_token_norm(stream - x0) / _token_norm(x0).clamp_min(1e-12)).flatten().cpu())
        for window in stream:  # one window's [N, D] at a time in float64: memory does not grow with the batch
            final = enc.norm(window).double().cpu()
            self._sum = final if self._sum is None else self._sum + final
            self._sq = final.square() if self._sq is None else self._sq + final.square()
        self.windows += len(x)

    @torch.no_grad()
    def result(self) -> Health:
        """The diagnostics of every window added.

        Raises:
            ValueError: fewer than 2 windows were added (the content share needs windows to differ).
        """
        if self.windows < 2 or self._sum is None or self._sq is None:
            raise ValueError(f"encoder health needs at least 2 windows, got {self.windows}")
        w = self.windows
        # Sums of squares, so that the share is a fraction of one total (in [0, 1]): each token's spread across
        # windows about its own mean, over the spread of every window's tokens about each channel's grand mean.
        # (Two variances with their own degrees of freedom put it up to w / (w - 1), 2 at two windows.)
        between = (self._sq - self._sum.square() / w).sum()
        t1, t2 = self._sum.sum(0), self._sq.sum(0)
        total = (t2 - t1.square() / (w * self._sum.shape[0])).sum()
        n, s, sq = self._moments
        return Health(input_sd=math.sqrt(max(sq - s * s / n, 0.0) / (n - 1)),
                      patch_norm=float(torch.cat(self._patch).median()),
                      pos_norm=float(_token_norm(self.encoder.pos_embed().float()).median()),
                      block_ratio=float(torch.cat(self._ratio).median()),
                      run_share=float(between / total.clamp_min(1e-12)))


@torch.no_grad()
def encoder_health(encoder: BrainEncoder, x: Tensor, batch: int | None = None) -> Health:
    """Diagnostics of `encoder` on normalised windows x [B, R, T] (B >= 2 windows, ideally from different runs),
    in forward passes of at most `batch` windows (default: one pass).

    Runs in fp32 in eval mode (drop path off); the encoder's training mode is restored afterwards.
    """
    if x.ndim != 3 or x.shape[0] < 2:
        raise ValueError(f"encoder_health needs at least 2 windows [B, R, T], got {tuple(x.shape)}")
    was_training = encoder.training
    encoder.eval()
    try:
        meter = HealthMeter(encoder)
        for part in x.split(batch or len(x)):
            meter.add(part, encoder.forward_intermediates(part.float(), [-1])[0])
        return meter.result()
    finally:
        encoder.train(was_training)


@torch.no_grad()
def calibrate_gain(encoder: BrainEncoder, x: Tensor) -> float:
    """The input gain g at which the patch embedding of g * x has the median token norm of the position code.

    The patch embedding is linear, so |W (g x)| = g |W x| (bias excluded); g = median |pos| / median |W x|. With
    a fresh model this balances content and position at the first layer (about 7-9 at the default init for
    unit-variance windows, whatever the width).
    """
    content = encoder.patch_embed(x.float())
    bias = encoder.patch_embed.proj.bias
    if bias is not None:
        content = content - bias
    scale = float(_token_norm(content).median())
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError("calibrate_gain: the windows give a zero patch embedding (constant or empty input)")
    return float(_token_norm(encoder.pos_embed()).median()) / scale
