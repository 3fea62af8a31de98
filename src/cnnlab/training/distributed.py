"""Data-parallel training with torchrun: one process per CPU share or GPU (DDP).

``cnnlab train --nproc N`` relaunches itself as ``torchrun --standalone --nproc-per-node N -m
cnnlab train ...``; every process reads its rank from torchrun's environment, takes its share
of each global batch (see :func:`cnnlab.data.index_batches`), and rank 0 alone writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from cnnlab.errors import CnnlabError
from cnnlab.runtime import resolve_device

__all__ = ["distributed_env", "local_device", "all_reduce", "join_process_group", "leave_process_group", "wrap_ddp",
           "relaunch_with_torchrun", "cpu_cores", "check_nproc"]


def distributed_env() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def local_device(device: torch.device) -> torch.device:
    """Under torchrun on CUDA, each process takes the GPU of its local rank."""
    if distributed_env()[1] > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all processes (a new tensor)."""
    t = t.clone()
    dist.all_reduce(t)
    return t


def join_process_group(device: torch.device) -> bool:
    """Under torchrun, join its process group (gloo on the CPU, nccl on CUDA) unless joined
    already; returns whether this call joined it (and so should leave it)."""
    if distributed_env()[1] == 1:
        return False
    if dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def leave_process_group(joined: bool) -> None:
    """Wait for every process, then leave the group :func:`join_process_group` joined."""
    if joined:
        dist.barrier()
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` under torchrun, the model itself otherwise."""
    if distributed_env()[1] == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_nproc(nproc: int, device: str, batch_size: int, *, force: bool = False) -> None:
    """``--nproc`` must fit the machine before torchrun starts anything: at most one process per
    GPU on CUDA (each takes the GPU of its rank), at most one per CPU core on the CPU unless
    ``force`` (``--force-nproc``), and a global ``--batch-size`` that divides by it."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise CnnlabError(f"--nproc must be a positive integer, got {nproc!r}")
    if nproc == 1:
        return
    if resolve_device(device).type == "cuda":
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise CnnlabError(f"--nproc must be in [1, {gpus}] on CUDA (one process per GPU, and this machine has "
                              f"{gpus}), got {nproc}")
    elif nproc > cpu_cores() and not force:
        raise CnnlabError(f"--nproc must be in [1, {cpu_cores()}] (the CPU cores this process may use), got {nproc}; "
                          f"add --force-nproc to start {nproc} processes anyway")
    if batch_size % nproc:
        raise CnnlabError(f"--batch-size {batch_size} is the global batch and must divide by the {nproc} processes "
                          f"of --nproc {nproc}")


def relaunch_with_torchrun(nproc: int, argv: Sequence[str], default_out: str | None) -> int:
    """Run ``cnnlab ARGV`` (without ``--nproc``) under torchrun with ``nproc`` processes; all
    ranks get the same ``--out`` (``default_out`` when the command names none). Returns its exit code."""
    cleaned, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc=") or a == "--force-nproc":
            continue
        cleaned.append(a)
    names_out = "--out" in cleaned or any(a.startswith("--out=") for a in cleaned) or "--resume" in cleaned
    if not names_out and default_out is not None:
        cleaned += ["--out", default_out]  # one directory for all ranks
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "cnnlab", *cleaned]
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt as exc:  # Ctrl-C reached torchrun too; a SIGTERM sent to this process alone
        if getattr(exc, "signum", None) is not None:  # (cnnlab.cli's Terminated) is passed on: torchrun
            proc.send_signal(exc.signum)  # stops its workers, whose run directory stays resumable
        proc.wait()
        raise
