"""The binary wheel, as a user gets it: built by tools/wheels.py (``make wheels``) for this
interpreter, tagged manylinux, and working from a fresh virtualenv on a PATH with no Rust,
clang or zig on it: the self-test passes and a program under ``python -m mighty_patcher run``
picks up a save."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import ROOT
from live import read_until, write

# `make matrix` leaves it out: it checks each version's own build; the wheel is checked here,
# in the main suite.
pytestmark = [pytest.mark.slow, pytest.mark.packaging]

TOOLCHAIN = ("cargo", "rustc", "rustup", "clang", "gcc", "cc", "zig", "maturin")

PROGRAM = """
import time
from greeting import greet

deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    print(greet("wheel"), flush=True)
    if greet("wheel").startswith("goodbye"):
        break
    time.sleep(0.02)
"""


def build_wheel(out: Path) -> Path:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "wheels.py"),
            "--interpreter",
            sys.executable,
            "--no-sdist",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def check_tag(wheel: Path) -> None:
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert re.fullmatch(
        rf"mighty_patcher-[^-]+-{tag}-{tag}-manylinux2014_x86_64\.manylinux_2_17_x86_64\.whl",
        wheel.name,
    ), wheel.name
    auditwheel = Path(sys.executable).parent / "auditwheel"
    proc = subprocess.run([str(auditwheel), "show", str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    said = re.search(r'platform tag:\s+"([^"]+)"', proc.stdout)
    assert said is not None, proc.stdout
    assert said.group(1) == "manylinux_2_17_x86_64", proc.stdout


# One test, not two sharing a fixture: under pytest-xdist each worker would build the wheel.
def test_the_wheel_is_manylinux_and_works_from_a_fresh_virtualenv_without_a_toolchain(
    tmp_path: Path,
) -> None:
    wheel = build_wheel(tmp_path / "dist")
    check_tag(wheel)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, symlinks=True)
    python = env_dir / "bin" / "python"
    bare_path = str(env_dir / "bin")
    for tool in TOOLCHAIN:
        assert shutil.which(tool, path=bare_path) is None, f"{tool} is on the test's PATH"
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "PYO3_PYTHON", "CARGO_HOME", "RUSTUP_HOME")
        and not key.startswith(("CARGO_", "LIBCLANG", "MIGHTY_PATCHER"))
    }
    env["PATH"] = bare_path
    env["PYTHONNOUSERSITE"] = "1"

    def run(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )

    install = run("-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel))
    assert install.returncode == 0, install.stdout + install.stderr
    where = run("-c", "import mighty_patcher; print(mighty_patcher.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout  # not the checkout

    selftest = run("-m", "mighty_patcher", "--selftest")
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr

    app = tmp_path / "app"
    write(app / "main.py", PROGRAM)
    write(app / "greeting.py", "def greet(name):\n    return f'hello {name}'\n")
    proc = subprocess.Popen(
        [str(python), "-u", "-m", "mighty_patcher", "run", "main.py"],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_until(proc, "hello wheel")
        write(app / "greeting.py", "def greet(name):\n    return f'goodbye {name}'\n")
        read_until(proc, "goodbye wheel")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate()
    assert "reloaded greeting: patched greet" in stderr, stderr
