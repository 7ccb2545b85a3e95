"""The C API: a C extension (tests/capi/test_capi_ext.c), compiled here with the running
interpreter's headers and ``mighty_patcher.get_include()``, imports the capsule through the
header's helper and calls every entry. Each scenario runs in a fresh interpreter."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import mighty_patcher
from conftest import ROOT, build_extension, compiler, extension_path, require

SOURCE = ROOT / "tests" / "capi" / "test_capi_ext.c"
HEADER = Path(mighty_patcher.get_include()) / "mighty_patcher.h"

REPORT = """{
    "module": "shapes", "file": "/src/shapes.py", "ok": True, "patched": ["area"],
    "added": [], "deleted": [], "rerun": [], "needs_restart": [], "seconds": 0.0018,
    "error": None,
}"""


def build(out_dir: Path, *flags: str, source: Path = SOURCE) -> subprocess.CompletedProcess[str]:
    """Compiles ``source`` into ``out_dir`` as the extension module ``test_capi_ext``."""
    return build_extension(source, out_dir, "test_capi_ext", *flags)


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("capi-ext")
    build(out)
    return out


def script(ext_dir: Path, body: str, *, first_on_path: Path | None = None) -> str:
    """A script that imports mighty_patcher and the test extension, then runs ``body``."""
    path = [str(ext_dir)] if first_on_path is None else [str(first_on_path), str(ext_dir)]
    return (
        "import sys\n"
        f"sys.path[:0] = {path!r}\n"
        "import mighty_patcher as mp\n"
        "import test_capi_ext as ext\n"
        "native = getattr(mp, 'mighty_patcher', mp)  # the package's extension, or itself\n"
        f"REPORT = {REPORT}\n" + body + "\nprint('capi ok')\n"
    )


def run(isolated, ext_dir: Path, body: str, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = isolated(script(ext_dir, _dedent(body), **kwargs))
    assert proc.stdout.strip().endswith("capi ok"), proc.stdout + proc.stderr
    return proc


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text)


def test_get_include_is_the_directory_of_the_header():
    assert HEADER.is_file()
    assert '#define MIGHTY_PATCHER_CAPSULE_NAME "mighty_patcher._C_API"' in HEADER.read_text()


def test_the_header_compiles_without_warnings(tmp_path):
    proc = build(tmp_path)
    assert "mighty_patcher.h" not in proc.stderr, proc.stderr


def test_the_header_compiles_as_cpp(tmp_path):
    require(shutil.which("c++") is not None, "needs a C++ compiler")
    source = tmp_path / "use.cpp"
    source.write_text(
        '#include "mighty_patcher.h"\n'
        "int use(PyObject *f, PyObject *g) {\n"
        "    if (MightyPatcher_IMPORT < 0) return -1;\n"
        "    return MightyPatcher_HAS(patch_function) ? MightyPatcher_PatchFunction(f, g) : -1;\n"
        "}\n"
    )
    command = [
        "c++",
        "-fsyntax-only",
        "-Wall",
        "-Wextra",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{mighty_patcher.get_include()}",
        str(source),
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "mighty_patcher.h" not in proc.stderr, proc.stderr


def test_the_capsule_is_on_the_package_and_on_the_native_module(mp):
    from mighty_patcher import mighty_patcher as native

    assert mp._C_API is native._C_API
    assert 'capsule object "mighty_patcher._C_API"' in repr(mp._C_API)


def test_the_table_describes_this_build(isolated, ext_dir):
    run(
        isolated,
        ext_dir,
        """
        info = ext.api_info()
        assert info["size"] == info["sizeof"], info
        assert info["api_version"] == info["header_api_version"] == 1, info
        assert info["python_version"] >> 16 == sys.hexversion >> 16, info
        # Both built against this interpreter: the extension by its build script (its
        # sys.hexversion), the test module by its headers (PY_VERSION_HEX).
        assert info["python_version"] == info["compiled_for"], info
        assert info["has_remove_reload_callback"]
        """,
    )


def test_a_function_patched_from_c_runs_the_new_code_through_old_references(isolated, ext_dir):
    run(
        isolated,
        ext_dir,
        """
        def area(r):
            return 3 * r * r

        class Shape:
            def describe(self):
                return "old"

        held = area
        bound = Shape().describe
        site = lambda: held(1)
        for _ in range(3000):
            site()
        ns = {}
        exec(
            "def area(r):\\n    return 4 * r * r\\n"
            "class Shape:\\n    def describe(self):\\n        return 'new'\\n",
            globals(),
            ns,
        )
        assert ext.patch_function(area, ns["area"]) == 0
        assert held is area and held(1) == 4 and site() == 4
        assert ext.patch_function(Shape.describe, ns["Shape"].describe) == 0
        assert bound() == "new"
        """,
    )


def test_swap_code_from_c_keeps_closure_cells_and_refuses_a_missing_free_variable(
    isolated, ext_dir
):
    run(
        isolated,
        ext_dir,
        """
        import types

        def make(step):
            def inner(x):
                return x + step
            return inner

        def inner_code(source):
            ns = {}
            exec(source, globals(), ns)
            consts = ns["make"].__code__.co_consts
            return next(c for c in consts if isinstance(c, types.CodeType))

        by_five = make(5)
        old_code, old_cell = by_five.__code__, by_five.__closure__[0]
        needs_scale = inner_code(
            "def make(step, scale):\\n    def inner(x):\\n        return (x + step) * scale\\n"
            "    return inner\\n"
        )
        try:
            ext.swap_code(by_five, needs_scale)
        except mp.PatchError as e:
            assert "free variable 'scale'" in str(e), e
        else:
            raise AssertionError("a missing free variable was accepted")
        assert by_five.__code__ is old_code and by_five(1) == 6, "a refused swap changed it"

        times = inner_code(
            "def make(step):\\n    def inner(x):\\n        return x * step\\n    return inner\\n"
        )
        assert ext.swap_code(by_five, times) == 0
        assert by_five(2) == 10 and by_five.__closure__[0] is old_cell
        """,
    )


def test_patch_class_from_c_updates_a_class_with_an_instance(isolated, ext_dir):
    run(
        isolated,
        ext_dir,
        """
        class Shape:
            sides = 3
            def area(self):
                return 1
            def gone(self):
                return "gone"
            def __repr__(self):
                return "old repr"

        s = Shape()
        area = Shape.area
        ns = {}
        exec(
            "class Shape:\\n"
            "    sides = 4\\n"
            "    def area(self):\\n        return 2\\n"
            "    def perimeter(self):\\n        return self.sides\\n"
            "    def __repr__(self):\\n        return 'new repr'\\n",
            globals(),
            ns,
        )
        assert ext.patch_class(Shape, ns["Shape"], ext.NULL, ext.NULL) == 0
        assert (s.area(), area(s), repr(s), s.perimeter()) == (2, 2, "new repr", 4)
        assert not hasattr(Shape, "gone") and type(s) is Shape

        class Box:
            width = 1
            height = 1
            def old(self):
                return "kept"

        ns = {}
        exec("class Box:\\n    width = 2\\n    height = 2\\n", globals(), ns)
        # Only `width` is updated and nothing is removed; None is the same as NULL.
        assert ext.patch_class(Box, ns["Box"], ["width"], ()) == 0
        assert (Box.width, Box.height, Box().old()) == (2, 1, "kept")
        assert ext.patch_class(Box, ns["Box"], None, None) == 0
        assert Box.height == 2 and not hasattr(Box, "old")

        class Slotted:
            __slots__ = ("a",)
        ns = {}
        exec("class Slotted:\\n    __slots__ = ('a', 'b')\\n", globals(), ns)
        try:
            ext.patch_class(Slotted, ns["Slotted"], ext.NULL, ext.NULL)
        except mp.NeedsRestart:
            pass
        else:
            raise AssertionError("a __slots__ change was accepted")
        assert Slotted.__slots__ == ("a",)
        """,
    )


def test_functions_using_from_c_returns_the_closures_as_a_new_list(isolated, ext_dir):
    run(
        isolated,
        ext_dir,
        """
        def make(n):
            def inner():
                return n
            return inner

        a, b = make(1), make(2)
        found = ext.functions_using([a.__code__])
        assert type(found) is list and sys.getrefcount(found) == 2, "not a new reference"
        assert {id(f) for f in found} == {id(a), id(b)}
        assert ext.functions_using(()) == []
        """,
    )


def test_the_reloading_mark_from_c_is_the_one_python_sees(isolated, ext_dir):
    run(
        isolated,
        ext_dir,
        """
        import threading

        assert ext.currently_reloading() == 0
        assert ext.enter_reloading() == 0
        assert mp.currently_reloading() and ext.currently_reloading() == 1
        with mp.reloading():
            assert ext.enter_reloading() == 0
            assert ext.exit_reloading() == 0
            assert ext.currently_reloading() == 1
        seen = []
        thread = threading.Thread(target=lambda: seen.append(ext.currently_reloading()))
        thread.start()
        thread.join()
        assert seen == [0], "another thread saw this thread's mark"
        assert ext.exit_reloading() == 0
        assert ext.currently_reloading() == 0 and not mp.currently_reloading()
        assert ext.exit_reloading() == 0, "an unmatched exit does nothing"
        with mp.reloading():
            assert ext.currently_reloading() == 1
        """,
    )


def test_reload_callbacks_run_in_order_and_a_failing_one_does_not_stop_the_next(isolated, ext_dir):
    run(
        isolated,
        ext_dir,
        """
        hooked = []
        sys.unraisablehook = lambda u: hooked.append(
            (u.exc_type, str(u.exc_value), u.err_msg or "", u.object)
        )
        events = []

        def python_callback(report):
            events.append("python")

        def raising(report):
            raise KeyError("the python callback failed")

        assert ext.add_recorder(events) == 0
        assert ext.add_failing() == 0
        assert ext.add_silent_failure() == 0
        mp.add_reload_callback(python_callback)
        mp.add_reload_callback(raising)
        assert ext.add_recorder(events) == 0

        native._notify_reloaded(REPORT)
        assert events == [REPORT, "python", REPORT], events
        assert events[0] is REPORT and events[2] is REPORT, "the report was not passed as is"
        assert [h[0] for h in hooked] == [RuntimeError, SystemError, KeyError], hooked
        for kind, message, err_msg, obj in hooked[:2]:
            assert "Exception ignored in the mighty_patcher reload callback" in err_msg, err_msg
        assert "failed on purpose" in hooked[0][1]
        assert "without setting an exception" in hooked[1][1]
        assert hooked[2][3] is raising

        # Unregister: each registration once; the recorder was registered twice.
        assert ext.remove_failing() == 0
        assert ext.remove_silent_failure() == 0
        mp.remove_reload_callback(raising)
        assert ext.remove_recorder(events) == 0
        del events[:], hooked[:]
        native._notify_reloaded(REPORT)
        assert events == ["python", REPORT] and hooked == [], (events, hooked)
        assert ext.remove_recorder(events) == 0
        mp.remove_reload_callback(python_callback)
        del events[:]
        native._notify_reloaded(REPORT)
        assert events == [] and hooked == []
        """,
    )


def test_a_c_callback_removed_during_a_round_is_not_called_in_it(isolated, ext_dir):
    run(
        isolated,
        ext_dir,
        """
        events = []
        start = sys.getrefcount(events)
        assert ext.add_remover(events) == 0
        assert ext.add_recorder(events) == 0
        native._notify_reloaded(REPORT)
        assert events == [], "the recorder ran after it was unregistered"
        assert sys.getrefcount(events) == start, "both callbacks let go of their argument"
        try:
            ext.remove_recorder(events)
        except ValueError:
            pass
        else:
            raise AssertionError("the recorder was still registered")
        native._notify_reloaded(REPORT)
        assert events == []
        """,
    )


def test_wrong_arguments_fail_with_an_exception_and_an_error_result(isolated, ext_dir):
    run(
        isolated,
        ext_dir,
        """
        def f():
            return 1

        class C:
            pass

        def fails(call, kind, text=""):
            try:
                call()
            except kind as e:
                assert text in str(e), (text, e)
            else:
                raise AssertionError(f"no {kind.__name__}")

        NULL = ext.NULL
        fails(lambda: ext.patch_function(len, f), TypeError, "must be a Python function")
        fails(lambda: ext.patch_function(f, NULL), SystemError, "got NULL for source")
        fails(lambda: ext.patch_function(NULL, f), SystemError, "got NULL for target")
        fails(lambda: ext.swap_code(f, f), TypeError, "must be a code object")
        fails(lambda: ext.swap_code(NULL, f.__code__), SystemError, "got NULL for function")
        fails(lambda: ext.swap_code(f, NULL), SystemError, "got NULL for code")
        fails(lambda: ext.patch_class(C, 1, NULL, NULL), TypeError, "takes a class and")
        fails(lambda: ext.patch_class(int, C, NULL, NULL), TypeError, "built-in")
        fails(lambda: ext.patch_class(C, C, "name", NULL), TypeError, "not a str")
        fails(lambda: ext.patch_class(NULL, C, NULL, NULL), SystemError, "got NULL for old")
        fails(lambda: ext.patch_class(C, NULL, NULL, NULL), SystemError, "got NULL for new")
        fails(lambda: ext.functions_using(NULL), SystemError, "got NULL for codes")
        fails(lambda: ext.functions_using([f]), TypeError, "code objects")
        fails(lambda: ext.functions_using(5), TypeError)
        fails(ext.add_null_callback, SystemError, "got NULL for callback")
        fails(ext.remove_null_callback, SystemError, "got NULL for callback")
        fails(lambda: ext.remove_recorder([]), ValueError, "not registered")
        fails(ext.remove_failing, ValueError, "not registered")
        fails(lambda: native._notify_reloaded([]), TypeError, "dict")
        fails(lambda: mp.add_reload_callback(5), TypeError, "callable")
        assert f() == 1 and ext.currently_reloading() == 0, "a failed call changed something"
        """,
    )


def test_the_import_fails_cleanly_when_the_capsule_is_missing(isolated, ext_dir, tmp_path):
    for name, fake_source in [
        ("none", "PatchError = Exception\n"),
        ("not-a-capsule", "_C_API = object()\n"),
    ]:
        fake = tmp_path / name
        fake.mkdir()
        (fake / "mighty_patcher.py").write_text(fake_source)
        proc = isolated(
            f"""
            import sys
            sys.path[:0] = [{str(fake)!r}, {str(ext_dir)!r}]
            try:
                import test_capi_ext
            except ImportError as e:
                assert "mighty_patcher C API" in str(e), e
                assert "mighty_patcher._C_API" in str(e), e
                assert e.__cause__ is not None, "the reason is not chained"
                print("refused:", type(e.__cause__).__name__, e.__cause__)
            else:
                raise AssertionError("imported without the capsule")
            assert sys.modules["mighty_patcher"].__file__.startswith({str(fake)!r})
            """
        )
        assert "refused:" in proc.stdout, proc.stdout


def test_the_import_fails_cleanly_when_the_api_is_older_than_required(isolated, tmp_path):
    future = tmp_path / "future"
    build(future, "-DMIGHTY_PATCHER_API_VERSION_REQUIRED=999")
    proc = isolated(
        f"""
        import sys
        sys.path.insert(0, {str(future)!r})
        try:
            import test_capi_ext
        except ImportError as e:
            assert "C API version 1, older than version 999" in str(e), e
            print("refused")
        else:
            raise AssertionError("imported a too old C API")
        import mighty_patcher
        assert mighty_patcher.currently_reloading() is False, "mighty_patcher itself is fine"
        """
    )
    assert proc.stdout.strip() == "refused"


def test_the_api_works_with_the_shared_library_alone_on_sys_path(isolated, ext_dir, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(extension_path(), alone)
    run(
        isolated,
        ext_dir,
        f"""
        assert mp.__file__.startswith({str(alone)!r}) and not hasattr(mp, "__path__")
        assert native is mp
        def f():
            return "old"
        held = f
        ns = {{}}
        exec("def f():\\n    return 'new'\\n", globals(), ns)
        assert ext.patch_function(f, ns["f"]) == 0 and held() == "new"
        events = []
        assert ext.add_recorder(events) == 0
        mp._notify_reloaded(REPORT)
        assert events == [REPORT]
        """,
        first_on_path=alone,
    )


def test_entries_fail_cleanly_once_the_module_is_gone_and_work_after_a_new_import(
    isolated, ext_dir, tmp_path
):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(extension_path(), alone)
    run(
        isolated,
        ext_dir,
        """
        import gc
        import weakref

        events = []
        assert ext.add_recorder(events) == 0
        assert ext.enter_reloading() == 0
        gone = weakref.ref(mp)
        del sys.modules["mighty_patcher"], mp, native
        gc.collect()
        assert gone() is None, gc.get_referrers(gone())

        def f():
            return 1

        for call in [
            ext.currently_reloading,
            ext.enter_reloading,
            ext.exit_reloading,
            lambda: ext.patch_function(f, f),
            lambda: ext.swap_code(f, f.__code__),
            lambda: ext.patch_class(int, int, None, None),
            lambda: ext.functions_using([f.__code__]),
            lambda: ext.add_recorder(events),
            lambda: ext.remove_recorder(events),
        ]:
            try:
                call()
            except RuntimeError as e:
                assert "import mighty_patcher again" in str(e), e
            else:
                raise AssertionError("an entry ran without its module")

        import mighty_patcher as again
        assert ext.currently_reloading() == 0, "the new module has its own state"
        assert ext.enter_reloading() == 0 and again.currently_reloading()
        assert ext.exit_reloading() == 0
        assert ext.add_recorder(events) == 0
        again._notify_reloaded(REPORT)
        assert events == [REPORT]
        """,
        first_on_path=alone,
    )


def test_each_interpreter_has_its_own_module_behind_the_same_table(isolated, ext_dir):
    run(
        isolated,
        ext_dir,
        f"""
        assert ext.enter_reloading() == 0
        status = ext.run_in_subinterpreter(
            "import sys\\n"
            "sys.path[:0] = [{str(ext_dir)!r}]\\n"
            "import mighty_patcher as mp, test_capi_ext as ext\\n"
            "assert ext.currently_reloading() == 0, 'saw the main interpreter state'\\n"
            "assert ext.enter_reloading() == 0 and mp.currently_reloading()\\n"
            "events = []\\n"
            "assert ext.add_recorder(events) == 0\\n"
            "getattr(mp, 'mighty_patcher', mp)._notify_reloaded({{'module': 'm'}})\\n"
            "assert events == [{{'module': 'm'}}], events\\n"
            "assert ext.remove_recorder(events) == 0\\n"
            "print('subinterpreter ok', flush=True)\\n"
        )
        assert status == 0, "the subinterpreter script failed (traceback above)"
        assert ext.currently_reloading() == 1 and mp.currently_reloading()
        assert ext.exit_reloading() == 0 and ext.currently_reloading() == 0
        """,
    )


def test_the_imported_package_has_the_header_beside_it():
    installed = Path(mighty_patcher.__file__).resolve().parent
    assert (installed / "include" / "mighty_patcher.h").is_file()
    assert os.path.samefile(mighty_patcher.get_include(), installed / "include")
    assert sys.modules["mighty_patcher"] is mighty_patcher


def test_the_c_examples_in_the_docs_compile(tmp_path):
    native = (ROOT / "docs" / "native.md").read_text()
    blocks = re.findall(r"^```c\n(.*?)^```$", native, re.M | re.S)
    assert blocks, "no C example found: the extraction regex is broken"
    for i, block in enumerate(blocks):
        source = tmp_path / f"docs_{i}.c"
        source.write_text(block)
        command = [
            *compiler(),
            "-fsyntax-only",
            "-Wall",
            "-Wno-unused-function",
            f"-I{sysconfig.get_paths()['include']}",
            f"-I{mighty_patcher.get_include()}",
            str(source),
        ]
        proc = subprocess.run(command, capture_output=True, text=True)
        assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
