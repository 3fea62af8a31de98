"""Models from outside the zoo, for ``cnnlab summary`` and ``cnnlab analyze`` alike: a Python file of
the user's own (``path/to/file.py:ClassName``) and any torchvision classifier (``torchvision:NAME``).

A model file is *executed* (imported with :mod:`importlib`, its folder first on ``sys.path`` so it can
import its neighbours): it is the user's own code, run as ``python file.py`` would run it. The class
is built with no arguments, as ``ConvNet()``.

A torchvision classifier is built with ``weights=None`` (nothing is downloaded) from
``torchvision.models``; its documented ImageNet-1K top-1, parameter count, GFLOPS and input size are
read from the *first* weights torchvision lists for it (``IMAGENET1K_V1`` where there is one: the
recipe of the architecture's paper), through the weights' ``meta`` and ``transforms`` (no download).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import inspect
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch.nn as nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.paths import check_file

__all__ = ["is_model_file", "load_model_file", "is_torchvision", "torchvision_names", "torchvision_info",
           "torchvision_model", "TorchvisionInfo", "TORCHVISION_PREFIX", "on_meta"]

TORCHVISION_PREFIX = "torchvision:"
# builder arguments that make the network the one torchvision's weights describe (GoogLeNet's weights
# have no auxiliary heads) and skip the slow scipy initialisation torchvision warns about
_BUILD_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False}, "inception_v3": {"init_weights": False}}


def is_model_file(spec: str) -> bool:
    """``file.py`` or ``file.py:ClassName`` (a registry name never contains ``.py``)."""
    return spec.partition(":")[0].endswith(".py")


def _import(path: Path):
    name = f"cnnlab_user_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:  # sys.exit() / exit() at import: the file ran as a script
        sys.modules.pop(name, None)
        raise CnnlabError(f"importing {path} ended the program ({_exit_call(exc)} at import); a model file must "
                          f"define its class without exiting: guard script code with if __name__ == '__main__':") \
            from None
    except Exception as exc:  # noqa: BLE001 -- the user's file: one line, not a traceback
        sys.modules.pop(name, None)
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise CnnlabError(f"importing {path} failed{where}: {_first_line(exc)}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def _exit_call(exc: SystemExit) -> str:
    return f"sys.exit({exc.code!r})" if exc.code is not None else "sys.exit()"


def load_model_file(spec: str) -> tuple[Any, str]:
    """Import ``path/to/file.py[:ClassName]`` (executing it) and build the class with no arguments.
    Without ``:ClassName`` the file must define exactly one ``nn.Module`` subclass. Returns (model, class name)."""
    file, _, class_name = spec.partition(":")
    path = check_file(file, "model file")
    module = _import(path)
    classes = {k: v for k, v in vars(module).items()
               if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__}
    if not class_name:
        if len(classes) != 1:
            found = ", ".join(sorted(classes)) or "none"
            raise CnnlabError(f"{file} defines {len(classes)} nn.Module classes ({found}); name one: {file}:ClassName")
        class_name = next(iter(classes))
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        found = ", ".join(sorted(classes)) or "none"
        raise CnnlabError(f"{file} has no nn.Module class {class_name!r}; its nn.Module classes: {found}")
    return _build(cls, file), class_name


def _build(cls, file: str):
    required = [p.name for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required:
        raise CnnlabError(f"{cls.__name__}() in {file} needs arguments ({', '.join(required)}); cnnlab builds "
                          f"it with none: give them default values")
    try:
        return cls()
    except SystemExit as exc:
        raise CnnlabError(f"{cls.__name__}() in {file} ended the program ({_exit_call(exc)}); a model's "
                          f"__init__ must not exit") from None
    except Exception as exc:  # noqa: BLE001
        raise CnnlabError(f"{cls.__name__}() in {file} failed: {_first_line(exc)}") from None


def is_torchvision(spec: str) -> bool:
    """``torchvision:NAME``."""
    return isinstance(spec, str) and spec.startswith(TORCHVISION_PREFIX)


def torchvision_names() -> list[str]:
    """The classifiers of ``torchvision.models`` (not detection, segmentation, video or quantized ones)."""
    return list(_classifier_names())


@functools.cache
def _classifier_names() -> tuple[str, ...]:
    import torchvision.models  # ~1 s to import: paid by the runs that name a torchvision model

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


@dataclass(frozen=True)
class TorchvisionInfo:
    """What torchvision documents of one classifier's first listed weights."""

    name: str  # torchvision's name, e.g. "mobilenet_v3_large"
    weights: str  # e.g. "MobileNet_V3_Large_Weights.IMAGENET1K_V1"
    top1: float | None  # documented ImageNet-1K acc@1 (%)
    params: int
    gflops: float  # torchvision's "_ops": GFLOPS counted as multiply-adds, i.e. GMACs
    input_size: int  # the weights' evaluation crop (224 where the weights say none)

    @property
    def source(self) -> str:
        return f"torchvision {self.weights.split('.')[-1]} weights, documented top-1"


def _name(spec: str) -> str:
    return spec[len(TORCHVISION_PREFIX):] if is_torchvision(spec) else spec


@functools.cache  # asked for by the check, the resolution and the build of one model: read once
def torchvision_info(spec: str) -> TorchvisionInfo:
    """``torchvision:NAME`` (or ``NAME``): the documented facts, read from the weights' meta (no download).
    An unknown name: :class:`UnknownNameError` with the closest names."""
    import torchvision.models

    name = _name(spec)
    known = torchvision_names()
    if name not in known:
        raise UnknownNameError("torchvision classifier", name, known)
    weights = list(torchvision.models.get_model_weights(name))[0]
    meta = weights.meta
    crop = getattr(weights.transforms, "keywords", {}).get("crop_size", 224)
    top1 = meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return TorchvisionInfo(name=name, weights=f"{type(weights).__name__}.{weights.name}", top1=top1,
                           params=int(meta["num_params"]), gflops=float(meta["_ops"]), input_size=int(crop))


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """Build modules with every parameter and buffer on the ``meta`` device (no memory, no initialisation
    arithmetic), while the builder's own arithmetic (RegNet's widths) still runs on the CPU."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self, name, tensor, persistent=True):
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def torchvision_model(spec: str, *, meta: bool = False) -> tuple[nn.Module, TorchvisionInfo]:
    """Build ``torchvision:NAME`` with ``weights=None`` (random weights; nothing downloaded), sized for its
    documented input (a ViT's ``image_size``); ``meta=True`` builds it on the ``meta`` device."""
    import torchvision.models

    info = torchvision_info(spec)
    kwargs = dict(_BUILD_KWARGS.get(info.name, {}))
    if info.name.startswith("vit_"):
        kwargs["image_size"] = info.input_size  # a ViT's position embeddings are sized for one input
    with warnings.catch_warnings(), (on_meta() if meta else contextlib.nullcontext()):
        warnings.simplefilter("ignore", FutureWarning)
        model = torchvision.models.get_model(info.name, weights=None, **kwargs)
    return model.eval(), info
