"""Griffe extension: render the Sphinx roles of our docstrings as Markdown for mkdocstrings.

The docstrings cross-reference with Sphinx roles (``:class:`EasyToHardSampler```,
``:func:`~zpd_curriculum._losses.per_example_loss_sums```), which mkdocstrings would print
verbatim. This extension rewrites each role before rendering: a name documented in the API
reference (a ``::: identifier`` line under ``docs/reference/``) and named by a class, function or
data role becomes a link to it; anything else (private helpers, methods, attributes, modules)
becomes inline code showing the name's last component.

Loaded by mkdocs.yml (``plugins.mkdocstrings.handlers.python.options.extensions``); griffe runs
it from the repository root, where ``mkdocs build`` is run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<target>[^`]+)`")
# Roles naming module-level objects, which the API reference documents by name; methods,
# attributes and modules are shown as code.
_LINKABLE = {"class", "func", "data", "exc", "obj", "const"}
_DIRECTIVE = re.compile(r"^:::\s+(?P<identifier>[\w.]+)\s*$", re.MULTILINE)
_REFERENCE = Path(__file__).resolve().parents[1] / "reference"


def _documented() -> dict[str, str]:
    """Last name component -> the identifier the API reference renders it under."""
    found: dict[str, str] = {}
    for page in sorted(_REFERENCE.glob("*.md")):
        for match in _DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            identifier = match["identifier"]
            found.setdefault(identifier.rsplit(".", 1)[-1], identifier)
    return found


class SphinxRoles(griffe.Extension):
    """Replace Sphinx cross-reference roles in docstrings with Markdown links or code."""

    def __init__(self) -> None:
        super().__init__()
        self._targets = _documented()

    def _rewrite(self, match: re.Match[str]) -> str:
        target = match["target"].lstrip("~").strip()
        name = target.rsplit(".", 1)[-1] or target
        identifier = self._targets.get(name)
        if match["role"] in _LINKABLE and identifier is not None:
            return f"[`{name}`][{identifier}]"
        return f"`{name}`"

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the object's docstring once the tree is complete."""
        if obj.is_alias or obj.docstring is None:
            return
        obj.docstring.value = _ROLE.sub(self._rewrite, obj.docstring.value)
