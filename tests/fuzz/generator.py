"""Random but valid packages and edit sequences, reproducible from a seed.

:func:`initial` builds a package: module constants and derived constants, functions with
defaults and keyword-only arguments (some decorated by a ``functools.wraps`` decorator of
the package, some with docstrings), closure factories, ``lru_cache`` functions, classes with
methods, properties, static and class methods, dunders and class attributes, subclasses
across modules whose methods chain through ``super()``, ``from m import X`` copies and
``from pkg import m`` attribute reads, now and then an enum or a ``__slots__`` class.

:meth:`Editor.edit` makes one save: one to three changes (to one or several files), each
drawn from :data:`OPERATIONS`: bodies, defaults, signatures, decorators, docstrings,
constants, class attributes, bases, members added, deleted and moved, definitions added,
deleted, brought back and moved, comments and blank lines inserted, imports added and
removed, enum members added and removed, and ``__slots__`` changed (which needs a restart).

What the generated programs avoid, because the reloader documents a difference from a
restart there (see ``fuzz/__init__.py``): state made by mutation, module-level calls whose
result depends on other definitions, ``lru_cache`` functions that read anything but their
argument, an ``lru_cache`` decorator added to or removed from a function, an ``__init__``
that changes, a factory's inner function that stops capturing ``k``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence

from .model import (
    CALLABLES,
    MODULES,
    Attr,
    Blank,
    Cached,
    CondFunc,
    Const,
    Deco,
    Factory,
    FromImport,
    Func,
    Header,
    Item,
    Klass,
    Lam,
    Load,
    Made,
    Method,
    ModImport,
    Module,
    Package,
    Param,
    State,
    problems,
    rank,
)

__all__ = ["OPERATIONS", "Editor", "initial"]

DUNDERS = ("__len__", "__repr__", "__add__")
COMMENTS = ("# a comment", "# TODO: tidy", "#", "# ---")
DEFINITIONS = (Const, Func, Factory, Deco, Cached, Klass, Lam, CondFunc, Made)


class Gen:
    """Expressions and definitions for one package."""

    def __init__(self, rng: random.Random, package: Package):
        self.rng = rng
        self.pkg = package

    # --- load-time expressions -----------------------------------------------------------

    def names_before(self, module: str, index: int) -> dict[str, Item]:
        """Names defined by the first ``index`` items of ``module``, with their definitions."""
        found: dict[str, Item] = {}
        for item in self.pkg.modules[module].items[:index]:
            for name in item.defines():
                target = self.pkg.resolve(module, name)
                if target is not None:
                    found[name] = target[1]
        return found

    def consts_before(self, module: str, index: int) -> list[str]:
        return [n for n, i in self.names_before(module, index).items() if isinstance(i, Const)]

    def load(self, consts: Sequence[str], class_names: Sequence[str] = ()) -> Load:
        """A literal, or small arithmetic over names that exist when it runs."""
        rng = self.rng
        pool = [(n, False) for n in consts] + [(n, True) for n in class_names]
        if not pool or rng.random() < 0.4:
            return Load(str(rng.randint(0, 9)))
        picked = rng.sample(pool, k=min(len(pool), rng.randint(1, 2)))
        text = " + ".join(
            f"{n} * {rng.randint(1, 3)}" if rng.random() < 0.5 else n for n, _ in picked
        )
        if rng.random() < 0.5:
            text += f" + {rng.randint(1, 9)}"
        reads = tuple(n for n, c in picked if not c)
        class_reads = tuple(n for n, c in picked if c)
        return Load(text, reads, class_reads)

    # --- bodies (run at call time: anything visible, lower rank only) ---------------------

    def args(self, count: int, params: list[str]) -> str:
        pool = list(params) or ["1"]
        return ", ".join(
            self.rng.choice([*pool, str(self.rng.randint(1, 5))]) for _ in range(count)
        )

    def terms(self, module: str, limit: int, params: list[str]) -> list[str]:
        rng = self.rng
        terms = [str(rng.randint(1, 9))]
        terms += params
        for name, item in self.pkg.visible(module).items():
            if isinstance(item, Const):
                terms.append(name)
            elif isinstance(item, ModImport):
                mod = self.pkg.modules[item.src]
                terms += [f"{name}.{i.name}" for i in mod.items if isinstance(i, Const)]
                terms += [
                    f"{name}.{i.name}({self.args(i.required(), params)})"
                    for i in mod.items
                    if isinstance(i, Func) and rank(i.name) < limit
                ]
            elif rank(name) >= limit:
                continue
            elif isinstance(item, CALLABLES):
                terms.append(f"{name}({self.args(item.required(), params)})")
            elif isinstance(item, Made):
                made = self.made_arity(module, item)
                if made is not None:
                    terms.append(f"{name}({self.args(made, params)})")
            elif isinstance(item, Cached):
                terms.append(f"{name}({self.args(1, params)})")
            elif isinstance(item, Factory):
                terms.append(f"{name}({rng.randint(1, 4)})({self.args(1, params)})")
            elif isinstance(item, Klass):
                terms += self.class_terms(name, item, limit, params)
        return terms

    def made_arity(self, module: str, item: Made) -> int | None:
        """How many arguments the function a ``Made`` statement made takes."""
        if not item.arg.isidentifier():
            return 1  # a factory's closure
        target = self.pkg.resolve(module, item.arg)
        return target[1].required() if target and isinstance(target[1], CALLABLES) else None

    def class_terms(self, name: str, klass: Klass, limit: int, params: list[str]) -> list[str]:
        rng = self.rng
        found = []
        if klass.kind == "enum":
            members = klass.attrs()
            if members:
                found.append(f"{name}.{rng.choice(members).name}.value")
                for m in klass.methods("method"):
                    if rank(m.name) < limit:
                        found.append(f"{name}.{members[0].name}.{m.name}()")
            return found
        instance = f"{name}({rng.randint(1, 4)})"
        for m in klass.members:
            if not isinstance(m, (Attr, Method)) or (rank(m.name) >= limit and rank(m.name)):
                continue
            if isinstance(m, Attr):
                found.append(f"{name}.{m.name}")
            elif m.kind == "method":
                found.append(f"{instance}.{m.name}({self.args(_required(m), params)})")
            elif m.kind == "property":
                found.append(f"{instance}.{m.name}")
            elif m.kind == "static":
                found.append(f"{name}.{m.name}({self.args(_required(m), params)})")
            elif m.kind == "classmethod":
                found.append(f"{name}.{m.name}({self.args(_required(m), params)})")
        return found

    def method_terms(
        self, module: str, klass: Klass, method: Method, params: list[str]
    ) -> list[str]:
        limit = rank(method.name) or 10**9
        mro = self.pkg.class_mro(module, klass.name) or [klass]
        found = []
        if klass.kind == "enum":
            return ["self.value"]
        if method.kind in ("method", "property", "dunder"):
            found.append("self.n")
            prefix = "self"
        elif method.kind == "classmethod":
            prefix = "cls"
        else:
            return found
        for owner in mro:
            for m in owner.members:
                if isinstance(m, Attr):
                    found.append(f"{prefix}.{m.name}")
                elif isinstance(m, Method) and rank(m.name) and rank(m.name) < limit:
                    if prefix == "self" and m.kind in ("method", "classmethod"):
                        found.append(f"self.{m.name}({self.args(_required(m), params)})")
                    elif prefix == "self" and m.kind == "property":
                        found.append(f"self.{m.name}")
                    elif prefix == "cls" and m.kind == "classmethod":
                        found.append(f"cls.{m.name}({self.args(_required(m), params)})")
        if method.kind in ("method", "property") and any(
            owner.member(method.name) for owner in mro[1:]
        ):
            call = "" if method.kind == "property" else f"({self.args(_required(method), params)})"
            found += [f"super().{method.name}{call}"] * 3
        return found

    def expr(self, terms: list[str]) -> str:
        rng = self.rng
        picked = [rng.choice(terms) for _ in range(rng.randint(1, 3))]
        text = picked[0] if rng.random() < 0.7 else f"{picked[0]} * {rng.randint(2, 3)}"
        for term in picked[1:]:
            text += f" {rng.choice('+-')} {term}"
        return text

    def func_body(self, module: str, func: Func) -> str:
        params = [p.name for p in func.params + func.kwonly]
        return self.expr(self.terms(module, rank(func.name), params))

    def method_body(self, module: str, klass: Klass, method: Method) -> str:
        params = [p.name for p in method.params]
        limit = rank(method.name) or 10**9
        terms = self.terms(module, limit, params) + self.method_terms(module, klass, method, params)
        return self.expr(terms)

    # --- definitions ---------------------------------------------------------------------

    def params(self, consts: Sequence[str], class_names: Sequence[str] = ()) -> list[Param]:
        rng = self.rng
        params = [Param("a")] if rng.random() < 0.8 else []
        if rng.random() < 0.6:
            params.append(Param("b", self.load(consts, class_names)))
        return params

    def func(self, module: str, index: int) -> Func:
        rng = self.rng
        consts = self.consts_before(module, index)
        decos = [n for n, i in self.names_before(module, index).items() if isinstance(i, Deco)]
        func = Func(
            self.pkg.fresh("f"),
            self.params(consts),
            [Param("k", self.load(consts))] if rng.random() < 0.4 else [],
            "0",
            [rng.choice(decos)] if decos and rng.random() < 0.3 else [],
            rng.choice(["Docstring.", "Does things."]) if rng.random() < 0.2 else None,
        )
        func.body = self.func_body(module, func)
        return func

    def factory(self, module: str) -> Factory:
        factory = Factory(self.pkg.fresh("make"), "k")
        factory.body = self.factory_body(module, factory)
        return factory

    def factory_body(self, module: str, factory: Factory) -> str:
        terms = self.terms(module, rank(factory.name), ["x"])
        return f"{self.expr(terms)} + k * {self.rng.randint(1, 3)}"

    def cached_body(self) -> str:
        rng = self.rng
        return f"n * {rng.randint(1, 5)} + {rng.randint(0, 9)}"

    def method(self, module: str, klass: Klass, kind: str, index: int) -> Method:
        consts = self.consts_before(module, self._position(module, klass))
        class_names = [m.name for m in klass.members[:index] if isinstance(m, Attr)]
        if kind in DUNDERS:
            method = Method(kind, "dunder", [Param("other")] if kind == "__add__" else [])
        else:
            prefix = {"method": "m", "property": "p", "static": "s", "classmethod": "k"}[kind]
            params = [] if kind == "property" else self.params(consts, class_names)
            method = Method(self.pkg.fresh(prefix), kind, params)
        method.body = self.method_body(module, klass, method)
        return method

    def klass(self, module: str, index: int, kind: str = "plain") -> Klass:
        rng = self.rng
        prefix = {"plain": "K", "enum": "E", "slots": "S"}[kind]
        klass = Klass(self.pkg.fresh(prefix), [], [], kind)
        if kind == "plain":
            classes = [
                n
                for n, i in self.names_before(module, index).items()
                if isinstance(i, Klass) and i.kind == "plain"
            ]
            if classes and rng.random() < 0.7:
                klass.bases = [rng.choice(classes)]
            if not klass.bases:
                klass.members.append(Method("__init__", "init"))
        elif kind == "slots":
            klass.slots = ["n"]
            klass.members.append(Method("__init__", "init"))
        # placed now so that method bodies can see the class itself
        self.pkg.modules[module].items.insert(index, klass)
        try:
            if kind == "enum":
                values = rng.sample(range(1, 20), 2)
                klass.members += [
                    Attr("RED", Load(str(values[0]))),
                    Attr("BLUE", Load(str(values[1]))),
                ]
                klass.members.append(self.method(module, klass, "method", len(klass.members)))
                return klass
            consts = self.consts_before(module, index)
            for _ in range(rng.randint(0, 2)):
                names = [m.name for m in klass.attrs()]
                klass.members.append(Attr(self.pkg.fresh("a"), self.load(consts, names)))
            kinds = ["method", "method", "property", "static", "classmethod", *DUNDERS]
            inherited = self._inherited_methods(module, klass)
            for _ in range(rng.randint(1, 4)):
                if inherited and rng.random() < 0.5:
                    base_method = rng.choice(inherited)
                    if klass.member(base_method.name) is None:
                        m = self.override(module, klass, base_method, len(klass.members))
                        m.body = self.method_body(module, klass, m)
                        klass.members.append(m)
                    continue
                kind_ = rng.choice(kinds)
                if kind_ in DUNDERS and klass.member(kind_) is not None:
                    continue
                klass.members.append(self.method(module, klass, kind_, len(klass.members)))
            return klass
        finally:
            self.pkg.modules[module].items.remove(klass)

    def override(self, module: str, klass: Klass, base: Method, index: int) -> Method:
        """A method of the same name and kind as an inherited one (its parameters made anew:
        the base's defaults may read names this class cannot see)."""
        if base.kind == "property":
            return Method(base.name, base.kind)
        consts = self.consts_before(module, self._position(module, klass))
        class_names = [m.name for m in klass.members[:index] if isinstance(m, Attr)]
        return Method(base.name, base.kind, self.params(consts, class_names))

    def _inherited_methods(self, module: str, klass: Klass) -> list[Method]:
        mro = self.pkg.class_mro(module, klass.name) if klass.bases else None
        if not mro:
            return []
        return [m for owner in mro[1:] for m in owner.methods("method", "property")]

    def _position(self, module: str, item: Item) -> int:
        items = self.pkg.modules[module].items
        for i, it in enumerate(items):
            if it is item:
                return i
        return len(items)

    def lam(self, module: str, index: int) -> Lam:
        lam = Lam(self.pkg.fresh("g"), self.params(self.consts_before(module, index)), "0")
        lam.body = self.lam_body(module, lam)
        return lam

    def lam_body(self, module: str, lam: Lam) -> str:
        return self.expr(self.terms(module, rank(lam.name), [p.name for p in lam.params]))

    def cond_test(self, module: str, index: int) -> Load:
        consts = self.consts_before(module, index)
        if not consts:
            return Load(self.rng.choice(["True", "False"]))
        name = self.rng.choice(consts)
        return Load(f"{name} > {self.rng.randint(0, 12)}", (name,))

    def cond(self, module: str, index: int) -> CondFunc:
        cond = CondFunc(self.pkg.fresh("h"), self.cond_test(module, index), [])
        cond.bodies = [self.cond_body(module, cond) for _ in range(2)]
        return cond

    def cond_body(self, module: str, cond: CondFunc) -> str:
        return self.expr(self.terms(module, rank(cond.name), ["a"]))

    def made(self, module: str, index: int) -> Made | None:
        names = self.names_before(module, index)
        factories = [n for n, i in names.items() if isinstance(i, Factory)]
        decos = [n for n, i in names.items() if isinstance(i, Deco)]
        functions = [n for n, i in names.items() if isinstance(i, CALLABLES)]
        if decos and functions and self.rng.random() < 0.5:
            return Made(self.pkg.fresh("v"), self.rng.choice(decos), self.rng.choice(functions))
        if factories:
            return Made(
                self.pkg.fresh("v"), self.rng.choice(factories), str(self.rng.randint(1, 5))
            )
        return None

    def definition(self, module: str, index: int) -> Item | None:
        rng = self.rng
        kinds = ["const", "func", "factory", "deco", "cached", "class", "enum", "slots"]
        kinds += ["lambda", "cond", "made"]
        kind = rng.choices(kinds, [4, 5, 2, 1, 1, 2, 0.3, 0.3, 1.5, 1, 1.5])[0]
        if kind == "lambda":
            return self.lam(module, index)
        if kind == "cond":
            return self.cond(module, index)
        if kind == "made":
            return self.made(module, index)
        if kind == "const":
            return Const(self.pkg.fresh("X"), self.load(self.consts_before(module, index)))
        if kind == "func":
            return self.func(module, index)
        if kind == "factory":
            return self.factory(module)
        if kind == "deco":
            return Deco(self.pkg.fresh("deco"), rng.randint(1, 3), rng.randint(0, 9))
        if kind == "cached":
            return Cached(self.pkg.fresh("c"), self.cached_body())
        return self.klass(module, index, {"class": "plain"}.get(kind, kind))


def _required(method: Method) -> int:
    return sum(1 for p in method.params if p.default is None)


def initial(seed: int, package: str) -> Package:
    """A package that imports, built from ``seed``."""
    rng = random.Random(seed)
    pkg = Package(package, {m: Module(m, [Header()]) for m in MODULES})
    gen = Gen(rng, pkg)
    for position, module in enumerate(MODULES):
        items = pkg.modules[module].items
        if position:
            earlier = MODULES[:position]
            if rng.random() < 0.6:
                items.append(ModImport(rng.choice(earlier)))
            for src in earlier:
                candidates = [
                    i.name
                    for i in pkg.modules[src].items
                    if isinstance(i, DEFINITIONS) and i.name and rng.random() < 0.5
                ]
                if candidates:
                    items.append(FromImport(src, candidates))
        for _ in range(rng.randint(1, 3)):
            items.append(Const(pkg.fresh("X"), gen.load(gen.consts_before(module, len(items)))))
        plan = ["deco", "cached", "factory", "func", "func", "class", "class", "func"]
        plan += rng.sample(["func", "class", "const", "factory", "lambda", "cond", "made"], 3)
        if rng.random() < 0.15:
            plan.append("enum")
        if rng.random() < 0.15:
            plan.append("slots")
        for kind in plan:
            index = len(items)
            if kind == "func":
                items.append(gen.func(module, index))
            elif kind == "class":
                items.append(gen.klass(module, index))
            elif kind in ("enum", "slots"):
                items.append(gen.klass(module, index, kind))
            elif kind == "factory":
                items.append(gen.factory(module))
            elif kind == "deco":
                items.append(Deco(pkg.fresh("deco"), rng.randint(1, 3), rng.randint(0, 9)))
            elif kind == "cached":
                items.append(Cached(pkg.fresh("c"), gen.cached_body()))
            elif kind == "const":
                items.append(Const(pkg.fresh("X"), gen.load(gen.consts_before(module, index))))
            elif kind == "lambda":
                items.append(gen.lam(module, index))
            elif kind == "cond":
                items.append(gen.cond(module, index))
            elif kind == "made":
                made = gen.made(module, index)
                if made is not None:
                    items.append(made)
            if rng.random() < 0.2:
                items.append(Blank([""]))
        # The program's state: an object made and a function registered at import.
        defined = gen.names_before(module, len(items))
        classes = [n for n, i in defined.items() if isinstance(i, Klass) and i.kind == "plain"]
        functions = [n for n, i in defined.items() if isinstance(i, Func)]
        if classes and functions:
            items.append(State(pkg.fresh("OBJ"), rng.choice(classes), rng.choice(functions)))
    found = problems(pkg)
    assert not found, found
    return pkg


# --- edits ---------------------------------------------------------------------------------


class Editor:
    """Makes the edits of one seed's sequence."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def edit(self, package: Package) -> tuple[Package, list[str]]:
        """A new package, one save away from ``package``, and what changed."""
        rng = self.rng
        done = []
        current = package
        for _ in range(rng.choices([1, 2, 3], [6, 3, 1])[0]):
            for _attempt in range(60):
                candidate = copy.deepcopy(current)
                name, (_, operation) = rng.choices(OPERATION_LIST, WEIGHTS)[0]
                what = operation(Gen(rng, candidate), rng)
                if what is None or problems(candidate):
                    continue
                if candidate.render() == current.render():
                    continue
                current = candidate
                done.append(f"{name}: {what}")
                break
        return current, done


# Each operation edits the package in place and says what it did, or returns None when it
# found nothing to do (the editor then draws again; it also drops edits that break imports).
Operation = Callable[[Gen, random.Random], "str | None"]


def _pick(gen: Gen, kinds: tuple[type, ...], pred: Callable[[Item], bool] = lambda i: True):
    found = [
        (m, item)
        for m in MODULES
        for item in gen.pkg.modules[m].items
        if isinstance(item, kinds) and pred(item)
    ]
    return gen.rng.choice(found) if found else (None, None)


def _pick_member(gen: Gen, pred: Callable[[Klass, object], bool]):
    found = [
        (m, item, member)
        for m in MODULES
        for item in gen.pkg.modules[m].items
        if isinstance(item, Klass)
        for member in item.members
        if pred(item, member)
    ]
    return gen.rng.choice(found) if found else (None, None, None)


def op_const(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Const,))
    if item is None:
        return None
    item.value = gen.load(gen.consts_before(module, gen._position(module, item)))
    return f"{module}.{item.name} = {item.value.text}"


def op_func_body(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Func,))
    if item is None:
        return None
    item.body = gen.func_body(module, item)
    return f"{module}.{item.name} returns {item.body}"


def op_func_default(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Func,), lambda i: any(p.default for p in i.params + i.kwonly))
    if item is None:
        return None
    param = rng.choice([p for p in item.params + item.kwonly if p.default])
    param.default = gen.load(gen.consts_before(module, gen._position(module, item)))
    return f"{module}.{item.name}: {param.name}={param.default.text}"


def op_func_signature(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Func,))
    if item is None:
        return None
    consts = gen.consts_before(module, gen._position(module, item))
    names = {p.name for p in item.params + item.kwonly}
    optional = [p for p in item.params if p.default] + item.kwonly
    if optional and rng.random() < 0.5:
        gone = rng.choice(optional)
        (item.params if gone in item.params else item.kwonly).remove(gone)
        item.body = gen.func_body(module, item)
        return f"{module}.{item.name} loses {gone.name}"
    new = next(n for n in ("b", "c", "d", "e", "g", "h") if n not in names)
    param = Param(new, gen.load(consts))
    (item.kwonly if rng.random() < 0.4 else item.params).append(param)
    item.body = gen.func_body(module, item)
    return f"{module}.{item.name} gains {new}={param.default.text if param.default else ''}"


def op_func_doc(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Func,))
    if item is None:
        return None
    item.doc = rng.choice([None, "New doc.", "Docstring.", "Changed."])
    return f"{module}.{item.name}.__doc__ = {item.doc!r}"


def op_func_decorators(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Func,))
    if item is None:
        return None
    if item.decorators and rng.random() < 0.5:
        gone = item.decorators.pop(rng.randrange(len(item.decorators)))
        return f"{module}.{item.name} loses @{gone}"
    names = gen.names_before(module, gen._position(module, item))
    decos = [n for n, i in names.items() if isinstance(i, Deco) and n not in item.decorators]
    if not decos:
        return None
    deco = rng.choice(decos)
    item.decorators.insert(rng.randint(0, len(item.decorators)), deco)
    return f"{module}.{item.name} gains @{deco}"


def op_lambda(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Lam,))
    if item is None:
        return None
    if item.params and any(p.default for p in item.params) and rng.random() < 0.3:
        param = rng.choice([p for p in item.params if p.default])
        param.default = gen.load(gen.consts_before(module, gen._position(module, item)))
        return f"{module}.{item.name}: {param.name}={param.default.text}"
    item.body = gen.lam_body(module, item)
    return f"{module}.{item.name} = lambda ...: {item.body}"


def op_cond(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (CondFunc,))
    if item is None:
        return None
    if rng.random() < 0.4:
        item.test = gen.cond_test(module, gen._position(module, item))
        return f"{module}.{item.name}: if {item.test.text}"
    branch = rng.randrange(len(item.bodies))
    item.bodies[branch] = gen.cond_body(module, item)
    return f"{module}.{item.name} (branch {branch}) returns {item.bodies[branch]}"


def op_made(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Made,), lambda i: not i.arg.isidentifier())
    if item is None:
        return None
    item.arg = str(rng.randint(1, 5))
    return f"{module}.{item.name} = {item.callee}({item.arg})"


def op_deco(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Deco,))
    if item is None:
        return None
    item.mul, item.add = rng.randint(1, 3), rng.randint(0, 9)
    return f"{module}.{item.name} wrapper returns * {item.mul} + {item.add}"


def op_factory(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Factory,))
    if item is None:
        return None
    item.body = gen.factory_body(module, item)
    return f"{module}.{item.name} inner returns {item.body}"


def op_cached(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, (Cached,))
    if item is None:
        return None
    item.body = gen.cached_body()
    return f"{module}.{item.name} returns {item.body}"


def op_method_body(gen: Gen, rng: random.Random) -> str | None:
    module, klass, member = _pick_member(
        gen, lambda k, m: isinstance(m, Method) and m.kind != "init"
    )
    if member is None:
        return None
    member.body = gen.method_body(module, klass, member)
    return f"{module}.{klass.name}.{member.name} returns {member.body}"


def op_method_add(gen: Gen, rng: random.Random) -> str | None:
    module, klass = _pick(gen, (Klass,), lambda k: k.kind != "enum")
    if klass is None:
        return None
    index = rng.randint(0, len(klass.members))
    gone = klass.gone
    if gone and rng.random() < 0.5:
        name = rng.choice(sorted(gone))
        member = gone.pop(name)
        if isinstance(member, Method) and rng.random() < 0.5:
            member.body = gen.method_body(module, klass, member)
        klass.members.insert(index, member)
        return f"{module}.{klass.name}.{name} comes back"
    inherited = gen._inherited_methods(module, klass)
    if inherited and rng.random() < 0.4:
        base = rng.choice(inherited)
        if klass.member(base.name) is not None:
            return None
        member = gen.override(module, klass, base, index)
        member.body = gen.method_body(module, klass, member)
    else:
        kind = rng.choice(["method", "method", "property", "static", "classmethod", *DUNDERS])
        if kind in DUNDERS and klass.member(kind) is not None:
            return None
        member = gen.method(module, klass, kind, index)
    klass.members.insert(index, member)
    return f"{module}.{klass.name} gains {member.name}"


def op_member_delete(gen: Gen, rng: random.Random) -> str | None:
    module, klass, member = _pick_member(
        gen,
        lambda k, m: (
            (isinstance(m, Method) and m.kind != "init")
            or (isinstance(m, Attr) and k.kind != "enum")
        ),
    )
    if member is None:
        return None
    klass.members.remove(member)
    klass.gone[member.name] = member
    return f"{module}.{klass.name} loses {member.name}"


def op_attr(gen: Gen, rng: random.Random) -> str | None:
    module, klass = _pick(gen, (Klass,), lambda k: k.kind == "plain")
    if klass is None:
        return None
    consts = gen.consts_before(module, gen._position(module, klass))
    attrs = klass.attrs()
    if attrs and rng.random() < 0.7:
        attr = rng.choice(attrs)
        index = klass.members.index(attr)
        earlier = [m.name for m in klass.members[:index] if isinstance(m, Attr)]
        attr.value = gen.load(consts, earlier)
        return f"{module}.{klass.name}.{attr.name} = {attr.value.text}"
    index = rng.randint(0, len(klass.members))
    earlier = [m.name for m in klass.members[:index] if isinstance(m, Attr)]
    attr = Attr(gen.pkg.fresh("a"), gen.load(consts, earlier))
    klass.members.insert(index, attr)
    return f"{module}.{klass.name} gains {attr.name} = {attr.value.text}"


def op_bases(gen: Gen, rng: random.Random) -> str | None:
    module, klass = _pick(gen, (Klass,), lambda k: k.kind == "plain")
    if klass is None:
        return None
    names = gen.names_before(module, gen._position(module, klass))
    classes = [n for n, i in names.items() if isinstance(i, Klass) and i.kind == "plain"]
    choice = rng.random()
    if klass.bases and choice < 0.2:
        klass.bases = []
        if klass.member("__init__") is None:
            klass.members.insert(0, Method("__init__", "init"))
    elif classes and choice < 0.6:
        klass.bases = [rng.choice(classes)]
    elif classes and klass.bases:
        extra = rng.choice(classes)
        if extra in klass.bases:
            return None
        klass.bases.insert(rng.randint(0, len(klass.bases)), extra)
    else:
        return None
    return f"{module}.{klass.name} bases ({', '.join(klass.bases)})"


def op_new_definition(gen: Gen, rng: random.Random) -> str | None:
    module = rng.choice(MODULES)
    items = gen.pkg.modules[module].items
    index = rng.randint(1, len(items))
    item = gen.definition(module, index)
    if item is None:
        return None
    items.insert(index, item)
    return f"{module} gains {type(item).__name__} {item.name}"


def op_delete(gen: Gen, rng: random.Random) -> str | None:
    module, item = _pick(gen, DEFINITIONS)
    if item is None:
        return None
    mod = gen.pkg.modules[module]
    mod.items.remove(item)
    assert item.name is not None
    mod.graveyard[item.name] = item
    return f"{module} loses {item.name}"


def op_readd(gen: Gen, rng: random.Random) -> str | None:
    module = rng.choice(MODULES)
    mod = gen.pkg.modules[module]
    if not mod.graveyard:
        return None
    name = rng.choice(sorted(mod.graveyard))
    item = mod.graveyard.pop(name)
    index = rng.randint(1, len(mod.items))
    mod.items.insert(index, item)
    if isinstance(item, Func) and rng.random() < 0.5:
        item.body = gen.func_body(module, item)
    return f"{module}.{name} comes back"


def op_move(gen: Gen, rng: random.Random) -> str | None:
    module = rng.choice(MODULES)
    items = gen.pkg.modules[module].items
    if len(items) < 3:
        return None
    item = items.pop(rng.randint(1, len(items) - 1))
    items.insert(rng.randint(1, len(items)), item)
    return f"{module}: {item.name or type(item).__name__} moves"


def op_move_member(gen: Gen, rng: random.Random) -> str | None:
    module, klass = _pick(gen, (Klass,), lambda k: len(k.members) > 1)
    if klass is None:
        return None
    member = klass.members.pop(rng.randrange(len(klass.members)))
    klass.members.insert(rng.randint(0, len(klass.members)), member)
    return f"{module}.{klass.name}: {getattr(member, 'name', 'blank')} moves"


def op_blank(gen: Gen, rng: random.Random) -> str | None:
    module = rng.choice(MODULES)
    items = gen.pkg.modules[module].items
    blanks = [i for i in items if isinstance(i, Blank)]
    if blanks and rng.random() < 0.3:
        items.remove(rng.choice(blanks))
        return f"{module}: comment or blank lines removed"
    lines = [rng.choice(["", *COMMENTS]) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.4:
        _, klass = _pick(gen, (Klass,))
        if klass is not None:
            klass.members.insert(rng.randint(0, len(klass.members)), Blank(lines))
            return f"{module}.{klass.name}: {len(lines)} comment or blank lines"
    items.insert(rng.randint(1, len(items)), Blank(lines))
    return f"{module}: {len(lines)} comment or blank lines"


def op_import(gen: Gen, rng: random.Random) -> str | None:
    module = rng.choice(MODULES[1:])
    items = gen.pkg.modules[module].items
    imports = [i for i in items if isinstance(i, FromImport)]
    if imports and rng.random() < 0.4:
        item = rng.choice(imports)
        gone = item.names.pop(rng.randrange(len(item.names)))
        if not item.names:
            items.remove(item)
        return f"{module} no longer imports {gone}"
    src = rng.choice(MODULES[: MODULES.index(module)])
    have = set(gen.pkg.modules[module].defined())
    candidates = [
        i.name
        for i in gen.pkg.modules[src].items
        if isinstance(i, DEFINITIONS) and i.name not in have
    ]
    if not candidates:
        return None
    name = rng.choice(candidates)
    same = [i for i in imports if i.src == src]
    if same:
        same[0].names.append(name)
    else:
        items.insert(1, FromImport(src, [name]))
    return f"{module} imports {name} from {src}"


def op_module_doc(gen: Gen, rng: random.Random) -> str | None:
    module = rng.choice(MODULES)
    mod = gen.pkg.modules[module]
    mod.doc = rng.choice([None, "Module doc.", "Another doc."])
    return f"{module}.__doc__ = {mod.doc!r}"


def op_enum_members(gen: Gen, rng: random.Random) -> str | None:
    module, klass = _pick(gen, (Klass,), lambda k: k.kind == "enum")
    if klass is None:
        return None
    members = klass.attrs()
    used = {m.name for m in members}
    if len(members) > 1 and rng.random() < 0.5:
        gone = rng.choice(members)
        klass.members.remove(gone)
        return f"{module}.{klass.name} loses member {gone.name}"
    name = next(n for n in ("GREEN", "PINK", "GREY", "TEAL", "CYAN", "NAVY") if n not in used)
    value = max(int(m.value.text) for m in members) + 1 if members else 1
    klass.members.insert(len(members), Attr(name, Load(str(value))))
    return f"{module}.{klass.name} gains member {name}"


def op_slots(gen: Gen, rng: random.Random) -> str | None:
    module, klass = _pick(gen, (Klass,), lambda k: k.kind == "slots")
    if klass is None:
        return None
    if len(klass.slots) > 1:
        klass.slots.pop()
    else:
        klass.slots.append("extra")
    return f"{module}.{klass.name}.__slots__ = {tuple(klass.slots)} (needs a restart)"


#: name: (weight, operation)
OPERATIONS: dict[str, tuple[float, Operation]] = {
    "constant": (5, op_const),
    "function body": (6, op_func_body),
    "default": (3, op_func_default),
    "signature": (2, op_func_signature),
    "docstring": (1, op_func_doc),
    "decorators": (2, op_func_decorators),
    "decorator body": (1.5, op_deco),
    "lambda": (1.5, op_lambda),
    "conditional def": (1.5, op_cond),
    "module-level call": (1, op_made),
    "factory": (2, op_factory),
    "lru_cache body": (1, op_cached),
    "method body": (6, op_method_body),
    "member added": (2.5, op_method_add),
    "member deleted": (1.5, op_member_delete),
    "class attribute": (2.5, op_attr),
    "bases": (1, op_bases),
    "new definition": (3, op_new_definition),
    "definition deleted": (2, op_delete),
    "definition back": (1.5, op_readd),
    "moved": (2.5, op_move),
    "member moved": (1, op_move_member),
    "comments": (2.5, op_blank),
    "imports": (1.5, op_import),
    "module docstring": (0.5, op_module_doc),
    "enum members": (0.3, op_enum_members),
    "slots": (0.3, op_slots),
}
OPERATION_LIST = list(OPERATIONS.items())
WEIGHTS = [weight for weight, _ in OPERATIONS.values()]
