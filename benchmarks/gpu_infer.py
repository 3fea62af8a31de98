"""cnnlab.optimize on a CUDA GPU: eager fp32, channels-last, compile (Inductor, frozen weights),
bf16 and fp16 (compiled under autocast) for resnet18 and resnet50 at 224 px, batch 1 and 64.

Made to finish in about 90 s on a big GPU including compiles: the cheap rows (eager,
channels-last) come first, then the compiled ones, largest batch first, each only while the
time budget (``--budget-s``) allows one more compile; a row that did not fit is printed as
"skipped (budget)". Every ratio is against eager fp32 of the same model and batch, timed in the
same process through cnnlab.runtime.time_fn (CUDA-synchronised medians).

    .venv/bin/python benchmarks/gpu_infer.py [--budget-s 80] [--models resnet18,resnet50] [--batch-sizes 1,64]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.inference import mode_support, optimize, relative_error  # noqa: E402
from cnnlab.models import create_model  # noqa: E402
from cnnlab.runtime import machine_line, time_fn  # noqa: E402

CHEAP = ("eager", "channels_last")
COMPILED = ("fp16", "bf16", "compile")  # in order of interest on a GPU
COMPILE_ESTIMATE_S = {"resnet18": 12.0, "resnet50": 20.0}  # a cold Inductor compile on a 16-core host, roughly


def measure(module, x, device, repeats: int) -> float:
    with torch.inference_mode():
        return time_fn(lambda: module(x), device, repeats=repeats, warmup=3).median * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--budget-s", type=float, default=80.0, help="stop starting compiles after this many seconds")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda", help="cuda (the point), or cpu to try the script")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script times cnnlab.optimize on a GPU (--device cpu to try it)")
    print(machine_line(device))
    models = {name: create_model(name).to(device).eval() for name in args.models.split(",")}
    sizes = sorted((int(b) for b in args.batch_sizes.split(",")), reverse=True)
    inputs = {b: torch.rand(b, 3, 224, 224, generator=torch.Generator().manual_seed(b)).to(device) for b in sizes}
    rows, eager_ms = [], {}
    plan = [(m, b, mode) for b in sizes for m in models for mode in CHEAP]
    plan += [(m, b, mode) for b in sizes for mode in COMPILED for m in models]
    for name, batch, mode in plan:
        ok, reason = mode_support(mode, device)
        if not ok:
            rows.append((name, batch, mode, None, None, None, f"unavailable: {reason}"))
            continue
        left = args.budget_s - (time.perf_counter() - start)
        if mode in COMPILED and left < COMPILE_ESTIMATE_S.get(name, 20.0):
            rows.append((name, batch, mode, None, None, None, "skipped (budget)"))
            continue
        x, model = inputs[batch], models[name]
        try:
            module = optimize(model, mode, x)
        except CnnlabError as exc:
            rows.append((name, batch, mode, None, None, None, f"unavailable: {exc}"))
            continue
        ms = measure(module, x, device, args.repeats)
        eager_ms.setdefault((name, batch), ms)
        with torch.inference_mode():
            out, ref = module(x), model(x)
        rows.append((name, batch, mode, ms, eager_ms[(name, batch)] / ms, relative_error(out, ref),
                     f"setup {module.setup_s:.1f} s"))
        del module
        if mode in COMPILED:
            torch._dynamo.reset()  # keep the next compile's cache small
    # relative error = max |y - y_eager| / max |y_eager| (random weights: top-1 agreement would be a coin flip
    # between nearly tied logits, so it is not shown; the trained-run figures are in docs/BENCHMARKS.md)
    print("\n| model | batch | mode | ms/batch | images/s | x eager fp32 | rel. error | note |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for name, batch, mode, ms, ratio, err, note in sorted(rows, key=lambda r: (r[0], r[1])):
        if ms is None:
            print(f"| {name} | {batch} | {mode} | - | - | - | - | {note} |")
        else:
            print(f"| {name} | {batch} | {mode} | {ms:.2f} | {batch / ms * 1e3:.0f} | {ratio:.2f} | {err:.1e} | {note} |")
    print(f"\ntotal {time.perf_counter() - start:.0f} s (budget {args.budget_s:.0f} s for starting compiles)")


if __name__ == "__main__":
    main()
