"""A user's own image folder: `cnnlab train --dataset imagefolder` against the torchvision
``ImageFolder`` + ``DataLoader`` loop and timm's ``train.py``, on the same JPEG folder.

The job: ResNet-18 (torchvision's architecture, ImageNet stem, 10 classes, the last BatchNorm of each
residual block zero-initialised: timm's default ``zero_init_last``, ``zero_init_residual=True`` in
torchvision and cnnlab) from scratch on 64 px images, batch 64, SGD momentum 0.9 Nesterov, lr 0.05,
cosine schedule stepped every batch, no warm-up, no weight decay, no label smoothing, 3 epochs, seed 1,
float32, the test folder scored after every epoch. No augmentation by default, so that all three run
the same job (timm's train.py cannot express a padded random crop); ``--augment``: a random crop from
an 8 px zero-padded copy and a horizontal flip (cnnlab ``--augment``, torchvision ``RandomCrop(64,
padding=8)`` + ``RandomHorizontalFlip()``), timm its nearest (the centre square resized, and flipped).
The folder is written by ``examples/make_imagefolder.py`` (10 classes x ``--per-class`` JPEGs of
40-160 px, 20% in test/).

Contenders, each in its own process (started by this script, one after the other):

- ``cnnlab (cold cache)``: ``python -m cnnlab train --dataset imagefolder --data-dir DIR --input-size 64
  --model resnet18 -o stem=imagenet -o zero_init_residual=true --no-augment ...`` with an empty
  ``CNNLAB_CACHE``: the folder is decoded before the first epoch (the "data prep" column), then
  trained from uint8 tensors in memory.
- ``cnnlab (cached)``: the same command again: the decoded tensors come from the cache.
- ``cnnlab --stream``: the same command with ``--stream --workers W``: decoded per batch in workers.
- ``cnnlab (cached, tcmalloc)``: ``cached`` with ``CNNLAB_MALLOC=tcmalloc`` (the command preloads the
  system's tcmalloc; skipped where it is not installed).
- ``torchvision loop``: ``datasets.ImageFolder`` + ``transforms.Compose([Resize((64, 64)), ToTensor(),
  Normalize(ImageNet mean, std)])`` + ``DataLoader(batch_size=64, shuffle=True, num_workers=W)``,
  ``torchvision.models.resnet18(num_classes=10, zero_init_residual=True)``, ``CosineAnnealingLR``
  stepped every batch, a test pass after every epoch (written the usual way).
- ``timm train.py``: timm's own training script (``--timm-train PATH``: ``train.py`` from a checkout of
  github.com/huggingface/pytorch-image-models, copied to a temporary folder and imported, so
  ``main()`` runs as written; ``train_one_epoch``, ``validate`` and ``create_dataset`` are wrapped to
  time and read them) with ``--device cpu --model resnet18 --num-classes 10 --input-size 3 64 64 -b 64
  --opt sgd --lr 0.05 --sched cosine --sched-on-updates --warmup-epochs 0 --weight-decay 0 --smoothing 0
  --color-jitter 0 --scale 1 1 --ratio 1 1 --crop-pct 1.0 --train-interpolation bilinear -j W
  --val-split test --no-aug`` (``--no-aug`` left out with ``--augment``). Skipped with one line when
  timm is not installed or no train.py is given.

Columns: images/s of the training pass of epoch 1 (the streaming contenders decode in it), of epoch 1
with the data preparation before it, and of epochs 2.. (median); "data prep": seconds spent on the data
before the first epoch (scanning the folder; for cnnlab in memory also decoding it, or reading its
cache); the seconds of all training passes; the whole process's wall time (start-up, data, training,
the test pass after every epoch, checkpoints and the files each writes); the process's own peak RSS
(``ru_maxrss`` from ``wait4``: the largest of it and its DataLoader workers); the peak of the summed
PSS of all its processes (sampled every 5 s, see SAMPLE_EVERY: workers share pages with their parent,
PSS counts a shared page once); final test accuracy. Contenders alternate within each round; medians
over ``--repeats`` rounds. ``--lock FILE`` holds an flock on FILE during each run, not in between.

    .venv/bin/python benchmarks/bench_imagefolder.py [--per-class 300] [--epochs 3] [--repeats 2]
        [--timm-train ../pytorch-image-models/train.py] [--lock /tmp/cnnlab-cpu.lock]
        [--png docs/img/imagefolder.png] [--json runs.json]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cnnlab import allocator
from cnnlab.storage import exclusive

HERE = Path(__file__).resolve().parent
MiB = 2**20
SAMPLE_EVERY = 5.0  # seconds between PSS samples: reading smaps_rollup walks the page tables (~25 ms for a
# 1.7 GB process): sampling every 0.2 s slowed cnnlab --stream's training by 10-15%, every 1 s by ~6%
SEED = 1
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# --- the contenders that run inside a child process of this script --------------------------------------------

def torchvision_loop(folder: Path, args: argparse.Namespace) -> dict:
    """The torchvision ImageFolder + DataLoader loop, as a practitioner writes it."""
    import torch
    import torch.nn.functional as F
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    started = time.perf_counter()
    side = args.side
    random = [transforms.RandomCrop(side, padding=side // 8), transforms.RandomHorizontalFlip()] if args.augment else []
    train_tf = transforms.Compose([transforms.Resize((side, side)), *random, transforms.ToTensor(),
                                   transforms.Normalize(MEAN, STD)])
    test_tf = transforms.Compose([transforms.Resize((side, side)), transforms.ToTensor(),
                                  transforms.Normalize(MEAN, STD)])
    train_ds = datasets.ImageFolder(str(folder / "train"), transform=train_tf)
    test_ds = datasets.ImageFolder(str(folder / "test"), transform=test_tf)
    train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
    test_loader = DataLoader(test_ds, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
    prep = time.perf_counter() - started

    torch.manual_seed(SEED)
    model = torchvision.models.resnet18(num_classes=len(train_ds.classes), zero_init_residual=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(train_loader))

    epochs, acc = [], 0.0
    for _ in range(args.epochs):
        model.train()
        start, seen = time.perf_counter(), 0
        for images, labels in train_loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(labels)
        epochs.append({"seconds": time.perf_counter() - start, "images": seen})
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += int((model(images).argmax(1) == labels).sum())
                total += len(labels)
        acc = 100.0 * correct / total
    return {"epochs": epochs, "prep": prep, "acc": acc, "threads": torch.get_num_threads()}


def timm_train(folder: Path, args: argparse.Namespace) -> dict:
    """timm's train.py, imported from a temporary copy and run through its main()."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "timm_train.py"
        shutil.copy(args.timm_train, script)
        spec = importlib.util.spec_from_file_location("timm_train", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        epochs: list[dict] = []
        scores: list[float] = []
        prep: list[float] = []
        train_one_epoch, validate, create_dataset = module.train_one_epoch, module.validate, module.create_dataset

        def timed_dataset(*a, **kw):
            start = time.perf_counter()
            dataset = create_dataset(*a, **kw)
            prep.append(time.perf_counter() - start)
            return dataset

        def timed_epoch(epoch, model, loader, optimizer, run_args, *rest, **kw):
            start = time.perf_counter()
            out = train_one_epoch(epoch, model, loader, optimizer, run_args, *rest, **kw)
            epochs.append({"seconds": time.perf_counter() - start, "images": len(loader) * run_args.batch_size})
            return out

        def scored(*a, **kw):
            metrics = validate(*a, **kw)
            scores.append(float(metrics["top1"]))
            return metrics

        module.train_one_epoch, module.validate, module.create_dataset = timed_epoch, scored, timed_dataset
        w = str(args.workers)
        sys.argv = ["train.py", "--data-dir", str(folder), "--train-split", "train", "--val-split", "test",
                    "--device", "cpu", "--model", "resnet18", "--num-classes", "10",
                    "--input-size", "3", str(args.side), str(args.side), "-b", str(args.batch_size),
                    "--opt", "sgd", "--momentum", "0.9", "--lr", str(args.lr), "--weight-decay", "0",
                    "--sched", "cosine", "--sched-on-updates", "--warmup-epochs", "0", "--epochs", str(args.epochs),
                    "--smoothing", "0", "--color-jitter", "0", "--scale", "1", "1", "--ratio", "1", "1",
                    "--crop-pct", "1.0", "--train-interpolation", "bilinear", "--interpolation", "bilinear",
                    "-j", w, "--seed", str(SEED), "--output", tmp, "--experiment", "run", "--checkpoint-hist", "1",
                    "--log-interval", "1000"] + ([] if args.augment else ["--no-aug"])
        module.main()
        import torch
    return {"epochs": epochs, "prep": sum(prep), "acc": scores[-1], "threads": torch.get_num_threads()}


CHILDREN = {"torchvision": torchvision_loop, "timm": timm_train}


# --- running and measuring each contender in its own process -------------------------------------------------------

def _tree(pid: int) -> list[int]:
    """pid and all its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_process(cmd: list[str], env: dict) -> tuple[float, int, int, str]:
    """Run ``cmd``; (wall seconds, ru_maxrss bytes, peak summed PSS bytes, stderr tail)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()
    err: list[str] = []

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], sum(_pss_kib(p) for p in _tree(proc.pid)))
            done.wait(SAMPLE_EVERY)

    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    sampler = threading.Thread(target=sample)
    reader.start()
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed (exit {proc.returncode}):\n{''.join(err)[-3000:]}")
    return wall, usage.ru_maxrss * 1024, peak[0] * 1024, "".join(err)[-500:]


def cnnlab_command(folder: Path, out: Path, args: argparse.Namespace, stream: bool) -> list[str]:
    cmd = [sys.executable, "-m", "cnnlab", "train", "--dataset", "imagefolder", "--data-dir", str(folder),
           "--input-size", str(args.side), "--model", "resnet18", "-o", "stem=imagenet", "-o", "zero_init_residual=true",
           "--augment" if args.augment else "--no-augment",
           "--batch-size", str(args.batch_size), "--optimizer", "sgd", "--momentum", "0.9", "--nesterov",
           "--lr", str(args.lr), "--schedule", "cosine", "--epochs", str(args.epochs), "--seed", str(SEED),
           "--out", str(out), "--quiet"]
    return cmd + (["--stream", "--workers", str(args.workers)] if stream else [])


def run_cnnlab(folder: Path, args: argparse.Namespace, env: dict, stream: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        wall, maxrss, pss, _ = run_process(cnnlab_command(folder, out, args, stream), env)
        with open(out / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        result = json.loads((out / "result.json").read_text())
        config = json.loads((out / "config.json").read_text())
    n_train = sum(1 for _ in (folder / "train").rglob("*.jpg"))
    epochs = [{"seconds": float(r["seconds"]), "images": n_train} for r in rows]
    return {"epochs": epochs, "acc": float(result["test_acc"]), "wall": wall, "maxrss": maxrss, "pss": pss,
            "prep": float(result["data_seconds"]), "threads": config["environment"]["torch_threads"]}


def run_child(kind: str, folder: Path, args: argparse.Namespace, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--folder", str(folder),
               "--report", str(report)] + child_args(args)
        wall, maxrss, pss, _ = run_process(cmd, env)
        row = json.loads(report.read_text())
    row.update(wall=wall, maxrss=maxrss, pss=pss)
    return row


def child_args(args: argparse.Namespace) -> list[str]:
    out = ["--side", str(args.side), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
           "--epochs", str(args.epochs), "--workers", str(args.workers), "--augment" if args.augment else "--no-augment"]
    return out + (["--timm-train", str(args.timm_train)] if args.timm_train else [])


def timm_missing(args: argparse.Namespace) -> str | None:
    if importlib.util.find_spec("timm") is None:
        return "timm is not installed (pip install timm); timm train.py skipped"
    if not args.timm_train or not Path(args.timm_train).is_file():
        return ("no timm train.py given (--timm-train PATH, from a checkout of "
                "github.com/huggingface/pytorch-image-models); timm train.py skipped")
    return None


# --- report -------------------------------------------------------------------------------------------------------

def rates(row: dict) -> tuple[float, float | None]:
    """(epoch 1 images/s, median images/s of the later epochs)."""
    per = [e["images"] / e["seconds"] for e in row["epochs"]]
    return per[0], (statistics.median(per[1:]) if len(per) > 1 else None)


def summarize(runs: list[dict]) -> dict:
    """Medians over repeated runs of one contender."""
    med = statistics.median
    first = [rates(r)[0] for r in runs]
    with_prep = [r["epochs"][0]["images"] / (r["epochs"][0]["seconds"] + r["prep"]) for r in runs]
    later = [rates(r)[1] for r in runs if rates(r)[1] is not None]
    return {"first": med(first), "first_prep": med(with_prep), "later": med(later) if later else None, "prep": med(r["prep"] for r in runs),
            "train": med(sum(e["seconds"] for e in r["epochs"]) for r in runs),
            "wall": med(r["wall"] for r in runs), "maxrss": med(r["maxrss"] for r in runs),
            "pss": med(r["pss"] for r in runs), "acc": [r["acc"] for r in runs], "n": len(runs)}


def print_table(results: dict[str, dict], peer: str) -> None:
    print(f"\n| contender | epoch 1 img/s | epoch 1 with data prep img/s | epochs 2+ img/s | data prep s | "
          f"training s | wall s | peak RSS MiB | peak PSS MiB (all processes) | test accuracy % | wall: {peer} / this |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    base = results[peer]["wall"]
    for name, s in results.items():
        later = f"{s['later']:.1f}" if s["later"] is not None else "-"
        accs = ", ".join(f"{a:.2f}" for a in s["acc"])
        print(f"| {name} | {s['first']:.1f} | {s['first_prep']:.1f} | {later} | {s['prep']:.2f} | {s['train']:.1f} | {s['wall']:.1f} | "
              f"{s['maxrss'] / MiB:.0f} | {s['pss'] / MiB:.0f} | {accs} | {base / s['wall']:.2f}x |")


def plot(results: dict[str, dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (ax, ax_mem) = plt.subplots(1, 2, figsize=(10, 0.5 * len(names) + 2.6), sharey=True,
                                     gridspec_kw={"width_ratios": [3, 2]})
    ys = range(len(names))
    first = [results[n]["first_prep"] for n in names]
    later = [results[n]["later"] or 0 for n in names]
    ax.barh([y + 0.2 for y in ys], first, height=0.4, color="tab:gray",
            label="epoch 1, data preparation and decoding included")
    ax.barh([y - 0.2 for y in ys], later, height=0.4, color="tab:blue", label="epochs 2+ (median)")
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlabel("training images per second (higher is better)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    ax_mem.barh(list(ys), [results[n]["pss"] / MiB for n in names], height=0.5, color="tab:orange")
    ax_mem.set_xlabel("peak memory, all processes (PSS, MiB)")
    fig.suptitle("ResNet-18, 64 px, a folder of JPEGs, on this machine")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="an existing folder [default: write one]")
    parser.add_argument("--per-class", type=int, default=300, help="images per class of the written folder")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the streaming contenders")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                        help="random crop (8 px padding) and flip; timm: its resize and flip (--no-aug without)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each contender (interleaved; medians)")
    parser.add_argument("--lock", type=Path, default=None,
                        help="hold an flock on this file during each contender's run (a machine shared with others)")
    parser.add_argument("--timm-train", type=Path, default=None, help="timm's train.py (a checkout of its repo)")
    parser.add_argument("--only", default=None, help="comma-separated contenders: cold,cached,stream,tcmalloc,torchvision,timm")
    parser.add_argument("--png", type=Path, default=None, help="draw the chart here")
    parser.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        row = CHILDREN[args.child](args.folder, args)
        args.report.write_text(json.dumps(row))
        return 0

    import torch

    import cnnlab
    from cnnlab.runtime import machine_line

    print(machine_line("cpu"))
    print(f"torch {torch.__version__}, torchvision {__import__('torchvision').__version__}, "
          f"timm {__import__('timm').__version__ if importlib.util.find_spec('timm') else '-'}, "
          f"python {platform.python_version()}, cnnlab {cnnlab.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if folder is None:
            sys.path.insert(0, str(HERE.parent / "examples"))
            from make_imagefolder import write_folder

            folder = Path(tmp) / "folder"
            n = write_folder(folder, args.per_class)
            print(f"folder: examples/make_imagefolder.py --per-class {args.per_class}: {n} JPEGs, "
                  f"{sum(1 for _ in (folder / 'train').rglob('*.jpg'))} train")
        print(f"job: ResNet-18 (ImageNet stem), {args.side} px, batch {args.batch_size}, SGD Nesterov 0.9 lr {args.lr} "
              f"cosine per step, {args.epochs} epochs, seed {SEED}, float32, {'' if args.augment else 'no '}augmentation; {args.workers} DataLoader workers for "
              f"the streaming contenders; {args.repeats} run(s) each")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cache = Path(tmp) / "cache"
        env["CNNLAB_CACHE"] = str(cache)

        def cold() -> dict:
            shutil.rmtree(cache, ignore_errors=True)
            return run_cnnlab(folder, args, env, stream=False)

        contenders = {
            "cold": ("cnnlab (cold cache)", cold),
            "cached": ("cnnlab (cached)", lambda: run_cnnlab(folder, args, env, stream=False)),
            "stream": ("cnnlab --stream", lambda: run_cnnlab(folder, args, env, stream=True)),
            # the same as "cached" on tcmalloc (CNNLAB_MALLOC=tcmalloc: the command preloads the system's library)
            "tcmalloc": ("cnnlab (cached, tcmalloc)",
                         lambda: run_cnnlab(folder, args, {**env, "CNNLAB_MALLOC": "tcmalloc"}, stream=False)),
            "torchvision": ("torchvision loop", lambda: run_child("torchvision", folder, args, env)),
            "timm": ("timm train.py", lambda: run_child("timm", folder, args, env)),
        }
        wanted = args.only.split(",") if args.only else list(contenders)
        if "tcmalloc" in wanted and allocator.preload_library("tcmalloc") is None:
            print("cnnlab on tcmalloc: skipped, tcmalloc is not installed (Debian: libtcmalloc-minimal4)")
            wanted.remove("tcmalloc")
        skip = timm_missing(args)
        if "timm" in wanted and skip:
            print(skip)
            wanted.remove("timm")
        elif "timm" in wanted:
            digest = hashlib.sha256(Path(args.timm_train).read_bytes()).hexdigest()[:16]
            print(f"timm: {args.timm_train} (sha256 {digest}...)")
        runs: dict[str, list[dict]] = {contenders[k][0]: [] for k in wanted}
        for r in range(args.repeats):
            for key in wanted:
                name, fn = contenders[key]
                with exclusive(args.lock):
                    row = fn()
                runs[name].append(row)
                first, later = rates(row)
                later_s = f"{later:.1f}" if later is not None else "-"
                print(f"  run {r + 1}: {name:20s} epoch 1 {first:6.1f} img/s, later {later_s} img/s, "
                      f"data prep {row['prep']:.2f} s, wall {row['wall']:.1f} s, RSS {row['maxrss'] / MiB:.0f} MiB, "
                      f"PSS {row['pss'] / MiB:.0f} MiB, test {row['acc']:.2f}%, threads {row.get('threads')}",
                      flush=True)
    results = {name: summarize(rows) for name, rows in runs.items()}
    peer = "torchvision loop" if "torchvision loop" in results else next(iter(results))
    print_table(results, peer)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    if args.png:
        plot(results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
