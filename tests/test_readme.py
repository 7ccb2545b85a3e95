"""Every Python example in the README runs, and the commands it gives exist.

Blocks whose first line is a comment naming a file (``# src/some_module/math.py``) are the
files of the example project; it is run as the README says, a file edited and saved, and the
program's output checked. Other blocks run as they are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import (
    README_FILE_HEADER,
    ROOT,
    readme_blocks,
    readme_project_files,
    write_readme_project,
)
from live import finish

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
    proc = subprocess.Popen(
        [sys.executable, "-m", "mighty_patcher", "run", "--path", "src", "main.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "double(21) = 42 (1 so far)\n"
        math = tmp_path / "src/some_module/math.py"
        math.write_text(math.read_text().replace("x * 2", "x * 3"))
        deadline = time.monotonic() + 20
        count = 1
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            count += 1
            if line.startswith("double(21) = 63"):
                # the list the program made was kept: the count goes on
                assert line == f"double(21) = 63 ({count} so far)\n", line
                break
            assert line == f"double(21) = 42 ({count} so far)\n", line
        else:
            raise AssertionError("the save never showed in the output")
    finally:
        _, stderr = finish(proc, "reloaded some_module.math: patched double")
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
    assert {"demo", "test", "wheels"} <= mentioned, "the extraction regex is broken"
    assert mentioned - defined == set(), "the README names make targets the Makefile lacks"
    assert Path(ROOT / "demo/live_demo.py").exists()


# --- docs/ ---------------------------------------------------------------------------------

DOCS = sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(
    r"^(?P<indent> *)(?P<skip><!-- not run: (?P<why>[^>]*) -->\n *)?"
    r"```(?P<lang>\w*)\n(?P<body>.*?)^ *```$",
    re.M | re.S,
)


def doc_blocks(language: str) -> list[tuple[Path, str, str | None]]:
    """(file, code, why it is not run) of every fenced block of ``language`` in docs/."""
    found = []
    for path in DOCS:
        for m in FENCE.finditer(path.read_text()):
            if m.group("lang") == language:
                code = textwrap.dedent(m.group("body"))
                found.append((path, code, m.group("why")))
    return found


def test_the_docs_have_examples_and_every_python_one_runs_or_says_why_not(isolated):
    blocks = doc_blocks("python")
    assert len(blocks) >= 8, "the fence regex is broken"
    ran = 0
    for path, code, why in blocks:
        if why is None:
            isolated(code)
            ran += 1
        else:
            assert len(why) > 10, f"{path}: say why a block is not run"
    assert ran >= 4


def test_every_make_command_in_the_docs_is_a_make_target():
    makefile = (ROOT / "Makefile").read_text()
    defined = {
        name for line in re.findall(r"^([\w. -]+):(?!=)", makefile, re.M) for name in line.split()
    }
    mentioned = set()
    for path in DOCS:
        text = path.read_text()
        for args in re.findall(r"`make((?: [^`]+)?)`", text) + re.findall(
            r"^\s*(?:\$ )?make((?: [^#\n`]*)?)$", text, re.M
        ):
            mentioned.update(w for w in args.split() if "=" not in w and not w.startswith("-"))
    assert {"demo", "test", "matrix", "fuzz", "lint", "wheels"} <= mentioned
    assert mentioned - defined == set(), "docs name make targets the Makefile lacks"


def test_every_command_line_in_the_readme_and_docs_parses():
    from mighty_patcher.cli import _parser, _split_run

    texts = [README, *(p.read_text() for p in DOCS)]
    commands = [
        m.group(1)
        for text in texts
        for m in re.finditer(r"python -m mighty_patcher ((?:run|attach) [^`\n#]*)", text)
        if "..." not in m.group(1).replace("[args...]", "")
    ]
    assert len(commands) >= 8
    parser = _parser()
    for command in commands:
        words = [w.replace("PID", "1234").strip(".,;:)") for w in command.split()]
        head, _ = _split_run([w for w in words if w and w != "[args...]"])
        args = parser.parse_args(head)
        assert args.command in ("run", "attach"), command


def test_every_local_link_in_the_readme_and_docs_leads_to_a_file():
    links = [(ROOT / "README.rst", t) for t in re.findall(r"`[^`<]*<([^>]+)>`_", README)]
    for path in DOCS:
        links += [(path, t) for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text())]
    assert len(links) > 20
    missing = [
        f"{path.relative_to(ROOT)} -> {target}"
        for path, target in links
        if "://" not in target and not (path.parent / target).exists()
    ]
    assert not missing, missing
