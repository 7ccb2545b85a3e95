"""A running program, the real watcher, real saves: each reload rule and each editor's way of
saving, observed from inside the program (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from live import LiveProgram, write

SEED_MATH = """
from mighty_patcher import currently_reloading

def double(x):
    return x * 2

if not currently_reloading():
    print("math imported", flush=True)
"""

SEED_PRINT = """
from some_module.math import double

def show(x):
    return f"double({x}) = {double(x)}"
"""


def test_the_seed_project_changes_what_a_running_loop_computes(program, tmp_path):
    write(tmp_path / "src/some_module/__init__.py", "")
    write(tmp_path / "src/some_module/math.py", SEED_MATH)
    write(tmp_path / "src/some_module/print.py", SEED_PRINT)
    p = LiveProgram(
        tmp_path / "src",
        """
        import threading, time
        from some_module.print import show
        latest = []
        def loop():
            while True:
                latest.append(show(3))
                time.sleep(0.005)
        threading.Thread(target=loop, daemon=True).start()
        """,
    )
    try:
        p.wait_for("latest")  # the loop's thread has made its first call
        assert p.eval("latest[-1]") == "double(3) = 6"
        write(tmp_path / "src/some_module/math.py", SEED_MATH.replace("x * 2", "x * 2 + 100"))
        (report,) = p.wait_reload()
        assert report["patched"] == ["double"] and report["ok"]
        # The loop's next call after the patch computes the new value.
        p.wait_for("latest[-1] != 'double(3) = 6'")
        assert p.eval("latest[-1]") == "double(3) = 106"
    finally:
        stderr = p.close()
    assert "reloaded some_module.math: patched double" in stderr


def save_in_place(path, text):
    with open(path, "w") as f:
        f.write(text)


def save_truncate_pause_write(path, text):
    with open(path, "r+") as f:
        f.truncate(0)
        f.flush()
        time.sleep(0.3)
        f.write(text)


def save_temp_then_rename(path, text):
    temp = path.with_name(path.name + ".swp")
    temp.write_text(text)
    os.replace(temp, path)


def save_with_sed(path, text):
    old = path.read_text()
    assert "return 1" in old and text == old.replace("return 1", "return 2")
    subprocess.run(["sed", "-i", "s/return 1/return 2/", str(path)], check=True)


def save_delete_then_recreate(path, text):
    path.unlink()
    time.sleep(0.05)
    path.write_text(text)


@pytest.mark.parametrize(
    "save",
    [
        save_in_place,
        save_truncate_pause_write,
        save_temp_then_rename,
        save_with_sed,
        save_delete_then_recreate,
    ],
)
def test_every_editor_save_pattern_is_applied_once_complete(program, tmp_path, save):
    source = "KEEP = object()\n" + "".join(f"def f{i}():\n    return 1\n" for i in range(30))
    write(tmp_path / "app/mod.py", source)
    p = program("from app import mod\nkeep = mod.KEEP\n")
    save(tmp_path / "app/mod.py", source.replace("return 1", "return 2"))
    reports = p.wait_reload()
    assert all(r["ok"] for r in reports) and not any(r["deleted"] for r in reports), reports
    assert p.eval("[getattr(mod, f'f{i}')() for i in range(30)]") == [2] * 30
    assert p.eval("mod.KEEP is keep") is True


def test_a_file_never_imported_is_never_executed(program, tmp_path):
    write(tmp_path / "app/used.py", "X = 1\n")
    write(tmp_path / "app/unused.py", "X = 1\n")
    p = program("from app import used\n")
    marker = tmp_path / "ran"
    write(tmp_path / "app/unused.py", f"open({str(marker)!r}, 'w').close()\n")
    write(tmp_path / "app/used.py", "X = 2\n")
    reports = p.wait_reload()
    assert p.eval("used.X") == 2
    # A barrier instead of a settle time: a save made now is applied after everything the
    # watcher saw before it, so once it is live any report for unused.py is in too.
    write(tmp_path / "app/used.py", "X = 3\n")
    p.wait_for("used.X == 3")
    reports += p.wait_reload(0)
    assert {r["module"] for r in reports} == {"app.used"}, reports
    assert not marker.exists()


def test_statements_rerun_by_dataflow_and_state_survives(program, tmp_path):
    write(tmp_path / "app/conf.py", "X = 1\nY = X * 2\nseen = []\n")
    p = program("from app import conf\nconf.seen.append('state')\n")
    write(tmp_path / "app/conf.py", "X = 10\nY = X * 2\nseen = []\n")
    (report,) = p.wait_reload()
    assert report["rerun"] == ["X = 10", "Y = X * 2"]
    assert p.eval("(conf.X, conf.Y, conf.seen)") == (10, 20, ["state"])


def test_imported_copies_of_a_constant_follow_it(program, tmp_path):
    write(tmp_path / "app/__init__.py", "")
    write(tmp_path / "app/settings.py", "RATE = 0.2\n")
    write(
        tmp_path / "app/billing.py",
        "from app.settings import RATE\ndef tax(x):\n    return x * RATE\n",
    )
    p = program("from app import billing\n")
    write(tmp_path / "app/settings.py", "RATE = 0.5\n")
    reports = p.wait_reload(2)
    assert [r["module"] for r in reports] == ["app.settings", "app.billing"]
    assert p.eval("billing.tax(10)") == 5.0


def test_methods_dunders_and_super_on_live_instances(program, tmp_path):
    write(
        tmp_path / "app/shapes.py",
        """
        class Base:
            def name(self):
                return "base"
        class Box(Base):
            scale = 2
            def __init__(self, n):
                self.n = n
            def size(self, factor=scale):
                return self.n * factor
        """,
    )
    p = program("from app.shapes import Box\nbox = Box(3)\nsize = box.size\n")
    write(
        tmp_path / "app/shapes.py",
        """
        class Base:
            def name(self):
                return "base"
        class Box(Base):
            scale = 2
            def __init__(self, n):
                self.n = n
            def size(self, factor=scale * 10):
                return self.n * factor
            def name(self):
                return "box < " + super().name()
            def __len__(self):
                return self.n
        """,
    )
    p.wait_reload()
    assert p.eval("(size(), box.name(), len(box), type(box) is Box)") == (60, "box < base", 3, True)


def test_closures_decorators_and_lru_caches(program, tmp_path):
    write(
        tmp_path / "app/funcs.py",
        """
        import functools
        def make(k):
            def inner(x):
                return x + k
            return inner
        @functools.lru_cache(maxsize=None)
        def slow(x):
            return x
        def traced(fn):
            @functools.wraps(fn)
            def wrapper(*a):
                return ["traced", fn(*a)]
            return wrapper
        @traced
        def g(x):
            return x
        """,
    )
    p = program("from app import funcs\nadd2 = funcs.make(2)\nfuncs.slow(1)\ng = funcs.g\n")
    write(
        tmp_path / "app/funcs.py",
        """
        import functools
        def make(k):
            def inner(x):
                return x * k
            return inner
        @functools.lru_cache(maxsize=None)
        def slow(x):
            return x * 100
        def traced(fn):
            @functools.wraps(fn)
            def wrapper(*a):
                return ["traced", fn(*a)]
            return wrapper
        @traced
        def g(x):
            return -x
        """,
    )
    p.wait_reload()
    assert p.eval("(add2(5), funcs.slow(1), g(4))") == (10, 100, ["traced", -4])


def test_a_deleted_definition_comes_back_into_the_same_object(program, tmp_path):
    source = "def f():\n    return 1\n\ndef g():\n    return 1\n"
    write(tmp_path / "app/mod.py", source)
    p = program("from app import mod\nf = mod.f\n")
    write(tmp_path / "app/mod.py", "def g():\n    return 1\n")
    (report,) = p.wait_reload()
    assert report["deleted"] == ["f"] and p.eval("hasattr(mod, 'f')") is False
    write(tmp_path / "app/mod.py", source.replace("return 1", "return 2"))
    p.wait_reload()
    assert p.eval("(mod.f is f, f(), mod.g())") == (True, 2, 2)


def test_bad_saves_change_nothing_and_the_next_good_save_applies(program, tmp_path):
    write(tmp_path / "app/mod.py", "X = 1\ndef f():\n    return X\n")
    p = program("from app import mod\n")
    write(tmp_path / "app/mod.py", "X = 2\ndef f(:\n    return X\n")
    (report,) = p.wait_reload()
    assert not report["ok"] and "mod.py:2" in report["error"]
    write(tmp_path / "app/mod.py", "X = 3\ndef f():\n    return X\nraise RuntimeError('no')\n")
    (report,) = p.wait_reload()
    assert not report["ok"] and "RuntimeError: no" in report["error"]
    assert p.eval("(mod.X, mod.f())") == (1, 1)
    write(tmp_path / "app/mod.py", "X = 4\ndef f():\n    return X * 10\n")
    (report,) = p.wait_reload()
    assert report["ok"] and p.eval("mod.f()") == 40


def test_threads_calling_during_reloads_see_whole_versions(program, tmp_path):
    template = "def f(x):\n    return ({v}, x)\n\nclass C:\n    def m(self):\n        return {v}\n"
    write(tmp_path / "app/hot.py", template.format(v=0))
    p = program(
        """
        import threading
        from app import hot
        seen, errors, stop = set(), [], []
        obj = hot.C()
        def worker():
            try:
                while not stop:
                    v, x = hot.f(7)
                    assert x == 7
                    seen.add(v)
                    obj.m()
            except BaseException as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        """
    )
    for v in range(1, 21):
        write(tmp_path / "app/hot.py", template.format(v=v))
        p.wait_reload()
    p.exec("stop.append(True)\nfor t in threads:\n    t.join()\n")
    assert p.eval("errors") == []
    assert p.eval("(hot.f(1), obj.m())") == ((20, 1), 20)
