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

from conftest import (
    README_FILE_HEADER,
    ROOT,
    readme_blocks,
    readme_project_files,
    write_readme_project,
)

README = (ROOT / "README.rst").read_text()


def test_the_readme_has_examples_of_both_kinds():
    blocks, files = readme_blocks("python"), readme_project_files()
    assert len(blocks) > len(files) > 0, "the extraction regex is broken"


def test_every_standalone_python_example_runs(isolated):
    for block in readme_blocks("python"):
        if not README_FILE_HEADER.match(block):
            isolated(block)


def test_the_example_project_picks_up_a_save_while_it_runs(tmp_path):
    write_readme_project(tmp_path)
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


def make_targets_in_readme() -> set[str]:
    """The targets of every ``make ...`` the README gives, inline or in a shell block
    (``make PYTHON=python3.13 test`` and ``make fuzz N=10000`` name test and fuzz)."""
    commands = re.findall(r"``make( [^`]+)``", README)  # a bare ``make`` names the tool
    for block in readme_blocks("sh"):
        commands += re.findall(r"^(?:\$ )?make((?: [^#\n]*)?)", block, re.M)
    targets = set()
    for args in commands:
        words = [w for w in args.split() if "=" not in w and not w.startswith("-")]
        assert words, f"`make{args}` names no target"
        targets.update(words)
    return targets


def test_every_make_command_in_the_readme_is_a_make_target():
    makefile = (ROOT / "Makefile").read_text()
    defined = {
        name for line in re.findall(r"^([\w. -]+):(?!=)", makefile, re.M) for name in line.split()
    }
    mentioned = make_targets_in_readme()
    assert {"demo", "test", "matrix", "fuzz"} <= mentioned, "the extraction regex is broken"
    assert mentioned - defined == set(), "the README names make targets the Makefile lacks"
    assert Path(ROOT / "demo/live_demo.py").exists()
