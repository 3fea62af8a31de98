"""Model zoo. Importing this package registers every model."""

from cnnlab.models._registry import ModelInfo, create_model, get_model_info, list_models, register_model
from cnnlab.models import convnet as _convnet  # noqa: F401  (registers "convnet")

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]
