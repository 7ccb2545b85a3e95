"""The program the fuzzer edits: a package of three modules (``base``, ``mid``, ``top``; each may
import from the ones before it), each an ordered list of top-level items that render to
source text.

The model knows which names each item needs *when the module runs* (decorators, defaults,
base classes, constant expressions, class bodies), so :func:`problems` can tell whether a
package still imports; the generator keeps only edits that leave it importable. Function
bodies run later and may name anything: a call to something deleted raises ``NameError`` in
the running program and after a restart alike.

Names carry a global rank (``f7``, ``m12``: rank 7, 12): a body of rank *r* only calls names
of lower rank, and ``super()`` only calls the method of the same name, so no call chain can
recurse whatever the edits do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "MODULES",
    "Attr",
    "Blank",
    "Cached",
    "CondFunc",
    "Const",
    "Deco",
    "Factory",
    "FromImport",
    "Func",
    "Header",
    "Item",
    "Klass",
    "Lam",
    "Load",
    "Made",
    "Method",
    "ModImport",
    "Module",
    "Package",
    "Param",
    "State",
    "problems",
    "rank",
]

MODULES = ("base", "mid", "top")
INDENT = "    "
INIT = ["def __init__(self, n=2):", INDENT + "self.n = n"]


def rank(name: str) -> int:
    """The number in a generated name (``f12`` -> 12); 0 for the fixed ones."""
    found = re.search(r"(\d+)$", name)
    return int(found.group(1)) if found else 0


@dataclass
class Load:
    """An expression evaluated when its statement runs: module-level names it reads, and
    (in a class body) class-level names."""

    text: str
    reads: tuple[str, ...] = ()
    class_reads: tuple[str, ...] = ()


@dataclass
class Param:
    name: str
    default: Load | None = None


class Item:
    """One top-level statement (or a run of comment and blank lines)."""

    name: str | None

    def render(self, package: str) -> list[str]:
        raise NotImplementedError

    def defines(self) -> list[str]:
        return [self.name] if self.name else []

    def loads(self) -> list[str]:
        return []


@dataclass
class Blank(Item):
    lines: list[str]
    name: str | None = field(default=None, init=False)

    def render(self, package: str) -> list[str]:
        return list(self.lines)


@dataclass
class Header(Item):
    name: str | None = field(default=None, init=False)

    def render(self, package: str) -> list[str]:
        return ["import enum", "import functools", "REG = []"]

    def defines(self) -> list[str]:
        return ["enum", "functools", "REG"]


@dataclass
class ModImport(Item):
    """``from pkg import a``: bodies read ``a.X`` when they run."""

    src: str
    name: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.name = self.src

    def render(self, package: str) -> list[str]:
        return [f"from {package} import {self.src}"]

    def defines(self) -> list[str]:
        return [self.src]


@dataclass
class FromImport(Item):
    src: str
    names: list[str]
    name: str | None = field(default=None, init=False)

    def render(self, package: str) -> list[str]:
        return [f"from {package}.{self.src} import {', '.join(self.names)}"]

    def defines(self) -> list[str]:
        return list(self.names)


@dataclass
class Const(Item):
    name: str
    value: Load

    def render(self, package: str) -> list[str]:
        return [f"{self.name} = {self.value.text}"]

    def loads(self) -> list[str]:
        return list(self.value.reads)


def _signature(params: list[Param], kwonly: list[Param], first: str | None) -> str:
    parts = [first] if first else []
    for p in params:
        parts.append(p.name if p.default is None else f"{p.name}={p.default.text}")
    if kwonly:
        parts.append("*")
        parts += [f"{p.name}={p.default.text if p.default else 0}" for p in kwonly]
    return ", ".join(parts)


def _default_reads(params: list[Param]) -> list[str]:
    return [r for p in params if p.default for r in p.default.reads]


@dataclass
class Func(Item):
    name: str
    params: list[Param]
    kwonly: list[Param]
    body: str
    decorators: list[str] = field(default_factory=list)
    doc: str | None = None

    def render(self, package: str) -> list[str]:
        lines = [f"@{d}" for d in self.decorators]
        lines.append(f"def {self.name}({_signature(self.params, self.kwonly, None)}):")
        if self.doc is not None:
            lines.append(f'{INDENT}"""{self.doc}"""')
        lines.append(f"{INDENT}return {self.body}")
        return lines

    def loads(self) -> list[str]:
        return [*self.decorators, *_default_reads(self.params + self.kwonly)]

    def required(self) -> int:
        return sum(1 for p in self.params if p.default is None)


@dataclass
class Factory(Item):
    """``make(k)`` returns a closure over ``k``; the inner body always reads ``k``, so every
    closure made before an edit has a cell for what the new inner code captures."""

    name: str
    body: str  # reads x and k

    def render(self, package: str) -> list[str]:
        return [
            f"def {self.name}(k):",
            f"{INDENT}def inner(x):",
            f"{INDENT * 2}return {self.body}",
            f"{INDENT}return inner",
        ]


@dataclass
class Deco(Item):
    name: str
    mul: int
    add: int

    def render(self, package: str) -> list[str]:
        return [
            f"def {self.name}(fn):",
            f"{INDENT}@functools.wraps(fn)",
            f"{INDENT}def wrapper(*args, **kwargs):",
            f"{INDENT * 2}return fn(*args, **kwargs) * {self.mul} + {self.add}",
            f"{INDENT}return wrapper",
        ]


@dataclass
class Cached(Item):
    """An ``lru_cache`` function whose result depends on its argument and literals only (see
    the package docstring: a cache is cleared when its own function changes, not when
    something it reads does)."""

    name: str
    body: str  # reads n

    def render(self, package: str) -> list[str]:
        return [
            "@functools.lru_cache(maxsize=None)",
            f"def {self.name}(n):",
            f"{INDENT}return {self.body}",
        ]


@dataclass
class Lam(Item):
    """``g = lambda a, b=X: ...``: re-run when changed; the function keeps its identity."""

    name: str
    params: list[Param]
    body: str

    def render(self, package: str) -> list[str]:
        return [f"{self.name} = lambda {_signature(self.params, [], None)}: {self.body}"]

    def loads(self) -> list[str]:
        return _default_reads(self.params)

    def required(self) -> int:
        return sum(1 for p in self.params if p.default is None)


@dataclass
class CondFunc(Item):
    """A function defined inside ``if X > n: ... else: ...``: a statement that is re-run
    when it or ``X`` changes."""

    name: str
    test: Load
    bodies: list[str]

    def render(self, package: str) -> list[str]:
        lines = [f"if {self.test.text}:"]
        for i, body in enumerate(self.bodies):
            if i:
                lines.append("else:")
            lines += [f"{INDENT}def {self.name}(a):", f"{INDENT * 2}return {body}"]
        return lines

    def loads(self) -> list[str]:
        return list(self.test.reads)

    def required(self) -> int:
        return 1


@dataclass
class Made(Item):
    """``v = make(3)`` or ``v = deco(f)``: a module-level call that makes a function out of
    definitions it names (re-run when they are redefined)."""

    name: str
    callee: str
    arg: str  # a literal for a factory, a function's name for a decorator

    def render(self, package: str) -> list[str]:
        return [f"{self.name} = {self.callee}({self.arg})"]

    def loads(self) -> list[str]:
        return [self.callee] + ([self.arg] if self.arg.isidentifier() else [])


@dataclass
class State(Item):
    """``OBJ = K()`` and ``REG.append(f)``: an object made and a function registered when the
    module is imported, which no reload may do again (the program's state). Never edited,
    moved or deleted by the editor: its text stays, so the object must stay the same object
    and the registry must hold one entry per registration."""

    name: str
    klass: str
    func: str

    def render(self, package: str) -> list[str]:
        return [f"{self.name} = {self.klass}()", f"REG.append({self.func})"]

    def loads(self) -> list[str]:
        return [self.klass, self.func]


@dataclass
class Attr:
    name: str
    value: Load

    def render(self) -> list[str]:
        return [f"{self.name} = {self.value.text}"]


@dataclass
class Method:
    """kind: ``method``, ``property``, ``static``, ``classmethod``, ``init`` (the fixed
    ``__init__``: instances made before an edit hold what it stored, so it never changes),
    or a dunder (``__len__``, ``__repr__``, ``__add__``)."""

    name: str
    kind: str
    params: list[Param] = field(default_factory=list)
    body: str = "0"

    def render(self) -> list[str]:
        if self.kind == "init":
            return list(INIT)
        first = {"static": None, "classmethod": "cls"}.get(self.kind, "self")
        head = {"property": "@property", "static": "@staticmethod", "classmethod": "@classmethod"}
        lines = [head[self.kind]] if self.kind in head else []
        lines.append(f"def {self.name}({_signature(self.params, [], first)}):")
        if self.name == "__len__":
            lines.append(f"{INDENT}return abs({self.body})")
        elif self.name == "__repr__":
            lines.append(f'{INDENT}return f"<{{type(self).__name__}} {{self.n}} {{{self.body}}}>"')
        else:
            lines.append(f"{INDENT}return {self.body}")
        return lines


@dataclass
class Klass(Item):
    """kind ``plain`` (fixed ``__init__``), ``enum`` (members are ``Attr`` with literal
    values) or ``slots`` (``__slots__`` in ``slots``)."""

    name: str
    bases: list[str]
    members: list[Attr | Method | Blank]
    kind: str = "plain"
    slots: list[str] = field(default_factory=list)
    #: Members deleted from the class, by name, so that an edit can bring one back.
    gone: dict[str, Attr | Method] = field(default_factory=dict)

    def render(self, package: str) -> list[str]:
        bases = list(self.bases) + (["enum.Enum"] if self.kind == "enum" else [])
        lines = [f"class {self.name}({', '.join(bases)}):" if bases else f"class {self.name}:"]
        body: list[str] = []
        if self.kind == "slots":
            body.append(f"__slots__ = ({''.join(repr(s) + ', ' for s in self.slots)})")
        for member in self.members:
            body += member.render() if not isinstance(member, Blank) else member.lines
        if not any(line.strip() and not line.strip().startswith("#") for line in body):
            body.append("pass")
        return lines + [INDENT + line if line else "" for line in body]

    def loads(self) -> list[str]:
        reads = [*self.bases, *(["enum"] if self.kind == "enum" else [])]
        for member in self.members:
            if isinstance(member, Attr):
                reads += member.value.reads
            elif isinstance(member, Method):
                reads += _default_reads(member.params)
        return reads

    def member(self, name: str) -> Attr | Method | None:
        for m in self.members:
            if isinstance(m, (Attr, Method)) and m.name == name:
                return m
        return None

    def methods(self, *kinds: str) -> list[Method]:
        return [m for m in self.members if isinstance(m, Method) and (not kinds or m.kind in kinds)]

    def attrs(self) -> list[Attr]:
        return [m for m in self.members if isinstance(m, Attr)]


@dataclass
class Module:
    name: str
    items: list[Item]
    #: Definitions deleted from this module, by name, so that an edit can bring one back.
    graveyard: dict[str, Item] = field(default_factory=dict)
    doc: str | None = None

    def render(self, package: str) -> str:
        lines = [f'"""{self.doc}"""'] if self.doc is not None else []
        for item in self.items:
            lines += item.render(package)
        return "\n".join(lines) + "\n"

    def find(self, name: str) -> Item | None:
        for item in self.items:
            if item.name == name:
                return item
        return None

    def defined(self) -> list[str]:
        return [n for item in self.items for n in item.defines()]


@dataclass
class Package:
    name: str
    modules: dict[str, Module]
    counter: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def render(self) -> dict[str, str]:
        return {m: self.modules[m].render(self.name) for m in MODULES}

    def resolve(self, module: str, name: str) -> tuple[str, Item] | None:
        """The definition ``name`` stands for in ``module``: its own, or the one a
        ``from ... import`` there brings in."""
        mod = self.modules[module]
        for item in mod.items:
            if isinstance(item, FromImport) and name in item.names:
                return self.resolve(item.src, name)
            if item.name == name and not isinstance(item, FromImport):
                return module, item
        return None

    def visible(self, module: str) -> dict[str, Item]:
        """Every name a body in ``module`` can call or read, with its definition."""
        found: dict[str, Item] = {}
        for item in self.modules[module].items:
            for name in item.defines():
                target = self.resolve(module, name)
                if target is not None:
                    found[name] = target[1]
        return found

    def class_mro(self, module: str, name: str, _stack: tuple[int, ...] = ()) -> list[Klass] | None:
        """C3 linearisation of a model class (None if CPython would refuse the bases)."""
        target = self.resolve(module, name)
        if target is None or not isinstance(target[1], Klass) or id(target[1]) in _stack:
            return None
        where, klass = target
        if klass.kind != "plain" and klass.bases:
            return None
        seqs: list[list[Klass]] = []
        for base in klass.bases:
            base_mro = self.class_mro(where, base, (*_stack, id(klass)))
            if base_mro is None or base_mro[0].kind != "plain":
                return None
            seqs.append(base_mro)
        bases = []
        for base in klass.bases:
            resolved = self.resolve(where, base)
            assert resolved is not None
            bases.append(resolved[1])
        if len({id(b) for b in bases}) != len(bases):
            return None
        seqs.append([b for b in bases if isinstance(b, Klass)])
        result: list[Klass] = [klass]
        seqs = [list(s) for s in seqs if s]
        while seqs:
            for seq in seqs:
                head = seq[0]
                if not any(head is s for other in seqs for s in other[1:]):
                    break
            else:
                return None
            result.append(head)
            seqs = [[s for s in seq if s is not head] for seq in seqs]
            seqs = [s for s in seqs if s]
        return result


#: What ``deco(f)`` may decorate.
CALLABLES = (Func, Lam, CondFunc)


def problems(package: Package) -> list[str]:
    """Why the package would not import (empty if it would)."""
    found = []
    for module_name in MODULES:
        module = package.modules[module_name]
        defined: set[str] = set()
        earlier = MODULES[: MODULES.index(module_name)]
        for item in module.items:
            for name in item.loads():
                if name not in defined:
                    found.append(f"{module_name}: {item.name} needs {name} first")
            if isinstance(item, (FromImport, ModImport)) and item.src not in earlier:
                found.append(f"{module_name}: imports from {item.src}, not an earlier module")
            if isinstance(item, FromImport):
                source = package.modules[item.src].defined()
                for name in item.names:
                    if name not in source or name in ("enum", "functools"):
                        found.append(f"{module_name}: {item.src} has no {name} to import")
                    elif isinstance(package.modules[item.src].find(name), ModImport):
                        found.append(f"{module_name}: {name} is a module")
            if isinstance(item, Made):
                callee = package.resolve(module_name, item.callee)
                kind = Deco if item.arg.isidentifier() else Factory
                if callee is None or not isinstance(callee[1], kind):
                    found.append(f"{module_name}: {item.callee} is not a {kind.__name__}")
                target = package.resolve(module_name, item.arg) if kind is Deco else None
                if kind is Deco and (target is None or not isinstance(target[1], CALLABLES)):
                    found.append(f"{module_name}: {item.arg} is not a function")
            if isinstance(item, Func):
                for deco in item.decorators:
                    target = package.resolve(module_name, deco)
                    if target is None or not isinstance(target[1], Deco):
                        found.append(f"{module_name}: {deco} is not a decorator")
            if isinstance(item, Klass):
                if package.class_mro(module_name, item.name) is None:
                    found.append(f"{module_name}: bases of {item.name} refused")
                seen: set[str] = set()
                for member in item.members:
                    if isinstance(member, Attr):
                        for read in member.value.class_reads:
                            if read not in seen:
                                found.append(f"{module_name}.{item.name}: {read} first")
                    if isinstance(member, Method):
                        for p in member.params:
                            for read in p.default.class_reads if p.default else ():
                                if read not in seen:
                                    found.append(f"{module_name}.{item.name}: {read} first")
                    if isinstance(member, (Attr, Method)):
                        if member.name in seen and member.name != "__init__":
                            found.append(f"{module_name}.{item.name}: {member.name} twice")
                        seen.add(member.name)
            for name in item.defines():
                if name in defined:
                    found.append(f"{module_name}: {name} defined twice")
                defined.add(name)
    return found
