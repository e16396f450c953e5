"""Griffe extension for the API reference: DataFerry's docstrings, read as Markdown.

mkdocs.yml loads it (mkdocstrings' python handler, ``extensions:``); it is not part of the
package. The docstrings are Google style (griffe parses their sections) but use some Sphinx
markup that Markdown doesn't know. This rewrites it once the package is loaded, before
mkdocstrings renders anything:

- roles (``:class:`~dataferry.Codec```, ``:meth:`get```) become a cross-reference when their
  target is rendered somewhere in the reference (so the link can't dangle, which the strict
  build would report), and inline code otherwise;
- a paragraph ending in ``::`` followed by an indented block becomes a fenced code block
  (``python`` when the block parses as Python, ``text`` otherwise);
- a reStructuredText simple table (``=====  =====`` borders) becomes a Markdown table;
- an attribute documented by ``#:`` comment lines above it (Sphinx's autodoc convention) gets
  them as its docstring.

The source files are never touched: only the docstrings griffe loaded for this build.
"""

from __future__ import annotations

import ast
import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|attr|exc|mod|obj|const):`(~?)([^`]+)`")
_BORDER = re.compile(r"^\s*=+(?:\s+=+)+\s*$")
# The public modules whose members the reference renders (every name of their __all__).
_PUBLIC_MODULES = (
    "dataferry",
    "dataferry.events",
    "dataferry.testing",
    "dataferry.contrib.fastapi",
    "dataferry.contrib.django",
)
# dataferry.contrib.django renders these only (the rest of its __all__ is Django's plumbing).
_ONLY = {"dataferry.contrib.django": ["DataFerryCache", "invalidate_on_commit", "shutdown_caches"]}


class SphinxMarkup(griffe.Extension):
    """Rewrite Sphinx roles, literal blocks and simple tables of every docstring as Markdown."""

    def __init__(self) -> None:
        super().__init__()
        self._documented: dict[str, str] = {}  # canonical path -> public path
        self._short: dict[str, str] = {}  # unqualified name -> public path

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of the whole package once it is loaded."""
        if pkg.name != "dataferry":
            return
        _comment_docstrings(pkg, seen=set())
        for module_path in _PUBLIC_MODULES:
            module = pkg if module_path == "dataferry" else pkg[module_path[len("dataferry.") :]]
            self._documented[module.path] = module_path
            for name in _ONLY.get(module_path) or _exported(module):
                member = module.members.get(name)
                target = None if member is None else _final(member)
                if target is None or not target.docstring:
                    continue  # not rendered: a link to it would dangle
                public = f"{module_path}.{name}"
                self._documented[target.path] = public
                self._short.setdefault(name, public)
                if target.is_class:
                    for sub_name, sub in target.members.items():
                        real = _final(sub)
                        if sub_name.startswith("_") or real is None or not real.docstring:
                            continue
                        self._documented[real.path] = f"{public}.{sub_name}"
        self._walk(pkg, seen=set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj.docstring.value, obj)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)  # type: ignore[arg-type]

    def _rewrite(self, text: str, obj: griffe.Object) -> str:
        text = _tables(text)
        text = _literal_blocks(text)
        return _ROLE.sub(lambda m: self._role(m.group(1) == "~", m.group(2), obj), text)

    def _role(self, short: bool, target: str, obj: griffe.Object) -> str:
        target = target.strip().removesuffix("()")
        label = target.rsplit(".", 1)[-1] if short else target
        public = self._resolve(target.lstrip("."), obj)
        return f"`{label}`" if public is None else f"[`{label}`][{public}]"

    def _resolve(self, target: str, obj: griffe.Object) -> str | None:
        public_paths = set(self._documented.values())
        if target in public_paths:
            return target
        scopes = []
        klass: Any = obj if obj.is_class else obj.parent
        while klass is not None and not klass.is_class:
            klass = klass.parent
        if klass is not None:
            scopes.append(klass.path)
        scopes.append((obj if obj.is_module else obj.module).path)
        for scope in scopes:
            found = self._documented.get(f"{scope}.{target}")
            if found is not None:
                return found
        head, _, rest = target.partition(".")
        if head in self._short:
            candidate = self._short[head] + (f".{rest}" if rest else "")
            if candidate in public_paths:
                return candidate
        return None


def _exported(module: griffe.Module) -> list[str]:
    names = module.exports
    if names is None:
        return [n for n in module.members if not n.startswith("_")]
    return [n if isinstance(n, str) else n.name for n in names]


def _final(member: Any) -> griffe.Object | None:
    try:
        return member.final_target if member.is_alias else member  # type: ignore[no-any-return]
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _comment(obj: griffe.Object) -> str:
    """The ``#:`` comment lines right above an attribute, as one paragraph (``""``: none)."""
    if not obj.is_attribute or obj.lineno is None:
        return ""
    try:
        lines = obj.module.lines
    except (AttributeError, OSError):
        return ""
    found: list[str] = []
    i = obj.lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        found.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    return " ".join(found)


def _comment_docstrings(obj: griffe.Object, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    for member in obj.members.values():
        if member.is_alias:
            continue
        if member.is_attribute and member.docstring is None:
            text = _comment(member)  # type: ignore[arg-type]
            if text:
                member.docstring = griffe.Docstring(text, parent=member)  # type: ignore[arg-type]
        _comment_docstrings(member, seen)  # type: ignore[arg-type]


def _literal_blocks(text: str) -> str:
    """``Intro::`` and an indented block -> ``Intro:`` and a fenced block."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.rstrip()
        if not stripped.endswith("::"):
            out.append(line)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block_start = j
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            j += 1
        while j > block_start and not lines[j - 1].strip():
            j -= 1
        if block_start >= len(lines) or j == block_start:
            out.append(line)
            i += 1
            continue
        intro = stripped[:-1] if stripped.strip() != "::" else ""
        if intro.strip():
            out.append(intro)
        code = textwrap.dedent("\n".join(lines[block_start:j]))
        pad = " " * indent
        out.append("")
        out.append(f"{pad}```{_language(code)}")
        out.extend(f"{pad}{c}" if c else "" for c in code.splitlines())
        out.append(f"{pad}```")
        out.append("")
        i = j
    return "\n".join(out)


def _language(code: str) -> str:
    try:
        ast.parse(code)
    except SyntaxError:
        return "text"
    return "python"


def _tables(text: str) -> str:
    """A reStructuredText simple table (a header row between two borders) -> Markdown."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not (_BORDER.match(lines[i]) and i + 2 < len(lines) and _BORDER.match(lines[i + 2])):
            out.append(lines[i])
            i += 1
            continue
        starts = [m.start() for m in re.finditer(r"=+", lines[i])]
        end = i + 3
        while end < len(lines) and not _BORDER.match(lines[end]):
            end += 1
        rows: list[list[str]] = []
        for raw in lines[i + 3 : end]:
            cells = _cells(raw, starts)
            # A row goes on over lines whose first cell is empty, or after a first cell ending
            # in "," (a list of names spread over lines).
            continuation = not cells[0] or (rows and rows[-1][0].endswith(","))
            if rows and continuation:
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
            elif any(cells):
                rows.append(cells)
        header = _cells(lines[i + 1], starts)
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + " --- |" * len(header))
        out.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
        i = end + 1
    return "\n".join(out)


def _cells(line: str, starts: list[int]) -> list[str]:
    bounds = [*starts[1:], None]
    return [line[a:b].strip() for a, b in zip(starts, bounds, strict=True)]
