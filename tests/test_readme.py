"""Every Python example in the README runs, and the commands it gives exist."""

from __future__ import annotations

import re

from conftest import ROOT

README = (ROOT / "README.rst").read_text()


def python_blocks() -> list[str]:
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:   .*\n|\n)+)", README, re.M):
        lines = [line[3:] for line in match.group(1).splitlines()]
        blocks.append("\n".join(lines).strip() + "\n")
    return blocks


def test_the_readme_has_python_examples():
    assert python_blocks(), "no python code-block found: the extraction regex is broken"


def test_every_python_example_runs(isolated):
    for block in python_blocks():
        isolated(block)


def test_the_two_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M), target
