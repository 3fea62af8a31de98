"""Start-up time of commands that need no tensors: `cnnlab --help`, `cnnlab arith ...`.

Each command runs as a fresh process, exactly as the console script runs it
(``from cnnlab.cli import main; main()``), ``--runs`` times after one warm-up; the median is
reported. ``--src DIR`` times another checkout's ``src`` (e.g. a worktree of an older commit:
``git worktree add /tmp/old <commit>``), in the same run, as the "before" column.

    .venv/bin/python benchmarks/bench_startup.py [--runs 15] [--src /tmp/old/src]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
COMMANDS = {
    "cnnlab --help": ["--help"],
    "cnnlab arith --input 28 --kernel 3 --padding same": ["arith", "--input", "28", "--kernel", "3", "--padding", "same"],
    "cnnlab train --help": ["train", "--help"],
}
LAUNCH = "import sys; from cnnlab.cli import main; sys.argv = ['cnnlab', *sys.argv[1:]]; main()"


def time_command(args: list[str], src: Path, runs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", LAUNCH, *args], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{args} failed with {src}: {proc.stderr.strip().splitlines()[-1]}")
        if i:  # the first run warms the file cache
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--src", type=Path, default=None, help="another checkout's src/ to time as 'before'")
    args = parser.parse_args()
    print(f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs; Python {platform.python_version()}; "
          f"{args.runs} runs per command after one warm-up, medians")
    sources = {"this checkout": HERE / "src"}
    if args.src is not None:
        sources = {"before (--src)": args.src, **sources}
    print("| command | " + " | ".join(f"{k} median s (min-max)" for k in sources) + " |")
    print("|---|" + "---:|" * len(sources))
    for label, cmd in COMMANDS.items():
        cells = []
        for src in sources.values():
            t = time_command(cmd, src, args.runs)
            cells.append(f"{statistics.median(t):.3f} ({min(t):.3f}-{max(t):.3f})")
        print(f"| `{label}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
