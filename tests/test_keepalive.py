"""Frames borrow their globals and builtins (3.11+): a dict that a patch takes away from a
function stays alive as long as any frame that reads it can still run, whatever code that
frame runs, and is released once none can.

Each case runs in a fresh interpreter under ``PYTHONMALLOC=debug``, which fills freed memory
with a pattern, so a read of a freed dict crashes or returns junk instead of, by luck, the old
value. A weak reference to an object stored in the old dict tells, deterministically, whether
the dict was freed: its values die with it.
"""

from __future__ import annotations

import textwrap

import pytest

DEBUG_MALLOC = {"PYTHONMALLOC": "debug"}

PRELUDE = """
import gc, sys, weakref
import mighty_patcher as mp

class Marker:
    pass

def namespace(tag):
    # Enough keys that the dict's key table comes from the allocator, not a free list.
    ns = {f"filler_{i}": i for i in range(40)}
    ns.update(VALUE=tag, marker=Marker())
    return ns

def churn():
    # Allocations that would reuse a freed dict's memory.
    return [{"VALUE": i, "other": [i] * 4} for i in range(20000)]
"""


def run(isolated, body: str) -> list[str]:
    proc = isolated(PRELUDE + textwrap.dedent(body), env=DEBUG_MALLOC)
    return proc.stdout.split()


def test_a_generator_suspended_in_old_code_keeps_its_globals_after_a_code_patch_and_a_globals_patch(
    isolated,
):
    """The sequence of issue 13: suspended in code A with globals G1; a first patch moves the
    code to B (same globals), a second moves the globals to G2."""
    out = run(
        isolated,
        """
        g1 = namespace("G1")
        exec("def gen():\\n    yield VALUE\\n    yield VALUE + '+again'\\n", g1)
        f = g1["gen"]
        marker = weakref.ref(g1["marker"])
        running = f()
        assert next(running) == "G1"

        new_code = {}
        exec("def gen():\\n    yield 'B'\\n", g1, new_code)
        mp.patch_function(f, new_code.pop("gen"))      # code A -> B, globals stay G1
        assert list(f()) == ["B"]

        g2 = namespace("G2")
        exec("def gen():\\n    yield VALUE\\n", g2)
        del g1
        mp.patch_function(f, g2["gen"])               # globals G1 -> G2
        junk = churn()
        gc.collect()
        assert marker() is not None, "G1 freed while a suspended frame still reads it"
        print(next(running))
        assert list(f()) == ["G2"]
        del running, junk
        gc.collect()
        assert marker() is None, "G1 kept after the last frame reading it ended"
        print("released")
        """,
    )
    assert out == ["G1+again", "released"]


def test_code_set_through_dunder_code_then_a_globals_patch(isolated):
    """The code moved away by CPython's own `__code__` setter, not by a patch."""
    out = run(
        isolated,
        """
        g1 = namespace("G1")
        exec("def gen():\\n    yield VALUE\\n    yield VALUE + '+again'\\n", g1)
        f = g1["gen"]
        marker = weakref.ref(g1["marker"])
        running = f()
        next(running)
        f.__code__ = compile("def gen():\\n    yield 'B'\\n", "<b>", "exec").co_consts[0]
        g2 = namespace("G2")
        exec("def gen():\\n    yield VALUE\\n", g2)
        del g1
        mp.patch_function(f, g2["gen"])
        junk = churn()
        gc.collect()
        assert marker() is not None, "G1 freed while a suspended frame still reads it"
        print(next(running))
        del running, junk
        gc.collect()
        assert marker() is None, "G1 kept after the last frame reading it ended"
        """,
    )
    assert out == ["G1+again"]


@pytest.mark.parametrize("kind", ["coroutine", "async generator"])
def test_suspended_coroutines_keep_their_globals(isolated, kind):
    source = {
        "coroutine": "import types\\n"
        "@types.coroutine\\ndef pause():\\n    yield\\n"
        "async def task():\\n    await pause()\\n    return VALUE\\n",
        "async generator": "async def task():\\n    yield 1\\n    yield VALUE\\n",
    }[kind]
    resume = {
        "coroutine": "try:\n    running.send(None)\nexcept StopIteration as done:\n"
        "    print(done.value)\n",
        "async generator": "try:\n    running.asend(None).send(None)\n"
        "except StopIteration as done:\n    print(done.value)\n",
    }[kind]
    start = {
        "coroutine": "running = f()\nrunning.send(None)\n",
        "async generator": "running = f()\ntry:\n    running.asend(None).send(None)\n"
        "except StopIteration:\n    pass\n",
    }[kind]
    body = (
        f"""
g1 = namespace("G1")
exec("{source}", g1)
f = g1["task"]
marker = weakref.ref(g1["marker"])
"""
        + start
        + """
g2 = namespace("G2")
exec("async def task():\\n    return VALUE\\n", g2)
del g1
mp.patch_function(f, g2["task"])
junk = churn()
gc.collect()
assert marker() is not None, "G1 freed while a suspended frame still reads it"
"""
        + resume
    )
    isolated_out = run(isolated, body)
    assert isolated_out == ["G1"]


def test_a_frame_kept_by_a_traceback_keeps_its_globals(isolated):
    out = run(
        isolated,
        """
        g1 = namespace("G1")
        exec("def boom():\\n    raise ValueError(VALUE)\\n", g1)
        f = g1["boom"]
        marker = weakref.ref(g1["marker"])
        try:
            f()
        except ValueError as exc:
            tb = exc.__traceback__
        frame = tb.tb_next.tb_frame
        g2 = namespace("G2")
        exec("def boom():\\n    return VALUE\\n", g2)
        del g1
        mp.patch_function(f, g2["boom"])
        junk = churn()
        gc.collect()
        assert marker() is not None, "G1 freed while a traceback's frame still reads it"
        print(frame.f_globals["VALUE"])
        del frame, tb, junk
        gc.collect()
        assert marker() is None, "G1 kept after the last frame reading it was dropped"
        """,
    )
    assert out == ["G1"]


def test_private_builtins_are_kept_as_well(isolated):
    """A function whose globals name a dict of their own as `__builtins__` (as `namedtuple`'s
    generated methods do) runs with those builtins; they are borrowed the same way."""
    out = run(
        isolated,
        """
        builtins1 = {"len": lambda x: "private len", "marker": Marker()}
        marker = weakref.ref(builtins1["marker"])
        g1 = {"__builtins__": builtins1}
        exec("def gen():\\n    yield 1\\n    yield len('abc')\\n", g1)
        f = g1["gen"]
        running = f()
        next(running)
        del builtins1
        g2 = namespace("G2")
        exec("def gen():\\n    yield 2\\n", g2)
        del g1
        mp.patch_function(f, g2["gen"])
        junk = churn()
        gc.collect()
        assert marker() is not None, "private builtins freed while a frame still reads them"
        print(next(running).replace(" ", "_"))
        """,
    )
    assert out == ["private_len"]
