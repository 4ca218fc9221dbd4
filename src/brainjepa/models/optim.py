"""The one AdamW parameter-grouping rule, shared by pretraining (encoder + predictor) and fine-tuning
(encoder + head), so weight decay and layer-wise LR decay cannot drift apart between the two."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn


def decays(name: str, param: nn.Parameter) -> bool:
    """Weight decay applies to tensors with ndim > 1 whose name has no 'bias' (the reference's rule):
    matrices decay; biases, LayerNorm gains and other 1-D tensors do not."""
    return param.ndim > 1 and "bias" not in name


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    layer_id: Callable[[str], int] | None = None,
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters, optionally with layer-wise LR decay.

    Args:
        named_params: (name, parameter) pairs, e.g. ``module.named_parameters()``; frozen ones are left out.
        weight_decay: decay of the parameters `decays` selects; the others get 0.
        layer_id: name -> layer id (0 = input embeddings); needed with `layer_decay`.
        layer_decay: layer l trains at ``lr * layer_decay ** (top - l)``, top = the largest id among all of
            `named_params` (it trains at the full lr). None: one layer, scale 1.

    Returns:
        Groups ordered by layer, decayed before exempt, each with ``params``, ``weight_decay``, ``wd_exempt``
        (True where decay never applies; a weight-decay schedule skips those) and ``lr_scale`` (what `lr` is
        multiplied by). Without `layer_decay`: ``[decayed, exempt]`` (an empty one is dropped).

    Raises:
        ValueError: `layer_decay` without `layer_id`, or not in (0, 1].
    """
    named = list(named_params)
    if layer_decay is None:
        ids = [0] * len(named)
    else:
        if layer_id is None:
            raise ValueError("layer_decay needs a layer_id function (parameter name -> layer id)")
        if not 0 < layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
        ids = [layer_id(name) for name, _ in named]
    top = max(ids, default=0)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for (name, p), layer in zip(named, ids, strict=True):
        if not p.requires_grad:
            continue
        exempt = not decays(name, p)
        group = groups.setdefault((layer, exempt), {
            "params": [], "weight_decay": 0.0 if exempt else weight_decay, "wd_exempt": exempt,
            "lr_scale": 1.0 if layer_decay is None else layer_decay ** (top - layer),
        })
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]
