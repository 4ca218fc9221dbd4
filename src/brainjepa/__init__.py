"""brainjepa: Brain-JEPA, a self-supervised foundation model of brain dynamics on parcellated fMRI."""

__version__ = "0.1.0"

from brainjepa.models import BrainJEPA, ModelConfig, list_models, model_config  # noqa: E402

# Loaded on first use: `embed` pulls in the data stack, `BrainJEPAEmbedder` scikit-learn.
_LAZY = {"embed": "brainjepa.evaluation.embed", "BrainJEPAEmbedder": "brainjepa.evaluation.sklearn",
         "BrainJEPAProjector": "brainjepa.evaluation.multimodal"}

__all__ = ["BrainJEPA", "BrainJEPAEmbedder", "BrainJEPAProjector", "ModelConfig", "__version__", "embed",
           "list_models", "model_config"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'brainjepa' has no attribute {name!r}")
