"""A build from source on a machine without libclang (an sdist installed where no wheel fits)
says what to install, instead of bindgen's panic."""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess

import pytest

from conftest import ROOT, require

pytestmark = [pytest.mark.slow, pytest.mark.packaging]

LIBCLANG_DIRS = ("/usr/lib/llvm-*/lib", "/usr/lib64/llvm*/lib", "/usr/local/opt/llvm*/lib")
LIBCLANG_FILES = (
    "/usr/lib/*/libclang*.so*",
    "/usr/lib*/libclang*.so*",
    "/usr/local/lib/libclang*.so*",
)


def test_a_build_without_libclang_says_what_to_install(mp, tmp_path):
    require(shutil.which("cargo") is not None, "needs cargo")
    require(
        os.geteuid() == 0 and shutil.which("unshare") is not None,
        "needs root and unshare (libclang is hidden in a private mount namespace)",
    )
    # libclang hidden from this build only: its directories emptied, its files made empty.
    dirs = sorted({d for pattern in LIBCLANG_DIRS for d in glob.glob(pattern)})
    files = sorted({f for pattern in LIBCLANG_FILES for f in glob.glob(pattern)})
    hide = [f"mount -t tmpfs none {shlex.quote(d)}" for d in dirs]
    hide += [f"mount --bind /dev/null {shlex.quote(f)}" for f in files if not os.path.islink(f)]
    # The same headers under a new name: the build script runs again.
    include = tmp_path / "include"
    include.symlink_to(mp.build_info()["include_dir"])
    env = {
        **{k: v for k, v in os.environ.items() if k != "LIBCLANG_PATH"},
        "MIGHTY_PATCHER_PYTHON_INCLUDE": str(include),
        "PYO3_PYTHON": mp.build_info()["executable"],
        # shared with test_build_layout.py: the dependencies are compiled once
        "CARGO_TARGET_DIR": str(ROOT / "target" / "layout-check"),
    }
    script = " && ".join([*hide, "exec cargo check --lib --quiet"])
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode != 0, "the build found a libclang: the test hid none"
    assert "error: libclang not found." in proc.stderr, proc.stderr[-3000:]
    assert "apt-get install libclang-dev" in proc.stderr, proc.stderr[-3000:]
    assert "dnf install clang" in proc.stderr
    assert "install a binary wheel" in proc.stderr
    assert "panicked" not in proc.stderr, proc.stderr[-3000:]
