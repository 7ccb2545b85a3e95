"""The probe: run the same way in the program being reloaded and in a fresh interpreter that
imports the current files, so that the two results can be compared key by key.

Standalone (standard library only): both processes load this file by its path.

:func:`capture` takes references to everything the package defines: each module-level
function and class (``H mod.name``), each class member as stored in the class
(``H mod.Class.member``), an instance of each class (``I mod.Class``), a bound method of that
instance for each method (``B mod.Class.method``) and a closure from each factory
(``K mod.make``). The running program captures them once, before the first edit; the fresh
interpreter captures them from the current files, which is what a restart would give.

:func:`run` then evaluates every definition that exists now through the module attributes
(values, metadata, line numbers, source, calls with arguments made from the signature,
instances made now), and through the captured references: each must still *be* the current
definition (identity), and instances, bound methods and closures made before the edit must
behave like ones made now. Results are strings (``!Error: message @file:line`` for an
exception), without memory addresses, so they compare across processes.
"""

from __future__ import annotations

import ast
import enum
import inspect
import os
import re
import types
from collections.abc import Callable
from typing import Any

__all__ = ["capture", "run", "show"]

ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
DUNDERS = ("__init__", "__len__", "__repr__", "__add__")


def show(value: Any, depth: int = 0) -> str:
    """A repr that is the same in two processes."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"<{type(value).__qualname__}.{value.name}: {value.value!r}>"
    if isinstance(value, (list, tuple)) and depth < 4:
        inner = ", ".join(show(v, depth + 1) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict) and depth < 4:
        return "{" + ", ".join(f"{show(k)}: {show(v, depth + 1)}" for k, v in value.items()) + "}"
    if isinstance(value, type):
        return f"<class {value.__module__}.{value.__qualname__}>"
    if isinstance(value, types.FunctionType):
        return f"<function {value.__module__}.{value.__qualname__}>"
    if isinstance(value, types.MethodType):
        return f"<bound {show(value.__func__)} of {type(value.__self__).__qualname__}>"
    if isinstance(value, (staticmethod, classmethod)):
        return f"<{type(value).__name__} {show(value.__func__)}>"
    if isinstance(value, property):
        return f"<property {show(value.fget)}>"
    if isinstance(value, types.ModuleType):
        return f"<module {value.__name__}>"
    if hasattr(value, "__wrapped__"):
        return f"<{type(value).__name__} of {show(value.__wrapped__)}>"
    if type(value).__repr__ is object.__repr__:
        return f"<{type(value).__qualname__} instance>"
    return ADDRESS.sub("", repr(value))


def outcome(call: Callable[[], Any], root: str) -> str:
    """``show`` of what ``call()`` returns, or the exception it raises and the innermost line
    of the package that was running."""
    return attempt(call, root)[0]


def attempt(call: Callable[[], Any], root: str) -> tuple[str, Any]:
    """(what :func:`outcome` says, the value returned or None)."""
    try:
        value = call()
    except Exception as exc:
        where = ""
        for frame, line in reversed(list(_walk(exc.__traceback__))):
            if frame.f_code.co_filename.startswith(root):
                where = f" @{os.path.basename(frame.f_code.co_filename)}:{line}"
                break
        return f"!{type(exc).__name__}: {ADDRESS.sub('', str(exc))}{where}", None
    return show(value), value


def _walk(tb: types.TracebackType | None):
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


def public(obj: Any) -> list[str]:
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def names(module: types.ModuleType) -> list[str]:
    return sorted(
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    )


def members(cls: type) -> list[str]:
    """The class's own members (public ones and the dunders the fuzzer writes), with kinds."""
    return sorted(
        f"{n}:{type(v).__name__}"
        for n, v in vars(cls).items()
        if not n.startswith("_") or n in DUNDERS or n == "__slots__"
    )


def _chain(obj: Any) -> list[Any]:
    chain = []
    for _ in range(8):
        chain.append(obj)
        if isinstance(obj, (types.MethodType, staticmethod, classmethod)):
            obj = obj.__func__
        elif isinstance(obj, property):
            obj = obj.fget
        elif getattr(obj, "__wrapped__", None) is not None:
            obj = obj.__wrapped__
        else:
            break
    return chain


def meta(obj: Any, root: str, *, copies_kept: bool = False) -> str:
    """Names, docs, defaults, line numbers and source of a callable and of what it wraps.
    ``copies_kept``: ``obj`` was made by a module-level call (``v = deco(f)``), which a
    reload does not make again when ``f`` is patched in place: the names and docstring its
    wrappers copied from ``f`` then (``functools.wraps``) are kept, by design, and not shown."""
    parts: list[Any] = []
    chain = _chain(obj)
    for depth, item in enumerate(chain):
        if isinstance(item, types.FunctionType):
            code = item.__code__
            copied = copies_kept and depth < len(chain) - 1
            parts.append(
                (
                    "-" if copied else item.__name__,
                    "-" if copied else item.__qualname__,
                    item.__module__,
                    "-" if copied else item.__doc__,
                    item.__defaults__,
                    item.__kwdefaults__,
                    code.co_name,
                    code.co_firstlineno,
                    outcome(lambda item=item: inspect.getsource(item), root),
                )
            )
        else:
            parts.append((type(item).__name__, getattr(item, "__qualname__", None)))
    parts.append(outcome(lambda: str(inspect.signature(obj)), root))
    return show(parts)


def variants(obj: Any) -> list[tuple[tuple[int, ...], dict[str, int]]]:
    """Arguments for calls: the required positional ones; then every positional one and
    every keyword-only one."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return [((), {})]
    required = optional = 0
    keywords = []
    for p in signature.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            if p.default is p.empty:
                required += 1
            else:
                optional += 1
        elif p.kind is p.KEYWORD_ONLY:
            keywords.append(p.name)
    first: tuple[tuple[int, ...], dict[str, int]] = (tuple(range(1, required + 1)), {})
    second = (tuple(range(1, required + optional + 1)), {k: 7 for k in keywords})
    return [first] if second == first else [first, second]


def _label(args: tuple[int, ...], kwargs: dict[str, int]) -> str:
    return "(" + ", ".join([*map(str, args), *(f"{k}={v}" for k, v in kwargs.items())]) + ")"


def probe_callable(label: str, obj: Any, out: dict[str, str], root: str, depth: int = 0) -> None:
    for args, kwargs in variants(obj):
        key = label + _label(args, kwargs)
        out[key], value = attempt(lambda a=args, k=kwargs: obj(*a, **k), root)
        if isinstance(value, types.FunctionType) and depth == 0:
            out[key + " meta"] = meta(value, root)
            probe_callable(key, value, out, root, depth + 1)


def make_instance(cls: type) -> Any:
    try:
        if isinstance(cls, enum.EnumMeta):
            return next(iter(cls))
        return cls()
    except Exception:
        return None


def probe_instance(label: str, inst: Any, out: dict[str, str], root: str) -> None:
    out[label + " type"] = show(type(inst))
    for name in public(inst):
        try:
            value = getattr(inst, name)
        except Exception:
            out[f"{label}.{name}"] = outcome(lambda name=name: getattr(inst, name), root)
            continue
        if callable(value) and not isinstance(value, type):
            probe_callable(f"{label}.{name}", value, out, root)
        else:
            out[f"{label}.{name}"] = show(value)
    out[label + " len"] = outcome(lambda: len(inst), root)
    out[label + " repr"] = outcome(lambda: show(inst), root)
    out[label + " + 1"] = outcome(lambda: inst + 1, root)


def probe_class(label: str, cls: type, out: dict[str, str], root: str) -> None:
    out[label + " meta"] = show(
        (
            cls.__qualname__,
            cls.__module__,
            cls.__doc__,
            [c.__qualname__ for c in cls.__mro__],
            members(cls),
            getattr(cls, "__firstlineno__", None),
            outcome(lambda: inspect.getsource(cls), root),
        )
    )
    for name, raw in sorted(vars(cls).items()):
        if name.startswith("_") and name not in DUNDERS:
            continue
        if isinstance(raw, (types.FunctionType, staticmethod, classmethod, property)):
            out[f"{label}.{name} meta"] = meta(raw, root)
        elif not callable(raw) and not isinstance(raw, enum.Enum):
            out[f"{label}.{name}"] = show(raw)
        if isinstance(raw, (staticmethod, classmethod)):
            probe_callable(f"{label}.{name}", getattr(cls, name), out, root)
    if isinstance(cls, enum.EnumMeta):
        out[label + " members"] = show([(m.name, m.value) for m in cls])
    inst = make_instance(cls)
    if inst is not None:
        probe_instance(label + "()", inst, out, root)


def capture(modules: dict[str, types.ModuleType]) -> dict[str, Any]:
    """References to every definition of the package, as a program would hold them."""
    refs: dict[str, Any] = {}
    for short, module in modules.items():
        # The program's state made at import: no reload may make it again.
        if isinstance(vars(module).get("REG"), list):
            refs[f"S {short}.REG"] = (module.REG, tuple(module.REG))
        for name, value in vars(module).items():
            if name.startswith("OBJ"):
                refs[f"S {short}.{name}"] = value
        for name, value in sorted(vars(module).items()):
            if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            dotted = f"{short}.{name}"
            if isinstance(value, type):
                refs[f"H {dotted}"] = value
                inst = make_instance(value)
                if inst is not None:
                    refs[f"I {dotted}"] = inst
                for member, raw in vars(value).items():
                    if member.startswith("_") and member not in DUNDERS:
                        continue
                    if isinstance(raw, (types.FunctionType, staticmethod, classmethod, property)):
                        refs[f"H {dotted}.{member}"] = raw
                    # (never __init__: calling it again would change the instance)
                    if (
                        isinstance(raw, types.FunctionType)
                        and inst is not None
                        and member != "__init__"
                    ):
                        refs[f"B {dotted}.{member}"] = getattr(inst, member)
            elif callable(value):
                refs[f"H {dotted}"] = value
                try:
                    made = value(3)
                except Exception:
                    continue
                if isinstance(made, types.FunctionType):
                    refs[f"K {dotted}"] = made
    return refs


def made_by_calls(module: types.ModuleType) -> set[str]:
    """Names the module assigns the result of a call to (``v = deco(f)``, ``h = make(3)``):
    when such a statement runs again it makes a new object, and references taken before keep
    the old one (documented), so those are not compared."""
    try:
        with open(module.__file__ or "", encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return set()
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _state(ref: Any, current: Any) -> str:
    """How state made at import fares: the registry the same list with the same entries, an
    object the same object (in a restart, trivially so: the two sides must agree)."""
    if isinstance(ref, tuple):
        registry, entries = ref
        if current is not registry:
            return "REG made again"
        same = len(current) == len(entries) and all(
            a is b for a, b in zip(current, entries, strict=True)
        )
        return f"REG kept, {len(current)} entries" + ("" if same else ", entries changed")
    return "same object" if current is ref else "MADE AGAIN"


def _current(modules: dict[str, types.ModuleType], dotted: str) -> Any:
    short, _, rest = dotted.partition(".")
    name, _, member = rest.partition(".")
    value = vars(modules[short]).get(name)
    if member:
        return vars(value).get(member) if isinstance(value, type) else None
    return value


def run(modules: dict[str, types.ModuleType], refs: dict[str, Any], root: str) -> dict[str, str]:
    """Every result, by key."""
    out: dict[str, str] = {}
    # what module-level calls made, and the copies of it that other modules imported
    made_ids = {id(vars(m)[n]) for m in modules.values() for n in made_by_calls(m) if n in vars(m)}
    for short, module in modules.items():
        out[f"{short}: names"] = show(names(module))
        out[f"{short}: doc"] = show(module.__doc__)
        for name in names(module):
            value = getattr(module, name)
            label = f"{short}.{name}"
            out[label] = outcome(lambda value=value: show(value), root)  # a __repr__ may fail
            if isinstance(value, type):
                if value.__module__ == module.__name__:
                    probe_class(label, value, out, root)
            elif callable(value):
                out[label + " meta"] = meta(value, root, copies_kept=id(value) in made_ids)
                probe_callable(label, value, out, root)
    made = {f"{short}.{name}" for short, m in modules.items() for name in made_by_calls(m)}
    for key, ref in refs.items():
        kind, dotted = key.split(" ", 1)
        if dotted in made:
            continue
        current = _current(modules, dotted)
        if kind == "S":
            out[key] = _state(ref, current)
            continue
        if kind == "H":
            out[key + " is current"] = show(ref is current)
        elif kind == "I":
            if isinstance(ref, enum.Enum) and isinstance(current, enum.EnumMeta):
                if make_instance(current) is not ref:
                    # The restart's reference is another member: this one was removed since
                    # (references keep it, as documented) or is no longer the first. The
                    # members themselves are compared by the class's probe.
                    continue
            out[key + " class is current"] = show(type(ref) is current)
            probe_instance(key, ref, out, root)
        elif kind == "B":
            owner = getattr(ref, "__self__", None)
            if isinstance(owner, enum.Enum):
                enum_class = _current(modules, dotted.rpartition(".")[0])
                if isinstance(enum_class, enum.EnumMeta) and make_instance(enum_class) is not owner:
                    # (a method bound to a member the restart does not hold first: see "I")
                    continue
            out[key + " function is current"] = show(ref.__func__ is current)
            probe_callable(key, ref, out, root)
        elif kind == "K":
            out[key + " meta"] = meta(ref, root)
            probe_callable(key, ref, out, root)
    return out
