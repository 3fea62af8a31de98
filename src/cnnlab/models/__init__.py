"""Model zoo. Importing this package registers every model."""

from cnnlab.models._registry import (
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    min_input_size,
    register_model,
)
from cnnlab.models import convnet as _convnet  # noqa: F401  (convnet, convnet_allconv)
from cnnlab.models import vgg as _vgg  # noqa: F401  (vgg11 ... vgg19_bn, vgg11_lrn, vgg16_c)
from cnnlab.models import resnet as _resnet  # noqa: F401  (resnet18 ... resnet152, resblocks_*)

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "min_input_size", "register_model"]
