"""One tracer for every per-layer question: :func:`trace` runs one forward pass with hooks on every
module and records a :class:`LayerCall` per module call: name, type, input and output shape,
kernel/stride/padding/dilation, the output-size formula with its numbers, the receptive field
(size, jump, start, ``box(y, x)``), MACs and parameters, and the output and input themselves where asked.

``cnnlab.summary`` (the table), the shape debugger (:mod:`cnnlab.analysis.shapes`), Grad-CAM's
layer choice and the feature maps (:mod:`cnnlab.visualize`) and the report all read it. It sits
low: torch, :mod:`cnnlab.arithmetic` and :mod:`cnnlab.geometry` only.
"""

from cnnlab.trace.fields import RF2, ReceptiveField, rf_step, rf_union
from cnnlab.trace.records import (PASS_THROUGH, LayerCall, LayerOutput, chw, first_tensor, geometry_fields,
                                  sample_input)
from cnnlab.trace.tracer import Trace, receptive_field_map, trace

__all__ = ["trace", "Trace", "LayerCall", "LayerOutput", "ReceptiveField", "receptive_field_map", "first_tensor",
           "sample_input", "chw", "geometry_fields", "rf_step", "rf_union", "RF2", "PASS_THROUGH"]
