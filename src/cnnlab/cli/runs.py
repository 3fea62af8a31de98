"""Commands on finished runs: ``evaluate``, ``predict``, ``export``, ``runs``."""

from __future__ import annotations

from pathlib import Path

import click

from cnnlab.cli._common import CONTEXT, console, pct, print_json, print_table
from cnnlab.cli.options import POSITIVE, data_dir_option, device_option, format_option, optimize_option, \
    overwrite_option
from cnnlab.paths import FIGURE_SUFFIXES, check_output

__all__ = ["evaluate", "predict", "export", "runs"]


@click.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@data_dir_option
@device_option
@click.option("--split", type=click.Choice(["val", "test"]), default="test", show_default=True)
@click.option("--confusion", type=click.Path(path_type=Path), default=None,
              help="Confusion-matrix PNG [default: RUN_DIR/confusion_<split>.png].")
@optimize_option
def evaluate(run_dir: Path, data_dir: str | None, device: str, split: str, confusion: Path | None,
             optimize: str | None) -> None:
    """Reload a run's checkpoint: accuracy, per-class precision/recall, confusion-matrix PNG."""
    from cnnlab.training.evaluate import evaluate_with_report

    if confusion is not None:
        confusion = check_output(confusion, "file", what="--confusion", suffixes=FIGURE_SUFFIXES, default_suffix=".png",
                                 writes="one figure")
    ev = evaluate_with_report(run_dir, data_dir=str(data_dir) if data_dir else None, device=device, split=split,
                              confusion_png=confusion, optimize=optimize)
    console().print(f"{ev.run.config.model} on {ev.run.config.dataset} from {ev.run.path}")
    label = "Test" if split == "test" else "Validation"
    through = f" (--optimize {optimize})" if optimize else ""
    console().print(f"{label} accuracy: {ev.accuracy:.2f}% ({ev.correct}/{ev.total}){through}")
    print_table(f"per class ({split})", ("class", "precision", "recall", "F1", "support"),
                [(r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"])
                 for r in ev.per_class], left=("class",))
    console().print(f"Confusion matrix: {ev.confusion_png}")


@click.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=POSITIVE, default=3, show_default=True)
@device_option
@optimize_option
def predict(run_dir: Path, images: tuple[Path, ...], top_k: int, device: str, optimize: str | None) -> None:
    """Top-k classes for image files (any size or mode), converted the way the run's data was."""
    from cnnlab.training.evaluate import predict as run_predict

    for path, ranked in run_predict(run_dir, images, top_k=top_k, device=device, optimize=optimize):
        console().print(f"{path}: " + ", ".join(f"{name} {100 * p:.1f}%" for name, p in ranked))


@click.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "format", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="[default: RUN_DIR/model.onnx, with --quantize int8 RUN_DIR/model.int8.onnx]")
@overwrite_option
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="Static int8 (QDQ) quantization calibrated on 256 training images; checked for >= 99% top-1 "
                   "agreement with PyTorch on test images.")
@data_dir_option
def export(run_dir: Path, format: str, out: Path | None, overwrite: bool, quantize: str | None,
           data_dir: str | None) -> None:
    """Export a run's model to ONNX and check it against onnxruntime (max |diff| <= 1e-4)."""
    from cnnlab.export import export_onnx, export_onnx_int8

    if out is not None:
        out = check_output(out, "file", suffixes=(".onnx",), default_suffix=".onnx", writes="an ONNX model")
    if quantize == "int8":
        path, agreement, checked = export_onnx_int8(run_dir, out, overwrite=overwrite,
                                                    data_dir=str(data_dir) if data_dir else None)
        console().print(f"Wrote {path} (int8 QDQ, dynamic batch; input 'images', output 'logits'); onnxruntime int8 "
                        f"vs PyTorch fp32: top-1 agreement {100 * agreement:.2f}% on {checked} test images")
        return
    path, diff = export_onnx(run_dir, out, overwrite=overwrite)
    console().print(f"Wrote {path} (dynamic batch; input 'images', output 'logits'); "
                    f"onnxruntime vs PyTorch max |diff| = {diff:.2e}")


@click.command(context_settings=CONTEXT)
@click.argument("root", required=False, default="runs", type=click.Path(path_type=Path))
@format_option
def runs(root: Path, format: str) -> None:
    """One table of past runs: model, dataset, epochs, best val / test accuracy, time, status
    (a report, ONNX file or plot made from an older model.pt is named stale)."""
    from cnnlab.runs import list_runs

    rows = list_runs(root)
    if format == "json":
        print_json(rows)
        return
    print_table(f"cnnlab runs in {root}",
                ("run", "model", "dataset", "epochs", "best val %", "test %", "time (s)", "status"),
                [(r["run"], r["model"], r["dataset"], r["epochs"], pct(r["best_val_acc"]), pct(r["test_acc"]),
                  "-" if r["seconds"] is None else f"{r['seconds']:.1f}", r["status"]) for r in rows],
                left=("run", "model", "dataset", "epochs", "status"))
