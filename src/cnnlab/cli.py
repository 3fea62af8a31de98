"""The ``cnnlab`` command line: each command parses, calls one library function, prints.

A user's mistake ends in one line (``cnnlab: error: ...``) and exit code 2, never a
traceback; see :func:`run`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from cnnlab.errors import CnnlabError

from cnnlab.layers import INITS

INIT_NAMES = list(INITS)

# Wide enough for the summary table when stdout is a file or a pipe (rich assumes 80 columns there).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="cnnlab", prog_name="cnnlab")
def app() -> None:
    """The CNN lecture as runnable, tested, fast software: train, inspect and time classic CNNs."""


def _parse_options(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["dropout2d=0.2", "stem=cifar"]`` -> {"dropout2d": 0.2, "stem": "cifar"}."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CnnlabError(f"--option takes KEY=VALUE (e.g. --option dropout2d=0.2), got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options


DEVICES = click.Choice(["auto", "cpu", "cuda"])
FORMATS = click.Choice(["table", "json"])
OPTION = click.option("--option", "-o", "option", multiple=True, metavar="KEY=VALUE",
                      help="Model option, e.g. -o dropout2d=0.2 (repeatable).")


@app.command(context_settings=CONTEXT)
@click.option("--model", default="convnet", show_default=True, help="Model name (see `cnnlab models`).")
@click.option("--dataset", default="mnist", show_default=True,
              help="mnist, fashion-mnist, cifar10, digits (bundled, offline), or imagefolder "
                   "(--data-dir DIR with DIR/train/<class>/*).")
@click.option("--epochs", type=int, default=10, show_default=True, help="Passes over the training set.")
@click.option("--batch-size", type=int, default=128, show_default=True, help="Minibatch size.")
@click.option("--lr", type=float, default=0.05, show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default="sgd", show_default=True)
@click.option("--momentum", type=float, default=0.0, show_default=True, help="SGD momentum (the lecture uses none).")
@click.option("--nesterov", is_flag=True, help="Nesterov momentum (SGD).")
@click.option("--weight-decay", type=float, default=0.0, show_default=True, help="L2 weight decay (decoupled for adamw).")
@click.option("--schedule", type=click.Choice(["constant", "step", "cosine", "onecycle"]), default="constant",
              show_default=True, help="Learning-rate schedule, stepped every batch.")
@click.option("--warmup-epochs", type=float, default=0.0, show_default=True, help="Linear warm-up (fractions allowed).")
@click.option("--step-size", type=int, default=30, show_default=True, help="schedule step: epochs between decays.")
@click.option("--gamma", type=float, default=0.1, show_default=True, help="schedule step: decay factor.")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@click.option("--clip-grad", type=float, default=None, help="Clip the global gradient norm to this value.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue this run directory from its checkpoint.pt (its own settings; --epochs may extend).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seeds the model's init and the shuffling.")
@click.option("--device", type=DEVICES, default="auto", show_default=True, help="auto picks CUDA when available.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run directory [default: runs/<timestamp>-<model>-<dataset>].")
@click.option("--overwrite", is_flag=True, help="Allow writing into a non-empty --out.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Folder holding MNIST/raw [default: $CNNLAB_DATA, else ~/.cache/cnnlab/data].")
@click.option("--download/--no-download", default=True, show_default=True,
              help="Download missing data when a network exists.")
@click.option("--deterministic/--no-deterministic", default=True, show_default=True,
              help="Deterministic algorithms (cuDNN too): same seed, same weights.")
@click.option("--init", "init", type=click.Choice(INIT_NAMES), default="default", show_default=True,
              help="Weight init of every conv and linear layer, biases zeroed (the cnn-with-diff-init notebooks).")
@click.option("--input-size", type=int, default=None, help="Resize the images once to this side [default: the dataset's].")
@click.option("--in-channels", type=int, default=None, help="Repeat gray images to this many channels (3 for RGB weights).")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Start from this state_dict (torchvision .pth or a cnnlab model.pt); a head of another size is replaced.")
@click.option("--freeze", multiple=True, metavar="MODULE",
              help="Keep this module's parameters fixed, e.g. --freeze features (repeatable).")
@click.option("--normalize/--no-normalize", default=None,
              help="Per-channel mean/std after scaling [default: the dataset's recipe: cifar10 yes, MNIST no].")
@click.option("--amp", is_flag=True, help="Autocast: bfloat16 on the CPU, float16 with a GradScaler on CUDA.")
@click.option("--augment", is_flag=True, help="Random crop (and flip for colour images), batch-wise on tensors.")
@click.option("--stream", is_flag=True, help="imagefolder: decode per batch in DataLoader workers (folders larger than RAM).")
@click.option("--workers", type=int, default=2, show_default=True, help="DataLoader workers with --stream.")
@click.option("--skip-bad-images", is_flag=True, help="imagefolder: skip and count unreadable files.")
@click.option("--val-fraction", type=float, default=0.0, show_default=True,
              help="Seeded validation split of train: per-epoch figure and model selection; test scored once at the end.")
@click.option("--limit-batches", type=int, default=None, help="Stop each epoch after N batches (quick smoke runs).")
@click.option("--train-eval", type=click.Choice(["running", "full"]), default="running", show_default=True,
              help="Train accuracy from the epoch's own minibatches (free), or a full eval-mode pass over the "
                   "train set after each epoch, as the lecture notebook computes it.")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory format [default: on for CPU, where oneDNN is faster with it; off on CUDA].")
@OPTION
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or epoch lines.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard event files to RUN_DIR/tensorboard.")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Data-parallel processes on this machine: relaunches itself under torchrun (DDP; gloo on CPU, nccl on CUDA).")
def train(model: str, dataset: str, epochs: int, batch_size: int, lr: float, optimizer: str, momentum: float,
          nesterov: bool, weight_decay: float, schedule: str, warmup_epochs: float, step_size: int, gamma: float,
          label_smoothing: float, clip_grad: float | None, resume_dir: Path | None, seed: int, device: str, out: Path | None, overwrite: bool, data_dir: Path | None,
          download: bool, deterministic: bool, init: str, input_size: int | None, in_channels: int | None,
          weights: Path | None, freeze: tuple[str, ...], normalize: bool | None, amp: bool, augment: bool, stream: bool, workers: int, skip_bad_images: bool, val_fraction: float, limit_batches: int | None, train_eval: str, channels_last: bool | None,
          option: tuple[str, ...], quiet: bool, tensorboard: bool, nproc: int) -> None:
    """Train a model. With no arguments: the lecture's ConvNet recipe on MNIST."""
    from cnnlab.callbacks import ConsoleLogger
    from cnnlab.train import TrainConfig, distributed_env, resume
    from cnnlab.train import train as run_training

    if nproc < 1:
        raise CnnlabError(f"--nproc must be a positive integer, got {nproc}")
    if nproc > 1 and distributed_env()[1] == 1:
        _relaunch_with_torchrun(nproc)
    rank = distributed_env()[0]
    quiet = quiet or rank != 0
    callbacks = [] if quiet else [ConsoleLogger(console)]
    if tensorboard and rank == 0:
        from cnnlab.callbacks import TensorBoardLogger

        callbacks.append(TensorBoardLogger())
    if resume_dir is not None:
        ctx = click.get_current_context()
        try:
            saved_config = json.loads((resume_dir / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError):
            saved_config = {}  # resume() says what is wrong with the directory
        for name, given in (("model", model), ("dataset", dataset)):
            explicit = ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
            if explicit and saved_config.get(name, given) != given:
                raise CnnlabError(f"--resume {resume_dir} was trained with --{name} {saved_config[name]}, not {given}; "
                                  f"resume without --{name}, or start a new run")
        explicit = ctx.get_parameter_source("epochs") is click.core.ParameterSource.COMMANDLINE
        result = resume(resume_dir, callbacks, epochs=epochs if explicit else None,
                        data_dir=str(data_dir) if data_dir else None)
        console.print(f"Test accuracy: {result.test_acc:.2f}% ({result.test_correct}/{result.test_total})"
                      if quiet else f"Resumed and finished {result.run_dir}")
        return

    config = TrainConfig(
        model=model,
        dataset=dataset,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        step_size=step_size,
        gamma=gamma,
        label_smoothing=label_smoothing,
        clip_grad=clip_grad,
        seed=seed,
        device=device,
        deterministic=deterministic,
        init=init,
        input_size=input_size,
        in_channels=in_channels,
        weights=str(weights) if weights else None,
        freeze=list(freeze),
        limit_batches=limit_batches,
        val_fraction=val_fraction,
        skip_bad_images=skip_bad_images,
        stream=stream,
        workers=workers,
        normalize=normalize,
        amp=amp,
        augment=augment,
        train_eval=train_eval,
        channels_last=channels_last,
        data_dir=str(data_dir) if data_dir else None,
        download=download,
        out=str(out) if out else None,
        model_options=_parse_options(option),
    )
    result = run_training(config, callbacks, overwrite=overwrite)
    if rank != 0:
        return
    if quiet:
        console.print(f"Test accuracy: {result.test_acc:.2f}% ({result.test_correct}/{result.test_total})")
    console.print(f"Saved config.json, metrics.csv, model.pt and curves.png in {result.run_dir}")


@app.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Where the dataset is now, if it moved.")
@click.option("--device", type=DEVICES, default="auto", show_default=True)
@click.option("--split", type=click.Choice(["val", "test"]), default="test", show_default=True)
@click.option("--confusion", type=click.Path(path_type=Path), default=None,
              help="Confusion-matrix PNG [default: RUN_DIR/confusion_<split>.png].")
def evaluate(run_dir: Path, data_dir: Path | None, device: str, split: str, confusion: Path | None) -> None:
    """Reload a run's checkpoint: accuracy, per-class precision/recall, confusion-matrix PNG."""
    from cnnlab.plots import plot_confusion
    from cnnlab.train import evaluate_run_detailed, per_class_metrics

    correct, total, run, matrix = evaluate_run_detailed(run_dir, data_dir=str(data_dir) if data_dir else None,
                                                        device=device, split=split)
    console.print(f"{run.config.model} on {run.config.dataset} from {run.path}")
    label = "Test" if split == "test" else "Validation"
    console.print(f"{label} accuracy: {100.0 * correct / total:.2f}% ({correct}/{total})")
    table = Table(title=f"per class ({split})")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for r in per_class_metrics(matrix, run.classes):
        table.add_row(r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"]))
    console.print(table)
    path = confusion or run.path / f"confusion_{split}.png"
    plot_confusion(matrix.numpy(), run.classes, path, title=f"{run.config.model} on {run.config.dataset} ({split})")
    console.print(f"Confusion matrix: {path}")


@app.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=int, default=3, show_default=True)
@click.option("--device", type=DEVICES, default="auto", show_default=True)
def predict(run_dir: Path, images: tuple[Path, ...], top_k: int, device: str) -> None:
    """Top-k classes for image files (any size or mode), converted the way the run's data was."""
    from cnnlab.train import predict as run_predict

    for path, ranked in run_predict(run_dir, images, top_k=top_k, device=device):
        console.print(f"{path}: " + ", ".join(f"{name} {100 * p:.1f}%" for name, p in ranked))


@app.command(context_settings=CONTEXT)
@click.argument("root", required=False, default="runs", type=click.Path(path_type=Path))
@click.option("--format", "format", type=FORMATS, default="table", show_default=True)
def runs(root: Path, format: str) -> None:
    """One table of past runs: model, dataset, epochs, best val / test accuracy, time."""
    from cnnlab.train import list_runs

    rows = list_runs(root)
    if format == "json":
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"cnnlab runs in {root}")
    for col in ("run", "model", "dataset", "epochs", "best val %", "test %", "time (s)", "status"):
        table.add_column(col, justify="right" if col in ("best val %", "test %", "time (s)") else "left")
    pct = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        table.add_row(r["run"], r["model"], r["dataset"], r["epochs"], pct(r["best_val_acc"]), pct(r["test_acc"]),
                      "-" if r["seconds"] is None else f"{r['seconds']:.1f}", r["status"])
    console.print(table)


@app.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "format", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="[default: RUN_DIR/model.onnx]")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def export(run_dir: Path, format: str, out: Path | None, overwrite: bool) -> None:
    """Export a run's model to ONNX and check it against onnxruntime (max |diff| <= 1e-4)."""
    from cnnlab.export import export_onnx

    path, diff = export_onnx(run_dir, out, overwrite=overwrite)
    console.print(f"Wrote {path} (dynamic batch; input 'images', output 'logits'); "
                  f"onnxruntime vs PyTorch max |diff| = {diff:.2e}")


@app.command(context_settings=CONTEXT)
@click.option("--input", "-i", "input", type=int, required=True, help="Input size i (height or width).")
@click.option("--kernel", "-k", type=int, required=True, help="Kernel size k.")
@click.option("--stride", "-s", type=int, default=1, show_default=True, help="Stride s.")
@click.option("--padding", "-p", default="0", show_default=True, help="Padding per side: an integer, same or valid.")
@click.option("--dilation", "-d", type=int, default=1, show_default=True, help="Dilation d.")
@click.option("--ceil-mode", is_flag=True, help="Round up, as MaxPool2d(ceil_mode=True).")
def arith(input: int, kernel: int, stride: int, padding: str, dilation: int, ceil_mode: bool) -> None:
    """Output size of a convolution or pooling layer, with the lecture's worked formula."""
    from cnnlab.arithmetic import explain_output_size

    pad: int | str
    try:
        pad = int(padding)
    except ValueError:
        pad = padding
    try:
        _, lines = explain_output_size(input, kernel, stride, pad, dilation, ceil_mode)
    except (ValueError, TypeError) as exc:
        raise CnnlabError(str(exc)) from None
    for line in lines:
        console.print(line)


@app.command(context_settings=CONTEXT)
@click.argument("model")
@click.option("--input", "input", default=None, help="Input shape CxHxW, e.g. 1x28x28 [default: the model's].")
@click.option("--num-classes", type=int, default=None, help="Output classes [default: the model's].")
@click.option("--format", "format", type=FORMATS, default="table", show_default=True)
@OPTION
def summary(model: str, input: str | None, num_classes: int | None, format: str, option: tuple[str, ...]) -> None:
    """Layer-by-layer shapes (28x28x1 => 28x28x4), formulas, parameters, MACs and receptive fields."""
    from cnnlab.summary import parse_shape, summarize_model

    shape = parse_shape(input) if input else None
    result = summarize_model(model, shape, num_classes=num_classes, **_parse_options(option))
    if format == "json":
        print(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(title=f"{model}, input {'x'.join(map(str, result.input_shape))} (CxHxW)")
    for col, justify in [("layer", "left"), ("type", "left"), ("HxWxC => HxWxC", "left"), ("k / s / p", "left"),
                         ("output size", "left"), ("params", "right"), ("MACs", "right"), ("RF", "right")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in result.layers:
        ksp = ""
        if row.kernel is not None:
            pad = row.padding if isinstance(row.padding, str) else "x".join(map(str, row.padding or []))
            ksp = f"{'x'.join(map(str, row.kernel))} / {'x'.join(map(str, row.stride or []))} / {pad}"
        rf = "all" if row.receptive_field is None else f"{row.receptive_field} (jump {row.jump})"
        table.add_row(row.name, row.type, row.transition, ksp, row.formula or "", f"{row.params:,}",
                      f"{row.macs:,}", rf)
    console.print(table)
    console.print(f"Parameters: {result.total_params:,} ({result.trainable_params:,} trainable)")
    console.print(
        f"MACs per image: {result.total_macs:,} ({result.total_macs / 1e9:.3f} G); "
        f"FLOPs = 2 x MACs = {result.total_flops:,} (conv and linear layers only)"
    )


@app.command(context_settings=CONTEXT)
@click.option("--format", "format", type=FORMATS, default="table", show_default=True)
def models(format: str) -> None:
    """List the registered models with parameters and MACs at their default input."""
    from cnnlab.models import get_model_info, list_models
    from cnnlab.summary import summarize_model

    rows = []
    for name in list_models():
        info = get_model_info(name)
        s = summarize_model(name)
        rows.append({"name": name, "family": info.family, "input": "x".join(map(str, info.input_shape)),
                     "params": s.total_params, "macs": s.total_macs, "paper": info.paper})
    if format == "json":
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="cnnlab models (MACs for one image at the default input)")
    for col in ("name", "family", "input", "params", "GMACs", "paper"):
        table.add_column(col, justify="right" if col in ("params", "GMACs") else "left")
    for r in rows:
        table.add_row(r["name"], r["family"], r["input"], f"{r['params']:,}", f"{r['macs'] / 1e9:.4f}", r["paper"])
    console.print(table)


@app.group(context_settings=CONTEXT)
def experiment() -> None:
    """The lecture's experiments, each one command."""


@experiment.command("inits", context_settings=CONTEXT)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/inits"), show_default=True,
              help="Folder for one run per init, inits.csv and inits.png.")
@click.option("--inits", default=",".join(INIT_NAMES), show_default=True, help="Comma-separated init schemes.")
@click.option("--model", default="convnet", show_default=True)
@click.option("--dataset", default="mnist", show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--device", type=DEVICES, default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Allow writing into a non-empty --out.")
def experiment_inits(out: Path, inits: str, model: str, dataset: str, epochs: int, seed: int, data_dir: Path | None,
                     device: str, overwrite: bool) -> None:
    """Train the ConvNet recipe once per weight init; table and accuracy plot (cnn-with-diff-init)."""
    from cnnlab.experiments import LECTURE_INIT_TABLE, run_init_experiment
    from cnnlab.train import TrainConfig

    names = [n.strip() for n in inits.split(",") if n.strip()]
    base = TrainConfig(model=model, dataset=dataset, epochs=epochs, seed=seed, device=device,
                       data_dir=str(data_dir) if data_dir else None)
    from cnnlab.callbacks import ConsoleLogger

    rows = run_init_experiment(out, names, base, [ConsoleLogger(console)], overwrite=overwrite)
    table = Table(title=f"{model} on {dataset}, {epochs} epochs, one run per init (lecture's figures in brackets)")
    for col in ("init", "epoch-1 train %", "final train %", "test %", "seconds"):
        table.add_column(col, justify="left" if col == "init" else "right")
    for r in rows:
        lec = LECTURE_INIT_TABLE.get(r.init) if (model, dataset, epochs) == ("convnet", "mnist", 10) else None
        ref = (lambda i: f" ({lec[i]:.2f})") if lec else (lambda i: "")
        table.add_row(r.init, f"{r.epoch1_train_acc:.2f}{ref(0)}", f"{r.final_train_acc:.2f}{ref(1)}",
                      f"{r.test_acc:.2f}{ref(2)}", f"{r.seconds:.1f}")
    console.print(table)
    console.print(f"Wrote {out / 'inits.csv'} and {out / 'inits.png'}")


@app.group(context_settings=CONTEXT)
def demo() -> None:
    """The lecture's slides, computed."""


@demo.command("xcorr", context_settings=CONTEXT)
@click.option("--associativity", is_flag=True, help="Also show that convolution is associative, cross-correlation not.")
def demo_xcorr(associativity: bool) -> None:
    """Cross-correlation vs convolution on the lecture's 3x3 example."""
    from cnnlab.conv.demo import associativity_lines, xcorr_lines

    for line in xcorr_lines():
        console.print(line)
    if associativity:
        console.print()
        for line in associativity_lines():
            console.print(line)


@app.group(context_settings=CONTEXT)
def bench() -> None:
    """Benchmarks, timed against the library peer in the same process."""


def _relaunch_with_torchrun(nproc: int) -> None:
    """`cnnlab train --nproc N ...` = `torchrun --standalone --nproc-per-node N -m cnnlab train ...`."""
    import subprocess

    args = list(sys.argv[1:])
    cleaned, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cleaned.append(a)
    if "--out" not in cleaned and not any(a.startswith("--out=") for a in cleaned) and "--resume" not in cleaned:
        from cnnlab.train import TrainConfig, default_run_dir

        cleaned += ["--out", str(default_run_dir(TrainConfig()))]  # one directory for all ranks
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "cnnlab", *cleaned]
    raise click.exceptions.Exit(subprocess.call(cmd))


def _int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise CnnlabError(f"{name} takes comma-separated positive integers, e.g. 1,8; got {text!r}")
    return values


@bench.command("conv", context_settings=CONTEXT)
@click.option("--quick", is_flag=True, help="Three layers (256@56, 512@28, 512@14), 3 runs, FFT at batch 1 only.")
@click.option("--batch-sizes", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--algorithms", default="im2col,fft,winograd,winograd4", show_default=True,
              help="Comma-separated: direct, im2col, fft, winograd, winograd4.")
@click.option("--runs", type=int, default=None, help="Timed runs per case [default: 5, --quick 3].")
@click.option("--device", type=DEVICES, default="cpu", show_default=True)
@click.option("--errors/--no-errors", default=True, show_default=True, help="Also print the float64 error report.")
@click.option("--format", "format", type=FORMATS, default="table", show_default=True)
def bench_conv_cmd(quick: bool, batch_sizes: str, algorithms: str, runs: int | None, device: str, errors: bool,
                   format: str) -> None:
    """VGG-16's 3x3 layers: each algorithm's ms, GFLOP/s, ratio to F.conv2d and max error."""
    from cnnlab.conv import ALGORITHMS
    from cnnlab.conv.bench import VGG16_LAYERS, bench_conv, cudnn_modes, error_report, machine_line, rows_as_dicts
    from cnnlab.train import resolve_device

    dev = resolve_device(device)
    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    for name in names:
        if name not in ALGORITHMS:
            from cnnlab.errors import UnknownNameError

            raise UnknownNameError("algorithm", name, ALGORITHMS)
    sizes = _int_list(batch_sizes, "--batch-sizes")
    layers = [(256, 56), (512, 28), (512, 14)] if quick else VGG16_LAYERS
    runs = runs or (3 if quick else 5)
    if runs < 1:
        raise CnnlabError(f"--runs must be a positive integer, got {runs}")

    def skip(algorithm: str, channels: int, side: int, batch: int) -> bool:
        if algorithm == "direct":
            return side > 14 or batch > 1  # a Python loop per output position: teaching speed
        return quick and algorithm == "fft" and batch > 1

    header = machine_line(dev)
    table = Table(title=f"cnnlab bench conv: 3x3 convolutions, padding 1 (float32) -- {header}")
    for col in ("layer", "batch", "algorithm", "ms", "GFLOP/s", "x F.conv2d", "max error"):
        table.add_column(col, justify="left" if col in ("layer", "algorithm") else "right")
    live = format == "table"
    if live:
        console.print(header)

    def on_row(row) -> None:
        if live:
            console.print(f"  {row.layer:>7s} batch {row.batch}: {row.algorithm:9s} {row.ms:9.2f} ms "
                          f"{row.gflops:7.1f} GFLOP/s {row.ratio:6.2f}x  err {row.max_error:.1e}")

    rows = bench_conv(layers, sizes, names, runs=runs, device=dev, skip=skip, on_row=on_row)
    result: dict = {"machine": header, "rows": rows_as_dicts(rows)}
    if dev.type == "cuda":
        result["cudnn_modes"] = cudnn_modes(layers, sizes, device=dev)
    if errors:
        result["errors"] = error_report(layers)
    if format == "json":
        print(json.dumps(result, indent=2))
        return
    for row in rows:
        table.add_row(row.layer, str(row.batch), row.algorithm, f"{row.ms:.2f}", f"{row.gflops:.1f}",
                      f"{row.ratio:.2f}", f"{row.max_error:.1e}")
    console.print(table)
    if "cudnn_modes" in result:
        modes = Table(title="F.conv2d on CUDA: cuDNN benchmark x deterministic (ms, median)")
        keys = [k for k in result["cudnn_modes"][0] if k not in ("layer", "batch")]
        for col in ("layer", "batch", *keys):
            modes.add_column(col)
        for r in result["cudnn_modes"]:
            modes.add_row(r["layer"], str(r["batch"]), *(f"{r[k]:.3f}" for k in keys))
        console.print(modes)
    if errors:
        err = Table(title="max |y - y64| / max |y64| against F.conv2d in float64 (batch 1)")
        keys = [k for k in result["errors"][0] if k != "layer"]
        for col in ("layer", *keys):
            err.add_column(col, justify="right")
        for r in result["errors"]:
            err.add_row(r["layer"], *("-" if r[k] is None else f"{r[k]:.1e}" for k in keys))
        console.print(err)


@app.command(context_settings=CONTEXT)
@click.argument("models", nargs=-1)
@click.option("--input", "input", default=None, help="Input shape CxHxW for every model [default: each model's own].")
@click.option("--batch-sizes", default="1,2,4,8,16,32,64", show_default=True, help="Comma-separated batch sizes.")
@click.option("--repeats", type=int, default=None, help="Timed runs per batch size [default: 10, --quick 3].")
@click.option("--quick", is_flag=True, help="Batch sizes 1 and 8, 3 timed runs.")
@click.option("--no-timing", is_flag=True, help="Counts only: parameters, operations, memory.")
@click.option("--per-layer", is_flag=True, help="Include the per-layer breakdown (json output).")
@click.option("--device", type=DEVICES, default="cpu", show_default=True)
@click.option("--runs", "runs", multiple=True, type=click.Path(path_type=Path),
              help="cnnlab run directory (or a folder of them) to take test accuracies from (repeatable).")
@click.option("--format", "format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--charts", type=click.Path(path_type=Path), default=None, help="Folder for the four PNG charts.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None, help="Write one self-contained HTML report.")
def analyze(models: tuple[str, ...], input: str | None, batch_sizes: str, repeats: int | None, quick: bool,
            no_timing: bool, per_layer: bool, device: str, runs: tuple[Path, ...], format: str, charts: Path | None,
            html_path: Path | None) -> None:
    """Canziani et al. (2016) for the zoo: parameters, operations, memory, time vs batch size, accuracy."""
    from cnnlab.analysis import analyze_models
    from cnnlab.models import get_model_info, list_models
    from cnnlab.summary import parse_shape
    from cnnlab.train import resolve_device

    names = list(models) or list_models()
    for name in names:
        get_model_info(name)  # unknown names: one line before any work
    sizes = [1, 8] if quick else _int_list(batch_sizes, "--batch-sizes")
    repeats = repeats or (3 if quick else 10)
    if repeats < 1:
        raise CnnlabError(f"--repeats must be a positive integer, got {repeats}")
    shape = parse_shape(input) if input else None
    dev = resolve_device(device)
    if charts is not None and charts.exists() and not charts.is_dir():
        raise CnnlabError(f"--charts {charts} is a file; give a folder")
    if html_path is not None and html_path.is_dir():
        raise CnnlabError(f"--html {html_path} is a folder; give a file name such as report.html")

    def progress(rep) -> None:
        if format == "table" and not no_timing:
            console.print(f"  {rep.name}: {rep.gmacs:.3f} GMACs, "
                          + ", ".join(f"b{t['batch']} {t['ms_per_image']:.2f} ms/img" for t in rep.timing))

    report = analyze_models(names, sizes, dev, input_shape=shape, timing=not no_timing, repeats=repeats,
                            per_layer=per_layer, run_dirs=runs, on_model=progress)
    if charts is not None:
        from cnnlab.plots import analysis_charts

        analysis_charts(report, charts)
    if html_path is not None:
        from cnnlab.report_html import write_html

        write_html(report, html_path)
    if format == "json":
        print(report.to_json())
        return
    if format == "csv":
        print(report.to_csv(), end="")
        return
    big = max(sizes)
    table = Table(title=f"cnnlab analyze -- {report.machine['description']}")
    cols = ["model", "input", "params", "MACs", "GFLOPs", "param MiB", f"act MiB fwd/train @{big}", "top-1 %"]
    if not no_timing:
        cols += [f"ms/img @{sizes[0]}", f"ms/img @{big}", f"img/s @{big}", "% of roof"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "input") else "right")
    for m in report.models:
        mem = next(x for x in m.memory if x["batch"] == big)
        row = [m.name, "x".join(map(str, m.input_shape)), f"{m.params:,}", f"{m.macs:,}",
               f"{m.flops / 1e9:.3f}", f"{m.param_bytes / 2**20:.1f}",
               f"{mem['forward_bytes'] / 2**20:.1f} / {mem['training_bytes'] / 2**20:.1f}",
               "-" if m.accuracy is None else f"{m.accuracy:.2f}"]
        if not no_timing:
            first, last = m.timing[0], m.timing[-1]
            roof = "-" if last["roof_fraction"] is None else f"{100 * last['roof_fraction']:.0f}"
            row += [f"{first['ms_per_image']:.3f}", f"{last['ms_per_image']:.3f}", f"{last['images_per_s']:.1f}", roof]
        table.add_row(*row)
    console.print(table)
    if per_layer:
        for m in report.models:
            layers = Table(title=f"{m.name}: per layer (one image)")
            for col in ("layer", "type", "output", "params", "MACs"):
                layers.add_column(col, justify="left" if col in ("layer", "type", "output") else "right")
            for r in m.per_layer or []:
                layers.add_row(r["layer"], r["type"], "x".join(map(str, r["output"])), f"{r['params']:,}",
                               f"{r['macs']:,}")
            console.print(layers)
    console.print(report.convention + ".")
    if report.machine.get("roof_gflops"):
        console.print(f"Roof: {report.machine['roof_gflops']:.0f} GFLOP/s (float32 2048^3 matrix multiply, same run).")
    unsupported = sorted({u for m in report.models for u in m.unsupported})
    if unsupported:
        console.print(f"Not counted (unknown ops): {', '.join(unsupported)}")
    sources = sorted({m.accuracy_source for m in report.models if m.accuracy_source})
    for source in sources:
        console.print(f"Accuracy: {source}")


def _error(message: str, code: int = 2) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"cnnlab: error: {first}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (user mistakes: one line on stderr, code 2)."""
    try:
        result = app.main(args=argv, prog_name="cnnlab", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except CnnlabError as exc:
        return _error(str(exc), exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `cnnlab`: the help text
        print(exc.ctx.get_help() if exc.ctx else "")
        return 0
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return _error(exc.format_message() + hint, exc.exit_code)
    except click.ClickException as exc:
        return _error(exc.format_message(), exc.exit_code)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        return _error("interrupted", 130)


def main() -> None:
    sys.exit(run())
