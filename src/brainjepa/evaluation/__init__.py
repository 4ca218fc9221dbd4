"""Downstream evaluation: embeddings, linear probes with baselines, and the metrics/splits they share.

Submodules are imported on first use, so ``import brainjepa.evaluation.metrics`` stays light. The functions
`embed` and `probe` share their submodules' names, so they are reached as ``brainjepa.embed`` and
``brainjepa.evaluation.probe.probe``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "classification_metrics": "metrics",
    "regression_metrics": "metrics",
    "grouped_splits": "metrics",
    "summarize": "metrics",
    "EmbedOptions": "embed",
    "StoreEmbeddings": "embed",
    "embed_store": "embed",
    "load_embeddings": "embed",
    "save_embeddings": "embed",
    "BrainJEPAEmbedder": "sklearn",
    "ProbeResult": "probe",
    "ProbeTable": "probe",
    "infer_task": "labels",
    "read_labels": "labels",
    "probe_models": "probe",
    "probe_store": "probe",
    "functional_connectivity": "baselines",
    "random_init_like": "baselines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
