"""Brain-JEPA networks: layers, encoder, predictor, the JEPA wrapper, presets and reference conversion."""

from brainjepa.models.config import ModelConfig
from brainjepa.models.encoder import BrainEncoder
from brainjepa.models.jepa import BrainJEPA, JEPAOutput
from brainjepa.models.predictor import BrainPredictor
from brainjepa.models.registry import list_models, model_config

__all__ = ["BrainEncoder", "BrainJEPA", "BrainPredictor", "JEPAOutput", "ModelConfig", "list_models", "model_config"]
