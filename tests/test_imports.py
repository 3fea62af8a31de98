"""Imports point down, counting every import: at the top of a file, inside functions and under
``TYPE_CHECKING`` alike. A deferred import of a cnnlab module (inside a function) may only serve start-up
time, and only in ``cli/`` (a command imports the library when it runs, so ``cnnlab --help`` never loads
torch); elsewhere a function may import only a third-party package listed in OPTIONAL: an optional extra
(captum, onnxruntime, ...), which must not be needed to import the module, or a heavy loader of one dataset
or method. Functions outside ``cli/`` take at most 8 positional parameters (a click command takes one per
option)."""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src" / "cnnlab"
# Third-party packages a function may import where it uses them: the optional extras (pyproject's
# [project.optional-dependencies]: the core install must import every module without them), what only a
# benchmark or a GPU needs, and the heavy loaders of one dataset or one method (torchvision's dataset readers,
# scikit-learn's digits, pandas for a DataFrame: seconds of import time every run would pay otherwise).
# cnnlab's own modules are never among them: a deferred cnnlab import would hide a cycle.
OPTIONAL = {"torchvision", "sklearn", "pandas","captum", "onnx", "onnxruntime", "onnxscript", "tensorboard", "torch.utils.tensorboard", "optuna",
            "fastapi", "starlette", "uvicorn", "anywidget", "traitlets", "selenium", "torchao", "scipy", "nbclient",
            "nbformat", "skimage", "skimage.metrics"}
MAX_POSITIONAL = 8


def _module_name(path: Path) -> str:
    return ".".join(("cnnlab", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an import statement loads: ``from a.b import c`` is ``a.b`` and, if it is a module, ``a.b.c``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


@lru_cache(maxsize=None)
def _imports(module: str) -> tuple[tuple[str, bool, int], ...]:
    """(imported module, inside a function?, line) for every import statement of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    inside: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        for target in _targets(node, module, path.name == "__init__.py"):
            found.append((target, id(node) in inside, node.lineno))
    return tuple(found)


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_when_every_import_counts():
    assert _cycles(_graph()) == []


def test_the_cycle_check_can_fail():
    graph = _graph()
    graph["cnnlab.arithmetic"] = graph["cnnlab.arithmetic"] | {"cnnlab.runs"}
    graph["cnnlab.runs"] = graph["cnnlab.runs"] | {"cnnlab.arithmetic"}
    assert any({"cnnlab.arithmetic", "cnnlab.runs"} <= set(c) for c in _cycles(graph))


def _optional(target: str) -> bool:
    """An optional extra, or a name inside one (``torch.utils.tensorboard.SummaryWriter``)."""
    return any(target == name or target.startswith(name + ".") for name in OPTIONAL)


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith("cnnlab.cli")])
def test_deferred_imports_only_in_the_command_line(module):
    deferred = [(t, line) for t, inside, line in _imports(module) if inside and not _optional(t)]
    assert not deferred, f"{module} imports inside functions: {deferred} (import at the top; only cli/ defers)"


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith("cnnlab.cli")])
def test_at_most_8_positional_parameters(module):
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = [a.arg for a in (*args.posonlyargs, *args.args) if a.arg not in ("self", "cls")]
            assert len(positional) <= MAX_POSITIONAL, \
                f"{module}:{node.lineno} {node.name} takes {len(positional)} positional parameters; make some keyword-only"
