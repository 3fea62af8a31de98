"""Loading weights: torchvision ``.pth`` files, cnnlab checkpoints, transfer-learning heads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError

__all__ = ["load_weights", "head_name", "freeze", "weights_in_channels"]


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"weights file {path} does not exist")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CnnlabError(f"{path} cannot be read as PyTorch weights ({type(exc).__name__}); it is truncated or "
                          f"not a state_dict saved by torch.save") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a cnnlab checkpoint (model.pt)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CnnlabError(f"{path} holds no state_dict (a mapping of parameter names to tensors)")
    return obj


def head_name(model: nn.Module) -> str:
    """Qualified name of the classifier head: the last ``nn.Linear`` (or, for all-conv nets, the
    last ``nn.Conv2d``) registered in the model."""
    last_linear = last_conv = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last_linear = name
        elif isinstance(m, nn.Conv2d):
            last_conv = name
    name = last_linear if last_linear is not None else last_conv
    if name is None:
        raise CnnlabError("the model has no Linear or Conv2d layer to use as its head")
    return name


def load_weights(model: nn.Module, path: str | os.PathLike, *, replace_head: bool = False) -> list[str]:
    """Load a state_dict file (torchvision's ``.pth`` or a cnnlab ``model.pt``) into ``model``.

    Keys and shapes must match exactly; on a mismatch one line names the first differing key
    and both shapes. With ``replace_head=True`` the classifier head (see :func:`head_name`) is
    kept as initialised when its shape differs (transfer learning to another number of
    classes). Returns the keys left as they were.
    """
    state = _read_state_dict(path)
    own = model.state_dict()
    head = head_name(model) if replace_head else None
    skipped = []
    for key in own:
        if head is not None and key.startswith(head + ".") and key in state and state[key].shape != own[key].shape:
            skipped.append(key)
    for key, tensor in own.items():
        if key in skipped:
            continue
        if key not in state:
            raise CnnlabError(f"{path} does not fit the model: key {key!r} {list(tensor.shape)} is missing from the file")
        if state[key].shape != tensor.shape:
            hint = ""
            if tensor.dim() == 2 and state[key].shape[0] == tensor.shape[0]:
                hint = ("; a linear layer's input width follows the input size (for VGG, -o avgpool_size=7 keeps "
                        "torchvision's 7x7x512 head at any input size)")
            raise CnnlabError(f"{path} does not fit the model: {key!r} is {list(state[key].shape)} in the file "
                              f"but {list(tensor.shape)} in the model{hint}")
    extra = [k for k in state if k not in own]
    if extra:
        raise CnnlabError(f"{path} does not fit the model: the file has key {extra[0]!r} {list(state[extra[0]].shape)} "
                          f"that the model lacks")
    to_load = {k: v for k, v in state.items() if k not in skipped}
    model.load_state_dict(to_load, strict=not skipped)
    return skipped


def freeze(model: nn.Module, prefixes: list[str] | tuple[str, ...]) -> int:
    """Set ``requires_grad=False`` on every parameter under the given module names
    (e.g. ``["features"]``); returns how many tensors were frozen."""
    names = dict(model.named_modules())
    for prefix in prefixes:
        if prefix not in names:
            tops = ", ".join(n for n, _ in model.named_children())
            raise CnnlabError(f"--freeze {prefix!r} names no module of the model; its top-level modules are: {tops}")
    count = 0
    for name, param in model.named_parameters():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            param.requires_grad_(False)
            count += 1
    return count


def weights_in_channels(path: str | os.PathLike) -> int | None:
    """Input channels the first convolution of a weights file expects (None if it has none)."""
    for tensor in _read_state_dict(path).values():
        if tensor.dim() == 4:
            return int(tensor.shape[1])
    return None
