"""The C allocator during training and inference: resident memory (RSS) and step time under glibc's
default malloc, mallopt thresholds set at start-up (cnnlab.allocator, through ctypes), and jemalloc /
tcmalloc where installed (LD_PRELOAD), for the lecture ConvNet, ResNet-18 at batch 32 and VGG-11 at 8.

Every (policy, workload) runs in a fresh process (the allocator's policy must be set before the heap
grows): the policy first, then torch, the model (channels-last, as ``cnnlab train`` on the CPU), SGD
and a random batch; then warm-up steps and timed steps. RSS from /proc/self/status: "before" after the
model is built, "peak" VmHWM over the whole process, "held" after the last step; "runtime" is the RSS
with torch and cnnlab imported, before the model. The allocator's peak is cnnlab's estimate of the step
(exact to 0.3% against the profiler, docs/BENCHMARKS.md "Training memory"). Step time: the median of
the timed steps. Finally ``cnnlab summary --fit-memory`` is checked against the RSS a training process
measures at the batch it picks.

    .venv/bin/python benchmarks/bench_allocator.py [--lock /tmp/cnnlab-cpu.lock] [--json out.json]
        [--png docs/img/allocator.png] [--quick] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cnnlab.storage import exclusive  # --lock: take turns with other work on the machine

MiB = 2**20
LIBS = Path("/usr/lib/x86_64-linux-gnu")
# name -> environment of the child (CNNLAB_MALLOC: cnnlab.allocator's policy; LD_PRELOAD: another malloc)
POLICIES = {
    "glibc default": {"CNNLAB_MALLOC": "default"},
    "fast": {"CNNLAB_MALLOC": "fast"},  # cnnlab's policy (cnnlab.allocator.DEFAULT_POLICY)
    "lean": {"CNNLAB_MALLOC": "lean"},
    "tcmalloc": {"CNNLAB_MALLOC": "default", "LD_PRELOAD": str(LIBS / "libtcmalloc_minimal.so.4")},
    "jemalloc": {"CNNLAB_MALLOC": "default", "LD_PRELOAD": str(LIBS / "libjemalloc.so.2")},
}
# more settings, measured once on the way to the choice (--variants)
VARIANTS = {
    "mmap 64 KiB no huge pages": {"CNNLAB_MALLOC": "mmap_threshold=65536", "THP_MEM_ALLOC_ENABLE": "0"},
    "mmap 1 MiB + huge pages": {"CNNLAB_MALLOC": "mmap_threshold=1048576"},
    "mmap 32 MiB fixed": {"CNNLAB_MALLOC": "mmap_threshold=33554432"},
    "32 MiB no trim": {"CNNLAB_MALLOC": "mmap_threshold=33554432,trim_threshold=1073741824,top_pad=67108864"},
    "glibc default 1 arena": {"CNNLAB_MALLOC": "arena_max=1"},
    "fast 1 arena": {"CNNLAB_MALLOC": "mmap_max=0,trim_threshold=1073741824,arena_max=1"},
    "glibc default + huge pages": {"CNNLAB_MALLOC": "default", "THP_MEM_ALLOC_ENABLE": "1"},
    "jemalloc no decay": {"CNNLAB_MALLOC": "default", "LD_PRELOAD": str(LIBS / "libjemalloc.so.2"),
                           "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"},
}
# summary --fit-memory against a training process at the batch it picks: (model, budget)
FIT_CHECKS = [("resnet18", "2GiB"), ("vgg11", "3GiB")]
FIGURES = Path(__file__).resolve().parents[1] / "src" / "cnnlab" / "analysis" / "data" / "resident.json"
# (model, batch, mode, warm-up steps, timed steps)
WORKLOADS = [
    ("convnet", 128, "train", 10, 200),
    ("convnet", 512, "infer", 10, 200),
    ("resnet18", 32, "train", 3, 6),
    ("resnet18", 32, "infer", 1, 5),
    ("vgg11", 8, "train", 3, 6),
    ("vgg11", 8, "infer", 1, 5),
]


# --- the child: one policy, one workload ------------------------------------------------------------

def child(model_name: str, batch: int, mode: str, warmup: int, steps: int) -> None:
    from cnnlab import allocator

    state = allocator.apply()  # first: before torch grows the heap (what the cnnlab command does)
    import resource

    import torch

    import cnnlab
    from cnnlab.analysis.simulate import build_optimizer, training_step
    from cnnlab.runtime import determinism

    with torch.device("meta"):  # imports what the model needs (torchvision), allocates nothing
        cnnlab.create_model(model_name)
    runtime = allocator.rss_bytes()
    torch.manual_seed(0)
    model = cnnlab.create_model(model_name).to(memory_format=torch.channels_last)
    shape = cnnlab.get_model_info(model_name).input_shape
    x = torch.rand((batch, *shape)).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    if mode == "train":
        model.train()
        opt = build_optimizer("sgd", list(model.parameters()))

        def step() -> None:
            with determinism(True, torch.device("cpu")):
                training_step(model, opt, x, y, amp_dtype=None)
    else:
        model.eval()

        def step() -> None:
            with torch.no_grad():
                model(x)
    before = allocator.rss_bytes()
    static = sum({id(t.untyped_storage()): t.untyped_storage().nbytes()
                  for t in [*model.parameters(), *model.buffers(), x, y]}.values())
    for _ in range(warmup):
        step()
    times, faults = [], []
    for _ in range(steps):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(json.dumps({"runtime": runtime, "before": before, "static": static, "peak": allocator.peak_rss_bytes(),
                      "held": allocator.rss_bytes(), "step_s": statistics.median(times), "times": times,
                      "faults": statistics.median(faults), "state": state.describe(),
                      "mmap_probe": allocator.serves_by_mmap()}))


def fit_child(budget: str, model_name: str) -> None:
    """``cnnlab summary MODEL --train --fit-memory BUDGET`` (for the process's RSS) in this process."""
    from cnnlab import allocator

    allocator.apply()
    import torch

    import cnnlab
    from cnnlab.analysis.estimate import StepSettings
    from cnnlab.analysis.fit import fit_batch_size

    with torch.device("meta"):
        model = cnnlab.create_model(model_name)
    fit = fit_batch_size(model, cnnlab.get_model_info(model_name).input_shape, budget, StepSettings(),
                         memory="process")
    print(json.dumps({"batch": fit.batch_size, "predicted": fit.rss_bytes, "allocator": fit.peak_bytes,
                      "runtime": fit.resident.runtime_bytes, "figures": fit.resident.figures}))


# --- the parent ---------------------------------------------------------------------------------------

def runnable() -> int:
    """Processes running or ready to run now, this one included (/proc/loadavg's fourth field)."""
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])


def wait_quiet(limit_s: float = 3600.0) -> float:
    """Wait (up to ``limit_s``) until nothing else runs: 3 samples 0.5 s apart with only this process
    runnable -- work that does not take the lock would spoil the timings. Returns the seconds waited."""
    start, calm = time.perf_counter(), 0
    while calm < 3 and time.perf_counter() - start < limit_s:
        calm = calm + 1 if runnable() <= 1 else 0
        time.sleep(0.5)
    return time.perf_counter() - start


def run_child(args: list[str], env: dict[str, str], lock: str | None) -> dict:
    waited = wait_quiet()  # first without the lock (others' work under it may be what runs)
    with exclusive(lock):
        waited += wait_quiet(60.0)
        if waited > 5:
            print(f"  (waited {waited:.0f} s for other work to finish)", flush=True)
        proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} {env}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def allocator_peaks(lock: str | None) -> dict[tuple[str, int, str], tuple[int, int]]:
    """cnnlab's estimate of every workload's allocator peak (exact to 0.3%, see bench_memory.py) and of the
    tensors alive across steps (parameters, buffers, gradients, optimizer state, the batch)."""
    import torch

    import cnnlab
    from cnnlab.analysis.estimate import StepSettings, simulate_inference, simulate_training

    out = {}
    with exclusive(lock):
        for name, batch, mode, *_ in WORKLOADS:
            with torch.device("meta"):
                model = cnnlab.create_model(name)
            shape = cnnlab.get_model_info(name).input_shape
            sim = (simulate_training(model, shape, batch, StepSettings(), layers=False) if mode == "train"
                   else simulate_inference(model, shape, batch, StepSettings())).sim
            out[name, batch, mode] = (sim.peak, sum(sim.static.values()))
    return out


def resident_figures(rows: list[dict], policies: list[str]) -> dict[str, dict]:
    """Per policy, the figures of cnnlab.analysis.training.ResidentModel: what the first steps add beside
    the tensors (from the ConvNet's training, whose tensors are a few MiB: kernel code, oneDNN's JIT), and
    the resident bytes per byte of a step's transient tensors (the largest over the workloads whose
    transient tensors exceed 64 MiB). The RSS without tensors is each process's RSS before its first step
    less the tensors alive then (weights, the batch)."""
    out = {}
    for policy in policies:
        mine = [r for r in rows if r["policy"] == policy]
        excess = {(r["model"], r["mode"]): (r["peak"] - (r["before"] - r["static"]), r["allocator"], r["kept"])
                  for r in mine}
        small = excess.get(("convnet", "train"))
        first = max(0, small[0] - small[1]) if small else 0
        ratios = [(e - first - kept) / (p - kept) for e, p, kept in excess.values() if p - kept >= 64 * MiB]
        if ratios:
            out[policy] = {"per_byte": round(max(ratios), 3), "first_steps_bytes": int(first)}
    return out


def fit_checks(policies: list[str], lock: str | None) -> list[dict]:
    """``summary --fit-memory`` (in a fresh process, as the command runs it) against a training process at the
    batch it picks: the predicted RSS and the measured peak RSS."""
    print("\n| policy | model | budget | batch picked | predicted RSS MiB | measured RSS MiB | error |")
    print("|---|---|---|---:|---:|---:|---:|")
    out = []
    for policy in policies:
        for name, budget in FIT_CHECKS:
            fit = run_child(["--fit-child", budget, name], POLICIES[policy], lock)
            got = run_child(["--child", name, str(fit["batch"]), "train", "1", "2"], POLICIES[policy], lock)
            err = (got["peak"] - fit["predicted"]) / fit["predicted"]
            out.append({"policy": policy, "model": name, "budget": budget, **fit, "measured": got["peak"]})
            print(f"| {policy} | {name} | {budget} | {fit['batch']} | {fit['predicted'] / MiB:.0f} | "
                  f"{got['peak'] / MiB:.0f} | {100 * err:+.1f}% |", flush=True)
    return out


def plot(rows: list[dict], policies: list[str], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    work = [w for w in dict.fromkeys((r["model"], r["batch"], r["mode"]) for r in rows) if w[0] != "convnet"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(policies)
    for i, policy in enumerate(policies):
        got = {(r["model"], r["batch"], r["mode"]): r for r in rows if r["policy"] == policy}
        xs = [k + (i - (len(policies) - 1) / 2) * width for k in range(len(work))]
        ax.bar(xs, [(got[w]["peak"] - got[w]["before"] + got[w]["static"]) / MiB for w in work], width, label=policy)
        base = {(r["model"], r["batch"], r["mode"]): r["step_s"] for r in rows if r["policy"] == policies[0]}
        bx.bar(xs, [got[w]["step_s"] / base[w] for w in work], width, label=policy)
    for k, w in enumerate(work):
        alloc = next(r["allocator"] for r in rows if (r["model"], r["batch"], r["mode"]) == w)
        ax.hlines(alloc / MiB, k - 0.45, k + 0.45, colors="k", linestyles="--", lw=1,
                  label="allocator peak (tensors)" if k == 0 else None)
    labels = [f"{m} b{b}\n{mode}" for m, b, mode in work]
    for a in (ax, bx):
        a.set_xticks(range(len(work)), labels)
    ax.set_ylabel("peak RSS above the process without tensors (MiB)")
    ax.set_title("Memory the process holds at its peak")
    bx.set_ylabel(f"median step time / {policies[0]}'s")
    bx.axhline(1.0, color="k", lw=0.5)
    ratios = [r["step_s"] / base[r["model"], r["batch"], r["mode"]] for r in rows if r["model"] != "convnet"]
    bx.set_ylim(min(0.8, min(ratios) - 0.05), max(1.3, max(ratios) + 0.05))
    bx.set_title("Step time")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        name, batch, mode, warmup, steps = sys.argv[2:7]
        child(name, int(batch), mode, int(warmup), int(steps))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--fit-child":
        fit_child(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lock", default=None, help="hold this flock file during every measurement (a shared machine)")
    ap.add_argument("--json", type=Path, default=None, help="write every row here")
    ap.add_argument("--png", type=Path, default=None, help="draw the chart here")
    ap.add_argument("--quick", action="store_true", help="glibc default and the 64 KiB threshold, ResNet-18 only")
    ap.add_argument("--rounds", type=int, default=1, help="measure every cell this many times (the median is shown)")
    ap.add_argument("--policies", default=None, help="comma-separated names of POLICIES (and VARIANTS)")
    ap.add_argument("--variants", action="store_true", help="also the settings of VARIANTS")
    ap.add_argument("--write-figures", action="store_true",
                    help=f"write each policy's resident figures to {FIGURES.relative_to(FIGURES.parents[3])} "
                    "(what summary --fit-memory reads), then check --fit-memory against training processes")
    ap.add_argument("--workloads", default=None, help="comma-separated, e.g. resnet18/train,vgg11/infer")
    args = ap.parse_args()

    import torch

    from cnnlab.runtime import machine_line

    print(machine_line("cpu"))
    known = {**POLICIES, **VARIANTS}
    names = args.policies.split(",") if args.policies else [*POLICIES, *(VARIANTS if args.variants else ())]
    policies = [p for p in names if "LD_PRELOAD" not in known[p] or Path(known[p]["LD_PRELOAD"]).is_file()]
    missing = [p for p in names if p not in policies]
    workloads = [w for w in WORKLOADS if not args.workloads or f"{w[0]}/{w[2]}" in args.workloads.split(",")]
    if args.quick:
        policies = policies[:2]
        workloads = [w for w in WORKLOADS if w[0] == "resnet18"]
    print(f"policies: {', '.join(policies)}" + (f" (not installed: {', '.join(missing)})" if missing else ""))
    print(f"glibc {os.confstr('CS_GNU_LIBC_VERSION')}; threads {torch.get_num_threads()}; one fresh process per cell")
    peaks = allocator_peaks(args.lock)
    rows = []
    for name, batch, mode, warmup, steps in workloads:
        for policy in policies:
            got = [run_child(["--child", name, str(batch), mode, str(warmup), str(steps)], known[policy], args.lock)
                   for _ in range(args.rounds)]
            r = {k: statistics.median(g[k] for g in got) for k in ("runtime", "before", "static", "peak", "held",
                                                                     "step_s", "faults")}
            r.update(policy=policy, model=name, batch=batch, mode=mode, allocator=peaks[name, batch, mode][0],
                     kept=peaks[name, batch, mode][1],
                     state=got[0]["state"], mmap_probe=got[0]["mmap_probe"])
            rows.append(r)
            print(f"  {name} b{batch} {mode:5s} {policy:24s} peak RSS {r['peak'] / MiB:7.1f} MiB "
                  f"(runtime {r['runtime'] / MiB:.0f}, before {r['before'] / MiB:.0f}, held {r['held'] / MiB:.0f}) "
                  f"step {1000 * r['step_s']:8.1f} ms  faults/step {r['faults']:.0f}  [{r['state']}]", flush=True)
    base = {(r["model"], r["batch"], r["mode"]): r for r in rows if r["policy"] == policies[0]}
    print(f"\n| workload | policy | RSS without tensors MiB | RSS peak MiB | peak - without tensors MiB | "
          f"allocator peak MiB | kept across steps MiB | RSS / tensors (transient) | held after the steps MiB | "
          f"step ms | vs {policies[0]} | page faults / step |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b = base[r["model"], r["batch"], r["mode"]]
        bare = r["before"] - r["static"]
        grown = r["peak"] - bare
        ratio = (grown - r["kept"]) / (r["allocator"] - r["kept"])
        print(f"| {r['model']} b{r['batch']} {r['mode']} | {r['policy']} | {bare / MiB:.0f} | {r['peak'] / MiB:.0f} | "
              f"{grown / MiB:.0f} | {r['allocator'] / MiB:.1f} | {r['kept'] / MiB:.1f} | {ratio:.2f} | "
              f"{r['held'] / MiB:.0f} | {1000 * r['step_s']:.1f} | {r['step_s'] / b['step_s']:.2f} | {r['faults']:.0f} |")
    figures = resident_figures(rows, policies)
    print("\n| policy | resident bytes per allocator byte | first steps add MiB |")
    print("|---|---:|---:|")
    for policy, f in figures.items():
        print(f"| {policy} | {f['per_byte']:.3f} | {f['first_steps_bytes'] / MiB:.1f} |")
    checks = []
    if args.write_figures:
        key = {"glibc default": "default", "fast": "fast", "lean": "lean", "tcmalloc": "tcmalloc",
               "jemalloc": "jemalloc"}
        doc = {"about": "per malloc policy: peak RSS = RSS before the tensors + first_steps_bytes + the tensors kept "
                        "across steps + per_byte x (the allocator's peak - those); measured by "
                        "benchmarks/bench_allocator.py --write-figures",
               "machine": machine_line("cpu"),
               "policies": {key[p]: f for p, f in figures.items() if p in key}}
        FIGURES.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {FIGURES}")
        checks = fit_checks([p for p in ("fast", "lean", "glibc default") if p in policies], args.lock)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "figures": figures, "fit_checks": checks}, indent=1) + "\n")
    if args.png:
        plot(rows, policies, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
