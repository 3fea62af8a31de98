"""Compatibility shim: weight loading moved to :mod:`cnnlab.models.weights`.

``from cnnlab.weights import load_weights`` keeps working; new code imports from ``cnnlab.models``.
"""

from cnnlab.models.weights import freeze, head_name, load_weights, weights_in_channels

__all__ = ["load_weights", "head_name", "freeze", "weights_in_channels"]
