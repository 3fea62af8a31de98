"""Compatibility shim: the building blocks moved into :mod:`cnnlab.models`.

- conv3x3, conv1x1, ZeroPadShortcut, make_shortcut, SHORTCUTS, BasicBlock, Bottleneck -> ``cnnlab.models.resnet``
- ResidualBlock (the lecture's resnet-blocks notebook) -> ``cnnlab.models.resblocks``
- INITS, init_weights -> ``cnnlab.models.init``
- spatial_geometry -> ``cnnlab.geometry``

``from cnnlab.layers import BasicBlock`` keeps working; new code imports from the homes above.
"""

from cnnlab.geometry import spatial_geometry
from cnnlab.models.init import INITS, init_weights
from cnnlab.models.resblocks import ResidualBlock
from cnnlab.models.resnet import SHORTCUTS, BasicBlock, Bottleneck, ZeroPadShortcut, conv1x1, conv3x3, make_shortcut

__all__ = [
    "conv3x3",
    "conv1x1",
    "spatial_geometry",
    "BasicBlock",
    "Bottleneck",
    "ResidualBlock",
    "ZeroPadShortcut",
    "make_shortcut",
    "SHORTCUTS",
    "INITS",
    "init_weights",
]
