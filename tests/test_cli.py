"""`python -m mighty_patcher run`: a program run under the reloader picks up saves."""

from __future__ import annotations

import subprocess
import sys

from live import finish, read_until, start_run, write

LOOP = """
import sys, time
from helper import value
for _ in range(400):
    print(value(), *sys.argv[1:], flush=True)
    time.sleep(0.02)
"""


def test_run_a_script_with_arguments_and_edit_a_module_beside_it(tmp_path):
    write(tmp_path / "prog.py", LOOP)
    write(tmp_path / "helper.py", "def value():\n    return 'old'\n")
    proc = start_run(["prog.py", "--flag"], tmp_path)
    try:
        read_until(proc, "old --flag")
        write(tmp_path / "helper.py", "def value():\n    return 'new'\n")
        read_until(proc, "new --flag")
    finally:
        _, stderr = finish(proc, "reloaded helper: patched value")
    assert "reloaded helper: patched value" in stderr


def test_run_a_module_with_a_chosen_root_and_edit_the_running_module_itself(tmp_path):
    write(tmp_path / "src/pkg/__init__.py", "")
    write(
        tmp_path / "src/pkg/app.py",
        """
        import time
        def value():
            return "old"
        if __name__ == "__main__":
            for _ in range(400):
                print(value(), flush=True)
                time.sleep(0.02)
        """,
    )
    proc = start_run(
        ["--path", "src", "-m", "pkg.app"],
        tmp_path,
        env={"PYTHONPATH": "src", "PATH": "/usr/bin:/bin"},
    )
    try:
        read_until(proc, "old")
        app = tmp_path / "src/pkg/app.py"
        app.write_text(app.read_text().replace('return "old"', 'return "new"'))
        read_until(proc, "new")
    finally:
        _, stderr = finish(proc, "reloaded __main__: patched value")
    assert "reloaded __main__: patched value" in stderr, stderr


def test_run_without_a_program_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "mighty_patcher", "run"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "give a script or -m module" in proc.stderr


def test_the_exit_code_of_the_program_is_kept(tmp_path):
    write(tmp_path / "prog.py", "import sys\nsys.exit(3)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mighty_patcher", "run", "--quiet", "prog.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3


def test_everything_after_the_module_or_script_is_the_program_s_options_included():
    from mighty_patcher.cli import _split_run

    assert _split_run(["run", "--poll", "-m", "gunicorn", "-w", "2", "app:app"]) == (
        ["run", "--poll", "-m", "gunicorn"],
        ["-w", "2", "app:app"],
    )
    assert _split_run(["run", "--path", "src", "prog.py", "--quiet", "x"]) == (
        ["run", "--path", "src"],
        ["prog.py", "--quiet", "x"],
    )
    assert _split_run(["run", "-muvicorn", "--workers", "2"]) == (
        ["run", "-muvicorn"],
        ["--workers", "2"],
    )
    assert _split_run(["--selftest"]) == (["--selftest"], None)


def test_a_module_run_gets_its_own_options(tmp_path):
    write(tmp_path / "prog.py", "import sys\nprint(sys.argv[1:])\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mighty_patcher", "run", "--quiet", "-m", "prog", "-w", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['-w', '2']"
