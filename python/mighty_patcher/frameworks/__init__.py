"""Framework adapters (see :mod:`mighty_patcher.hooks`): one module per framework, each
imported only once the program imports that framework."""

from __future__ import annotations

import ast
import sys
from typing import Any, TypeVar

__all__ = ["method_call", "module_globals", "named"]

T = TypeVar("T")


def module_globals(kind: type[T] | tuple[type[T], ...]) -> list[T]:
    """The objects of type ``kind`` that some imported module holds at its top level (an
    application, a router, a blueprint), each once, in import order. Programs keep those in
    module globals; one pass over ``sys.modules`` finds them without recording anything at
    the framework's setup time."""
    found: list[T] = []
    seen: set[int] = set()
    for module in list(sys.modules.values()):
        namespace: Any = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for value in list(namespace.values()):
            # type(), not isinstance(): that would ask a proxy for its __class__, which runs
            # its code (Django's lazy settings raise when they are not configured)
            if issubclass(type(value), kind) and id(value) not in seen:
                seen.add(id(value))
                found.append(value)
    return found


def method_call(
    node: ast.stmt, methods: dict[str, tuple[str, ...]]
) -> tuple[ast.expr, str, dict[str, ast.expr]] | None:
    """``X.method(a, b, key=c)`` as a statement of its own, ``method`` a key of ``methods``:
    (``X``, a name or a dotted name, to look up with :func:`named`; the method; its arguments
    by parameter name, the positional ones named by ``methods[method]`` in order). None for
    any other statement."""
    if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Call):
        return None
    call = node.value
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr not in methods:
        return None
    given: dict[str, ast.expr] = dict(zip(methods[func.attr], call.args, strict=False))
    given.update((k.arg, k.value) for k in call.keywords if k.arg is not None)
    return func.value, func.attr, given


def named(node: ast.expr | None, namespace: dict[str, Any]) -> Any:
    """What a name or a dotted name (``api.router``) refers to in ``namespace`` now; None for
    any other expression (nothing is evaluated that could run the program's code but
    attribute reads)."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = named(node.value, namespace)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None
