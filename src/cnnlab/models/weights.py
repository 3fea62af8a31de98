"""Loading weights: torchvision ``.pth`` files, cnnlab checkpoints, transfer-learning heads."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError, check_type
from cnnlab.paths import check_file

__all__ = ["load_weights", "head_name", "freeze", "weights_in_channels", "first_conv_key", "describe_mismatch",
           "load_state_dict_checked"]


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = check_file(path, "weights file")
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


def describe_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], limit: int = 3) -> str:
    """What differs between a model's state_dict and a file's, in one line (a few keys of each kind),
    or "" when they fit."""
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    shapes = [k for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]

    def some(keys: list[str], fmt) -> str:
        shown = ", ".join(fmt(k) for k in keys[:limit])
        return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")

    parts = []
    if shapes:
        parts.append(some(shapes, lambda k: f"{k!r} is {list(given[k].shape)} in the file but "
                                            f"{list(expected[k].shape)} in the model"))
    if missing:
        parts.append(some(missing, lambda k: f"key {k!r} {list(expected[k].shape)}") + " missing from the file")
    if extra:
        parts.append("the file has " + some(extra, lambda k: f"key {k!r} {list(given[k].shape)}")
                     + " that the model lacks")
    return "; ".join(parts)


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)`` with a one-line error naming the keys and shapes that differ."""
    problem = describe_mismatch(model.state_dict(), state)
    if problem:
        raise CnnlabError(f"{source} does not fit the model: {problem}")
    model.load_state_dict(state)


def load_weights(model: nn.Module, path: str | os.PathLike, *, replace_head: bool = False) -> list[str]:
    """Load a state_dict file (torchvision's ``.pth`` or a cnnlab ``model.pt``) into ``model``.

    Keys and shapes must match exactly; on a mismatch one line names the keys and shapes that
    differ (a few of each kind). With ``replace_head=True`` the classifier head (see
    :func:`head_name`) is kept as initialised when its shape differs (transfer learning to another
    number of classes). Returns the keys left as they were.
    """
    check_type(model, nn.Module, "model", "an nn.Module (e.g. cnnlab.create_model('resnet18'))")
    state = _read_state_dict(path)
    own = model.state_dict()
    head = head_name(model) if replace_head else None
    skipped = [key for key in own if head is not None and key.startswith(head + ".") and key in state
               and state[key].shape != own[key].shape]
    problem = describe_mismatch({k: v for k, v in own.items() if k not in skipped},
                                {k: v for k, v in state.items() if k not in skipped})
    if problem:
        hint = ""
        linear_width = [k for k in own if k in state and own[k].dim() == 2 and state[k].dim() == 2
                        and state[k].shape[0] == own[k].shape[0] and state[k].shape != own[k].shape]
        if linear_width:
            hint = ("; a linear layer's input width follows the input size (for VGG, -o avgpool_size=7 keeps "
                    "torchvision's 7x7x512 head at any input size)")
        raise CnnlabError(f"{path} does not fit the model: {problem}{hint}")
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=not skipped)
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


def first_conv_key(model: nn.Module) -> str | None:
    """The state_dict key of the weight of the model's first ``nn.Conv2d`` (None if it has none)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"{name}.weight"
    return None


def weights_in_channels(path: str | os.PathLike, key: str | None = None) -> int | None:
    """Input channels that the first convolution in a weights file expects: the tensor under ``key``
    (the model's own first-conv key, see :func:`first_conv_key`), else the file's first 4-D tensor.
    None when the file has no such convolution weight."""
    state = _read_state_dict(path)
    if key is not None:
        tensor = state.get(key)
        return int(tensor.shape[1]) if tensor is not None and tensor.dim() == 4 else None
    for tensor in state.values():
        if tensor.dim() == 4:
            return int(tensor.shape[1])
    return None
