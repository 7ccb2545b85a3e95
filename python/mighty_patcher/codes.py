"""Code objects and the functions built around them: pairing the nested code objects of an
old and a new version of a definition, finding the function a decorator wrapped, and the
functions a class member holds (a rule the native core owns: ``patch_class`` follows it)."""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator
from typing import Any

from . import hooks
from . import mighty_patcher as native

__all__ = [
    "find_inner",
    "functions_made_in",
    "member_function_pairs",
    "member_functions",
    "nested_codes",
    "nested_pairs",
    "same_place",
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


def same_place(a: types.CodeType, b: types.CodeType) -> bool:
    """Whether ``a`` and ``b``, and their nested code objects, carry the same line numbers
    and columns: a statement that only changed inside a line (``def f( ):``) did not move."""
    if _place(a) != _place(b):
        return False
    children = _children(a), _children(b)
    return len(children[0]) == len(children[1]) and all(map(same_place, *children))


def _place(code: types.CodeType) -> tuple[Any, ...]:
    positions = getattr(code, "co_positions", None)  # lines and columns (3.11+)
    return code.co_firstlineno, list(code.co_lines()), list(positions()) if positions else None


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
    """The functions a class member holds: itself, a ``staticmethod``'s or ``classmethod``'s
    function, a ``property``'s accessors that are functions (exactly those types: subclasses
    are replaced, not patched in place). The native rule ``patch_class`` follows."""
    return native.member_functions(value)


def member_function_pairs(
    old: Any, new: Any
) -> list[tuple[types.FunctionType, types.FunctionType]]:
    """The (old, new) functions ``patch_class`` patches in place when class member ``old``
    becomes ``new``, role by role; empty when ``new`` replaces ``old`` instead."""
    return native.member_function_pairs(old, new) or []


def functions_made_in(value: Any, path: str, depth: int = 0) -> list[types.FunctionType]:
    """The functions of file ``path`` that ``value`` is or holds: for each object along its
    decorators (:func:`wrapper_chain`), the functions it holds as a class member
    (:func:`member_functions`) and what their own decorators wrap; for a class, the same for
    its members and nested classes. Each function once."""
    found: list[types.FunctionType] = []
    for candidate in wrapper_chain(value):
        for held in member_functions(candidate):
            for inner in wrapper_chain(held):
                if (
                    isinstance(inner, types.FunctionType)
                    and inner.__code__.co_filename == path
                    and not any(inner is f for f in found)
                ):
                    found.append(inner)
    if isinstance(value, type) and depth < 8:
        for member in list(value.__dict__.values()):
            if not isinstance(member, type) or member.__qualname__.startswith(
                value.__qualname__ + "."
            ):
                for func in functions_made_in(member, path, depth + 1):
                    if not any(func is f for f in found):
                        found.append(func)
    return found


def find_inner(obj: Any, name: str, filename: str) -> types.FunctionType | None:
    """The function a definition ``def name`` in ``filename`` made, wherever its decorators put
    it (``obj`` itself when it is undecorated)."""
    for candidate in wrapper_chain(obj):
        if isinstance(candidate, types.FunctionType):
            code = candidate.__code__
            if code.co_name == name and code.co_filename == filename:
                return candidate
    return None
