"""Live objects follow their class: the state a class edit adds reaches the instances made
before it.

What a class gives its instances is read from the class itself, before and after the edit:

- a dataclass's, an attrs class's or a pydantic model's fields: an added field with a default
  or a default factory gets that value on every instance that lacks it;
- a plain class's ``__init__``: an attribute the new ``__init__`` assigns at its top level
  (``self.extra = []``, ``self.count = 0``, ``self.lock = threading.Lock()``) from an
  expression that reads none of its parameters but ``self`` and none of its local names is
  evaluated once per instance that lacks it, in the class's module. One assigned from a
  parameter cannot be known: it is left, and the report says which attribute on how many
  instances.

A field removed is left on the instances that have it (data is never deleted), and said.

A class that defines ``__reload_instance__(self, added, removed)`` decides instead: it is
called on each live instance after the class changed, with the names of the fields added and
removed (renaming a field keeps its value: ``self.title = self.__dict__.pop("name")``); the
report names the attributes it stored that the instances lacked.

A name the class itself handles (a dunder, a method, a property or another descriptor found
along its MRO) is never instance state: it is neither filled nor reported as filled.

All values are computed before any is stored: if one raises, no instance is changed, and the
report says why (the rest of the reload still applies). The live instances are found in one
pass over the heap, and only when there is something to fill or a hook to call.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import mighty_patcher as native

__all__ = ["Change", "State", "diff_states", "fill", "init_of", "live_instances", "state_of"]

_MISSING: Any = object()
HOOK = "__reload_instance__"


@dataclass
class State:
    """What a class gives its instances: fields (or ``__init__`` attributes) by name, each
    with a way to make its value for an instance, or None when that cannot be known (a
    parameter of ``__init__``, a field without a default)."""

    fields: dict[str, Callable[[Any], Any] | None] = field(default_factory=dict)
    #: Why a field's value cannot be known, by name.
    unknown: dict[str, str] = field(default_factory=dict)


@dataclass
class Change:
    added: list[str]
    removed: list[str]
    state: State


def state_of(cls: type, init: ast.FunctionDef | None, module: types.ModuleType, path: str) -> State:
    """What ``cls`` gives its instances; ``init``: the syntax of its ``__init__`` (for a plain
    class), from the source the class was built from."""
    fields = _declared_fields(cls)
    if fields is not None:
        return fields
    state = State()
    if init is None:
        return state
    args = init.args
    params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    positional = [*args.posonlyargs, *args.args]
    me = positional[0].arg if positional else "self"
    local: set[str] = set()
    for stmt in init.body:
        target, value = _self_assignment(stmt, me)
        if target is not None and value is not None and target not in state.fields:
            reads = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
            blocked = sorted((reads & (params | local)) - {me})
            if blocked:
                state.fields[target] = None
                state.unknown[target] = f"assigned from {', '.join(blocked)} in __init__"
            else:
                state.fields[target] = _evaluator(value, me, module, path)
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                local.add(node.id)
    return state


def init_of(node: ast.stmt | None) -> ast.FunctionDef | None:
    """The ``def __init__`` at the top level of a class statement, if any."""
    if not isinstance(node, ast.ClassDef):
        return None
    found = None
    for stmt in node.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__":
            found = stmt  # the last one wins, as in the class
    return found


def _self_assignment(stmt: ast.stmt, me: str) -> tuple[str | None, ast.expr | None]:
    """``self.name = value`` (or annotated) at the top of ``__init__``."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target, value = stmt.targets[0], stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        target, value = stmt.target, stmt.value
    else:
        return None, None
    if (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == me
    ):
        return target.attr, value
    return None, None


def _evaluator(
    value: ast.expr, me: str, module: types.ModuleType, path: str
) -> Callable[[Any], Any]:
    code = compile(ast.Expression(body=value), path, "eval")
    namespace = module.__dict__

    def evaluate(instance: Any) -> Any:
        return eval(code, namespace, {me: instance})

    return evaluate


def _declared_fields(cls: type) -> State | None:
    """Fields a class declares to its machinery: dataclass, attrs, pydantic v2."""
    if "__dataclass_fields__" in cls.__dict__ or dataclasses.is_dataclass(cls):
        state = State()
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                state.fields[f.name] = _constant(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                state.fields[f.name] = _factory(f.default_factory)
            else:
                state.fields[f.name] = None
                state.unknown[f.name] = "a field without a default"
        return state
    attributes = getattr(cls, "__attrs_attrs__", None)
    if attributes is not None:
        state = State()
        for a in attributes:
            default = a.default
            factory = getattr(default, "factory", None)
            if factory is not None and type(default).__name__ == "Factory":
                if getattr(default, "takes_self", False):
                    state.fields[a.name] = factory
                else:
                    state.fields[a.name] = _factory(factory)
            elif type(default).__name__ == "_Nothing":
                state.fields[a.name] = None
                state.unknown[a.name] = "an attribute without a default"
            else:
                state.fields[a.name] = _constant(default)
        return state
    model_fields = cls.__dict__.get("__pydantic_fields__")
    if isinstance(model_fields, dict) and "pydantic" in sys.modules:
        state = State()
        for name, info in model_fields.items():
            if info.is_required():
                state.fields[name] = None
                state.unknown[name] = "a required field"
            else:
                state.fields[name] = _pydantic_default(info)
        return state
    return None


def _constant(value: Any) -> Callable[[Any], Any]:
    return lambda _instance: value


def _factory(factory: Callable[[], Any]) -> Callable[[Any], Any]:
    return lambda _instance: factory()


def _pydantic_default(info: Any) -> Callable[[Any], Any]:
    return lambda _instance: info.get_default(call_default_factory=True)


def diff_states(before: State, after: State) -> Change:
    added = [n for n in after.fields if n not in before.fields]
    removed = [n for n in before.fields if n not in after.fields]
    return Change(added, removed, after)


def live_instances(classes: Iterable[type]) -> list[Any]:
    """Every live object whose type is one of ``classes`` or a subclass of one: one pass over
    the objects the garbage collector tracks (instances of Python classes are tracked), in C
    (``instances_of``). Types are compared exactly, so no code of the program runs (no
    ``__class__`` property); the subclasses are found with ``type.__subclasses__``, which no
    metaclass can override."""
    wanted: set[type] = set()
    queue = list(classes)
    while queue:
        cls = queue.pop()
        if cls in wanted:
            continue
        wanted.add(cls)
        try:
            queue.extend(type.__subclasses__(cls))
        except TypeError:
            pass
    return native.instances_of(wanted)


def fill(cls: type, change: Change, report: Any) -> None:
    """Brings the live instances of ``cls`` (and of its subclasses) to its new state, or
    calls its ``__reload_instance__`` hook on each; says what it did in ``report``."""
    hook = getattr(cls, HOOK, None)
    state = [n for n in change.added if not _class_member(cls, n)]
    wanted = [n for n in state if change.state.fields.get(n) is not None]
    unknown = [n for n in state if change.state.fields.get(n) is None]
    if hook is None and not change.added and not change.removed:
        return
    instances = live_instances([cls])
    if not instances:
        return
    name = cls.__qualname__
    if hook is not None:
        added, removed = tuple(change.added), tuple(change.removed)
        filled: dict[str, int] = {}  # what the hook stored that the instance lacked
        for instance in instances:
            had = set(getattr(instance, "__dict__", None) or ())
            try:
                getattr(instance, HOOK)(added, removed)
            except Exception as exc:
                report.notes.append(
                    f"{name}.{HOOK} failed on an instance made before the edit: "
                    f"{type(exc).__name__}: {exc}; the instances after it were not updated"
                )
                return
            for attribute in getattr(instance, "__dict__", None) or ():
                if attribute not in had and not _class_member(cls, attribute):
                    filled[attribute] = filled.get(attribute, 0) + 1
        report.migrated += [f"{name}.{a} on {_count(n)}" for a, n in filled.items()]
        if not filled:  # (it changed what the instances had, or nothing: still, it ran)
            report.notes.append(f"{name}.{HOOK} ran on {_count(len(instances))}")
        return
    values: list[tuple[dict[str, Any], str, Any]] = []
    lacking: dict[str, int] = {}
    for attribute in wanted:
        make = change.state.fields[attribute]
        assert make is not None
        for instance in instances:
            namespace = getattr(instance, "__dict__", None)
            if not isinstance(namespace, dict) or attribute in namespace:
                continue
            try:
                values.append((namespace, attribute, make(instance)))
            except Exception as exc:
                report.notes.append(
                    f"{name}.{attribute} could not be made for an instance made before the "
                    f"edit ({type(exc).__name__}: {exc}): no instance was changed"
                )
                return
            lacking[attribute] = lacking.get(attribute, 0) + 1
    for namespace, attribute, value in values:
        namespace[attribute] = value
    for attribute, count in lacking.items():
        report.migrated.append(f"{name}.{attribute} on {_count(count)}")
    for attribute in unknown:
        count = sum(
            1
            for i in instances
            if isinstance(getattr(i, "__dict__", None), dict) and attribute not in i.__dict__
        )
        if count:
            why = change.state.unknown.get(attribute, "its value cannot be known")
            report.notes.append(
                f"{name}.{attribute} ({why}) was not filled on {_count(count)} made before "
                f"the edit; define {HOOK}(self, added, removed) to fill it"
            )
    for attribute in change.removed:
        count = sum(1 for i in instances if attribute in getattr(i, "__dict__", {}))
        if count:
            report.notes.append(
                f"{name}.{attribute} is no longer a field; {_count(count)} made before keep it"
            )


def _class_member(cls: type, name: str) -> bool:
    """``name`` is no instance state: a dunder, or a method or descriptor the class defines
    (found in the classes of its MRO without running any of their code)."""
    if name.startswith("__") and name.endswith("__"):
        return True
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return any("__get__" in k.__dict__ for k in type(klass.__dict__[name]).__mro__)
    return False


def _count(n: int) -> str:
    return f"{n} instance" + ("" if n == 1 else "s")
