"""Model zoo. Importing this package registers every model.

- ``convnet.py``: the lecture's ConvNet and all-conv net; ``WithProbas`` (the lecture's ``(logits, probas)``)
- ``vgg.py``: VGG, Table 1 of the paper as data; ``vgg11`` ... ``vgg19_bn``
- ``resnet.py``: ResNet with its blocks (BasicBlock, Bottleneck) and shortcut options A/B/C; ``resnet18`` ...
- ``alexnet.py``: AlexNet and BN-AlexNet; ``nin.py``: BN-NIN; ``googlenet.py``: GoogLeNet (Inception v1);
  ``inception.py``: Inception v3; ``enet.py``: ENet for ImageNet (the six other networks of Canziani et al. 2016)
- ``resblocks.py``: the lecture's residual block and its two small residual networks
- ``init.py``: the notebooks' weight-initialisation schemes; ``weights.py``: loading and freezing weights
- ``_registry.py``: ``register_model``, ``create_model``, ``list_models`` (after timm)
"""

from cnnlab.models._registry import (
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    min_input_size,
    register_model,
)
from cnnlab.models.alexnet import AlexNet
from cnnlab.models.convnet import ConvNet, WithProbas, with_probas
from cnnlab.models.convnet_bn import ConvNetBN
from cnnlab.models.enet import ENet
from cnnlab.models.googlenet import GoogLeNet
from cnnlab.models.inception import Inception3
from cnnlab.models.init import INITS, init_weights
from cnnlab.models.resblocks import ResidualBlock
from cnnlab.models.nin import NIN
from cnnlab.models.resnet import BasicBlock, Bottleneck, ResNet, ZeroPadShortcut
from cnnlab.models.vgg import VGG
from cnnlab.models.weights import (describe_mismatch, first_conv_key, freeze, head_name, load_state_dict_checked,
                                   load_weights, weights_in_channels)

__all__ = [
    "ModelInfo",
    "create_model",
    "get_model_info",
    "list_models",
    "min_input_size",
    "register_model",
    "init_weights",
    "INITS",
    "load_weights",
    "freeze",
    "head_name",
    "weights_in_channels",
    "first_conv_key",
    "describe_mismatch",
    "load_state_dict_checked",
    "WithProbas",
    "with_probas",
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "ZeroPadShortcut",
    "VGG",
    "AlexNet",
    "NIN",
    "GoogLeNet",
    "Inception3",
    "ENet",
    "ConvNet",
    "ResidualBlock",
]
