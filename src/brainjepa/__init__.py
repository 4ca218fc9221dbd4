"""brainjepa: Brain-JEPA, a self-supervised foundation model of brain dynamics on parcellated fMRI."""

from brainjepa.extras import MissingExtraError, hint_for_import_error
from brainjepa.version import __version__

# Loaded on first use: the models pull in torch (`brainjepa --version` and `--help` start without it), `embed` the
# data stack, `BrainJEPAEmbedder` scikit-learn.
_LAZY = {"BrainJEPA": "brainjepa.models", "ModelConfig": "brainjepa.models", "list_models": "brainjepa.models",
         "model_config": "brainjepa.models", "embed": "brainjepa.evaluation.embed",
         "BrainJEPAEmbedder": "brainjepa.evaluation.sklearn", "BrainJEPAProjector": "brainjepa.evaluation.multimodal"}

__all__ = ["BrainJEPA", "BrainJEPAEmbedder", "BrainJEPAProjector", "ModelConfig", "__version__", "embed",
           "list_models", "model_config"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name])
        except ImportError as err:  # e.g. BrainJEPAEmbedder without scikit-learn: name the extra to install
            hint = hint_for_import_error(f"brainjepa.{name}", err)
            if hint is None:
                raise
            raise MissingExtraError(hint, name=err.name) from err
        return getattr(module, name)
    raise AttributeError(f"module 'brainjepa' has no attribute {name!r}")
