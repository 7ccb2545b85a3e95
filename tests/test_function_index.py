"""The function index (3.12+): functions_using answers from an index of live functions kept by a
function watcher, and must give exactly what a heap walk gives, whatever happened to the
functions since it was built. Each test runs in a fresh interpreter (a wrong index is a use
after free: a crash, not a failed assertion). On 3.10 and 3.11 the same scripts check the
heap walk, and that there is no index."""

from __future__ import annotations

import sys
import sysconfig
import textwrap

import pytest

INDEXED = sys.version_info >= (3, 12)
#: Code objects have deferred reference counts there: none is ever fresh (src/heap/index.rs).
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

PRELUDE = """
import gc, sys
import mighty_patcher as mp

INDEXED = sys.version_info >= (3, 12)

def walks():
    info = mp.function_index()
    return info["walks"] if info else None

def same(found, expected):
    assert sorted(map(id, found)) == sorted(map(id, expected)), (len(found), len(expected))

def make(k):
    def inner(x):
        return x * k
    return inner
"""


def run(isolated, body: str, **kwargs):
    return isolated(PRELUDE + textwrap.dedent(body), **kwargs)


def test_closures_made_before_and_after_the_index_is_built(isolated):
    proc = run(
        isolated,
        """
        code = make(0).__code__
        assert mp.function_index() is None
        before = [make(i) for i in range(50)]
        same(mp.functions_using([code]), before)
        assert walks() == (1 if INDEXED else None)
        after = [make(i) for i in range(30)]
        same(mp.functions_using([code]), before + after)
        same(mp.functions_using([code, code]), before + after)
        # asked again: no second walk, the watcher followed the new closures
        assert walks() == (1 if INDEXED else None)
        print("ok", mp.function_index())
        """,
    )
    assert proc.stdout.startswith("ok")


def test_destroyed_closures_leave_the_index_and_their_memory_is_reused(isolated):
    run(
        isolated,
        """
        code = make(0).__code__
        live = [make(i) for i in range(200)]
        mp.functions_using([code])
        for round in range(20):
            # free half of them, then make other functions (and closures) that reuse the memory
            del live[::2]
            gc.collect()
            other = [(lambda: round) for _ in range(300)]
            live += [make(i) for i in range(100)]
            found = mp.functions_using([code])
            same(found, live)
            assert all(f.__code__ is code for f in found)
            del found, other
        assert walks() == (1 if INDEXED else None)
        """,
    )


def test_closures_in_garbage_cycles_collected_by_the_gc(isolated):
    run(
        isolated,
        """
        def cyclic(k):
            box = []
            def inner():
                return box, k
            box.append(inner)
            return inner
        code = cyclic(0).__code__
        kept = [cyclic(i) for i in range(10)]
        mp.functions_using([code])
        for _ in range(5):
            [cyclic(i) for i in range(100)]  # dropped at once: cycles for the collector
            gc.collect()
            same(mp.functions_using([code]), kept)
        """,
    )


def test_user_code_assignment_moves_a_function_between_code_objects(isolated):
    run(
        isolated,
        """
        def other_make(k):
            def inner(x):
                return -x * k
            return inner
        code = make(0).__code__
        other = other_make(0).__code__
        a = [make(i) for i in range(5)]
        b = [other_make(i) for i in range(5)]
        same(mp.functions_using([code]), a)
        same(mp.functions_using([other]), b)  # both codes covered now
        a[0].__code__ = other            # covered -> covered
        same(mp.functions_using([code]), a[1:])
        same(mp.functions_using([other]), b + a[:1])
        assert a[0](2) == -0
        fresh = make(0).__code__.replace(co_name="inner")
        a[1].__code__ = fresh            # covered -> not covered: leaves the index
        same(mp.functions_using([code]), a[2:])
        same(mp.functions_using([fresh]), a[1:2])   # found by a walk
        b[0].__code__ = code             # back into a covered code
        same(mp.functions_using([code]), a[2:] + b[:1])
        del a, b
        gc.collect()
        assert mp.functions_using([code, other, fresh]) == []
        """,
    )


def test_patches_and_swaps_move_closures_in_the_index(isolated):
    run(
        isolated,
        """
        code = make(0).__code__
        closures = [make(i) for i in range(10)]
        mp.functions_using([code])
        ns = {}
        source = "def make(k):\\n    def inner(x):\\n        return x * k + 1\\n    return inner\\n"
        exec(source, ns)
        new = ns["make"](0).__code__
        mp.track_new_code(new)   # not fresh: a function of it is alive; left out
        for f in closures[:5]:
            mp.swap_code(f, new)
        same(mp.functions_using([code]), closures[5:])
        same(mp.functions_using([new]), closures[:5])
        mp.patch_function(closures[5], closures[0])
        same(mp.functions_using([code]), closures[6:])
        same(mp.functions_using([new]), closures[:6])
        assert [f(1) for f in closures[:2]] == [1, 2]
        """,
    )


def test_freshly_compiled_code_is_followed_without_a_walk(isolated):
    proc = run(
        isolated,
        """
        code = make(0).__code__
        mp.functions_using([code])
        source = "def factory(k):\\n    def inner():\\n        return k\\n    return inner\\n"
        module = compile(source, "<fresh>", "exec")
        mp.track_new_code(module)
        ns = {}
        exec(module, ns)
        made = [ns["factory"](i) for i in range(20)]
        inner = made[0].__code__
        before = walks()
        same(mp.functions_using([inner]), made)
        print("walked", walks() - before if INDEXED else "-")
        # a code object something else holds is not fresh: a walk finds its functions
        held = compile(source, "<held>", "exec")
        extra = [c for c in held.co_consts if hasattr(c, "co_consts")]
        mp.track_new_code(held)
        exec(held, ns)
        made2 = [ns["factory"](i) for i in range(3)]
        same(mp.functions_using([made2[0].__code__]), made2)
        """,
    )
    walked = "-" if not INDEXED else "1" if FREE_THREADED else "0"
    assert proc.stdout.split() == ["walked", walked]


def test_one_index_for_every_module_object_of_the_interpreter(isolated):
    proc = run(
        isolated,
        """
        import importlib.util
        spec = mp.mighty_patcher.__spec__
        second = importlib.util.module_from_spec(spec)   # a re-import: a new module object
        spec.loader.exec_module(second)
        assert second is not mp.mighty_patcher
        code = make(0).__code__
        made = [make(i) for i in range(10)]
        same(second.functions_using([code]), made)
        same(mp.functions_using([code]), made)
        info = mp.function_index()
        assert info == second.function_index()
        del second, spec
        gc.collect()
        made += [make(i) for i in range(5)]
        same(mp.functions_using([code]), made)
        print("ok", walks())
        """,
    )
    assert proc.stdout.split() == ["ok", "1" if INDEXED else "None"]


def test_the_last_module_object_freed_clears_the_watcher(isolated):
    proc = run(
        isolated,
        """
        import importlib.util
        spec = mp.mighty_patcher.__spec__
        own = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(own)
        # a module object of its own, used alone: it owns the index
        code = make(0).__code__
        made = [make(i) for i in range(10)]
        same(own.functions_using([code]), made)
        print("before", own.function_index() is not None)
        del own, spec
        gc.collect()
        print("after", mp.function_index() is not None)
        same(mp.functions_using([code]), made)  # a new index, a new walk
        print("rebuilt", walks())
        """,
    )
    expected = ["before", "True", "after", "False", "rebuilt", "1"]
    if not INDEXED:
        expected = ["before", "False", "after", "False", "rebuilt", "None"]
    assert proc.stdout.split() == expected


@pytest.mark.skipif(not INDEXED, reason="function watchers are 3.12+")
def test_a_watcher_cleared_behind_its_back_is_noticed_and_the_index_rebuilt(isolated):
    proc = run(
        isolated,
        """
        import ctypes
        code = make(0).__code__
        made = [make(i) for i in range(50)]
        same(mp.functions_using([code]), made)
        watcher = mp.function_index()["watcher"]
        clear = ctypes.pythonapi.PyFunction_ClearWatcher
        clear.argtypes = [ctypes.c_int]
        assert clear(watcher) == 0
        # unseen by the index: these die, their memory is reused
        del made[:40]
        gc.collect()
        junk = [(lambda: 0) for _ in range(1000)]
        made += [make(i) for i in range(7)]
        same(mp.functions_using([code]), made)
        print("ok", walks())
        """,
    )
    assert proc.stdout.split() == ["ok", "1"]


@pytest.mark.skipif(not INDEXED, reason="function watchers are 3.12+")
def test_other_watchers_hear_patches_as_before(isolated):
    run(
        isolated,
        """
        code = make(0).__code__
        mp.functions_using([code])
        report = mp.selftest(verbose=False)
        assert report, report
        """,
    )


def test_without_the_index_the_heap_is_walked(isolated):
    proc = run(
        isolated,
        """
        code = make(0).__code__
        made = [make(i) for i in range(10)]
        same(mp.functions_using([code]), made)
        same(mp.functions_using([code]), made)
        print(mp.function_index())
        """,
        env={"MIGHTY_PATCHER_FUNCTION_INDEX": "0"},
    )
    assert proc.stdout.split() == ["None"]


def test_many_codes_at_once(isolated):
    run(
        isolated,
        """
        factories = []
        for n in range(40):
            ns = {}
            exec(f"def f(k):\\n    return lambda: k + {n}\\n", ns)
            factories.append(ns["f"])
        made = [f(i) for f in factories for i in range(3)]
        codes = [f(0).__code__ for f in factories]
        same(mp.functions_using(codes), made)
        same(mp.functions_using(codes[:5]), made[:15])
        """,
    )


def test_old_code_objects_are_released_once_unused(isolated):
    proc = run(
        isolated,
        """
        import weakref
        ns = {}
        exec("def f(k):\\n    return lambda: k\\n", ns)
        code = ns["f"](0).__code__
        ref = weakref.ref(code)
        made = [ns["f"](i) for i in range(3)]
        mp.functions_using([code])
        del made, ns, code
        gc.collect()
        mp.functions_using([make(0).__code__])   # each use releases what nothing else holds
        gc.collect()
        print(ref() is None)
        """,
    )
    assert proc.stdout.split() == ["True"]
