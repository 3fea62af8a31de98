#!/usr/bin/env bash
# The one short script to run on a lent CUDA machine (the `device` tool), from the repo root.
# That machine has its own python3 with PyTorch but no network and no ../shared, so MNIST
# travels as a carried, git-ignored, gzipped copy (11 MB; unpacked here):
#   here:   mkdir -p .mnist/MNIST/raw && for f in ../shared/data/MNIST/raw/*-ubyte; do
#             gzip -9 -c $f > .mnist/MNIST/raw/$(basename $f).gz; done
#   device: run(command="bash benchmarks/gpu_check.sh", carry=[".mnist"], timeout_s=540)
# Each part has its own time limit, so one slow part cannot starve the others; everything it
# prints goes to $OUT/gpu_check.log too (when $OUT is set). Record what it prints, with the
# card's name, in docs/BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
log="${OUT:-/tmp}/gpu_check.log"
exec > >(tee "$log") 2>&1
if compgen -G ".mnist/MNIST/raw/*.gz" > /dev/null; then
  for f in .mnist/MNIST/raw/*.gz; do gunzip -kf "$f"; done
  export CNNLAB_DATA="$PWD/.mnist"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
part() {  # part SECONDS SCRIPT [ARGS...]: run one check if its script exists
  local limit=$1; shift
  [ -f "$1" ] || { echo "== $1: not present"; return; }
  echo "== $* (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" python3 "$@"; echo "== $1 exit $? in $((SECONDS - start)) s"
}
part 70 benchmarks/gpu_check.py          # cnnlab train on CUDA: determinism, cudnn.benchmark
part 170 benchmarks/gpu_recipes.py       # the recipes on CUDA; deterministic vs benchmark per zoo model
part 100 benchmarks/gpu_infer.py         # compile, fp16/bf16, channels-last inference
part 60 benchmarks/gpu_costs.py          # training-memory estimate vs torch.cuda.max_memory_allocated
