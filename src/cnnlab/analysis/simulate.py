"""The allocator, simulated: one training step (or one inference pass) run on fake tensors, with
every storage's birth and death recorded, so the peak comes out of PyTorch itself.

The step is the one ``cnnlab train`` runs (:meth:`cnnlab.training.loop.Trainer.train_step`):
forward and cross-entropy under autocast, ``zero_grad(set_to_none=True)``, backward, optimizer
step. It runs on a ``FakeTensorMode`` CPU device (shapes, strides and dtypes as the real CPU
kernels give them, autocast included, no memory, no arithmetic) under :class:`AllocationTracker`,
a dispatch mode that registers the storage of every tensor an op returns and learns of its
release through ``weakref.finalize`` on the ``UntypedStorage`` (PyTorch keeps a storage's Python
object alive exactly as long as the storage). Views, in-place ops, tensors saved by several
autograd nodes, gradients stolen by ``AccumulateGrad``, the progressive release of saved
tensors during backward and the optimizer's per-parameter temporaries are PyTorch's own.

The simulated step is the *steady state*: the previous step's gradients are alive during the
forward pass (the trainer zeroes them after it) and the optimizer state exists from the start.
Step 1 has neither, so it never peaks higher.

What fake tensors cannot show is memory a kernel allocates internally;
:mod:`cnnlab.analysis.workspace` adds it per op. ``samples`` holds the live bytes after every op:
the ops and frees of a step do not depend on the batch size and every storage's size is affine in
it, so two simulated batch sizes give the peak of every other one exactly (:func:`peak_at_batch`).
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["AllocationTracker", "Simulation", "build_optimizer", "fake_copy", "meta_copy", "peak_at_batch",
           "training_step"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
STATE_BUFFERS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2, "adamw": 2}  # per parameter


class AllocationTracker(TorchDispatchMode):
    """Live storage bytes under the mode: ``cur``, ``peak``, an event log and one sample per op.

    ``workspace(func, args, out)`` returns bytes an op's kernel holds beyond its outputs;
    ``rounding`` rounds every storage up (the CUDA caching allocator uses 512-byte blocks).
    ``on_op(func, args, out)`` sees every op (FLOP counting).
    """

    def __init__(self, workspace: Callable | None = None, rounding: int = 1, on_op: Callable | None = None):
        super().__init__()
        self.workspace, self.rounding, self.on_op = workspace, rounding, on_op
        self.live: dict[int, int] = {}  # id(storage) -> serial
        self.size: dict[int, int] = {}  # serial -> bytes
        self.tag: dict[int, str] = {}  # serial -> what made it (a phase, or a label given to register)
        self.events: list[tuple[int, int]] = []  # (serial, +bytes | -bytes)
        self.samples: list[int] = []  # live bytes (+ the op's workspace) after every op
        self.cur = self.peak = self.peak_events = self.peak_extra = 0
        self.peak_at = ""
        self.phase = "setup"

    def _free(self, key: int) -> None:
        serial = self.live.pop(key, None)
        if serial is not None:
            self.cur -= self.size[serial]
            self.events.append((serial, -self.size[serial]))

    def register(self, t: Any, tag: str | None = None) -> int | None:
        """Track ``t``'s storage (once); returns its serial."""
        if not isinstance(t, torch.Tensor):
            return None
        st = t.untyped_storage()
        key = id(st)
        if key in self.live:
            return self.live[key]
        serial = len(self.size)
        n = -(-st.nbytes() // self.rounding) * self.rounding if st.nbytes() else 0
        self.live[key], self.size[serial], self.tag[serial] = serial, n, tag or self.phase
        self.cur += n
        self.events.append((serial, n))
        weakref.finalize(st, self._free, key)
        return serial

    def serial_of(self, t: torch.Tensor) -> int | None:
        return self.live.get(id(t.untyped_storage()))

    def start(self) -> None:
        """Forget the peak so far: the step starts from what is alive now."""
        self.peak, self.peak_events, self.peak_extra, self.peak_at = self.cur, len(self.events), 0, "start"
        self.samples = [self.cur]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.prim.device.default:
            return out
        for t in (out,) if isinstance(out, torch.Tensor) else tree_flatten(out)[0]:
            self.register(t)
        extra = self.workspace(func, args, out) if self.workspace is not None else 0
        if self.on_op is not None:
            self.on_op(func, args, out)
        now = self.cur + extra
        self.samples.append(now)
        if now > self.peak:
            self.peak, self.peak_events, self.peak_extra = now, len(self.events), extra
            self.peak_at = f"{self.phase}: {func.overloadpacket.__name__}"
        return out

    def live_at_peak(self) -> dict[int, int]:
        """serial -> bytes of every storage alive at the peak (replaying the event log)."""
        alive: dict[int, int] = {}
        for serial, delta in self.events[:self.peak_events]:
            if delta >= 0:
                alive[serial] = delta
            else:
                alive.pop(serial, None)
        return alive


@dataclass
class Simulation:
    """What one simulated step gives: the peak, where it happened and what was alive then."""

    peak: int
    peak_at: str
    components: dict[str, int]  # bytes alive at the peak by kind (params, gradients, activations, ...)
    samples: list[int] = field(repr=False, default_factory=list)
    saved: dict[int, int] = field(repr=False, default_factory=dict)  # serial -> bytes saved for backward
    saved_by_layer: dict[int, int] = field(repr=False, default_factory=dict)  # leaf-call index -> bytes
    static: dict[str, int] = field(default_factory=dict)  # params, buffers, input, grads, optimizer bytes


def peak_at_batch(batch: int, b1: int, s1: Sequence[int], b2: int, s2: Sequence[int]) -> int:
    """The peak at ``batch`` from the per-op samples of two simulated batch sizes (exact where the
    two runs did the same ops: every sample is affine in the batch size)."""
    if len(s1) != len(s2):
        raise ValueError("the two simulated steps ran different ops; simulate this batch size instead")
    return max(a + (batch - b1) * (b - a) // (b2 - b1) for a, b in zip(s1, s2))


# ---------------------------------------------------------------------------------------
# The model, optimizer and step, as the trainer builds and runs them


def fake_copy(model: nn.Module, mode, memory_format: torch.memory_format) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are fake CPU tensors of the same shapes,
    dtypes and ``requires_grad`` (no data is copied), in ``memory_format`` as the trainer moves it."""

    def like(t: torch.Tensor) -> torch.Tensor:  # Module.to(memory_format=...) converts 4-D tensors only
        with mode:
            return torch.empty(t.shape, dtype=t.dtype,
                               memory_format=memory_format if t.dim() == 4 else torch.contiguous_format)

    return _copy_with(model, like)


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the ``meta`` device without copying any data (``model`` itself if it is there)."""
    if all(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        return model
    return _copy_with(model, lambda t: torch.empty(t.shape, dtype=t.dtype, device="meta"))


def _copy_with(model: nn.Module, like: Callable[[torch.Tensor], torch.Tensor]) -> nn.Module:
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(like(p), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = like(b)
    hooks = _detach_hooks(model)
    try:
        return copy.deepcopy(model, memo)
    finally:
        _restore_hooks(model, hooks)


def _detach_hooks(model: nn.Module) -> list:
    """Forward hooks hold closures (and tensors) that deepcopy must not follow; set them aside."""
    saved = []
    for m in model.modules():
        saved.append((m, m._forward_hooks, m._forward_pre_hooks))
        m._forward_hooks, m._forward_pre_hooks = type(m._forward_hooks)(), type(m._forward_pre_hooks)()
    return saved


def _restore_hooks(model: nn.Module, saved: list) -> None:
    for m, hooks, pre in saved:
        m._forward_hooks, m._forward_pre_hooks = hooks, pre


def build_optimizer(name: str, params: list, *, momentum: float = 0.0, foreach: bool | None = None):
    """The trainer's optimizers (:func:`cnnlab.training.optim.build_optimizer`), by name: ``sgd``
    (``momentum`` > 0 adds one buffer per parameter), ``momentum`` (0.9), ``nesterov`` (0.9),
    ``adam``, ``adamw``; ``foreach`` as PyTorch would choose on the target device."""
    if name in ("sgd", "momentum", "nesterov"):
        m = momentum or (0.9 if name != "sgd" else 0.0)
        return torch.optim.SGD(params, lr=0.01, momentum=m, nesterov=name == "nesterov", foreach=foreach)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, lr=1e-3, foreach=foreach)


def training_step(model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor | None, *, amp_dtype: torch.dtype | None,
                  device_type: str = "cpu", scaler=None, phase: Callable[[str], None] = lambda p: None):
    """One step in :meth:`Trainer.train_step`'s order: forward and loss under autocast, then
    ``zero_grad(set_to_none=True)``, backward, optimizer step. Returns (logits, loss), detached."""
    phase("forward")
    with torch.autocast(device_type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        logits = model(x)
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits  # (logits, probas) as in the lecture
        if y is None:  # class indices of the output's shape (N, or N x H x W for dense outputs)
            y = torch.zeros((logits.shape[0], *logits.shape[2:]), dtype=torch.long, device=logits.device)
        loss = F.cross_entropy(logits.float(), y)
    phase("zero_grad")
    optimizer.zero_grad(set_to_none=True)
    phase("backward")
    (scaler.scale(loss) if scaler is not None else loss).backward()
    phase("step")
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    phase("after")
    return logits.detach(), loss.detach()
