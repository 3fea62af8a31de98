"""``cnnlab explore``: the local app (:mod:`cnnlab.app`). Parses, opens the catalogue, serves."""

from __future__ import annotations

import click

from cnnlab.cli._common import CONTEXT
from cnnlab.cli.options import RangedInt, data_dir_option, dataset_option, device_option, weights_option
from cnnlab.training.config import Range

__all__ = ["explore"]

PORT = RangedInt(Range(0, 65535, integer=True, hint="; 0 picks any free port"))


@click.command("explore", context_settings=CONTEXT)
@click.argument("target", metavar="[RUN | RUNS_DIR | MODEL]", default="runs", required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any but the loopback needs a token (printed in the URL, or --token).")
@click.option("--port", type=PORT, default=8765, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Do not open the page in a browser.")
@click.option("--token", default=None, help="The token a non-loopback --host requires [default: a random one].")
@weights_option
@dataset_option
@data_dir_option
@device_option
def explore(target: str, host: str, port: int, no_browser: bool, token: str | None, weights, dataset, data_dir,
            device) -> None:
    """CNN Explainer for your own model: a local web app. Draw or pick an image and watch the prediction;
    see every layer's feature maps with their shapes, formulas and receptive fields; click a cell to see
    the multiply-adds that made it; Grad-CAM, filters and the arithmetic playground.

    RUN is a run directory, RUNS_DIR a folder of them (default: runs), MODEL a zoo model name (random
    weights, or --weights FILE). Prints `cnnlab explore: http://HOST:PORT/` first; Ctrl-C stops it."""
    from cnnlab.app import Catalog, serve

    if token is not None and not token.strip():
        raise click.BadParameter("the token must not be empty", param_hint="--token")
    catalog = Catalog.open(target, weights=None if weights is None else str(weights), dataset=dataset,
                           data_dir=data_dir, device=device)
    serve(catalog, host=host, port=port, token=token, open_browser=not no_browser)
