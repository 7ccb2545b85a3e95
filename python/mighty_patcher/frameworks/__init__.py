"""Framework adapters (see :mod:`mighty_patcher.hooks`): one module per framework, each
imported only once the program imports that framework."""

from __future__ import annotations

import sys
from typing import Any, TypeVar

__all__ = ["module_globals"]

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
