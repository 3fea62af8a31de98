"""See inside a CNN: ``cnnlab show`` (featuremaps, filters, gradcam, rf), ``cnnlab animate`` (conv,
pool, xcorr), ``cnnlab report`` and ``cnnlab demo dropout``. Each command parses, calls one function
of :mod:`cnnlab.visualize`, prints."""

from __future__ import annotations

from pathlib import Path

import click

from cnnlab.cli._common import CONTEXT, console
from cnnlab.cli.options import NON_NEGATIVE, PATH, POSITIVE, convert_option, data_dir_option, dataset_option, \
    device_option, in_channels_option, index_option, input_size_option, methods_option, model_option, \
    num_classes_option, seed_option, weights_option
from cnnlab.paths import FIGURE_SUFFIXES, check_output

__all__ = ["show", "animate", "report", "demo_dropout"]

SOURCE_HELP = "RUN is a run directory (its trained weights) or a model name (random weights, or --weights FILE)."


MODEL_OPTIONS = (weights_option, model_option, num_classes_option, in_channels_option, input_size_option)
SOURCE_FIELDS = ("source", "image", "index", "dataset", "data_dir", "weights", "option", "num_classes",
                 "in_channels", "input_size", "convert", "device")


def _apply(fn, decorators):
    for decorate in reversed(decorators):
        fn = decorate(fn)
    return fn


def source_options(fn):
    """RUN [IMAGE] and the options that say which model and which image (the fields of a :class:`Source`)."""
    return _apply(fn, (click.argument("source", metavar="RUN"),
                       click.argument("image", required=False, type=PATH),
                       index_option, dataset_option, data_dir_option, *MODEL_OPTIONS, convert_option, device_option))


def _figure(out: Path | None) -> Path | None:
    """A figure's ``--out``: .png (added to a name without a suffix), .jpg, .pdf or .svg; not a folder."""
    return None if out is None else check_output(out, "file", suffixes=FIGURE_SUFFIXES, default_suffix=".png",
                                                 writes="one figure")


def _source(kw: dict):
    """The parsed model-and-image options (taken out of ``kw``) as a :class:`cnnlab.visualize.source.Source`
    (nothing loaded yet); a field the command has not is left at the Source's default."""
    from cnnlab.visualize.source import Source

    fields = {name: kw.pop(name) for name in SOURCE_FIELDS if name in kw}
    if "option" in fields:
        fields["options"] = fields.pop("option")
    return Source(**fields)


@click.group(context_settings=CONTEXT)
def show() -> None:
    """Pictures of a model on an image: feature maps, filters, Grad-CAM, receptive fields."""


@show.command("featuremaps", context_settings=CONTEXT, epilog=SOURCE_HELP)
@source_options
@click.option("--layers", multiple=True, help="Layer names, comma-separated or repeated [default: every conv and "
              "pool layer; one per stage for deep nets].")
@click.option("--out", type=PATH, default=None,
              help="Folder for the PNGs [default: RUN/visualize, or visualize/MODEL].")
def show_featuremaps(layers: tuple[str, ...], out: Path | None, **kw) -> None:
    """Each layer's feature maps for one image: a PNG grid per layer, titled with HxWxC and the arithmetic."""
    from cnnlab.visualize import show_featuremaps as run

    if out is not None:
        out = check_output(out, "folder", writes="a folder of PNGs (one per layer)")
    result = run(_source(kw), layers=layers or None, out_dir=out)
    console().print(f"{result.description}, {result.caption}")
    for name, path in result.paths.items():
        console().print(f"  {result.titles[name].splitlines()[0]} -> {path}")


@show.command("filters", context_settings=CONTEXT, epilog=SOURCE_HELP)
@click.argument("source", metavar="RUN")
@click.option("--layer", default=None, help="A convolution's name [default: the first one].")
@weights_option
@model_option
@in_channels_option
@click.option("--out", type=PATH, default=None, help="PNG [default: RUN/visualize/filters-LAYER.png].")
def show_filters(layer: str | None, out: Path | None, **kw) -> None:
    """A convolution's kernels: the first layer's as images (RGB for 3 input channels), deeper ones as grids."""
    from cnnlab.visualize import show_filters as run

    out = _figure(out)
    result = run(_source(kw), layer=layer, out=out)
    o, i, kh, kw = result.shape
    console().print(f"{result.description}: {result.layer}, {o} filters of {i}x{kh}x{kw}")
    console().print(f"Wrote {result.path}")


@show.command("gradcam", context_settings=CONTEXT, epilog=SOURCE_HELP)
@source_options
@click.option("--layer", default=None, help="A layer name, or 'all' for a strip over every default layer "
              "[default: the last layer whose output still has spatial extent > 1].")
@click.option("--target", default=None, help="Class name or index to explain [default: the predicted class].")
@methods_option
@click.option("--out", type=PATH, default=None, help="PNG [default: RUN/visualize/gradcam-LAYER.png].")
def show_gradcam(layer: str | None, target: str | None, methods: str, out: Path | None, **kw) -> None:
    """Where the network looks: Grad-CAM (Selvaraju et al. 2017), saliency and integrated gradients."""
    from cnnlab.visualize import show_gradcam as run

    out = _figure(out)
    result = run(_source(kw), layer=layer, target=target, methods=methods, out=out)
    console().print(f"{result.description}, {result.caption}")
    console().print(f"predicted {result.predicted_name}; explaining class {result.target_name} "
                    f"(p = {result.probability:.3f})")
    why = f": {result.choice.reason}" if result.choice is not None else " (as asked)"
    console().print(f"Grad-CAM layer {result.layer}{why}")
    f = result.faithfulness
    console().print(f"faithfulness of this Grad-CAM (Petsiuk et al. 2018, zero baseline): deletion area "
                    f"{f['deletion']:.3f} (random map {f['random_deletion']:.3f}; lower is better), insertion area "
                    f"{f['insertion']:.3f} (random map {f['random_insertion']:.3f}; higher is better); "
                    f"cnnlab trust checks more")
    if result.strip:
        console().print(f"per-layer strip: {', '.join(result.strip)}")
    console().print(f"Wrote {result.path}")


@show.command("rf", context_settings=CONTEXT, epilog=SOURCE_HELP)
@source_options
@click.option("--layer", default=None, help="A layer name [default: Grad-CAM's layer].")
@click.option("--cell", default=None, help="Y,X of the cell in the layer's map [default: its centre].")
@click.option("--images", "n_images", type=POSITIVE, default=16, show_default=True,
              help="Random images the effective receptive field is averaged over.")
@click.option("--out", type=PATH, default=None, help="PNG [default: RUN/visualize/rf-LAYER.png].")
def show_rf(layer: str | None, cell: str | None, n_images: int, out: Path | None, **kw) -> None:
    """A cell's receptive field on the image: the theoretical box beside the effective one (Luo et al. 2016)."""
    from cnnlab.visualize import show_receptive_field

    out = _figure(out)
    result = show_receptive_field(_source(kw), layer=layer, cell=cell, n_images=n_images, out=out)
    top, left, bottom, right = result.box
    console().print(result.description)
    console().print(f"{result.layer} ({result.shape[1]}x{result.shape[2]} map) cell {result.cell}: "
                    f"rows {top}..{bottom - 1}, columns {left}..{right - 1} of the input")
    if result.rf is not None:
        console().print(f"  receptive field {result.rf.size[0]}x{result.rf.size[1]}, jump {result.rf.jump[0]}, "
                        f"start {result.rf.start[0]:g} (cnnlab.arithmetic)")
    inside = "inside the box" if result.erf_inside else "NOT inside the box"
    console().print(f"  effective receptive field over {n_images} images: every non-zero gradient {inside}")
    console().print(f"Wrote {result.path}")


@click.group(context_settings=CONTEXT)
def animate() -> None:
    """The convolution-arithmetic slides as animations (Dumoulin & Visin style): GIF or HTML."""


def _animation_out(out: Path) -> Path:
    """An animation's ``--out``: .gif (added to a name without a suffix) or .html; checked before any work."""
    return check_output(out, "file", suffixes=(".gif", ".html", ".htm"), default_suffix=".gif",
                        writes="an animation")


def _save(anim, out: Path) -> None:
    from cnnlab.visualize import save_animation

    path = save_animation(anim, out)
    for line in anim.caption:
        console().print(line)
    console().print(f"Wrote {path}: {len(anim.frames)} frames = {anim.positions} output positions + title + summary")


@animate.command("conv", context_settings=CONTEXT)
@click.option("--input", "i", type=int, required=True, help="Input side i.")
@click.option("--kernel", "k", type=int, required=True, help="Kernel side k.")
@click.option("--stride", "s", type=int, default=1, show_default=True)
@click.option("--padding", "p", default="0", show_default=True, help="An integer, 'same' or 'valid'.")
@click.option("--dilation", "d", type=int, default=1, show_default=True)
@click.option("--transposed", is_flag=True, help="A transposed convolution (drawn as the direct one it equals).")
@click.option("--output-padding", type=int, default=0, show_default=True, help="Transposed only.")
@seed_option
@click.option("--out", type=PATH, default=Path("conv.gif"), show_default=True,
              help="FILE.gif or FILE.html.")
def animate_conv(i: int, k: int, s: int, p: str, d: int, transposed: bool, output_padding: int, seed: int,
                 out: Path) -> None:
    """A kernel sliding over the padded input, one output cell per frame."""
    from cnnlab.visualize import conv_animation, parse_padding
    from cnnlab.visualize.animate import FLAGS

    out = _animation_out(out)
    _save(conv_animation(i=i, k=k, s=s, p=parse_padding(p), d=d, transposed=transposed,
                         output_padding=output_padding, seed=seed, names=FLAGS), out)


@animate.command("pool", context_settings=CONTEXT)
@click.option("--input", "i", type=int, required=True, help="Input side i.")
@click.option("--kernel", "k", type=int, required=True, help="Window side k.")
@click.option("--stride", "s", type=int, default=None, help="[default: the window side, as nn.MaxPool2d]")
@click.option("--padding", "p", type=int, default=0, show_default=True)
@click.option("--dilation", "d", type=int, default=1, show_default=True)
@click.option("--mode", type=click.Choice(["max", "avg"]), default="max", show_default=True)
@click.option("--ceil-mode", is_flag=True, help="Round the output size up (PyTorch's rule).")
@seed_option
@click.option("--out", type=PATH, default=Path("pool.gif"), show_default=True,
              help="FILE.gif or FILE.html.")
def animate_pool(i: int, k: int, s: int | None, p: int, d: int, mode: str, ceil_mode: bool, seed: int,
                 out: Path) -> None:
    """A max or average pooling window, one output cell per frame."""
    from cnnlab.visualize import pool_animation
    from cnnlab.visualize.animate import FLAGS

    out = _animation_out(out)
    _save(pool_animation(i=i, k=k, s=s, p=p, d=d, mode=mode, ceil_mode=ceil_mode, seed=seed, names=FLAGS), out)


@animate.command("xcorr", context_settings=CONTEXT)
@click.option("--input", "i", type=int, default=5, show_default=True)
@click.option("--kernel", "k", type=int, default=3, show_default=True)
@click.option("--padding", "p", type=int, default=0, show_default=True)
@seed_option
@click.option("--out", type=PATH, default=Path("xcorr.gif"), show_default=True,
              help="FILE.gif or FILE.html.")
def animate_xcorr(i: int, k: int, p: int, seed: int, out: Path) -> None:
    """Cross-correlation vs convolution: the same window, the kernel flipped, the visiting order reversed."""
    from cnnlab.visualize import xcorr_animation
    from cnnlab.visualize.animate import FLAGS

    out = _animation_out(out)
    _save(xcorr_animation(i=i, k=k, p=p, seed=seed, names=FLAGS), out)


@click.command(context_settings=CONTEXT, epilog=SOURCE_HELP)
@click.argument("source", metavar="RUN")
@click.option("--images", "n_images", type=NON_NEGATIVE, default=4, show_default=True,
              help="Test images with feature maps and Grad-CAM.")
@dataset_option
@data_dir_option
@weights_option
@model_option
@input_size_option
@in_channels_option
@click.option("--max-eval", type=POSITIVE, default=None, help="Score only the first N test images [default: all].")
@device_option
@click.option("--out", type=PATH, default=None, help="HTML file [default: RUN/report.html, or report-MODEL.html].")
def report(n_images: int, max_eval: int | None, out: Path | None, **kw) -> None:
    """One self-contained HTML page: curves, confusion, per-class metrics, confident mistakes, filters,
    feature maps (click a cell: its receptive field on the image), Grad-CAM, the layer table."""
    from cnnlab.visualize import build_report

    if out is not None:
        out = check_output(out, "file", suffixes=(".html", ".htm"), default_suffix=".html", writes="an HTML page")
    result = build_report(_source(kw), n_images=n_images, max_eval=max_eval, out=out)
    if result.accuracy is not None:
        console().print(f"{result.description}: test accuracy {result.accuracy:.2f}% over {result.scored} images")
    console().print(f"Wrote {result.path} ({result.path.stat().st_size / 1024:.0f} KB; sections: "
                    f"{', '.join(result.sections)})")


@click.command("dropout", context_settings=CONTEXT, epilog=SOURCE_HELP)
@source_options
@click.option("--layer", default=None, help="A layer name [default: the first convolution].")
@click.option("--p", "p", type=float, default=0.5, show_default=True, help="Drop probability.")
@seed_option
@click.option("--out", type=PATH, default=None, help="PNG [default: RUN/visualize/dropout-LAYER.png].")
def demo_dropout(layer: str | None, p: float, seed: int, out: Path | None, **kw) -> None:
    """Spatial dropout on a real feature map: Dropout zeroes activations, Dropout2d whole channels."""
    from cnnlab.visualize import show_dropout

    out = _figure(out)
    result = show_dropout(_source(kw), layer=layer, p=p, seed=seed, out=out)
    console().print(f"{result.description}, {result.caption}: {result.layer} ({result.shape[0]} channels)")
    console().print(f"nn.Dropout({p:g}) zeroed {100 * result.dropout_zero_fraction:.1f}% of the activations, "
                    f"scattered over every channel")
    chans = ", ".join(map(str, result.dropped_channels)) or "none"
    console().print(f"nn.Dropout2d({p:g}) zeroed whole channels: {chans} ({len(result.dropped_channels)} of "
                    f"{result.shape[0]})")
    console().print(f"Wrote {result.path}")
