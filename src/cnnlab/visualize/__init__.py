"""See inside a CNN: feature maps, filters, Grad-CAM, receptive fields on the image, convolution
animations, spatial dropout, and one HTML report -- on any registry model, a run directory's trained
weights, or ``--weights``.

- ``featuremaps.py``: :func:`feature_maps` (forward hooks: exactly the module outputs), one PNG grid per layer
- ``filters.py``: a convolution's kernels as pictures
- ``attribution.py``: :func:`grad_cam` (Selvaraju et al. 2017), :func:`saliency`, :func:`integrated_gradients` (captum)
- ``layers.py``: layer names, the forward trace, Grad-CAM's automatic layer, the default layers
- ``cell.py``: :func:`explain_cell`, the multiply-adds (or pooling window) behind one feature-map cell
- ``receptive.py``: the theoretical box (:mod:`cnnlab.summary`) and the effective RF (Luo et al. 2016)
- ``animate.py`` / ``animate_render.py``: conv, transposed, pool and xcorr-vs-conv animations (GIF, HTML)
- ``dropout.py``: Dropout vs Dropout2d on a real feature map
- ``report.py`` / ``report_html.py``: ``cnnlab report``, one self-contained HTML page
- ``source.py``: the model (run, model name, ``--weights``) and the image (file or ``--index N``)
"""

from cnnlab.visualize.animate import Animation, conv_animation, pool_animation, xcorr_animation
from cnnlab.visualize.animate import parse_padding
from cnnlab.visualize.animate_render import save_animation
from cnnlab.visualize.attribution import grad_cam, integrated_gradients, saliency
from cnnlab.visualize.cell import CellExplanation, explain_cell
from cnnlab.visualize.dropout import dropout_masks, show_dropout
from cnnlab.visualize.explain import parse_methods, show_gradcam
from cnnlab.visualize.featuremaps import feature_maps, show_featuremaps
from cnnlab.visualize.filters import show_filters
from cnnlab.visualize.layers import choose_gradcam_layer, default_layers
from cnnlab.visualize.receptive import (
    effective_receptive_field,
    parse_cell,
    rf_box,
    show_receptive_field,
    theoretical_receptive_field,
)
from cnnlab.visualize.report import build_report
from cnnlab.visualize.source import load_image, load_subject, parse_target

__all__ = [
    "feature_maps", "grad_cam", "saliency", "integrated_gradients", "choose_gradcam_layer", "default_layers",
    "effective_receptive_field", "theoretical_receptive_field", "rf_box", "conv_animation", "pool_animation",
    "xcorr_animation", "save_animation", "Animation", "dropout_masks", "load_subject", "load_image",
    "show_featuremaps", "show_filters", "show_gradcam", "show_receptive_field", "show_dropout", "build_report",
    "parse_cell", "parse_target", "parse_methods", "parse_padding", "explain_cell", "CellExplanation",
]
