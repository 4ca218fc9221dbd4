"""oneDNN's fused attention for bf16 inference on CPUs, where it beats torch's own CPU flash kernel.

Without AMX, PyTorch's CPU flash kernel gains little from bf16 (on a Zen 4 with `avx512_bf16`: 121 GFLOP/s in
bf16 against 123 in fp32, 0.36 of the bf16 matmul peak, [2, 6, 4500, 64]). oneDNN's graph library recognises
`softmax(q k^T * s) v` as one partition and runs it fused with bf16 micro-kernels (169 GFLOP/s, 1.39x, on the same
shape; benchmarks/bench_attention.py, RESULTS.md). PyTorch reaches that library only through its TorchScript
fuser, so this module scripts the three-op attention once per shape (TorchScript's profiling executor specialises a
graph to the shapes it first sees) and runs the frozen graph with the fuser switched on around the call (and off
again after, so that other TorchScript code in the process is untouched).

The first, unfused call of a shape holds its [pairs, query rows, N] scores twice (the product and its softmax). A
call is therefore split along its (batch x head) pairs into calls of at most `pairs_per_call` pairs, so that this
one-off pass stays under `MAX_FIRST_CALL_BYTES` whatever the batch size: unsplit, and before the query blocks
below, a batch of 16 windows of the small model held 7.3 GiB for that pass (RESULTS.md). Fewer pairs per call cost
a little speed (on the Zen 4 of RESULTS.md, 48 pairs [N 4,500] took 1.26 s in one call, 1.36 s in two), so the
split keeps calls as large as the budget allows.

Queries run in blocks of at most `QUERY_ROWS` rows, each block against all keys, which also shrinks that first
call by N / QUERY_ROWS. On the Zen 4 of RESULTS.md one call over all 4,500 queries ran at 0.51-0.54 of the bf16
peak, blocks of 188-282 rows at 0.69-0.72 (a ViT-B window's 12 heads: 0.290 s against 0.222-0.227 s; 6 heads:
0.168 against 0.120 s), smaller blocks no faster.

Only for calls that need no gradient (embedding, the target encoder's pass): the graph has no backward. Scores are
rounded to bf16 before the softmax (the flash kernel keeps them in fp32): the attention output differs from fp32 by
about 2x SDPA's bf16 error, well inside what bf16 autocast gives elsewhere (tests/test_onednn_attention.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

_Key = tuple[tuple[int, ...], tuple[int, ...], torch.dtype]
_GRAPHS: dict[_Key, torch.jit.ScriptModule] = {}
MAX_FIRST_CALL_BYTES = 2 * 2**30  # what a shape's unfused first call may hold in scores (two bf16 [pairs, rows, N])
QUERY_ROWS = 256  # query rows per call (measured: see the module docstring)


def available() -> bool:
    """Whether this torch build has oneDNN and the TorchScript fuser that reaches its fused attention."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.jit, "enable_onednn_fusion")


def applies(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """Whether a call can take the oneDNN kernel: CPU, bf16, no gradient wanted (the graph has no backward), and
    not inside torch.compile."""
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    return (q.device.type == "cpu" and q.dtype == torch.bfloat16 and not needs_grad and available()
            and not torch.compiler.is_compiling())  # a compiled graph keeps SDPA: dynamo cannot trace TorchScript


class _Core(nn.Module):
    """The pattern oneDNN's graph library fuses: q is scaled first (by a constant: a scale computed from q's shape
    inside the graph would add ops the fuser refuses), so that the scores need no pass of their own."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return torch.matmul(torch.softmax(torch.matmul(q * self.scale, k.transpose(-2, -1)), dim=-1), v)


@contextmanager
def _fuser_on() -> Iterator[None]:
    before = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(True)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(before)


def _graph(q: Tensor, k: Tensor, v: Tensor) -> torch.jit.ScriptModule:
    key = (tuple(q.shape), tuple(k.shape), q.dtype)
    if key not in _GRAPHS:
        with warnings.catch_warnings():  # TorchScript is deprecated, and the only door to this kernel in torch 2.x
            warnings.simplefilter("ignore", DeprecationWarning)
            with torch.no_grad():
                _GRAPHS[key] = torch.jit.freeze(torch.jit.script(_Core(q.shape[-1] ** -0.5).eval()))
    return _GRAPHS[key]


def _even_steps(total: int, most: int) -> int:
    """The step that splits `total` into the fewest parts of at most `most`, as equal as they can be (so that a
    split has at most two shapes, each profiled once)."""
    return -(-total // -(-total // most))


def pairs_per_call(n_q: int, n_kv: int) -> int:
    """The most (batch x head) pairs one fused call takes: its first, unfused call holds two bf16 [pairs, n_q, n_kv]
    score tensors, within `MAX_FIRST_CALL_BYTES` (at least one pair)."""
    return max(1, MAX_FIRST_CALL_BYTES // (2 * 2 * n_q * n_kv))


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v for contiguous-able [B, H, N, d] bf16 CPU tensors, through oneDNN's fused kernel.

    The B x H pairs run in calls of at most `pairs_per_call` pairs and the queries in blocks of at most `QUERY_ROWS`
    rows, both as equal as the counts allow, so that a few shapes are profiled whatever the batch (the module
    docstring says why). The first call of a new shape runs the unfused graph (TorchScript profiles it); later calls
    are fused. Callers check `applies` first.
    """
    b, h, n, _ = q.shape
    q, k, v = (t.contiguous().view(1, b * h, *t.shape[2:]) for t in (q, k, v))  # pairs in one axis, free views
    rows = _even_steps(n, QUERY_ROWS)
    pairs = _even_steps(b * h, pairs_per_call(rows, k.shape[2]))
    with _fuser_on(), torch.autocast("cpu", enabled=False):
        outs = [torch.cat([_graph(qb, kp, vp)(qb, kp, vp) for qb in qp.split(rows, 2)], 2)
                for qp, kp, vp in zip(q.split(pairs, 1), k.split(pairs, 1), v.split(pairs, 1), strict=True)]
    return torch.cat(outs, 1).view(b, h, n, v.shape[-1])
