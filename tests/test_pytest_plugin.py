"""The pytest plugin, driven end to end: pytest runs in a subprocess on a small project, and
the debugger's commands come on its stdin, one of them saving a file the way an editor does
before ``c``. The watch variant gets its save from this process once it says it waits."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from conftest import ROOT, require, write_readme_project

pytest_plugins = ["pytester"]

INTERRUPTED, USAGE_ERROR = 2, 4

APP_BROKEN = """
def double(x):
    return x * 3
"""
APP_FIXED = """
def double(x):
    return x * 2
"""
TEST_APP = """
import app

def test_double():
    assert app.double(21) == 42
"""


def save(path: str, text: str) -> str:
    """A pdb command that saves ``text`` into ``path``, as an editor would."""
    return f"import pathlib; pathlib.Path({path!r}).write_text({textwrap.dedent(text)!r})"


def replace(path: str, old: str, new: str) -> str:
    """A pdb command that edits ``path`` in place, replacing ``old`` with ``new``."""
    return (
        f"import pathlib; p = pathlib.Path({path!r}); "
        f"p.write_text(p.read_text().replace({old!r}, {new!r}))"
    )


def pytest_args(pytester: pytest.Pytester, *args: str, randomly: bool = False) -> list[str]:
    basetemp = pytester.path.parent / f"{pytester.path.name}-basetemp"
    plugins = [] if randomly else ["-p", "no:randomly"]  # the tests' order is part of them
    return [sys.executable, "-m", "pytest", f"--basetemp={basetemp}", *plugins, *args]


def run(
    pytester: pytest.Pytester, *args: str, pdb: list[str] = (), randomly: bool = False
) -> pytest.RunResult:
    """pytest with ``args`` in the project, the ``pdb`` commands on its stdin."""
    stdin = "".join(f"{command}\n" for command in pdb).encode()
    return pytester.run(*pytest_args(pytester, *args, randomly=randomly), stdin=stdin, timeout=60)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """``app.double`` is wrong; ``test_double`` says so."""
    pytester.makepyfile(app=APP_BROKEN, test_app=TEST_APP)
    return pytester


# --- the pdb loop --------------------------------------------------------------------------


def test_a_fix_saved_in_pdb_is_applied_on_c_and_the_test_passes_when_it_runs_again(project):
    result = run(project, "--reload-loop", pdb=[save("app.py", APP_FIXED), "c"])
    result.stdout.fnmatch_lines(
        [
            "E       assert 63 == 42",
            "*entering PDB*",
            "[[]mighty_patcher] reloaded app: patched double; * ms",
            "[[]mighty_patcher] running test_app.py::test_double again (attempt 2)",
            "*= fixed in the reload loop =*",
            "test_app.py::test_double passed on attempt 2",
        ]
    )
    assert result.parseoutcomes() == {"passed": 1}
    assert result.ret == 0


def test_an_edit_of_the_test_function_itself_runs_when_the_test_runs_again(pytester):
    pytester.makepyfile(app=APP_FIXED, test_app=TEST_APP.replace("42", "43"))
    result = run(pytester, "--reload-loop", pdb=[replace("test_app.py", "43", "42"), "c"])
    result.stdout.fnmatch_lines(["*reloaded test_app: patched test_double*", "*1 passed*"])
    assert result.ret == 0


def test_an_edited_test_module_still_has_its_assertions_rewritten(pytester):
    pytester.makepyfile(
        app="def inc(x):\n    return x + 1\n",
        test_app="""
        import app

        def test_inc():
            assert app.inc(1) == 3
        """,
    )
    result = run(
        pytester,
        "--reload-loop",
        pdb=[
            replace("test_app.py", "app.inc(1) == 3", "app.inc(2) == 4"),
            "c",
            replace("test_app.py", "app.inc(2) == 4", "app.inc(3) == 4"),
            "c",
        ],
    )
    result.stdout.fnmatch_lines(
        [
            "E       assert 2 == 3",
            "*running test_app.py::test_inc again (attempt 2)",
            ">       assert app.inc(2) == 4",
            "E       assert 3 == 4",
            "E        +  where 3 = <function inc at *>(2)",
            "*running test_app.py::test_inc again (attempt 3)",
            "*1 passed*",
        ]
    )


def test_a_fixture_edited_in_conftest_is_set_up_anew_for_the_rerun(pytester):
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def number():
            return 21
        """
    )
    pytester.makepyfile(
        test_app="""
        def test_number(number):
            assert number == 22
        """
    )
    result = run(pytester, "--reload-loop", pdb=[replace("conftest.py", "21", "22"), "c"])
    result.stdout.fnmatch_lines(["*reloaded conftest: patched number*", "*1 passed*"])
    assert result.ret == 0


def test_a_fixture_that_failed_to_set_up_is_set_up_again_once_fixed(pytester):
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="module")
        def config():
            raise RuntimeError("no config")
        """
    )
    pytester.makepyfile(
        test_app="""
        def test_config(config):
            assert config == {"debug": True}
        """
    )
    fix = replace("conftest.py", 'raise RuntimeError("no config")', 'return {"debug": True}')
    result = run(pytester, "--reload-loop", pdb=[fix, "c"])
    result.stdout.fnmatch_lines(["E       RuntimeError: no config", "*1 passed*"])
    assert result.ret == 0


def test_a_test_given_a_new_argument_gets_the_fixture(pytester):
    pytester.makepyfile(
        test_app="""
        def test_writes():
            (tmp_path / "out.txt").write_text("ok")
        """
    )
    result = run(
        pytester, "--reload-loop", pdb=[replace("test_app.py", "writes()", "writes(tmp_path)"), "c"]
    )
    result.stdout.fnmatch_lines(["E       NameError: name 'tmp_path' is not defined", "*1 passed*"])


def test_a_syntax_error_saved_is_shown_and_the_loop_goes_on_until_it_is_fixed(project):
    result = run(
        project,
        "--reload-loop",
        pdb=[
            replace("app.py", "x * 3", "x * 2 +"),
            "c",
            save("app.py", APP_FIXED),
            "c",
        ],
    )
    result.stdout.fnmatch_lines(
        [
            "[[]mighty_patcher] reload of app failed; it keeps running its previous version",
            "SyntaxError: invalid syntax",
            "  at app.py:2",
            "    return x * 2 +",
            "[[]mighty_patcher] fix it and save, then 'c' to try again",
            "*entering PDB*",
            "*reloaded app: patched double*",
            "*running test_app.py::test_double again (attempt 2)",
            "*1 passed*",
        ]
    )
    assert result.ret == 0


def test_q_ends_the_session_as_with_pdb(project):
    project.makepyfile(test_later="def test_later():\n    pass\n")
    result = run(project, "--reload-loop", pdb=["q"])
    result.stdout.fnmatch_lines(["*Quitting debugger*"])
    assert result.parseoutcomes() == {"failed": 1}
    assert result.ret == INTERRUPTED


def test_without_the_flags_the_plugin_does_nothing(pytester):
    pytester.makepyfile(
        test_inert="""
        import sys

        def test_nothing_runs(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("mighty_patcher")  # the entry point
            assert not pytestconfig.pluginmanager.has_plugin("mighty_patcher.loop")
            assert "mighty_patcher.watch" not in sys.modules
            assert not any(
                getattr(hook, "__module__", "").startswith("mighty_patcher")
                for hook in sys.path_hooks
            )
        """
    )
    result = run(pytester, "--reload-dir", ".")
    result.stdout.fnmatch_lines(["*1 passed*"])
    result.stdout.no_fnmatch_line("*reload loop*")


# --- the watch variant ---------------------------------------------------------------------


def test_the_watch_variant_runs_a_failed_test_again_after_each_save_until_it_passes(project):
    proc = subprocess.Popen(
        pytest_args(project, "--reload-watch"),
        cwd=project.path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    app = project.path / "app.py"
    try:
        assert proc.stdout is not None
        lines = _until(proc.stdout, "waiting for a save")
        assert "E       assert 63 == 42" in lines
        app.write_text(APP_BROKEN.replace("x * 3", "x * 2 +"))
        lines = _until(proc.stdout, "waiting for a save")
        assert "SyntaxError: invalid syntax" in lines
        app.write_text(APP_FIXED)
        rest = proc.stdout.read()
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    assert "[mighty_patcher] running test_app.py::test_double again (attempt 2)" in rest
    assert re.search(r"=+ 1 passed in ", rest), rest
    assert proc.returncode == 0


def test_a_test_added_while_watching_is_said_to_run_in_the_next_session(project):
    # (found by trying the product as a user: "added test_new", and it never ran)
    proc = subprocess.Popen(
        pytest_args(project, "--reload-watch"),
        cwd=project.path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        _until(proc.stdout, "waiting for a save")
        (project.path / "test_app.py").write_text(
            TEST_APP + "\n\ndef test_new():\n    assert app.double(1) == 2\n"
        )
        lines = _until(proc.stdout, "in the next session")
        (project.path / "app.py").write_text(APP_FIXED)
        rest = proc.stdout.read()
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    assert "added test_new" in lines
    assert "new: test_new. pytest collects tests when a session starts" in lines
    assert re.search(r"=+ 1 passed in ", rest), rest


def _until(stream, text: str) -> str:
    """The output up to the first line holding ``text``."""
    lines = []
    for line in stream:
        lines.append(line)
        if text in line:
            return "".join(lines)
    raise AssertionError(f"the output ended without {text!r}:\n{''.join(lines)}")


# --- alongside other options and plugins ---------------------------------------------------


def test_x_does_not_stop_the_session_at_a_test_the_loop_fixed(project):
    project.makepyfile(test_later="def test_later():\n    pass\n")
    result = run(project, "-x", "--reload-loop", pdb=[save("app.py", APP_FIXED), "c"])
    assert result.parseoutcomes() == {"passed": 2}
    assert result.ret == 0


def test_lf_reruns_the_failed_test_and_forgets_it_once_the_loop_fixed_it(project):
    project.makepyfile(test_other="def test_other():\n    pass\n")
    assert run(project).parseoutcomes() == {"failed": 1, "passed": 1}
    result = run(project, "--lf", "--reload-loop", pdb=[save("app.py", APP_FIXED), "c"])
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure*"])
    assert result.parseoutcomes() == {"passed": 1}
    result = run(project, "--lf")
    result.stdout.fnmatch_lines(["*no previously failed tests*"])
    assert result.parseoutcomes() == {"passed": 2}


def test_pytest_xdist_is_refused_with_a_reason(project):
    require(importlib.util.find_spec("xdist") is not None, "needs pytest-xdist (dev requirement)")
    result = run(project, "--reload-loop", "-n", "2")
    result.stderr.fnmatch_lines(["ERROR: --reload-loop cannot run with pytest-xdist*"])
    assert result.ret == USAGE_ERROR


def test_pytest_randomly_shuffles_and_the_loop_still_fixes_the_failing_test(project):
    require(
        importlib.util.find_spec("pytest_randomly") is not None,
        "needs pytest-randomly (dev requirement)",
    )
    project.makepyfile(test_other="def test_other():\n    pass\n")
    result = run(
        project,
        "--reload-loop",
        "-p",
        "randomly",
        pdb=[save("app.py", APP_FIXED), "c"],
        randomly=True,
    )
    result.stdout.fnmatch_lines(["Using --randomly-seed=*", "*2 passed*"])
    assert result.ret == 0


def test_a_reload_dir_that_does_not_exist_is_a_usage_error(project):
    result = run(project, "--reload-loop", "--reload-dir", "nowhere")
    result.stderr.fnmatch_lines(["ERROR: --reload-dir */nowhere: no such directory"])
    assert result.ret == USAGE_ERROR


# --- the docs ------------------------------------------------------------------------------


def test_the_documented_flow_fixes_a_test_of_a_src_layout_project(pytester):
    """The README's example project, with the test, the pytest configuration and the command
    docs/pytest.md gives."""
    page = (ROOT / "docs" / "pytest.md").read_text()
    write_readme_project(pytester.path)
    test = re.search(r"^```python\n# (tests/\w+\.py)\n(.*?)^```$", page, re.M | re.S)
    assert test, "the page shows the test file"
    (pytester.path / test.group(1)).parent.mkdir(exist_ok=True)
    (pytester.path / test.group(1)).write_text(test.group(2))
    toml = re.search(r"^```toml\n(.*?)^```$", page, re.M | re.S)
    assert toml, "the page shows the pytest configuration"
    (pytester.path / "pyproject.toml").write_text(toml.group(1))
    command = re.search(r"^\$ (pytest --reload-loop .*)$", page, re.M)
    assert command, "the page shows the command"
    math = Path("src/some_module/math.py")
    (pytester.path / math).write_text((pytester.path / math).read_text().replace("x * 2", "x * 3"))
    result = run(
        pytester,
        *command.group(1).split()[1:],
        pdb=[replace(str(math), "x * 3", "x * 2"), "c"],
    )
    result.stdout.fnmatch_lines(
        ["*reloaded some_module.math: patched double*", "*running tests/test_math.py::*again*"]
    )
    assert result.parseoutcomes() == {"passed": 1}
