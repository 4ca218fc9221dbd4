"""`torch.compile` of the pretraining forward (target pass, context encoder, predictor, loss) that compiles once.

The masks give every batch its own context and target token counts, and a graph specialised to the sizes it first
saw would be compiled again for each new count (dynamo's automatic dynamic shapes catch up only after a
recompilation or two). So the token dimension of both index tensors is marked dynamic before every call: one graph
serves all mask sizes. Under DDP dynamo splits the graph at gradient-bucket boundaries, so there the count is one
graph per bucket.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch._dynamo
from torch import nn

from brainjepa.models.jepa import JEPAOutput

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], JEPAOutput]


def compile_forward(net: nn.Module, backend: str = "inductor") -> Forward:
    """`net(x, context_idx, target_idx)` compiled by `backend`, with the token dimension of the indices dynamic."""
    compiled = torch.compile(net, backend=backend)

    def forward(x: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> JEPAOutput:
        torch._dynamo.maybe_mark_dynamic(context_idx, 1)
        torch._dynamo.maybe_mark_dynamic(target_idx, 1)
        return compiled(x, context_idx, target_idx)

    return forward


def graphs_compiled() -> int:
    """Graphs dynamo has compiled in this process so far (a recompilation adds one)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
