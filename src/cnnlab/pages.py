"""cnnlab's one HTML layer: every page cnnlab writes (``cnnlab report``, ``cnnlab analyze --html``, the
animation player) is a Jinja2 template under ``cnnlab/templates/`` (package data), rendered with
autoescaping, with the one stylesheet ``cnnlab.css`` and the page's script inlined: a page is one
self-contained file that fetches nothing from the network.

- :func:`render`: a template with its context -> the page's text
- :func:`write_page`: the same, written atomically (:func:`cnnlab.storage.atomic_write`)
- :func:`fragment`: the same page as a piece of a notebook's output (``_repr_html_``): no ``<html>`` frame,
  one ``<div class="cnnlab-frag">`` holding the stylesheet with every rule scoped to that div
  (:func:`fragment_css`), so a notebook's own styles and cnnlab's never touch each other
- in templates: ``{{ asset("cnnlab.css") }}`` inlines a stylesheet or script as it is (not templated,
  not escaped); data for a ``<script>`` goes through ``|tojson``.

No other module escapes HTML by hand or builds ``<html`` strings (tests/test_layout.py checks).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from cnnlab.storage import atomic_write

__all__ = ["environment", "asset", "render", "write_page", "fragment", "fragment_css"]

FRAGMENT = ".cnnlab-frag"  # the class of the div around a fragment


@functools.cache
def environment() -> Environment:
    """The one Jinja2 environment: templates from the package, HTML autoescaped, unknown names an error."""
    env = Environment(loader=PackageLoader("cnnlab", "templates"), autoescape=select_autoescape(),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "separators": (",", ":")}
    env.globals["asset"] = asset
    env.globals["fragment_css"] = fragment_css
    return env


def asset(name: str) -> Markup:
    """The text of ``templates/NAME`` (a stylesheet or a script) to inline as it is."""
    env = environment()
    source, _, _ = env.loader.get_source(env, name)
    return Markup(source)


@functools.cache
def fragment_css() -> Markup:
    """``cnnlab.css`` with every rule scoped to a fragment's div: ``body.lab`` -> ``.cnnlab-frag > div.lab``,
    ``.lab h1`` -> ``.cnnlab-frag .lab h1`` (the stylesheet has no @-rules; comments are dropped)."""
    text = re.sub(r"/\*.*?\*/", "", str(asset("cnnlab.css")), flags=re.S)
    rules = []
    for rule in text.split("}"):
        if "{" not in rule:
            continue
        selectors, body = rule.split("{", 1)
        scoped = [f"{FRAGMENT} > div{s.strip()[4:]}" if s.strip().startswith("body") else f"{FRAGMENT} {s.strip()}"
                  for s in selectors.split(",")]
        rules.append(", ".join(scoped) + " {" + body.rstrip() + " }")
    return Markup("\n".join(rules))


def render(template: str, **context) -> str:
    """The page ``template`` (a file under ``cnnlab/templates/``) rendered with ``context``."""
    return environment().get_template(template).render(**context)


def fragment(template: str, **context) -> str:
    """The page ``template`` as a notebook output's HTML (see :func:`fragment_css`), not a whole page."""
    return render(template, fragment=True, **context).strip()


def write_page(path: str | Path, template: str, **context) -> Path:
    """Render ``template`` into ``path`` (its folder created; the old file or the new one, never a part)."""
    path = Path(path)
    atomic_write(path, render(template, **context), parents=True)
    return path
