"""A reload applies in the program's real namespaces, statement by statement, so that later
statements see what earlier ones made. To make it all or nothing, everything it is about to
change is recorded first, and a failure part-way restores it all:

- module namespaces: a shallow copy of each ``__dict__`` (bindings come back; objects that a
  statement mutated in place do not);
- functions: a clone holding every field, restored with ``patch_function``;
- classes: their dict entries and bases, plus a clone of every function reachable from them.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from . import mighty_patcher as native
from .codes import member_functions

__all__ = ["Transaction"]

_MISSING = object()


def clone_function(func: types.FunctionType) -> types.FunctionType:
    """A new function object with every field of ``func`` (closure cells shared)."""
    copy = types.FunctionType(
        func.__code__, func.__globals__, func.__name__, None, func.__closure__
    )
    native.patch_function(copy, func)
    return copy


class Transaction:
    def __init__(self) -> None:
        self._namespaces: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._functions: dict[int, tuple[types.FunctionType, types.FunctionType]] = {}
        self._classes: list[tuple[type, dict[str, Any], tuple[type, ...]]] = []
        self._seen_classes: set[int] = set()
        #: What framework adapters did outside the module, and how to undo it.
        self.undo: list[Callable[[], None]] = []

    def keep_namespace(self, namespace: dict[str, Any]) -> None:
        self._namespaces.append((namespace, dict(namespace)))

    def keep_function(self, func: types.FunctionType) -> None:
        if id(func) not in self._functions:
            self._functions[id(func)] = (func, clone_function(func))

    def keep_class(self, cls: type) -> None:
        if id(cls) in self._seen_classes:
            return
        self._seen_classes.add(id(cls))
        entries = dict(cls.__dict__)
        self._classes.append((cls, entries, cls.__bases__))
        for value in entries.values():
            for func in member_functions(value):
                self.keep_function(func)
            if isinstance(value, type) and value.__qualname__.startswith(cls.__qualname__ + "."):
                self.keep_class(value)

    def rollback(self) -> list[str]:
        """Restores everything recorded; returns what could not be restored."""
        problems = []
        for undo in reversed(self.undo):
            try:
                undo()
            except Exception as exc:  # keep restoring the rest
                problems.append(f"{undo!r}: {exc}")
        for func, copy in reversed(list(self._functions.values())):
            try:
                native.patch_function(func, copy)
            except Exception as exc:  # keep restoring the rest
                problems.append(f"{func.__qualname__}: {exc}")
        for cls, entries, bases in reversed(self._classes):
            problems += _restore_class(cls, entries, bases)
        for namespace, saved in reversed(self._namespaces):
            # (over a copy: another thread may add a global meanwhile)
            for name in [n for n in list(namespace) if n not in saved]:
                del namespace[name]
            for name, value in saved.items():
                if namespace.get(name, _MISSING) is not value:
                    namespace[name] = value
        return problems


def _restore_class(cls: type, entries: dict[str, Any], bases: tuple[type, ...]) -> list[str]:
    problems = []
    if cls.__bases__ != bases:
        try:
            cls.__bases__ = bases
        except TypeError as exc:
            problems.append(f"{cls.__qualname__}.__bases__: {exc}")
    skip = {"__dict__", "__weakref__"}
    # (over a copy: another thread may add to the class meanwhile, a copy.copy or pickle of
    # an instance caching __slotnames__ in it)
    for name in [n for n in list(cls.__dict__) if n not in entries and n not in skip]:
        try:
            type.__delattr__(cls, name)
        except (AttributeError, TypeError) as exc:
            problems.append(f"{cls.__qualname__}.{name}: {exc}")
    for name, value in entries.items():
        if name not in skip and cls.__dict__.get(name, _MISSING) is not value:
            try:
                type.__setattr__(cls, name, value)
            except (AttributeError, TypeError) as exc:
                problems.append(f"{cls.__qualname__}.{name}: {exc}")
    return problems
