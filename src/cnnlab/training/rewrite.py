"""Pool before ReLU: a rewrite of the training forward pass that changes no number.

ReLU and max-pooling commute: ``max(relu(a), relu(b), ...) = relu(max(a, b, ...))`` for any inputs,
because ReLU never reorders two values (it is monotone). The gradients agree as well: the window's
arg-max is the same element before and after, and ``relu'`` is 0 wherever the maximum is <= 0 either
way. So ``conv -> relu -> maxpool`` (the lecture's ConvNet, VGG's blocks, ResNet's stem) can run as
``conv -> maxpool -> relu``: the ReLU and its backward touch a quarter of the elements (2x2 pooling)
and the weights after training are bit for bit the same.

:func:`pool_before_relu` applies it with ``torch.fx`` to a copy of the forward graph that shares the
model's modules and parameters; a model fx cannot trace is used as it is.
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["pool_before_relu"]

_RELU_FUNCTIONS = (F.relu, torch.relu)
_MAX_POOL_FUNCTIONS = (F.max_pool2d, F.adaptive_max_pool2d)


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return node.op == "call_module" and type(modules[node.target]) is nn.ReLU


def _is_max_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_function":
        return node.target in _MAX_POOL_FUNCTIONS and not node.kwargs.get("return_indices", False)
    if node.op != "call_module":
        return False
    module = modules[node.target]
    return isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) and not module.return_indices


def _swappable(relu: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """A ReLU whose input feeds nothing else (an in-place ReLU changes that input) and whose only
    user is a max-pool taking it as its input."""
    if not _is_relu(relu, modules) or len(relu.users) != 1 or not relu.args:
        return False
    source, (pool,) = relu.args[0], relu.users
    return (isinstance(source, fx.Node) and len(source.users) == 1 and _is_max_pool(pool, modules)
            and pool.args and pool.args[0] is relu and relu not in pool.args[1:]
            and relu not in pool.kwargs.values())


def pool_before_relu(model: nn.Module) -> tuple[nn.Module, int]:
    """``(module, swaps)``: an fx copy of ``model`` with every ReLU that feeds a max-pool moved after
    it (same modules, same parameters), or ``(model, 0)`` when there is none or fx cannot trace it."""
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception:  # data-dependent control flow, unsupported Python: train the model as written
        return model, 0
    modules = dict(graph_module.named_modules())
    swaps = 0
    for relu in list(graph_module.graph.nodes):
        if not _swappable(relu, modules):
            continue
        (pool,) = relu.users
        pool.replace_input_with(relu, relu.args[0])  # the pool reads the ReLU's input ...
        with graph_module.graph.inserting_after(pool):
            moved = graph_module.graph.create_node(relu.op, relu.target, (pool, *relu.args[1:]), relu.kwargs)
        pool.replace_all_uses_with(moved, delete_user_cb=lambda user: user is not moved)  # ... and the ReLU the pool's
        graph_module.graph.erase_node(relu)
        swaps += 1
    if not swaps:
        return model, 0
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module, swaps
