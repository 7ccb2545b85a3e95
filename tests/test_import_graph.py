"""tools/import_graph.py: the native core's files form a ladder, and the tool would say so if
they did not."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT

TOOL = ROOT / "tools" / "import_graph.py"


def run(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), "--src", str(src)], capture_output=True, text=True
    )


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_native_core_has_no_cycle_and_keeps_its_layout_rules():
    proc = run(ROOT / "src")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no cycle" in proc.stdout
    assert "  state.rs " in proc.stdout.split("rung 1")[0], "state.rs is on rung 0"


def test_a_cycle_through_a_use_tree_and_an_imported_module_is_reported(tmp_path):
    src = write(
        tmp_path / "src",
        {
            "lib.rs": "mod module;\nmod a;\nmod b;\n",
            "module.rs": "use crate::{a, b};\n",
            "a.rs": "// crate::b is only mentioned here\nuse crate::{errors as e, b::{self}};\n"
            "fn f() { b::g(); }\n",
            "b.rs": 'const S: &str = "crate::a";\npub fn g() { crate::a::f(); }\n',
            "errors.rs": "",
        },
    )
    proc = run(src)
    assert proc.returncode == 1
    assert proc.stdout.startswith("cycle: a.rs -> b.rs -> a.rs"), proc.stdout


def test_broken_layout_rules_are_reported(tmp_path):
    src = write(
        tmp_path / "src",
        {
            "lib.rs": "mod module;\nmod state;\nmod thing;\nmod other;\n",
            "module.rs": "use crate::state::State;\n",
            "state.rs": "use crate::thing::Thing;\n",
            "thing.rs": "pub struct Thing;\n",
            "other.rs": "use crate::module;\n",
        },
    )
    proc = run(src)
    assert proc.returncode == 1, proc.stdout
    assert "state.rs must use nothing of ours, uses thing.rs" in proc.stdout
    assert "module.rs must be used by lib.rs only, is used by ['other.rs']" in proc.stdout
