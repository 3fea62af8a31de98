"""Which input pixels a feature-map cell sees: the theoretical receptive field (a box, from
:func:`cnnlab.trace.receptive_field_map`, i.e. the recurrences of :mod:`cnnlab.arithmetic`, with
the union over residual branches), and the *effective* receptive field of Luo et al. 2016,
"Understanding the Effective Receptive Field in Deep Convolutional Neural Networks": the mean over
images of |d output cell / d input|, a blob much smaller than the box and always inside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
from matplotlib.patches import Rectangle

from cnnlab.display import figures_html
from cnnlab.errors import CnnlabError
from cnnlab.figures import save_figure, show_image, subplots
from cnnlab.trace import receptive_field_map
from cnnlab.visualize.featuremaps import feature_maps
from cnnlab.visualize.layers import (
    check_image, choose_gradcam_layer, first_conv, get_layer, hw_c, layer_name, trace_outputs)
from cnnlab.visualize.source import default_out, resolve, writing

__all__ = ["theoretical_receptive_field", "rf_box", "effective_receptive_field", "layer_output_shape",
           "parse_cell", "RFResult", "show_receptive_field", "plot_receptive_field"]


def _input_shape(model: nn.Module, input_size: int | Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) from a side, (H, W) or (C, H, W); C from the first convolution."""
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    size = tuple(int(v) for v in input_size)
    if len(size) == 4 and size[0] == 1:
        size = size[1:]  # (1, C, H, W): one image's shape with its batch dimension
    if len(size) == 3:
        return size  # type: ignore[return-value]
    if len(size) != 2 or min(size) < 1:
        raise CnnlabError(f"input_size must be a side, (H, W) or (C, H, W), got {input_size!r}")
    return (first_conv(model)[1].in_channels, *size)


def theoretical_receptive_field(model: nn.Module, layer: str | nn.Module, input_size: int | Sequence[int]):
    """The :class:`cnnlab.trace.ReceptiveField` (size, jump, start per axis; ``.box(y, x)``) of
    ``layer``'s output cells, or None where a cell sees the whole input (after global pooling)."""
    layer = layer_name(model, layer)
    shape = _input_shape(model, input_size)
    rfs = receptive_field_map(model, shape)
    if layer not in rfs:
        raise CnnlabError(f"layer {layer!r} does not run in the model's forward pass; choose another")
    return rfs[layer]


def layer_output_shape(model: nn.Module, layer: str, input_size: int | Sequence[int]) -> tuple[int, ...]:
    """(C, H, W) of ``layer``'s output for one input (a forward pass in eval mode, no gradients)."""
    shape = _input_shape(model, input_size)
    p = next(model.parameters(), None)
    x = torch.zeros((1, *shape), device=p.device if p is not None else "cpu")
    for out in trace_outputs(model, x):
        if out.name == layer:
            return out.shape
    get_layer(model, layer)
    raise CnnlabError(f"layer {layer!r} does not run in the model's forward pass; choose another")


def _check_cell(cell: Sequence[int], shape: tuple[int, ...], layer: str) -> tuple[int, int]:
    if len(shape) != 3:
        raise CnnlabError(f"layer {layer!r} gives {hw_c(shape)}, not a feature map; choose a conv or pooling layer")
    y, x = (int(v) for v in cell)
    if not (0 <= y < shape[1] and 0 <= x < shape[2]):
        raise CnnlabError(f"cell ({y}, {x}) is outside {layer}'s {shape[1]}x{shape[2]} map (rows 0..{shape[1] - 1}, "
                          f"columns 0..{shape[2] - 1})")
    return y, x


def rf_box(model: nn.Module, layer: str, cell: Sequence[int], input_size: int | Sequence[int]
           ) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)``, half-open, of the input pixels cell ``(y, x)`` of ``layer`` sees."""
    shape = _input_shape(model, input_size)
    y, x = _check_cell(cell, layer_output_shape(model, layer, shape), layer)
    rf = theoretical_receptive_field(model, layer, shape)
    return (0, 0, shape[1], shape[2]) if rf is None else rf.box(y, x)


def _erf_images(shape: tuple[int, int, int], n_images: int, seed: int, images: torch.Tensor | None,
                device: Any) -> torch.Tensor:
    if images is not None:
        return images.to(device)
    if n_images < 1:
        raise CnnlabError(f"n_images must be at least 1, got {n_images}")
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n_images, *shape), generator=g).to(device)  # Luo et al.: random inputs


def effective_receptive_field(model: nn.Module, layer: str | nn.Module, input_size: int | Sequence[int], n_images: int = 16,
                              *, cell: Sequence[int] | None = None, seed: int = 0,
                              images: torch.Tensor | None = None) -> torch.Tensor:
    """Luo et al. 2016's effective receptive field of one output cell of ``layer``: the mean over
    images of |d (sum over channels of layer[:, :, y, x]) / d input|, summed over input channels: (H, W).

    Args:
        model: runs in eval mode here (batch-norm statistics from a batch would tie every cell to every
            pixel of every image); its mode is restored afterwards.
        layer: a module name, or the module.
        input_size: a side, (H, W) or (C, H, W).
        n_images: random N(0, 1) images drawn with ``seed`` (ignored when ``images`` are given).
        cell: ``(y, x)`` in the layer's output; default its centre ``(h // 2, w // 2)``.
    """
    layer = layer_name(model, layer)
    module = get_layer(model, layer)
    shape = _input_shape(model, input_size)
    p = next(model.parameters(), None)
    x = check_image(model, _erf_images(shape, n_images, seed, images, p.device if p is not None else "cpu"))
    x = x.detach().clone().requires_grad_(True)
    captured: dict[str, torch.Tensor] = {}

    def hook(mod: nn.Module, inputs: tuple, output: Any) -> Any:
        captured["out"] = output.clone() if isinstance(output, torch.Tensor) else output
        return captured["out"]  # a copy: later in-place ops leave the layer's own output alone

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        handle.remove()
        model.train(was_training)
    out = captured.get("out")
    if not isinstance(out, torch.Tensor):
        raise CnnlabError(f"layer {layer!r} does not run in the model's forward pass; choose another")
    shape_out = tuple(out.shape[1:])
    y, xx = _check_cell(cell if cell is not None else (shape_out[1] // 2, shape_out[2] // 2), shape_out, layer)
    (grad,) = torch.autograd.grad(out[:, :, y, xx].sum(), x)
    return grad.abs().sum(dim=1).mean(dim=0).detach()  # (H, W)


def parse_cell(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"3,4"`` -> (3, 4)."""
    if text is None or not isinstance(text, str):
        return None if text is None else (int(text[0]), int(text[1]))
    parts = text.replace("x", ",").split(",")
    try:
        y, x = (int(p) for p in parts)
    except ValueError:
        raise CnnlabError(f"--cell takes Y,X (row, column of the feature map), e.g. 3,4; got {text!r}") from None
    return y, x


@dataclass
class RFResult:
    path: Path
    layer: str
    cell: tuple[int, int]
    shape: tuple[int, ...]  # the layer's output (C, H, W)
    box: tuple[int, int, int, int]  # (top, left, bottom, right), half-open
    rf: Any  # ReceptiveField or None
    erf_inside: bool  # every non-zero gradient inside the box
    description: str = ""  # which model and image

    def _repr_html_(self) -> str:
        """In a notebook: the figure, with the cell, its box and whether the effective field stays inside."""
        top, left, bottom, right = self.box
        return figures_html(f"Receptive field: {self.description}", [(self.path, str(self.path))],
                            [f"{self.layer} cell {self.cell} (output {'x'.join(map(str, self.shape))}) sees rows "
                             f"{top}..{bottom - 1}, columns {left}..{right - 1}; the effective receptive field is "
                             f"{'inside' if self.erf_inside else 'not all inside'} that box"])


def show_receptive_field(subject, image=None, layer: str | None = None, cell: str | Sequence[int] | None = None,
                         n_images: int = 16, out: str | Path | None = None) -> RFResult:
    """``cnnlab show rf``: the box of one cell on the image, beside the effective receptive field."""
    subject, image = resolve(subject, image)
    model, shape, cell = subject.model, subject.input_shape, parse_cell(cell)
    name = layer or choose_gradcam_layer(model, shape).name
    out_shape = layer_output_shape(model, name, shape)
    if len(out_shape) == 3 and cell is None:
        cell = (out_shape[1] // 2, out_shape[2] // 2)
    y, x = _check_cell(cell or (0, 0), out_shape, name)
    rf = theoretical_receptive_field(model, name, shape)
    box = (0, 0, shape[1], shape[2]) if rf is None else rf.box(y, x)
    erf = effective_receptive_field(model, name, shape, n_images, cell=(y, x))
    top, left, bottom, right = box
    outside = erf.clone()
    outside[top:bottom, left:right] = 0
    inside = bool((outside == 0).all())
    fmap = feature_maps(model, image.x, [name])[name]
    target = Path(out) if out is not None else default_out(subject, f"rf-{name}")
    with writing(subject, target, "show rf") as output:  # into a run: its lock, recorded
        path = plot_receptive_field(image.pixels, erf, name, (y, x), fmap, box, rf, target)
        output.record(path)
    return RFResult(path, name, (y, x), out_shape, box, rf, inside, f"{subject.description}, {image.caption}")


def _box_patch(box: tuple[int, int, int, int], color: str = "red"):
    top, left, bottom, right = box
    # pixel i spans [i - 0.5, i + 0.5) in imshow's coordinates
    return Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, edgecolor=color, linewidth=2)


def plot_receptive_field(pixels: torch.Tensor, erf: torch.Tensor, layer: str, cell: tuple[int, int],
                         fmap: torch.Tensor, box: tuple[int, int, int, int], rf: Any, path: str | Path) -> Path:
    """Three panels: the layer's feature map (mean over channels) with the cell, the input with the
    cell's theoretical box, the effective receptive field (Luo et al. 2016) with the same box."""
    fig, (ax_map, ax_img, ax_erf) = subplots(1, 3, figsize=(10, 3.8))
    _, h, w = fmap.shape
    ax_map.imshow(fmap.float().mean(0).cpu().numpy(), cmap="viridis", interpolation="nearest")
    ax_map.add_patch(Rectangle((cell[1] - 0.5, cell[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax_map.set_xticks(range(w)) if w <= 16 else ax_map.set_xticks([])
    ax_map.set_yticks(range(h)) if h <= 16 else ax_map.set_yticks([])
    ax_map.set_title(f"{layer}: {h}x{w}x{fmap.shape[0]} (mean of the maps), cell {cell}", fontsize=8)
    top, left, bottom, right = box
    if rf is None:
        text = "sees the whole input (after global pooling or a linear layer)"
    else:
        text = (f"RF {rf.size[0]}x{rf.size[1]}, jump {rf.jump[0]}: rows {top}..{bottom - 1}, cols {left}..{right - 1}")
    show_image(ax_img, pixels, text)
    ax_img.add_patch(_box_patch(box))
    peak = float(erf.max())
    ax_erf.imshow((erf / peak).cpu().numpy() if peak > 0 else erf.cpu().numpy(), cmap="inferno", vmin=0, vmax=1)
    ax_erf.add_patch(_box_patch(box, "cyan"))
    ax_erf.set_xticks([])
    ax_erf.set_yticks([])
    ax_erf.set_title("effective RF: mean |d cell / d input| (Luo et al. 2016)", fontsize=8)
    fig.suptitle(f"Receptive field of {layer} cell {cell}: theoretical box (arithmetic) vs effective (gradients)",
                 fontsize=9)
    return save_figure(fig, path, tight=True)
