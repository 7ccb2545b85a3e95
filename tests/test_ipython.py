"""``%load_ext mighty_patcher`` in a real IPython shell and a real Jupyter kernel.

The shell runs in a fresh interpreter per test (it is a process-wide singleton, and the
extension watches the roots of every module imported from outside site-packages, the test
suite's own included); the kernel is started by jupyter_client, and each cell's output is
what the kernel sent with that cell's message as parent: what a notebook shows under it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, require
from live import write

COUNTER = """
class Counter:
    def __init__(self):
        self.n = 0

    def step(self):
        self.n += 1
        return f"old {self.n}"
"""

# Each shell test is a script run in a fresh interpreter from its temporary directory, after
# this prelude: `cell(code)` runs a cell as IPython does and returns what it printed (stdout,
# stderr); `edit(old, new)` saves mod.py with a replacement. Then, unless the test says
# otherwise, the extension is loaded and mod.py imported.
PRELUDE = """
import os, sys, time
sys.path.insert(0, os.getcwd())
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

shell = InteractiveShell.instance()

def cell(code):
    with capture_output() as captured:
        result = shell.run_cell(code, store_history=True)
    if result.error_in_exec is not None or result.error_before_exec is not None:
        raise AssertionError(f"cell {code!r} failed: {result.error_in_exec!r}\\n{captured.stderr}")
    print(f"--- {code!r}\\n{captured.stdout}{captured.stderr}", flush=True)
    return captured.stdout, captured.stderr

def edit(old, new, name="mod.py"):
    text = open(name).read()
    assert old in text, (old, text)
    with open(name, "w") as f:
        f.write(text.replace(old, new))

shell.user_ns.update(edit=edit, time=time, sys=sys)

def wait_for(condition, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.01)

"""
LOAD_THEN_IMPORT = """
out, _ = cell("%load_ext mighty_patcher")
assert "[mighty_patcher] on (" in out, out
out, _ = cell("import mod\\nc = mod.Counter()\\nprint(c.step())")
assert "old 1" in out, out
"""


def shell_script(isolated: Any, tmp_path: Path, body: str, start: str = LOAD_THEN_IMPORT) -> str:
    require(importlib.util.find_spec("IPython") is not None, "needs IPython (requirements-dev)")
    write(tmp_path / "mod.py", COUNTER)
    proc = isolated(PRELUDE + start + textwrap.dedent(body), timeout=120)
    return proc.stdout


def test_ipython_modules_imported_before_the_extension_are_watched(isolated, tmp_path):
    shell_script(
        isolated,
        tmp_path,
        """
        cell("import mod\\nc = mod.Counter()")
        out, _ = cell("%load_ext mighty_patcher")
        assert "watching " + os.path.realpath(os.getcwd()) in out, out
        edit('f"old', 'f"new')
        out, _ = cell("print(c.step())")
        assert "reloaded mod: patched Counter.step" in out and "new 1" in out, out
        """,
        start="",
    )


def test_ipython_the_first_line_is_the_one_the_docs_show(isolated, tmp_path):
    (shown,) = [
        line
        for line in (ROOT / "docs" / "ipython.md").read_text().splitlines()
        if line.startswith("[mighty_patcher] on (")
    ]
    shell_script(
        isolated,
        tmp_path,
        f"""
        out, _ = cell("%load_ext mighty_patcher")
        assert out == {shown + chr(10)!r}, out
        """,
        start="",
    )


def test_the_docs_say_where_the_reports_go_under_a_cell():
    # (what the tests of a shell and of a kernel check: reports on stdout, failures on stderr)
    readme, doc = (
        " ".join((ROOT / f).read_text().split()) for f in ("README.rst", "docs/ipython.md")
    )
    assert "in IPython and Jupyter: under the cell, on stdout" in readme
    assert "printed on the kernel's stdout" in doc and "every other warning on its stderr" in doc


def test_ipython_an_edit_runs_on_the_object_an_earlier_cell_made(isolated, tmp_path):
    shell_script(
        isolated,
        tmp_path,
        """
        from mighty_patcher.ipython import active
        edit('f"old', 'f"new')
        out, _ = cell("print(c.step())")
        # the report under the cell, then the new code running on the old object
        assert out.index("[mighty_patcher] reloaded mod: patched Counter.step") < out.index(
            "new 2"
        ), out
        assert out.count("reloaded mod") == 1, out
        # the roots are where the modules came from: not the standard library's
        out, _ = cell("import json, email.utils\\n%mighty_patcher")
        assert f"watching {os.path.realpath(os.getcwd())} (where" in out, out
        assert "modules: mod\\n" in out and "reloaded mod: patched Counter.step" in out, out
        """,
    )


def test_ipython_an_idle_save_applies_at_once_and_shows_under_the_next_cell(isolated, tmp_path):
    shell_script(
        isolated,
        tmp_path,
        """
        import threading
        from mighty_patcher.ipython import active
        results, stop, c = [], threading.Event(), shell.user_ns["c"]

        def worker():  # a thread the notebook started: it follows a save between cells
            while not stop.is_set():
                results.append(c.step())
                time.sleep(0.01)

        threading.Thread(target=worker, daemon=True).start()
        edit('f"old', 'f"new')
        wait_for(lambda: active().history, "the watcher's thread to apply the save")
        wait_for(lambda: results[-1].startswith("new"), "the thread to run the new code")
        stop.set()
        out, _ = cell("print(c.step())")
        assert "[mighty_patcher] reloaded mod: patched Counter.step" in out, out
        assert out.count("reloaded mod") == 1 and "\\nnew " in out, out
        out, _ = cell("print('nothing new')")
        assert "mighty_patcher" not in out, out
        """,
    )


def test_ipython_a_save_during_a_cell_applies_when_the_cell_ends(isolated, tmp_path):
    shell_script(
        isolated,
        tmp_path,
        """
        out, _ = cell(
            "edit('f\\"old', 'f\\"new')\\n"
            "time.sleep(1)\\n"  # ample time for the watcher to see it
            "print(c.step())"
        )
        assert "old 2" in out, out  # not patched while the cell ran
        assert out.index("old 2") < out.index("reloaded mod: patched Counter.step"), out
        out, _ = cell("print(c.step())")
        assert "new 3" in out and "reloaded" not in out, out
        """,
    )


def test_ipython_a_syntax_error_shows_under_the_cell_and_the_next_save_recovers(isolated, tmp_path):
    shell_script(
        isolated,
        tmp_path,
        """
        edit('return f"old', 'return (f"broken')
        out, err = cell("print(c.step())")
        assert "old 2" in out, out
        assert "[mighty_patcher] reload of mod failed; it keeps running its previous version" in err
        assert "SyntaxError: '(' was never closed" in err, err
        assert "at mod.py:8" in err and 'return (f"broken {self.n}"' in err, err
        out, err = cell("print(c.step())")  # the same broken save is not tried again
        assert "old 3" in out and "mighty_patcher" not in out + err, out + err
        edit('return (f"broken', 'return f"fixed')
        out, err = cell("print(c.step())")
        assert "reloaded mod: patched Counter.step" in out and "fixed 4" in out, out + err
        """,
    )


def test_ipython_off_keeps_saves_and_on_applies_them(isolated, tmp_path):
    shell_script(
        isolated,
        tmp_path,
        """
        from mighty_patcher.ipython import active
        out, _ = cell("%mighty_patcher off")
        assert "[mighty_patcher] off:" in out, out
        edit('f"old', 'f"new')
        time.sleep(1)  # the watcher sees it, and keeps it
        assert not active().history
        out, _ = cell("print(c.step())")
        assert "old 2" in out and "reloaded" not in out, out
        out, _ = cell("%mighty_patcher")
        assert "is off" in out, out
        out, _ = cell("%mighty_patcher on")
        assert "reloaded mod: patched Counter.step" in out, out
        out, _ = cell("print(c.step())")
        assert "new 3" in out, out
        edit('f"new', 'f"again')  # and every save again
        out, _ = cell("print(c.step())")
        assert "reloaded mod" in out and "again 4" in out, out
        """,
    )


def test_ipython_watch_chooses_the_roots(isolated, tmp_path):
    write(tmp_path / "lib" / "helper.py", "def value():\n    return 'one'\n")
    shell_script(
        isolated,
        tmp_path,
        """
        out, _ = cell("%mighty_patcher watch lib")
        assert f"watching {os.path.realpath('lib')} (given)" in out, out
        out, _ = cell("sys.path.insert(0, 'lib')\\nfrom helper import value\\nprint(value())")
        assert "one" in out
        edit("'one'", "'two'", name="lib/helper.py")
        edit('f"old', 'f"new')  # not watched now
        out, _ = cell("print(value(), c.step())")
        assert "reloaded helper: patched value" in out and "two old 2" in out, out
        out, _ = cell("%mighty_patcher watch --auto")
        assert "watching " + os.path.realpath(os.getcwd()) in out, out
        out, _ = cell("print(c.step())")
        assert "new 3" in out, out
        out, err = cell("%mighty_patcher watch nowhere")
        assert "not a directory: nowhere" in err, err
        """,
    )


def test_ipython_says_when_autoreload_is_on_too(isolated, tmp_path):
    shell_script(
        isolated,
        tmp_path,
        """
        cell("%load_ext autoreload\\n%autoreload 2")
        _, err = cell("print(c.step())")
        assert "[mighty_patcher] IPython's autoreload is on too" in err, err
        assert err.rstrip().endswith("turn it off with %autoreload 0"), err
        _, err = cell("print(c.step())")
        assert "autoreload" not in err, err  # once
        """,
    )


def test_importing_mighty_patcher_does_not_import_ipython():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mighty_patcher, mighty_patcher.ipython\n"
            "assert 'IPython' not in sys.modules, 'IPython was imported'\n"
            "assert callable(mighty_patcher.load_ipython_extension)",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


# --- Jupyter ---------------------------------------------------------------------------------


class Kernel:
    """A real ipykernel, started by jupyter_client in a directory; ``run`` executes a cell
    and returns what the kernel sent with that cell as parent."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.manager, self.client = start_new_kernel(
            kernel_name="python3", cwd=str(cwd), startup_timeout=60
        )

    def run(self, code: str, timeout: float = 60) -> dict[str, str]:
        out = {"stdout": "", "stderr": ""}

        def hook(msg: dict[str, Any]) -> None:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                out[content["name"]] += content["text"]
            elif msg["msg_type"] == "error":
                out["stderr"] += "\n".join(content["traceback"])

        reply = self.client.execute_interactive(code, output_hook=hook, timeout=timeout)
        assert reply["content"]["status"] == "ok", (code, out)
        return out

    def stray_output(self, seconds: float) -> list[dict[str, Any]]:
        """The stream messages the kernel sends while no cell runs, for ``seconds``."""
        import queue

        found = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                msg = self.client.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            if msg["msg_type"] == "stream":
                found.append(msg)
        return found

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Path):
    for module in ("jupyter_client", "ipykernel"):
        require(importlib.util.find_spec(module) is not None, f"needs {module} (requirements-dev)")
    k = Kernel(tmp_path)
    yield k
    k.close()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))


def test_jupyter_saves_are_patched_in_and_reported_under_the_cells(kernel, tmp_path):
    mod = tmp_path / "mod.py"
    write(mod, COUNTER)
    out = kernel.run("%load_ext mighty_patcher")
    assert "[mighty_patcher] on (" in out["stdout"], out
    out = kernel.run("import mod\nc = mod.Counter()\nprint(c.step())")
    assert "old 1" in out["stdout"], out

    # A save while no cell runs: applied at once; its line goes under the next cell, not
    # under the last one (nor the %load_ext one, whose context started the watcher thread).
    edit(mod, 'f"old', 'f"new')
    assert kernel.stray_output(1.0) == []
    out = kernel.run("print(c.step())")
    assert "[mighty_patcher] reloaded mod: patched Counter.step" in out["stdout"], out
    assert "new 2" in out["stdout"], out

    # A syntax error: under the cell, on stderr, with file, line and text.
    edit(mod, 'return f"new', 'return (f"new')
    out = kernel.run("print(c.step())")
    assert "new 3" in out["stdout"], out
    assert "reload of mod failed; it keeps running its previous version" in out["stderr"], out
    assert "SyntaxError: '(' was never closed" in out["stderr"], out
    assert "at mod.py:8" in out["stderr"] and 'return (f"new {self.n}"' in out["stderr"], out
    edit(mod, 'return (f"new', 'return f"fixed')
    out = kernel.run("print(c.step())")
    assert "reloaded mod: patched Counter.step" in out["stdout"] and "fixed 4" in out["stdout"]

    # A save while a cell runs waits for the cell's end, and is reported under it.
    out = kernel.run(
        "import pathlib, time\n"
        "p = pathlib.Path('mod.py')\n"
        "p.write_text(p.read_text().replace('f\"fixed', 'f\"during'))\n"
        "time.sleep(1)\n"
        "print(c.step())"
    )
    assert "fixed 5" in out["stdout"], out
    assert out["stdout"].index("fixed 5") < out["stdout"].index("reloaded mod"), out

    # Off keeps saves; on applies them.
    out = kernel.run("%mighty_patcher off")
    assert "[mighty_patcher] off:" in out["stdout"], out
    edit(mod, 'f"during', 'f"later')
    time.sleep(0.5)
    out = kernel.run("print(c.step())")
    assert "during 6" in out["stdout"] and "reloaded" not in out["stdout"], out
    out = kernel.run("%mighty_patcher on")
    assert "reloaded mod: patched Counter.step" in out["stdout"], out
    out = kernel.run("print(c.step())\n%mighty_patcher")
    assert "later 7" in out["stdout"] and "last reloads:" in out["stdout"], out
