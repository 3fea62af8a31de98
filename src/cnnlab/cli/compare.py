"""Between runs: ``cnnlab interpret RUN`` (what a model gets wrong, how well calibrated it is) and
``cnnlab compare RUN RUN [RUN ...]`` (the settings that differ, the curves, and whether the
difference on the test set is real). Each parses, calls one library function and prints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cnnlab.cli._common import CONTEXT, console, pct, print_json, print_table
from cnnlab.cli.options import PATH, POSITIVE, data_dir_option, device_option, format_option, seed_option
from cnnlab.paths import FIGURE_SUFFIXES, check_output

__all__ = ["interpret", "compare"]


@click.command(context_settings=CONTEXT)
@click.argument("run_dir", metavar="RUN", type=PATH)
@click.option("--top-losses", type=POSITIVE, default=16, show_default=True,
              help="Test images with the highest cross-entropy in the gallery (with Grad-CAM).")
@click.option("--temperature", is_flag=True,
              help="Fit temperature scaling on the run's validation split (L-BFGS on its NLL); report the "
                   "test ECE and NLL before and after.")
@format_option
@click.option("--out", type=PATH, default=None, help="Folder for the PNGs and interpret.json [default: RUN/interpret].")
@data_dir_option
@device_option
def interpret(run_dir: Path, top_losses: int, temperature: bool, format: str, out: Path | None,
              data_dir: str | None, device: str) -> None:
    """Per-class accuracy, the most confused pairs, the top losses with Grad-CAM, and calibration
    (reliability diagram, expected calibration error; --temperature: temperature scaling)."""
    from cnnlab.visualize.interpret import interpret_run

    if out is not None:
        out = check_output(out, "folder", writes="a folder of PNGs and interpret.json")
    result = interpret_run(run_dir, top_losses=top_losses, temperature=temperature, out=out, device=device,
                           data_dir=str(data_dir) if data_dir else None)
    if format == "json":
        print_json(result.to_dict())
        return
    _print_interpretation(result)


def _print_interpretation(result) -> None:
    cal = result.calibration
    console().print(f"{result.run}: test accuracy {result.accuracy:.2f}% over {result.total} images")
    print_table("per class (test)", ("class", "accuracy %", "correct", "support"),
                [(r["class"], pct(r["accuracy"]), r["correct"], r["support"]) for r in result.per_class],
                left=("class",))
    print_table("most confused (true -> predicted)", ("true", "predicted", "count", "reverse"),
                [(r["true"], r["predicted"], r["count"], r["reverse"]) for r in result.confused[:10]],
                left=("true", "predicted"))
    console().print(f"Calibration (15 bins): ECE {100 * cal.ece:.2f}%, NLL {cal.nll:.4f}")
    t = result.temperature
    if t is not None:
        console().print(f"Temperature scaling (fitted on val): T = {t.temperature:.4f}; val NLL {t.val_nll_before:.4f} "
                        f"-> {t.val_nll_after:.4f}; test ECE {100 * t.before.ece:.2f}% -> {100 * t.after.ece:.2f}%, "
                        f"NLL {t.before.nll:.4f} -> {t.after.nll:.4f}, accuracy {t.after.accuracy:.2f}% (unchanged)")
    for note in result.notes:
        console().print(f"Note: {note}")
    console().print("Wrote " + ", ".join(result.files.values()))


@click.command(context_settings=CONTEXT)
@click.argument("run_dirs", metavar="RUN RUN [RUN ...]", nargs=-1, type=PATH)
@seed_option
@click.option("--bootstrap", type=POSITIVE, default=2000, show_default=True,
              help="Paired bootstrap resamples for the 95% interval of the accuracy difference.")
@format_option
@click.option("--html", type=PATH, default=None, help="Also write the comparison as one HTML page.")
@click.option("--out", type=PATH, default=None, help="PNG of the runs' curves overlaid.")
@data_dir_option
@device_option
def compare(run_dirs: tuple[Path, ...], seed: int, bootstrap: int, format: str, html: Path | None,
            out: Path | None, data_dir: str | None, device: str) -> None:
    """Compare finished runs on their shared test set: the settings that differ, final and best
    accuracies, per-class accuracy; for two runs McNemar's exact test and a bootstrap interval."""
    from cnnlab.runs.compare import compare_runs, open_runs
    from cnnlab.runtime import resolve_device
    from cnnlab.visualize.comparison import write_comparison

    runs = open_runs(run_dirs, resolve_device(device))  # two or more, each a finished run: said before anything else
    if html is not None:
        html = check_output(html, "file", what="--html", suffixes=(".html", ".htm"), default_suffix=".html",
                            writes="an HTML page")
    if out is not None:
        out = check_output(out, "file", suffixes=FIGURE_SUFFIXES, default_suffix=".png", writes="a PNG")
    comparison = compare_runs(runs, seed=seed, bootstrap=bootstrap, device=resolve_device(device),
                              data_dir=str(data_dir) if data_dir else None)
    write_comparison(comparison, png=out, html=html)
    if format == "json":
        print_json(comparison.to_dict())
        return
    _print_comparison(comparison)


def _print_comparison(c) -> None:
    from cnnlab.visualize.comparison import run_labels

    labels = run_labels(c)
    print_table(f"cnnlab compare ({c.test_items} test items)",
                ("run", "folder", "epochs", "final test %", "best val %", "best test %"),
                [(labels[i], s.run, s.epochs, pct(s.final_test_acc), pct(s.best_val_acc), pct(s.best_test_acc))
                 for i, s in enumerate(c.runs)], left=("run", "folder"))
    if c.settings:
        print_table("settings that differ", ("setting", *labels),
                    [(name, *(json.dumps(v) for v in values)) for name, values in c.settings.items()],
                    left=("setting", *labels))
    else:
        console().print("Settings: all the same")
    diffs = [(r["class"], *(pct(v) for v in r["accuracy"]),
              *("-" if v is None else f"{v:+.2f}" for v in r["difference"])) for r in c.per_class_difference]
    print_table("per-class test accuracy %", ("class", *labels, *(f"{l} - {labels[0]}" for l in labels[1:])),
                diffs, left=("class",))
    if c.mcnemar is not None:
        m, b = c.mcnemar, c.bootstrap
        console().print(f"McNemar exact: b = {m.b} ({labels[0]} right, {labels[1]} wrong), c = {m.c} "
                        f"({labels[0]} wrong, {labels[1]} right), p = {m.p:.4g}")
        console().print(f"{labels[1]} - {labels[0]}: {b.difference:+.2f} points, 95% bootstrap interval "
                        f"[{b.low:+.2f}, {b.high:+.2f}] ({b.resamples} paired resamples, seed {b.seed})")
    for name, path in c.files.items():
        console().print(f"Wrote {path}")
