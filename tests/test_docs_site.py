"""The documentation site's sources stay complete (`make docs` builds them; CI runs it, this file does not):
every public name has an API page, every notebook and doc page is in the navigation."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import cnnlab

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
MKDOCS = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
API_MODULES = ("arithmetic", "visualize", "analysis", "conv", "inference")


def _directives(page: Path) -> list[str]:
    return re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), flags=re.M)


@pytest.mark.parametrize("module", API_MODULES)
def test_each_module_has_a_page_showing_its_public_names(module: str) -> None:
    page = DOCS / "api" / f"{module}.md"
    assert _directives(page) == [f"cnnlab.{module}"]  # the whole module: mkdocstrings shows its __all__
    assert "members:" not in page.read_text(encoding="utf-8"), "no member list that could leave names out"
    assert importlib.import_module(f"cnnlab.{module}").__all__
    assert f"api/{module}.md" in MKDOCS


def test_the_cnnlab_page_documents_every_top_level_name() -> None:
    shown = {d.rsplit(".", 1)[-1] for d in _directives(DOCS / "api" / "cnnlab.md")}
    missing = [n for n in cnnlab.__all__ if n not in shown and n not in ("__version__", "arithmetic")]
    assert not missing, f"add '::: <module>.<name>' to docs/api/cnnlab.md for {missing}"
    for directive in _directives(DOCS / "api" / "cnnlab.md")[1:]:
        module, name = directive.rsplit(".", 1)
        assert getattr(cnnlab, name) is getattr(importlib.import_module(module), name), directive


def test_every_notebook_and_doc_page_is_in_the_navigation() -> None:
    notebooks = sorted((REPO / "examples" / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        assert f"notebooks/{nb.name}" in MKDOCS, nb.name
    assert (DOCS / "notebooks").resolve() == (REPO / "examples" / "notebooks").resolve()
    for page in [*DOCS.glob("*.md"), *DOCS.glob("guide/*.md"), *DOCS.glob("api/*.md")]:
        assert str(page.relative_to(DOCS)) in MKDOCS, f"{page.relative_to(DOCS)} is not in mkdocs.yml's nav"


def test_the_site_builds_offline_and_strict() -> None:
    assert re.search(r"^strict: true$", MKDOCS, flags=re.M)
    assert re.search(r"^  font: false", MKDOCS, flags=re.M), "no Google Fonts"
    assert "- offline" in MKDOCS
    shims = re.findall(r"polyfills: \[([^\]]*)\]", MKDOCS)
    assert shims and all((DOCS / s.strip()).is_file() for s in shims[0].split(",")), "vendored, not a CDN URL"
