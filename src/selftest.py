"""Behavioural half of ``mighty_patcher.selftest()``, compiled into the extension.

The native half checks the interpreter and struct layouts and passes its results in; this
half warms up call sites until the specialising interpreter has rewritten them, patches the
functions they call, and checks that the sites run the new code, that they specialise again
(calls stay fast) and that the old code object is released.
"""

import dis
import gc
import sys
import weakref

WARM = 4000
SPECIALISING = sys.version_info >= (3, 11)


def define(source, globals_, name):
    """Compile ``source`` in ``globals_`` without rebinding anything there."""
    local = {}
    exec(source, globals_, local)
    return local[name]


def warm(site):
    for _ in range(WARM):
        site()


def call_opname(site):
    """The opname the first call instruction of ``site`` has now (adaptive form)."""
    if not SPECIALISING:
        return "CALL_FUNCTION"
    skip = {"PRECALL", "KW_NAMES", "CACHE"}
    for ins in dis.get_instructions(site, adaptive=True):
        name = ins.opname
        if name.startswith(("CALL", "LOAD_ATTR_PROPERTY", "BINARY_SUBSCR", "BINARY_OP")):
            if name not in skip:
                return name
    return "?"


def is_specialised(opname):
    generic = {"CALL", "CALL_KW", "CALL_FUNCTION", "CALL_FUNCTION_EX", "BINARY_SUBSCR", "?"}
    return opname not in generic and not opname.endswith("_ADAPTIVE")


class Failed(Exception):
    pass


def expect(actual, wanted, what):
    if actual != wanted:
        raise Failed(f"{what}: got {actual!r}, expected {wanted!r}")


def site_check(native, source, site_name, target, new_source, before, after):
    """Warm ``site``, patch ``target`` from ``new_source``, check both results.

    Returns a detail for the report and the namespace the source ran in.
    """
    ns = {}
    exec(source, ns)
    site = ns[site_name]
    old = target(ns)
    warm(site)
    expect(site(), before, "before the patch")
    first = call_opname(site)
    new = define(new_source, ns, old.__name__)
    native.patch_function(old, new)
    expect(site(), after, "warm site after the patch")
    expect(target(ns) is old, True, "function identity kept")
    warm(site)
    expect(site(), after, "after warming up again")
    again = call_opname(site)
    if SPECIALISING and is_specialised(first) and not is_specialised(again):
        raise Failed(f"the site specialised as {first} before the patch but stays {again} after")
    return f"{first} -> {again}", ns


def check_positional(native):
    detail, _ = site_check(
        native,
        "def f(a, b):\n    return a + b\ndef site():\n    return f(1, 2)\n",
        "site",
        lambda ns: ns["f"],
        "def f(a, b):\n    return a * b - 10\n",
        3,
        -8,
    )
    return detail


def check_keyword(native):
    detail, _ = site_check(
        native,
        "def f(a, b):\n    return a + b\ndef site():\n    return f(a=1, b=2)\n",
        "site",
        lambda ns: ns["f"],
        "def f(b, a):\n    return a * 100 + b\n",
        3,
        102,
    )
    return detail


def check_defaults(native):
    ns = {}
    exec("def g(a, b=10):\n    return a + b\ndef site():\n    return g(1)\n", ns)
    site, g = ns["site"], ns["g"]
    warm(site)
    first = call_opname(site)
    native.patch_function(g, define("def g(a, b=20, c=5):\n    return a + b + c\n", ns, "g"))
    expect(site(), 26, "more defaults")
    warm(site)
    native.patch_function(g, define("def g(a, b=1):\n    return a - b\n", ns, "g"))
    expect(site(), 0, "fewer defaults")
    native.patch_function(g, define("def g(a, *, k=7):\n    return a + k\n", ns, "g"))
    expect(site(), 8, "keyword-only default")
    return f"{first}; 3 patches"


def check_star_args(native):
    detail, _ = site_check(
        native,
        "def h(*args):\n    return len(args)\ndef site():\n    return h(1, 2, 3)\n",
        "site",
        lambda ns: ns["h"],
        "def h(*args):\n    return sum(args)\n",
        3,
        6,
    )
    return detail


def check_bound_method(native):
    source = (
        "class C:\n"
        "    def m(self, x):\n        return x + 1\n"
        "o = C()\n"
        "held = o.m\n"
        "def site():\n    return o.m(5)\n"
    )
    detail, ns = site_check(
        native,
        source,
        "site",
        lambda ns: ns["C"].__dict__["m"],
        "def m(self, x):\n    return x * 100\n",
        6,
        500,
    )
    expect(ns["held"](5), 500, "bound method taken before the patch")
    return detail


def check_property(native):
    detail, _ = site_check(
        native,
        "class P:\n    @property\n    def v(self):\n        return 1\n"
        "p = P()\ndef site():\n    return p.v\n",
        "site",
        lambda ns: ns["P"].__dict__["v"].fget,
        "def v(self):\n    return 2\n",
        1,
        2,
    )
    return detail


def check_getitem(native):
    detail, _ = site_check(
        native,
        "class G:\n    def __getitem__(self, k):\n        return k + 1\n"
        "g = G()\ndef site():\n    return g[3]\n",
        "site",
        lambda ns: ns["G"].__dict__["__getitem__"],
        "def __getitem__(self, k):\n    return k * 10\n",
        4,
        30,
    )
    return detail


def check_closure(native):
    ns = {}
    exec(
        "def make(n):\n    def inner(x):\n        return x + n\n    return inner\n"
        "c = make(5)\ndef site():\n    return c(2)\n",
        ns,
    )
    site, closure = ns["site"], ns["c"]
    warm(site)
    make = define(
        "def make(n):\n    def inner(x):\n        return x * n\n    return inner\n", ns, "make"
    )
    native.swap_code(closure, make(0).__code__)
    expect(site(), 10, "closure keeps the value it captured")
    return call_opname(site)


def check_release(native):
    ns = {}
    exec("def f():\n    return 1\n", ns)
    f = ns["f"]
    old_code = weakref.ref(f.__code__)
    default = type("Default", (), {})()
    old_default = weakref.ref(default)
    f.__defaults__ = (default,)
    del default
    native.patch_function(f, define("def f():\n    return 2\n", ns, "f"))
    gc.collect()
    expect(old_code() is None, True, "old code object released")
    expect(old_default() is None, True, "old default value released")
    return "old code and defaults freed"


CHECKS = [
    ("positional call", check_positional),
    ("keyword call", check_keyword),
    ("defaults", check_defaults),
    ("*args", check_star_args),
    ("bound method", check_bound_method),
    ("property getter", check_property),
    ("__getitem__", check_getitem),
    ("closure keeps cells", check_closure),
    ("old code released", check_release),
]


def run(native, native_results, verbose):
    """Run the checks; ``native`` is None when the native checks found the build unusable."""
    results = list(native_results)
    for name, check in CHECKS if native is not None else ():
        try:
            results.append((name, True, check(native)))
        except Exception as exc:  # a failed check is reported, not raised
            results.append((name, False, f"{type(exc).__name__}: {exc}"))
    failed = [r for r in results if not r[1]]
    if verbose:
        print(f"mighty_patcher self-test: CPython {sys.version.split()[0]}")
        width = max(len(name) for name, _, _ in results)
        for name, ok, detail in results:
            print(f"  {'ok  ' if ok else 'FAIL'}  {name:<{width}}  {detail}")
        if failed:
            print(f"{len(failed)} of {len(results)} checks failed")
        else:
            print(f"all {len(results)} checks passed")
    return not failed
