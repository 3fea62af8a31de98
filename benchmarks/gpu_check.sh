#!/usr/bin/env bash
# The one short script to run on a lent CUDA machine (the `device` tool), from the repo root.
# That machine has its own python3 with PyTorch but no network and no ../shared, so MNIST
# travels as a carried, git-ignored copy:
#   here:   mkdir -p .mnist/MNIST && cp -r ../shared/data/MNIST/raw .mnist/MNIST/ && echo /.mnist/ >> .git/info/exclude
#   device: run(command="bash benchmarks/gpu_check.sh", carry=[".mnist"], timeout_s=420)
# Without .mnist it falls back to the bundled digits set (if scikit-learn is there).
# Record what it prints, with the card's name, in docs/BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .mnist/MNIST/raw ] && export CNNLAB_DATA="$PWD/.mnist"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
timeout 360 python3 benchmarks/gpu_check.py "$@"
