"""The build refuses headers whose layout differs from what the Rust code relies on."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import ROOT, require


@pytest.mark.slow
def test_a_moved_function_field_fails_the_build_naming_it(mp, tmp_path):
    require(shutil.which("cargo") is not None, "needs cargo")
    include = tmp_path / "include"
    shutil.copytree(mp.build_info()["include_dir"], include)
    # Insert a field before the closure: every later field moves by one pointer.
    marker = "PyObject *PREFIX ## closure;"
    header = next(h for h in include.rglob("funcobject.h") if marker in h.read_text())
    text = header.read_text()
    header.write_text(text.replace(marker, "PyObject *PREFIX ## inserted; " + marker, 1))

    env = {
        **os.environ,
        "MIGHTY_PATCHER_PYTHON_INCLUDE": str(include),
        "PYO3_PYTHON": mp.build_info()["executable"],
        "CARGO_TARGET_DIR": str(ROOT / "target" / "layout-check"),
    }
    proc = subprocess.run(
        ["cargo", "check", "--lib", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode != 0, "the build accepted a different layout"
    assert "layout mismatch: PyFunctionObject.func_closure" in proc.stderr, proc.stderr[-3000:]
    assert "PyFunctionObject.func_code" not in proc.stderr, "fields before it did not move"
