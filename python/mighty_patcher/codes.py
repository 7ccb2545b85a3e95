"""Code objects and the functions built around them: pairing the nested code objects of an
old and a new version of a definition, and finding the function a decorator wrapped."""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator
from typing import Any

from . import hooks

__all__ = [
    "find_inner",
    "member_functions",
    "nested_codes",
    "nested_pairs",
    "shifted",
    "wrapper_chain",
]


def _children(code: types.CodeType) -> list[types.CodeType]:
    return [c for c in code.co_consts if isinstance(c, types.CodeType)]


def nested_codes(code: types.CodeType) -> list[types.CodeType]:
    """The code objects nested in ``code``, recursively (``code`` itself not included)."""
    found = []
    for child in _children(code):
        found += [child, *nested_codes(child)]
    return found


def nested_pairs(
    old: types.CodeType, new: types.CodeType
) -> Iterator[tuple[types.CodeType, types.CodeType]]:
    """Pairs (old, new) of the code objects nested in ``old`` and ``new`` (inner functions,
    lambdas, comprehensions, class bodies), matched by name and order among same-named
    siblings, recursively. ``(old, new)`` itself is not included."""
    new_by_key: dict[tuple[str, int], types.CodeType] = {}
    counts: dict[str, int] = {}
    for child in _children(new):
        n = counts.get(child.co_name, 0)
        counts[child.co_name] = n + 1
        new_by_key[(child.co_name, n)] = child
    counts = {}
    for child in _children(old):
        n = counts.get(child.co_name, 0)
        counts[child.co_name] = n + 1
        partner = new_by_key.get((child.co_name, n))
        if partner is not None:
            yield child, partner
            yield from nested_pairs(child, partner)


def shifted(code: types.CodeType, lines: int) -> types.CodeType:
    """``code`` moved ``lines`` lines down (up, if negative), nested code objects too: what
    compiling the same text that many lines lower gives (line numbers are stored relative to
    ``co_firstlineno``), without compiling."""
    consts = tuple(
        shifted(c, lines) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_firstlineno=code.co_firstlineno + lines, co_consts=consts)


def wrapper_chain(obj: Any) -> Iterator[Any]:
    """``obj`` and what it wraps, outermost first: ``__wrapped__``, ``__func__``, a partial's
    ``func``, a property's getter, functions held in a wrapper function's closure, and what
    framework adapters say their objects hold (:meth:`hooks.Adapter.inner_function`)."""
    seen: set[int] = set()
    queue = [obj]
    while queue and len(seen) < 64:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for attr in ("__wrapped__", "__func__", "fget"):
            inner = getattr(current, attr, None) if not isinstance(current, type) else None
            if inner is not None:
                queue.append(inner)
        if isinstance(current, functools.partial):
            queue.append(current.func)
        queue.extend(hooks.inner_functions(current))  # a framework's own wrappers
        if isinstance(current, types.FunctionType) and current.__closure__:
            for cell in current.__closure__:
                try:
                    content = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                if callable(content) and not isinstance(content, type):
                    queue.append(content)


def member_functions(value: Any) -> list[types.FunctionType]:
    """The functions a class member holds: itself, a static/class method's function, a
    property's accessors (the ones ``patch_class`` patches in place)."""
    if isinstance(value, types.FunctionType):
        return [value]
    if isinstance(value, (staticmethod, classmethod)) and isinstance(
        value.__func__, types.FunctionType
    ):
        return [value.__func__]
    if isinstance(value, property):
        return [
            f for f in (value.fget, value.fset, value.fdel) if isinstance(f, types.FunctionType)
        ]
    return []


def find_inner(obj: Any, name: str, filename: str) -> types.FunctionType | None:
    """The function a definition ``def name`` in ``filename`` made, wherever its decorators put
    it (``obj`` itself when it is undecorated)."""
    for candidate in wrapper_chain(obj):
        if isinstance(candidate, types.FunctionType):
            code = candidate.__code__
            if code.co_name == name and code.co_filename == filename:
                return candidate
    return None
