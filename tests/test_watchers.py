"""Function watchers (3.12+, `PyFunction_AddWatcher`) hear of a patched function what they
would hear of the same changes made by CPython's own setters: `MODIFY_CODE` before the new
code is stored, then `MODIFY_DEFAULTS` and `MODIFY_KWDEFAULTS` (and `MODIFY_QUALNAME`, 3.15+)
before theirs. A JIT, profiler or debugger watching functions learns of every patch.

The watcher is a small C extension (tests/capi/func_watcher.c), run in a fresh interpreter (a
watcher is per interpreter and the slots are few)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, build_extension

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="function watchers exist from CPython 3.12 on"
)


@pytest.fixture(scope="module")
def watcher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("func-watcher")
    build_extension(ROOT / "tests" / "capi" / "func_watcher.c", out, "func_watcher")
    return out


PRELUDE = """
import sys
sys.path.insert(0, {path!r})
import func_watcher
import mighty_patcher as mp

watch = func_watcher.watch

def define(source, name, namespace=None):
    ns = {{}} if namespace is None else namespace
    local = {{}}
    exec(source, ns, local)
    return local[name]

def report(label, expected):
    seen = func_watcher.events()
    print(label, [(event, when) for event, _, when in seen])
    assert len(seen) == len(expected) and all(
        value is x for (_, value, _), x in zip(seen, expected)
    ), (label, seen)
"""


@pytest.fixture
def run(isolated, watcher_dir):
    def run(body: str) -> list[str]:
        proc = isolated(PRELUDE.format(path=str(watcher_dir)) + textwrap.dedent(body))
        return proc.stdout.splitlines()

    return run


def test_patch_function_tells_watchers_of_the_code_and_defaults_before_storing_them(run):
    out = run(
        """
        f = watch(define("def f(a, b=1, *, c=2):\\n    return a + b + c\\n", "f"))
        new = define("def f(a, b=10, *, c=20):\\n    return a * b * c\\n", "f")
        mp.patch_function(f, new)
        report("patch", [new.__code__, new.__defaults__, new.__kwdefaults__])
        assert f(1) == 200
        """,
    )
    assert out == [
        "patch [('MODIFY_CODE', 'before'), ('MODIFY_DEFAULTS', 'before'), "
        "('MODIFY_KWDEFAULTS', 'before')]"
    ]


def test_swap_code_tells_watchers_of_the_new_code_before_storing_it(run):
    out = run(
        """
        make = define("def make(n):\\n    def inner():\\n        return n\\n    return inner\\n",
                      "make")
        closure = watch(make(3))
        code = define("def make(n):\\n    def inner():\\n        return -n\\n    return inner\\n",
                      "make")(0).__code__
        mp.swap_code(closure, code)
        report("swap", [code])
        assert closure() == -3
        """,
    )
    assert out == ["swap [('MODIFY_CODE', 'before')]"]


def test_a_new_free_variable_count_is_still_told_after_the_store(run):
    """CPython's `__code__` setter refuses code whose free-variable count differs from the
    closure's; the patch stores code and closure together, and then tells the watchers
    (documented in docs/native.md)."""
    out = run(
        """
        def outer():
            x = 1
            def f():
                return x
            return f
        f = watch(outer())
        # The same qualname, so that 3.15 has no MODIFY_QUALNAME to tell.
        new = define(
            "def outer():\\n    def f():\\n        return 'no closure'\\n    return f\\n",
            "outer",
        )()
        mp.patch_function(f, new)
        report("free vars", [new.__code__])
        assert f() == "no closure"
        """,
    )
    assert out == ["free vars [('MODIFY_CODE', 'after')]"]


def test_methods_patched_by_patch_class_are_told_too(run):
    out = run(
        """
        ns = {}
        exec("class C:\\n    def m(self):\\n        return 'old'\\n", ns)
        C = ns["C"]
        watch(C.__dict__["m"])
        new = {}
        exec("class C:\\n    def m(self):\\n        return 'new'\\n", new)
        mp.patch_class(C, new["C"])
        report("class", [new["C"].__dict__["m"].__code__])
        assert C().m() == "new"
        """,
    )
    assert out == ["class [('MODIFY_CODE', 'before')]"]


@pytest.mark.skipif(sys.version_info < (3, 15), reason="MODIFY_QUALNAME is new in 3.15")
def test_a_new_qualname_is_told_on_315(run):
    out = run(
        """
        f = watch(define("def f():\\n    return 1\\n", "f"))
        new = define("class K:\\n    def f():\\n        return 2\\n", "K").__dict__["f"]
        mp.patch_function(f, new)
        report("qualname", [new.__code__, new.__qualname__])
        assert f.__qualname__ == "K.f"
        """,
    )
    assert out == ["qualname [('MODIFY_CODE', 'before'), ('MODIFY_QUALNAME', 'before')]"]
