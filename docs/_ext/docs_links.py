"""Sphinx extension: the ``(docs: <label>)`` citations of the docstrings become links.

The package's docstrings cite the sections of these docs by label, as plain text that reads
well in ``help()`` — ``(docs: theory-reverse-kl, theory-starvation)``. In the API pages each
cited label becomes a ``:ref:`` to its section; the text around it is left as it is.
Labels may continue on the next line of the docstring (``theory-a,\\n    theory-b``).

Enabled from ``docs/conf.py`` with ``sys.path.insert(0, str(Path(__file__).parent / "_ext"))``
and ``"docs_links"`` in ``extensions``.
"""

from __future__ import annotations

import re
from typing import Any

#: a label of these docs, as ``tests/test_docs.py`` checks them
LABEL = r"(?:theory|design|speed|api)(?:-[a-z0-9]+)*"
_CITATION = re.compile(rf"docs: ((?:{LABEL},\s+)*{LABEL})(?![-\w])")
_ONE_LABEL = re.compile(rf"(?<![-\w`<]){LABEL}(?![-\w>`])")


def link_citations(text: str) -> str:
    """``text`` with every label of each ``docs: a, b`` citation as ``:ref:`a <a>```
    (the explicit title keeps the label's own name, whatever its section is called)."""

    def linked(match: re.Match[str]) -> str:
        labels = _ONE_LABEL.sub(lambda m: f":ref:`{m.group(0)} <{m.group(0)}>`", match.group(1))
        return f"docs: {labels}"

    return _CITATION.sub(linked, text)


def _process_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """autodoc-process-docstring: rewrite ``lines`` in place (literal blocks stay as they
    are: a line ending in ``::`` starts one, and it runs while lines are indented deeper)."""
    out: list[str] = []
    chunk: list[str] = []
    literal_indent: int | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if line.strip() and indent <= literal_indent:
                literal_indent = None
            else:
                out.append(line)
                continue
        chunk.append(line)
        if line.rstrip().endswith("::"):
            out.extend(link_citations("\n".join(chunk)).split("\n"))
            chunk = []
            literal_indent = indent
    out.extend(link_citations("\n".join(chunk)).split("\n") if chunk else [])
    lines[:] = out


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
