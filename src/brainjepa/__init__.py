"""brainjepa: Brain-JEPA, a self-supervised foundation model of brain dynamics on parcellated fMRI."""

__version__ = "0.1.0"

from brainjepa.models import BrainJEPA, ModelConfig, list_models, model_config  # noqa: E402

__all__ = ["BrainJEPA", "ModelConfig", "__version__", "list_models", "model_config"]
