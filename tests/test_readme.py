"""Every Python example in the README runs, and the commands it gives exist.

Blocks whose first line is a comment naming a file (``# src/some_module/math.py``) are the
files of the example project; it is run as the README says, a file edited and saved, and the
program's output checked. Other blocks run as they are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT

README = (ROOT / "README.rst").read_text()
FILE_HEADER = re.compile(r"# ([\w/]+\.py)\n")


def python_blocks() -> list[str]:
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:   .*\n|\n)+)", README, re.M):
        lines = [line[3:] for line in match.group(1).splitlines()]
        blocks.append("\n".join(lines).strip() + "\n")
    return blocks


def project_files() -> dict[str, str]:
    return {
        m.group(1): block[m.end() :] for block in python_blocks() if (m := FILE_HEADER.match(block))
    }


def test_the_readme_has_examples_of_both_kinds():
    assert len(python_blocks()) > len(project_files()) > 0, "the extraction regex is broken"


def test_every_standalone_python_example_runs(isolated):
    for block in python_blocks():
        if not FILE_HEADER.match(block):
            isolated(block)


def test_the_example_project_picks_up_a_save_while_it_runs(tmp_path):
    for name, text in project_files().items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "src/some_module/__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": "src", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "main.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "starting\n"
        assert proc.stdout.readline() == "double(21) = 42\n"
        math = tmp_path / "src/some_module/math.py"
        math.write_text(math.read_text().replace("x * 2", "x * 3"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line == "double(21) = 63\n":
                break
            assert line == "double(21) = 42\n", line
        else:
            raise AssertionError("the save never showed in the output")
    finally:
        proc.kill()
        _, stderr = proc.communicate()
    assert "reloaded some_module.math: patched double" in stderr


def test_the_two_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert Path(ROOT / "demo/live_demo.py").exists()
