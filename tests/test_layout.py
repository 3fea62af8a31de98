"""The house rules of the layout (docs/ARCHITECTURE.md): small files and functions, no import
cycles, lower layers that never reach up, a command line that starts without torch, and
training options generated from ``TrainConfig``."""

from __future__ import annotations

import ast
import re
import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src" / "cnnlab"
MODULES = sorted(
    ".".join(("cnnlab", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
    for p in SRC.rglob("*.py") if p.name != "__main__.py"
)
LOWER = ("cnnlab.arithmetic", "cnnlab.geometry", "cnnlab.errors", "cnnlab.models", "cnnlab.data")
UPPER = ("cnnlab.training", "cnnlab.cli", "cnnlab.analysis", "cnnlab.visualize", "cnnlab.inference")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _path_of(module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    return SRC / rel / "__init__.py" if (SRC / rel).is_dir() else SRC / rel.with_suffix(".py")


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_alone(module):
    """No import cycle: each module imports in an interpreter state without any other cnnlab module."""
    saved = {k: v for k, v in sys.modules.items() if k == "cnnlab" or k.startswith("cnnlab.")}
    for k in saved:
        del sys.modules[k]
    try:
        importlib.import_module(module)
    finally:
        for k in [k for k in sys.modules if k == "cnnlab" or k.startswith("cnnlab.")]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(LOWER)])
def test_lower_layers_never_import_upper_ones(module):
    upward = sorted(i for i in _imports(_path_of(module)) if i.startswith(UPPER))
    assert not upward, f"{module} imports {upward}"


@pytest.mark.parametrize("module", MODULES)
def test_files_and_functions_stay_small(module):
    path = _path_of(module)
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path} has {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{path}:{node.lineno} {node.name} has {length} lines"


def test_command_line_and_arithmetic_start_without_torch():
    code = ("import sys; from cnnlab.cli import run; import cnnlab.arithmetic, cnnlab.training.config; "
            "code = run(['arith', '--input', '28', '--kernel', '3', '--padding', 'same']); "
            "run(['--help']); run(['train', '--help']); "
            "assert code == 0, code; bad = [m for m in ('torch', 'rich', 'numpy') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "output size: 28" in proc.stdout and "--batch-size" in proc.stdout


def test_train_options_are_generated_from_train_config():
    from cnnlab.cli.train import config_options, train
    from cnnlab.training.config import TrainConfig, setting

    params = {p.name: p for p in train.params}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in params, f"TrainConfig.{f.name} has no option"
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if f.name not in ("freeze", "model_options"):
            assert params[f.name].default == default, f.name
        assert params[f.name].help == f.metadata["help"]
    assert list(params["optimizer"].type.choices) == ["sgd", "adam", "adamw"]

    @dataclasses.dataclass
    class Extended(TrainConfig):
        ema_decay: float | None = setting(None, "A setting added tomorrow.", group="optimization")
        tta: bool = setting(False, "Another one.", group="loop")

    import click

    command = config_options(Extended)(click.command()(lambda **kw: kw))
    names = {p.name: p for p in command.params}
    assert "--ema-decay" in names["ema_decay"].opts and names["ema_decay"].help == "A setting added tomorrow."
    assert names["tta"].is_flag and len(names) == len(dataclasses.fields(Extended))
    values = command.main(["--ema-decay", "0.99", "--tta", "-o", "dropout2d=0.2", "--freeze", "features"],
                          standalone_mode=False)
    config = Extended(**values)
    assert (config.ema_decay, config.tta, config.model_options, config.freeze) == (0.99, True, {"dropout2d": 0.2},
                                                                                    ["features"])


def test_init_scheme_names_match_the_models():
    from cnnlab.models import INITS
    from cnnlab.training.config import INIT_SCHEMES

    assert tuple(INITS) == INIT_SCHEMES


COMPAT_MODULES = ("train", "layers", "weights", "callbacks", "imagefolder", "plots")


@pytest.mark.parametrize("name", COMPAT_MODULES)
def test_the_compatibility_modules_are_gone(name):
    """One home per name: the 0.1.0 re-export modules were removed, and nothing imports them."""
    assert not (SRC / f"{name}.py").exists()
    for path in SRC.rglob("*.py"):
        assert f"cnnlab.{name}" not in _imports(path), path
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"cnnlab.{name}")


def test_the_public_names_live_in_their_homes():
    import cnnlab
    from cnnlab import models, training

    assert cnnlab.create_model is models.create_model and cnnlab.with_probas is models.with_probas
    assert cnnlab.arithmetic.conv_output_size(28, 3, 1, 1) == 28 and callable(cnnlab.analyze)
    assert callable(training.train) and callable(training.resume) and training.Trainer is not None


FIGURES, PAGES = "cnnlab.figures", "cnnlab.pages"


def _pyplot_or_backend(tree: ast.AST) -> list[str]:
    """Where a file imports ``matplotlib.pyplot``, picks a backend (``matplotlib.use``) or saves a figure."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("matplotlib.pyplot")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("matplotlib.pyplot") or (
                    node.module == "matplotlib" and {a.name for a in node.names} & {"pyplot", "use"}):
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if node.func.attr == "use" and isinstance(owner, ast.Name) and owner.id in ("matplotlib", "mpl"):
                found.append(f"line {node.lineno}: {owner.id}.use()")
            if node.func.attr == "savefig":
                found.append(f"line {node.lineno}: .savefig()")
    return found


def _hand_made_html(path: Path) -> list[str]:
    """Where a file escapes HTML itself or writes a page frame (``<html``) instead of using a template."""
    text = path.read_text()
    found = [f"line {n}: <html" for n, line in enumerate(text.splitlines(), 1) if "<html" in line.lower()]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name in ("html", "markupsafe")]
        elif isinstance(node, ast.ImportFrom) and node.module in ("html", "markupsafe", "jinja2"):
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr == "escape" and isinstance(node.value, ast.Name) \
                and node.value.id in ("html", "markupsafe", "cgi", "saxutils"):
            found.append(f"line {node.lineno}: {node.value.id}.escape")
    return found


def test_only_the_figures_module_touches_pyplot_and_the_backend():
    """matplotlib's backend is chosen once (Agg, in cnnlab.figures) before pyplot is imported anywhere."""
    offenders = {m: found for m in MODULES if m != FIGURES
                 and (found := _pyplot_or_backend(ast.parse(_path_of(m).read_text())))}
    assert not offenders, offenders
    own = _pyplot_or_backend(ast.parse(_path_of(FIGURES).read_text()))
    assert "import matplotlib.pyplot" in own and any(".use()" in f for f in own), own
    text = _path_of(FIGURES).read_text()
    assert text.index('matplotlib.use("Agg")') < text.index("import matplotlib.pyplot")


def test_pages_are_templates_with_autoescape_only():
    """No module outside cnnlab.pages escapes HTML by hand, imports jinja2/markupsafe or builds ``<html``;
    the page frame and the one stylesheet are package data under cnnlab/templates/."""
    offenders = {m: found for m in MODULES if m != PAGES and (found := _hand_made_html(_path_of(m)))}
    assert not offenders, offenders
    templates = SRC / "templates"
    assert (templates / "cnnlab.css").is_file() and "<html" in (templates / "page.html").read_text()
    assert sorted(p.name for p in templates.glob("*.css")) == ["cnnlab.css"]  # one stylesheet
    for page in templates.glob("*.html"):
        text = page.read_text()
        assert page.name == "page.html" or text.startswith('{% extends "page.html" %}'), page.name
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), page.name  # nothing from the network
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"templates/*.html", "templates/*.css", "templates/*.js"' in pyproject and '"jinja2>=3.1"' in pyproject


def test_figures_and_pages_use_no_temporary_files():
    """Pictures go to memory (io.BytesIO) or are written atomically: no temporary directories."""
    for module in (FIGURES, PAGES, "cnnlab.analysis.html", "cnnlab.analysis.charts", "cnnlab.visualize.report",
                   "cnnlab.visualize.report_html", "cnnlab.visualize.animate_render"):
        assert "tempfile" not in _imports(_path_of(module)), module


HOOK_CALL = re.compile(r"\.register_(?:module_)?forward_(?:pre_)?hook\(")
TRACER = "trace/"  # cnnlab.trace: the one pass that records per-layer shapes, fields, MACs and outputs
HOOKS_FOR_OTHER_REASONS = {
    "visualize/receptive.py": "effective receptive field: swaps a layer's output for a copy to take gradients from",
    "analysis/estimate.py": "a fake-tensor training step: which layer runs, to charge it FLOPs and saved tensors",
    "analysis/memory.py": "bytes of the distinct tensors leaf layers write (tensor identity, in-place outputs once)",
    "analysis/ops.py": "the stack of running modules, to attribute each dispatched aten op to its layer",
}


def test_the_tracer_is_the_only_shape_recorder():
    """Forward hooks are registered by cnnlab.trace and by the places listed with their reason; a
    new per-layer trace reads cnnlab.trace.trace instead of hooking the model itself."""
    hooking = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if HOOK_CALL.search(p.read_text())}
    assert any(p.startswith(TRACER) for p in hooking)
    others = {p for p in hooking if not p.startswith(TRACER)}
    assert others - set(HOOKS_FOR_OTHER_REASONS) == set(), "hooks outside cnnlab.trace: read the trace instead"
    assert set(HOOKS_FOR_OTHER_REASONS) - others == set(), "listed as hooking but no longer does: drop it from the list"


def test_trace_names_still_import_from_where_they_were():
    import cnnlab.trace as trace
    from cnnlab.analysis.shapes import probe, shape_error, smallest_square_input
    from cnnlab.summary import LayerRow, ReceptiveField, first_tensor, receptive_field_map, summarize
    from cnnlab.visualize import choose_gradcam_layer, default_layers
    from cnnlab.visualize.layers import LayerOutput, PASS_THROUGH, trace_forward, trace_outputs

    assert ReceptiveField is trace.ReceptiveField and receptive_field_map is trace.receptive_field_map
    assert first_tensor is trace.first_tensor and LayerOutput is trace.LayerOutput
    assert PASS_THROUGH is trace.PASS_THROUGH and "receptive_field" in LayerRow.__dataclass_fields__
    assert all(callable(f) for f in (probe, shape_error, smallest_square_input, summarize, choose_gradcam_layer,
                                     default_layers, trace_forward, trace_outputs))


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("cnnlab.trace")])
def test_the_tracer_sits_low(module):
    """cnnlab.trace reads torch, arithmetic, geometry, errors and models only: everything above reads it."""
    allowed = ("cnnlab.arithmetic", "cnnlab.geometry", "cnnlab.errors", "cnnlab.models", "cnnlab.trace")
    cnnlab_imports = {i for i in _imports(_path_of(module)) if i == "cnnlab" or i.startswith("cnnlab.")}
    assert all(i.startswith(allowed) for i in cnnlab_imports - {"cnnlab"}), f"{module} imports {sorted(cnnlab_imports)}"
