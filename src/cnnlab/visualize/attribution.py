"""Where the network looks: Grad-CAM (Selvaraju et al. 2017), vanilla gradient saliency (Simonyan
et al. 2014) and integrated gradients (Sundararajan et al. 2017).

captum computes the gradients (``LayerGradCam``, ``Saliency``, ``IntegratedGradients``); cnnlab adds
the layer choice, the upsampling and per-image scaling that make Grad-CAM a picture, and the target
handling. Grad-CAM, by definition::

    alpha_k = mean over (i, j) of d y_c / d A_k[i, j]           # one weight per channel k of layer A
    cam     = ReLU(sum_k alpha_k A_k)                            # (h, w) at the layer's resolution
    cam     = bilinear upsampling to the input's (H, W), then (cam - min) / (max - min) per image
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.visualize.layers import check_image, choice_from_trace, get_layer, hw_c, trace_forward

__all__ = ["METHODS", "grad_cam", "saliency", "integrated_gradients", "resolve_targets", "minmax_per_image"]

METHODS = ("gradcam", "saliency", "ig")  # the maps cnnlab draws: Grad-CAM, vanilla gradient, integrated gradients

Target = int | Sequence[int] | torch.Tensor | None


def _captum():
    try:
        import captum.attr as attr
    except ImportError:
        raise CnnlabError("Grad-CAM, saliency and integrated gradients use captum: pip install 'cnnlab[visualize]' "
                          "(or pip install captum)") from None
    return attr


def resolve_targets(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Per-image class indices (N,): ``target`` an int (every image), one index per image, or None
    (each image's predicted class, from one forward pass without gradients)."""
    n = x.shape[0]
    if target is None:
        with torch.no_grad():
            logits = model(x)
        return logits.argmax(dim=1)
    t = torch.as_tensor(target, dtype=torch.long, device=x.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise CnnlabError(f"target has {t.numel()} class indices for {n} images; give one int or one per image")
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    bad = t[(t < 0) | (t >= classes)]
    if bad.numel():
        raise CnnlabError(f"target class {int(bad[0])} does not exist: the model has {classes} classes "
                          f"(0..{classes - 1})")
    return t.clone()


def minmax_per_image(maps: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, H, W) in [0, 1]: ``(m - min) / (max - min)`` per image (all zeros where flat)."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - lo)
    return torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(maps))


def _layer_and_targets(model: nn.Module, x: torch.Tensor, layer: str | nn.Module | None,
                       target: Target) -> tuple[nn.Module, torch.Tensor]:
    """The module and per-image targets; one forward pass (without gradients) serves both the
    automatic layer choice and the predicted classes."""
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise CnnlabError(f"the layer {type(layer).__name__} given is not a module of this model")
        module = layer
    elif layer is not None:
        module = get_layer(model, layer)
    if layer is None:
        outputs, logits = trace_forward(model, x, eval_mode=False)
        module = get_layer(model, choice_from_trace(model, outputs, tuple(x.shape[1:])).name)
        if target is None:
            return module, logits.argmax(dim=1)
    return module, resolve_targets(model, x, target)


def grad_cam(model: nn.Module, images: torch.Tensor, layer: str | nn.Module | None = None,
             target: Target = None) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] at the input's resolution.

    Args:
        model: returns class scores (logits); it runs in its current mode (``model.eval()`` first).
        images: (N, C, H, W) or (C, H, W), prepared as the model's input.
        layer: a module name (``"layer4"``, ``"features.29"``) or the module; None: the last layer whose
            output still has spatial extent > 1 (:func:`cnnlab.visualize.layers.choose_gradcam_layer`).
        target: the class to explain: an int, one index per image, or None for each image's predicted class.
    """
    attr = _captum()
    x = check_image(model, images)
    module, targets = _layer_and_targets(model, x, layer, target)
    cam = attr.LayerGradCam(model, module).attribute(x, target=targets, relu_attributions=True)
    if cam.dim() != 4:
        raise CnnlabError(f"Grad-CAM needs a layer with feature maps; {layer!r} gives {hw_c(tuple(cam.shape[1:]))}")
    cam = F.interpolate(cam.detach(), size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    return minmax_per_image(cam)


def saliency(model: nn.Module, images: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Vanilla gradient saliency (Simonyan et al. 2014): max over channels of |d y_c / d x|, (N, H, W)."""
    attr = _captum()
    x = check_image(model, images)
    targets = resolve_targets(model, x, target)
    grads = attr.Saliency(model).attribute(x.detach().clone().requires_grad_(True), target=targets, abs=True)
    return grads.detach().amax(dim=1)


def integrated_gradients(model: nn.Module, images: torch.Tensor, target: Target = None,
                         baseline: torch.Tensor | float = 0.0, steps: int = 32) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017) from ``baseline`` (default: all zeros, in the
    model's input space) to the image, ``steps`` Riemann steps (Gauss-Legendre, captum's default):
    (N, C, H, W), summing to about ``y_c(x) - y_c(baseline)`` per image."""
    attr = _captum()
    x = check_image(model, images)
    if steps < 1:
        raise CnnlabError(f"integrated gradients needs at least 1 step, got {steps}")
    targets = resolve_targets(model, x, target)
    base = baseline if isinstance(baseline, torch.Tensor) else torch.full_like(x, float(baseline))
    ig = attr.IntegratedGradients(model).attribute(
        x.detach().clone().requires_grad_(True), baselines=base.expand_as(x), target=targets, n_steps=steps,
        internal_batch_size=_ig_batch(x, steps))
    return ig.detach()


def _ig_batch(x: torch.Tensor, steps: int) -> int:
    """Scaled images per forward pass of integrated gradients: all ``N x steps`` of them while they
    hold about 2**22 input numbers, never fewer than the N images (captum's minimum)."""
    return max(x.shape[0], min(x.shape[0] * steps, (1 << 22) // max(1, x[0].numel())))
