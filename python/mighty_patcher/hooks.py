"""The hook interface between the reload engine and framework adapters.

The engine knows no framework. A framework whose objects need more than in-place patching
(a route table to update, a schema to rebuild, a change to refuse) gets an :class:`Adapter`:
a small class that hears about a few events of each reload and may act on them. An adapter
is active only once its framework is imported by the program (its :attr:`Adapter.module` is
in ``sys.modules``): an adapter for a framework the program does not use costs nothing, and
its own module is not even imported.

Events, in the order a reload makes them:

- :meth:`Adapter.before_reload` / :meth:`Adapter.after_reload`: around each module's reload
  (a changed file, or a module following a rebound import); ``after_reload`` once the module's
  statements applied, still inside the reload's transaction: an exception there rolls the
  whole reload back.
- :meth:`Adapter.before_definition`: a definition is about to be patched (its body changed),
  rebuilt (its decorators, or its class machinery, run again), added or removed. Raising
  :class:`~mighty_patcher.NeedsRestart` there refuses that change: the definition is left
  exactly as it was and the reason goes into the report as needing a restart; the rest of
  the reload still applies. For a class rebuild, setting :attr:`DefinitionEvent.in_place`
  there patches the changed statements in place instead.
- :meth:`Adapter.after_definition`: the change was made.
- :meth:`Adapter.removed_statement`: a top-level statement that is neither a definition nor
  a binding (a call: ``app.add_url_rule(...)``) is gone from the file, removed or changed (its
  new version ran before): what it did when it ran stays, and the report says so as needing
  a restart, unless an adapter undoes it (setting :attr:`StatementEvent.undone`; the report
  then lists it as deleted). What it changes is undone on a rollback through
  :meth:`ReloadEvent.on_rollback` (``before_reload``).
- :meth:`Adapter.inner_function`: the function a framework object holds (a Click command's
  callback), so that a body edit patches it in place without running the decorator again.
- :meth:`Adapter.merge`: decorators ran again and made a new framework object of the same
  kind as the one the program holds: make the old one behave as the new one (a command that
  gained an option), keeping its identity.

What an adapter changes outside the module (a route table) is not in the reload's
transaction: give :meth:`DefinitionEvent.on_rollback` (or :meth:`ReloadEvent.on_rollback`, from
``before_reload``) a function that undoes it, and it runs if the reload fails and is rolled
back; ``after_reload`` is then not called.

Third parties register their own with :func:`register`; the built-in ones (Flask, FastAPI
and Starlette, pydantic, Django, Click) are listed in :data:`BUILTIN`.
"""

from __future__ import annotations

import ast
import importlib
import logging
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "BUILTIN",
    "Adapter",
    "AdapterError",
    "DefinitionEvent",
    "ReloadEvent",
    "StatementEvent",
    "active",
    "register",
    "unregister",
]

logger = logging.getLogger("mighty_patcher.hooks")

#: Built-in adapters, by the module that activates them: "package.module:Class", imported
#: only once that module is in ``sys.modules``.
BUILTIN: dict[str, str] = {
    "click": "mighty_patcher.frameworks.click:ClickAdapter",
    "flask": "mighty_patcher.frameworks.flask:FlaskAdapter",
    "fastapi": "mighty_patcher.frameworks.fastapi:FastAPIAdapter",
    "pydantic": "mighty_patcher.frameworks.pydantic:PydanticAdapter",
    "django": "mighty_patcher.frameworks.django:DjangoAdapter",
}


@dataclass
class ReloadEvent:
    """A module being reloaded: its file changed, or it follows a rebound import."""

    module: types.ModuleType
    path: str
    #: The report so far (``after_reload``: complete); adapters may add notes to it.
    report: Any
    _undo: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """``undo()`` runs if the reload fails and is rolled back (``before_reload``: what
        the adapter changes for the whole reload, such as a framework's setup check turned
        off, or what statements run again may register)."""
        self._undo.append(undo)


@dataclass
class DefinitionEvent:
    """One definition of a module being changed."""

    module: types.ModuleType
    #: Its name in the module (``view``), or ``Class.member`` for a class member.
    name: str
    #: ``patched``: its body changed and it is patched in place (its decorators or class
    #: machinery did not run). ``rebuilt``: its decorators, or its class's metaclass and
    #: decorators, run again (``new`` is what they made; the engine then makes ``old``
    #: behave as ``new`` and keeps ``old``). ``added``: new in the file. ``removed``: gone
    #: from the file (``old`` leaves the module).
    action: Literal["patched", "rebuilt", "added", "removed"]
    #: What the module held before (None when added).
    old: Any
    #: What the new source made (``after_definition``; for ``patched``, the new undecorated
    #: function or the members of the class body that changed; None when removed).
    new: Any = None
    #: The definition's statement in the new source (the old one when removed).
    node: ast.stmt | None = None
    #: For a class: the members taken from the new version (None: all of them).
    members: frozenset[str] | None = None
    #: ``before_definition`` of a class about to be ``rebuilt`` because statements of its
    #: body changed: an adapter that knows the class's machinery reads none of them (a Django
    #: model's new property, not a field) sets this to True, and they are run on their own
    #: and patched into the class as a method body edit is: no metaclass, class decorator or
    #: ``__init_subclass__`` runs (``patched`` events follow). Ignored when the class
    #: statement's header changed (``members`` is None then) or the body cannot run on its
    #: own.
    in_place: bool = False
    #: ``before_definition`` of a class ``rebuilt`` with :attr:`in_place` set: the members
    #: (of ``members``, or gone from the body) that the running class already has as the new
    #: source says (an earlier change to them was refused and is now undone in the file, or
    #: one never applied is removed): they are neither taken, removed nor reported.
    unchanged: frozenset[str] = frozenset()
    #: The definition's statement in the source last applied (a class ``rebuilt``), if known.
    old_node: ast.stmt | None = None
    #: Set by an adapter that took a ``removed`` (or ``rebuilt``) definition's registrations
    #: out (a route, a request hook): a removed one that comes back has its decorators run
    #: again to register it anew; a rebuilt one's old registrations need no word.
    unregistered: bool = False
    _undo: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """``undo()`` runs if the reload fails and is rolled back."""
        self._undo.append(undo)


@dataclass
class StatementEvent:
    """A top-level statement, not a definition nor a binding, gone from a module's file."""

    module: types.ModuleType
    #: The statement, as the source last applied had it.
    node: ast.stmt
    #: Set by an adapter that undid what the statement did (a rule it added leaves the map).
    undone: bool = False


class Adapter:
    """Override what the framework needs; every method does nothing by default."""

    #: The module whose import activates the adapter (``"flask"``).
    module: ClassVar[str] = ""

    def in_use(self) -> bool:
        """Whether the framework is in use, not only imported (Django: its settings are
        configured and its apps loaded). Asked before every event; True by default."""
        return True

    def before_reload(self, event: ReloadEvent) -> None:
        pass

    def after_reload(self, event: ReloadEvent) -> None:
        pass

    def before_definition(self, event: DefinitionEvent) -> None:
        pass

    def after_definition(self, event: DefinitionEvent) -> None:
        pass

    def removed_statement(self, event: StatementEvent) -> None:
        pass

    def inner_function(self, obj: Any) -> Any:
        """What ``obj`` wraps, if it is an object of this framework that holds a function
        (returned as is, or another wrapper to look into); None otherwise."""
        return None

    def merge(self, old: Any, new: Any) -> bool:
        """Makes ``old`` behave as ``new`` (same type, made by decorators that changed), in
        place; True if done. The functions inside were patched already."""
        return False


_registered: list[type[Adapter]] = []
_instances: dict[type[Adapter], Adapter] = {}


def register(adapter: type[Adapter]) -> type[Adapter]:
    """Registers an adapter class (usable as a class decorator); it becomes active once its
    :attr:`~Adapter.module` is imported."""
    if not adapter.module:
        raise ValueError(f"{adapter.__qualname__}.module must name the framework's module")
    if adapter not in _registered:
        _registered.append(adapter)
    return adapter


def unregister(adapter: type[Adapter]) -> None:
    if adapter in _registered:
        _registered.remove(adapter)
    _instances.pop(adapter, None)


def active() -> list[Adapter]:
    """The adapters whose framework is imported now, built-in ones first (each made once)."""
    for module, target in list(BUILTIN.items()):
        if module not in sys.modules:
            continue
        del BUILTIN[module]
        path, _, name = target.partition(":")
        try:
            register(getattr(importlib.import_module(path), name))
        except Exception:
            logger.exception("the %s adapter could not be loaded; reloads go on without it", module)
    found = []
    for cls in _registered:
        if cls.module in sys.modules:
            instance = _instances.get(cls)
            if instance is None:
                instance = _instances[cls] = cls()
            found.append(instance)
    return found


class AdapterError(Exception):
    """A framework adapter failed while a reload was applied: the reload is rolled back."""


def call(method: str, event: ReloadEvent | DefinitionEvent | StatementEvent) -> None:
    """``adapter.<method>(event)`` for every active adapter in use. ``NeedsRestart`` (a change
    refused) goes to the caller as it is; any other exception fails the reload (rolled back,
    nothing half-applied) as an :class:`AdapterError` naming the adapter and the cause (the
    framework's own complaint, such as Flask refusing a second view for one endpoint)."""
    from .mighty_patcher import NeedsRestart

    for adapter in active():
        try:
            if adapter.in_use():
                getattr(adapter, method)(event)
        except NeedsRestart:
            raise
        except Exception as exc:
            raise AdapterError(
                f"the {adapter.module} adapter could not apply this reload ({method}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def merge(old: Any, new: Any) -> bool:
    """Whether an adapter in use made ``old`` behave as ``new`` (:meth:`Adapter.merge`)."""
    for adapter in active():
        try:
            if adapter.in_use() and adapter.merge(old, new):
                return True
        except Exception:
            logger.exception("the %s adapter failed to merge %r", adapter.module, old)
    return False


def inner_functions(obj: Any) -> Iterator[Any]:
    """What the active adapters say ``obj`` wraps."""
    for adapter in active():
        try:
            if not adapter.in_use():
                continue
            inner = adapter.inner_function(obj)
        except Exception:
            logger.exception("%s.inner_function failed", type(adapter).__qualname__)
            continue
        if inner is not None:
            yield inner
