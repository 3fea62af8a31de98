"""``cnnlab trust RUN``: can you trust the picture? The sanity checks of Adebayo et al. (2018), the
deletion / insertion scores of Petsiuk et al. (2018) and a measured Grad-CAM layer, for every saliency
method cnnlab draws. Parses, calls :func:`cnnlab.visualize.trust.check_trust`, prints."""

from __future__ import annotations

from pathlib import Path

import click

from cnnlab.cli._common import CONTEXT, console, print_json, print_table
from cnnlab.cli.options import PATH, POSITIVE, data_dir_option, dataset_option, device_option, format_option, \
    in_channels_option, input_size_option, methods_option, model_option, num_classes_option, seed_option, \
    weights_option
from cnnlab.cli.visualize import SOURCE_HELP, _source
from cnnlab.paths import check_output

__all__ = ["trust"]


@click.command(context_settings=CONTEXT, epilog=SOURCE_HELP)
@click.argument("source", metavar="RUN")
@methods_option
@click.option("--images", "n_images", type=POSITIVE, default=8, show_default=True,
              help="Test images (a seeded choice) every score is averaged over.")
@click.option("--layer", default=None, help="Grad-CAM's layer: a name, or 'best' to rank the candidate layers by "
              "deletion area [default: the last layer whose output still has spatial extent > 1].")
@click.option("--twin", type=PATH, default=None,
              help="A run trained with --shuffle-labels on the same data: compare its maps (data randomization).")
@click.option("--baseline", type=click.Choice(["zero", "blur", "mean"]), default="zero", show_default=True,
              help="What a deleted pixel becomes (and where insertion starts), in the model's input space.")
@click.option("--steps", type=POSITIVE, default=16, show_default=True, help="Deletion / insertion steps.")
@click.option("--ig-steps", type=POSITIVE, default=8, show_default=True,
              help="Integrated gradients' steps per map (the cascade redraws every map at every step).")
@click.option("--independent/--no-independent", default=False, show_default=True,
              help="Also the independent randomization (one layer at a time, the rest trained): twice the maps.")
@format_option
@click.option("--out", type=PATH, default=None, help="Folder for the figures and trust.json [default: RUN/trust].")
@seed_option
@dataset_option
@data_dir_option
@weights_option
@model_option
@num_classes_option
@input_size_option
@in_channels_option
@device_option
def trust(methods: str, n_images: int, layer: str | None, twin: Path | None, baseline: str, steps: int,
          ig_steps: int, independent: bool, format: str, out: Path | None, seed: int, **kw) -> None:
    """Can you trust the picture? Randomize the model's layers from the logits down (Adebayo et al. 2018)
    and see whether each map changes; score each map by deletion and insertion (Petsiuk et al. 2018)
    beside a random and a centre-bias map; --layer best measures Grad-CAM's layer."""
    from cnnlab.visualize.trust import TrustSettings, check_trust

    if out is not None:
        out = check_output(out, "folder", writes="a folder (cascade.png, faithfulness.png, trust.json)")
    settings = TrustSettings(methods=methods, n_images=n_images, layer=layer, baseline=baseline, steps=steps,
                             ig_steps=ig_steps, independent=independent, seed=seed)
    result = check_trust(_source(kw), settings, twin=twin, out=out)
    if format == "json":
        print_json(result.to_dict())
        return
    _print(result)


def _print(result) -> None:
    out = console()
    out.print(f"{result.description}: {result.images} test images; Grad-CAM at {result.layer}")
    if result.layer_ranking and len(result.layer_ranking) > 1:
        by = {r["layer"]: r["deletion_auc"] for r in result.layer_ranking}
        out.print(f"--layer best: {result.layer} has the lowest deletion area ({by[result.layer]:.3f}); the rule "
                  f"(last layer with spatial extent > 1) picks {result.rule_layer} ({by[result.rule_layer]:.3f}); "
                  + ", ".join(f"{k} {v:.3f}" for k, v in by.items()))
    print_table(f"Can you trust the maps? ({result.settings.baseline} baseline)", result.HEADERS, result.rows(),
                left=("method",))
    out.print(result.EXPLANATION)
    if result.twin is not None and not result.twin_shuffled:
        out.print(f"note: the twin {result.twin_description} was not trained with --shuffle-labels")
    for name, path in result.paths.items():
        out.print(f"Wrote {path}")
