"""swap_code: a closure made before an edit moves to the new code and keeps its cells."""

from __future__ import annotations

import types

import pytest

from conftest import define, warm

FACTORY_V1 = """
def make(step, scale):
    def inner(x):
        return x + step
    return inner
"""


def new_inner_code(body: str, ns: dict):
    """The code object of `inner` in a new version of the factory whose inner function
    returns `body`."""
    source = f"def make(step, scale):\n    def inner(x):\n        return {body}\n    return inner\n"
    make = define(source, ns, "make")
    return next(c for c in make.__code__.co_consts if isinstance(c, types.CodeType))


def test_closures_made_earlier_keep_the_values_they_captured(mp):
    ns: dict = {}
    make = define(FACTORY_V1, ns, "make")
    by_five, by_ten = make(5, 2), make(10, 3)
    code = new_inner_code("(x + step) * scale", ns)
    # The old code captured only `step`: `scale` has no cell in these closures.
    with pytest.raises(mp.PatchError, match="free variable 'scale'"):
        mp.swap_code(by_five, code)
    assert by_five(1) == 6, "a refused swap changes nothing"

    code = new_inner_code("x * step", ns)
    mp.swap_code(by_five, code)
    mp.swap_code(by_ten, code)
    assert (by_five(2), by_ten(2)) == (10, 20)


def test_free_variables_are_matched_by_name(mp):
    ns: dict = {}
    make = define(FACTORY_V1, ns, "make")
    f = make("S", "unused")
    # The new inner function captures `scale` and `step`, in that order; only `step` has a
    # cell, so give the closure a variant that uses `step` twice in another position.
    code = new_inner_code("(step, x, step)", ns)
    mp.swap_code(f, code)
    assert f(1) == ("S", 1, "S")
    assert f.__code__ is code
    assert len(f.__closure__) == 1


def test_cells_are_reordered_to_the_new_code(mp):
    ns: dict = {}
    make = define(
        "def make(a, b, c):\n    def inner():\n        return (a, b, c)\n    return inner\n",
        ns,
        "make",
    )
    f = make("A", "B", "C")
    new_make = define(
        "def make(a, b, c):\n    def inner():\n        return (c, a)\n    return inner\n",
        ns,
        "make",
    )
    code = next(c for c in new_make.__code__.co_consts if isinstance(c, types.CodeType))
    mp.swap_code(f, code)
    assert f() == ("C", "A")
    assert code.co_freevars == ("a", "c")
    assert [cell.cell_contents for cell in f.__closure__] == ["A", "C"]


def test_a_function_without_free_variables_can_swap_code(mp):
    ns: dict = {}
    f = define("def f():\n    return 1\n", ns, "f")
    mp.swap_code(f, define("def f():\n    return 2\n", ns, "f").__code__)
    assert f() == 2 and f.__closure__ is None


def test_warm_calls_to_a_swapped_closure_run_the_new_code(mp):
    ns: dict = {}
    make = define(FACTORY_V1, ns, "make")
    f = make(3, 0)
    ns["f"] = f
    site = define("def site():\n    return f(1)\n", ns, "site")
    warm(site)
    code = new_inner_code("x - step", ns)
    mp.swap_code(f, code)
    assert site() == -2


def test_arguments_are_checked(mp):
    ns: dict = {}
    f = define("def f():\n    return 1\n", ns, "f")
    with pytest.raises(TypeError, match="must be a code object"):
        mp.swap_code(f, f)
    with pytest.raises(TypeError, match="must be a Python function"):
        mp.swap_code(len, f.__code__)
    with pytest.raises(TypeError, match="takes 2 positional arguments"):
        mp.swap_code(f, f.__code__, f.__code__)
