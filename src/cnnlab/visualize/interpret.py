"""``cnnlab interpret RUN``: what a run's model gets wrong and how far its confidence can be
trusted -- per-class accuracy, the most confused pairs, the top losses as a gallery with Grad-CAM
overlays, and calibration (reliability diagram, ECE, optionally temperature scaling fitted on the
validation split). The numbers come from :mod:`cnnlab.runs.interpret`; this module draws them and
writes them (into the run directory under its lock, recorded in derived.json: :class:`RunOutput`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError
from cnnlab.figures import gallery_figure, reliability_figure, save_figure
from cnnlab.runs import Run, RunOutput, load_run_splits, split_logits
from cnnlab.runs.interpret import Interpretation, interpret_logits
from cnnlab.runtime import resolve_device
from cnnlab.storage import atomic_write
from cnnlab.visualize.attribution import grad_cam
from cnnlab.visualize.source import take

__all__ = ["interpret_run", "GALLERY_FILE", "RELIABILITY_FILE", "RESULT_JSON"]

GALLERY_FILE, RELIABILITY_FILE, RESULT_JSON = "top_losses.png", "reliability.png", "interpret.json"


def interpret_run(run_dir: str | os.PathLike, *, top_losses: int = 16, temperature: bool = False,
                  out: str | os.PathLike | None = None, device: str = "cpu",
                  data_dir: str | None = None) -> Interpretation:
    """Interpret the test split of a finished run and write ``top_losses.png``, ``reliability.png``
    and ``interpret.json`` into ``out`` (default ``RUN/interpret``). ``temperature``: fit T on the
    run's validation split (a run without one gets a note instead)."""
    if top_losses < 1:
        raise CnnlabError(f"--top-losses must be a positive integer, got {top_losses}")
    folder = Path(out) if out is not None else Path(run_dir) / "interpret"
    with RunOutput(run_dir, folder, "interpret") as output:
        run = Run.open(run_dir, resolve_device(device))
        output.check(run)
        splits = load_run_splits(run.config, run.preprocessing, data_dir)  # read once: test and val come from it
        model, data = run.load_model(), splits.test.to(run.device)
        logits, labels = split_logits(run, "test", model=model, data=data)
        val, notes = None, []
        if temperature and run.config.val_fraction > 0:
            val = split_logits(run, "val", model=model, data=splits.val.to(run.device))
        elif temperature:
            notes.append(f"no temperature scaling: {run.path} was trained without --val-fraction, so it has no "
                         f"validation split to fit the temperature on")
        result = interpret_logits(logits, labels, run.classes, run=str(run.path), top=top_losses, val=val)
        result.notes += notes
        files = _draw(run, model, data, result, folder)
        output.record(*files.values(), run=run)
    return result


def _draw(run: Run, model: torch.nn.Module, data, result: Interpretation, folder: Path) -> dict[str, Path]:
    files = {"gallery": folder / GALLERY_FILE, "reliability": folder / RELIABILITY_FILE,
             "json": folder / RESULT_JSON}
    save_figure(gallery_figure(_gallery_items(run, model, data, result),
                               f"Top {len(result.top_losses)} losses of {run.config.model} on "
                               f"{run.config.dataset} (test); Grad-CAM of the predicted class"),
                files["gallery"], dpi=90)
    scaling = result.temperature
    after = None if scaling is None else scaling.after
    title = f"{run.config.model} on {run.config.dataset} (test)" + (
        "" if scaling is None else f", T = {scaling.temperature:.3f}")
    save_figure(reliability_figure(result.calibration.bins, title, after.bins if after else None,
                                   result.calibration.ece, after.ece if after else None), files["reliability"])
    result.files = {k: str(v) for k, v in files.items()}
    atomic_write(files["json"], json.dumps(result.to_dict(), indent=2) + "\n", parents=True)
    return files


def _gallery_items(run: Run, model: torch.nn.Module, data, result: Interpretation) -> list[tuple]:
    """(pixels, Grad-CAM of the predicted class, caption) per top loss."""
    indices = [r["index"] for r in result.top_losses]
    images, _ = take(data, indices)
    pixels = images.float() / 255.0
    x = run.preprocessing.to_input(pixels, run.device)
    predicted = torch.tensor([run.classes.index(r["predicted"]) for r in result.top_losses], device=run.device)
    cams = grad_cam(model, x, target=predicted).cpu()
    return [(pixels[n], cams[n], f"#{r['index']} true {r['label']}\npred {r['predicted']} "
                                 f"({100 * r['p_predicted']:.0f}%), loss {r['loss']:.2f}")
            for n, r in enumerate(result.top_losses)]
