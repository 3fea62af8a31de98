"""``cnnlab show gradcam``: Grad-CAM (and saliency, integrated gradients) for one image, with the
layer choice explained and, for ``--layer all``, a strip of Grad-CAM at every default layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from cnnlab.display import figures_html
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.figures import overlay, save_figure, show_image, subplots
from cnnlab.visualize.attribution import METHODS, grad_cam, integrated_gradients, saliency
from cnnlab.visualize.layers import LayerChoice, choose_gradcam_layer, default_layers, get_layer, hw_c, trace_outputs
from cnnlab.visualize.source import default_out, parse_target, resolve, to_model_input, writing
from cnnlab.visualize.trust_checks import map_faithfulness

__all__ = ["METHODS", "GradCamResult", "show_gradcam", "parse_methods", "plot_attributions"]



@dataclass
class GradCamResult:
    path: Path
    layer: str
    choice: LayerChoice | None  # set when the layer was chosen automatically
    target: int
    target_name: str
    probability: float  # softmax probability of the target class
    predicted: int
    predicted_name: str
    caption: str
    strip: list[str] = field(default_factory=list)  # layers of the --layer all strip
    cam: torch.Tensor | None = None  # (H, W) in [0, 1]
    description: str = ""  # which model
    faithfulness: dict[str, float] = field(default_factory=dict)  # deletion/insertion areas, and a random map's

    def _repr_html_(self) -> str:
        """In a notebook: the figure, with the class, its probability and the layer."""
        why = f" (automatic: {self.choice.reason})" if self.choice is not None and self.choice.reason else ""
        return figures_html(f"Where {self.description} looks: {self.caption}", [(self.path, str(self.path))],
                            [f"class {self.target_name} (p = {self.probability:.4f}), predicted {self.predicted_name};"
                             f" Grad-CAM at {self.layer}{why}"])


def parse_methods(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [m.strip() for m in text.split(",")] if isinstance(text, str) else list(text)
    for name in names:
        if name not in METHODS:
            raise UnknownNameError("method", name, METHODS)
    if "gradcam" not in names:
        names.insert(0, "gradcam")
    return tuple(dict.fromkeys(names))


def _strip(model, x: torch.Tensor, target: int) -> list[tuple[str, torch.Tensor]]:
    """Grad-CAM at every default layer (conv/pool, or one per stage) whose output is a feature map."""
    spatial = {o.name for o in trace_outputs(model, x) if o.spatial}
    return [(name, grad_cam(model, x, name, target)[0]) for name in default_layers(model, x) if name in spatial]


def show_gradcam(subject, image=None, layer: str | None = None, target: int | str | None = None,
                 methods: str | Sequence[str] = METHODS, out: str | Path | None = None, ig_steps: int = 32
                 ) -> GradCamResult:
    """Explain one image: Grad-CAM at ``layer`` ("all": the automatic layer plus a per-layer strip;
    None: the automatic layer), for class ``target`` (None: the predicted class)."""
    methods = parse_methods(methods)
    subject, image = resolve(subject, image)
    target = parse_target(target, subject.classes)
    model, x = subject.model, image.x
    strip_all = layer == "all"
    choice = choose_gradcam_layer(model, x) if layer in (None, "all") else None
    name = choice.name if choice is not None else layer
    get_layer(model, name)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)[0]
    predicted = int(probs.argmax())
    cls = predicted if target is None else int(target)
    if not 0 <= cls < probs.numel():
        raise CnnlabError(f"--target {cls} is not a class of this model (0..{probs.numel() - 1})")
    cam = grad_cam(model, x, name, cls)[0]
    faithful = map_faithfulness(model, x, cam[None], torch.tensor([cls], device=x.device))
    panels = [(f"Grad-CAM at {name}", cam, "overlay")]
    if "saliency" in methods:
        panels.append(("saliency |dy/dx|", saliency(model, x, cls)[0], "heat"))
    if "ig" in methods:
        base = torch.zeros_like(image.pixels)
        ig = integrated_gradients(model, x, cls, baseline=to_model_input(base, subject), steps=ig_steps)
        panels.append((f"integrated gradients ({ig_steps} steps)", ig[0].abs().sum(0), "heat"))
    strip = _strip(model, x, cls) if strip_all else []
    classes = subject.classes
    name_of = (lambda i: classes[i] if i < len(classes) else str(i))
    title = (f"{image.caption}: class {name_of(cls)} (p = {float(probs[cls]):.2f}), predicted {name_of(predicted)}"
             f" -- Grad-CAM at {name} ({hw_c(tuple(_shape(model, x, name)))})")
    target = Path(out) if out is not None else default_out(subject, f"gradcam-{name}")
    with writing(subject, target, "show gradcam") as output:  # into a run: its lock, recorded
        path = plot_attributions(image.pixels, panels, title, target, strip)
        output.record(path)
    return GradCamResult(path, name, choice, cls, name_of(cls), float(probs[cls]), predicted, name_of(predicted),
                         image.caption, [s for s, _ in strip], cam, subject.description, faithful)


def _shape(model, x: torch.Tensor, name: str) -> tuple[int, ...]:
    for o in trace_outputs(model, x):
        if o.name == name:
            return o.shape
    return ()


def plot_attributions(pixels: torch.Tensor, panels: Sequence[tuple[str, torch.Tensor, str]], title: str,
                      path: str | Path, strip: Sequence[tuple[str, torch.Tensor]] = ()) -> Path:
    """The input, then one panel per method (``(title, map (H, W), "overlay"|"heat")``); below, if
    given, the per-layer Grad-CAM strip (``(layer, cam)``), shallow to deep."""
    cols = max(len(panels) + 1, len(strip))
    rows = 2 if strip else 1
    fig, axes = subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows + 0.4), squeeze=False)
    show_image(axes[0][0], pixels, "input")
    for ax, (name, heat, kind) in zip(axes[0][1:], panels):
        if kind == "overlay":
            overlay(ax, pixels, heat, name)
        else:
            h = heat.detach().float().cpu()
            ax.imshow((h / h.max()).numpy() if float(h.max()) > 0 else h.numpy(), cmap="inferno", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=8)
    for ax in axes[0][len(panels) + 1:]:
        ax.axis("off")
    if strip:
        for ax, (name, cam) in zip(axes[1], strip):
            overlay(ax, pixels, cam, f"Grad-CAM at {name}")
        for ax in axes[1][len(strip):]:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, tight=True)
