"""Reloads one module many times and measures what is left: ``python tests/leak_check.py``.

The module has functions with defaults, a closure factory, an ``lru_cache`` function, a
``functools.wraps`` decorator, a lambda, classes with methods, a property, ``super()``, and a
definition that is deleted and brought back on every other reload; every reload changes every
body. References are held the whole time (a closure and an instance made before the first
reload, bound methods, the functions themselves), and called between reloads so that call
sites specialise on them.

After a warm-up, a census (after ``gc.collect()``): live functions, classes and code objects
(the ones reachable from live functions), resident memory, and on a debug build of CPython
``sys.gettotalrefcount()``; then the reloads, and the census again. Also counts how many of the
code objects of earlier versions (one version in 50) are still alive (by weak reference): none
should be.

Prints the figures as JSON; exits 1 if something grew by more than the allowed constant
(the limits are in :func:`verdict`).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import types
import weakref
from pathlib import Path
from typing import Any

TEMPLATE = """
import functools

V = {v}

def f(x, k={v}):
    return x + k + V

def make(n):
    def inner(x):
        return n + x + {v}
    return inner

@functools.lru_cache(maxsize=None)
def cached(x):
    return x * {v}

def deco(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args) + {v}
    return wrapper

@deco
def g(x):
    return x - {v}

lam = lambda x: x * {v}

class Base:
    def who(self):
        return {v}

class C(Base):
    scale = {v}
    def m(self, x=scale):
        return super().who() + x + {v}
    @property
    def p(self):
        return self.scale + {v}
{extra}
"""

EXTRA = """
def extra():
    return {v}
"""


def source(v: int) -> str:
    return TEMPLATE.format(v=v, extra=EXTRA.format(v=v) if v % 2 == 0 else "")


def resident_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def codes_of(functions: list[types.FunctionType]) -> int:
    seen: set[int] = set()
    stack = [f.__code__ for f in functions]
    while stack:
        code = stack.pop()
        if id(code) in seen:
            continue
        seen.add(id(code))
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return len(seen)


def census() -> dict[str, int | None]:
    # The type attribute cache holds references to the names it saw: filling up, it would
    # look like a leak at the start.
    getattr(sys, "_clear_internal_caches", getattr(sys, "_clear_type_cache", lambda: None))()
    gc.collect()
    gc.collect()
    objects = gc.get_objects()
    functions = [o for o in objects if type(o) is types.FunctionType]
    result = {
        "functions": len(functions),
        "types": sum(1 for o in objects if isinstance(o, type)),
        "codes": codes_of(functions),
        "rss_kib": resident_kib(),
        "total_refcount": None,
    }
    del objects, functions
    gettotalrefcount = getattr(sys, "gettotalrefcount", None)
    if gettotalrefcount is not None:
        gc.collect()
        result["total_refcount"] = gettotalrefcount()
    return result


def verdict(figures: dict[str, Any]) -> list[str]:
    """What grew too much: a small constant is allowed (caches, free lists, one more
    version in flight), not anything that scales with the number of reloads."""
    before, after = figures["before"], figures["after"]
    limits = {"functions": 10, "types": 2, "codes": 10, "rss_kib": 2048, "total_refcount": 100}
    problems = []
    for key, limit in limits.items():
        if before[key] is None:
            continue
        if after[key] - before[key] > limit:
            problems.append(f"{key} grew from {before[key]} to {after[key]} (limit +{limit})")
    if figures["old_codes_alive"] > 0:
        problems.append(f"{figures['old_codes_alive']} code objects of old versions are alive")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=1000)
    parser.add_argument("--warm-up", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mighty-leaks-") as tmp:
        root = Path(tmp)
        (root / "leaky").mkdir()
        (root / "leaky/__init__.py").write_text("")
        module = root / "leaky/mod.py"
        module.write_text(source(0))
        sys.path.insert(0, str(root))
        sys.dont_write_bytecode = True

        from mighty_patcher.watch import AutoReloader

        reloader = AutoReloader(str(root), start=False, log_level=logging.WARNING)
        from leaky import mod  # type: ignore[import-not-found]

        obj = mod.C()
        closure = mod.make(3)
        calls = [
            (mod.f, (1,)),
            (closure, (1,)),
            (mod.cached, (1,)),
            (mod.g, (1,)),
            (mod.lam, (1,)),
            (obj.m, ()),
            (mod.C.m, (obj,)),
        ]

        def exercise() -> None:
            for _ in range(50):
                for fn, call_args in calls:
                    fn(*call_args)
                obj.p  # noqa: B018 - a property read, to specialise on it

        def reload(v: int) -> list[weakref.ref[types.CodeType]]:
            module.write_text(source(v))
            reports = reloader.reload_now()
            if not reports or not all(r.ok for r in reports):
                raise SystemExit(f"reload {v} failed: {[r.as_dict() for r in reports]}")
            exercise()
            codes = [mod.f.__code__, closure.__code__, mod.C.m.__code__, mod.g.__wrapped__.__code__]
            return [weakref.ref(c) for c in codes]

        exercise()
        for v in range(1, args.warm_up + 1):
            reload(v)
        # The code objects of one version in 50 must be gone 50 reloads later (weak references
        # to all of them would be memory growing with the reloads, in the measurement itself).
        pending: list[weakref.ref[types.CodeType]] = []
        alive = 0
        before = census()
        last = args.warm_up + args.reloads
        for v in range(args.warm_up + 1, last + 1):
            refs = reload(v)
            if v % 50 == 0 or v == last:
                gc.collect()
                alive += sum(1 for r in pending if r() is not None)
                pending = refs
        del pending, refs
        after = census()
        figures: dict[str, Any] = {
            "python": sys.version.split()[0],
            "debug_build": hasattr(sys, "gettotalrefcount"),
            "reloads": args.reloads,
            "warm_up": args.warm_up,
            "before": before,
            "after": after,
            "old_codes_alive": alive,
        }
        figures["problems"] = verdict(figures)
        reloader.stop()
        print(json.dumps(figures, indent=2))
        return 1 if figures["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
