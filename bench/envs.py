"""The bench virtualenvs, made and brought up to date by ``make bench`` itself.

``bench/.venvs/<version>/`` per CPython version, each with mighty_patcher installed from a
wheel built for it (``maturin build --release``, into ``bench/.venvs/wheels/<version>``, with
``CARGO_TARGET_DIR=target/bench`` unless ``BENCH_CARGO_TARGET_DIR`` says otherwise); the main
version's also has the peers and the chart's needs (``bench/requirements.txt``), and the
maturin that builds every wheel. Interpreters are found, or built with
``tools/cpython.sh``, as the build matrix does (``tools/matrix.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import BENCH, child_env

__all__ = ["VENVS", "find_python", "get_python", "main_version", "prepare"]

ROOT = BENCH.parent
VENVS = BENCH / ".venvs"
REQUIREMENTS = BENCH / "requirements.txt"

sys.path.insert(0, str(ROOT / "tools"))
from matrix import find_python, get_python  # noqa: E402  (the build matrix's interpreter search)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main_version() -> str:
    """The newest of 3.13, 3.12, 3.11 found here (IPython needs 3.11 or later)."""
    for version in ("3.13", "3.12", "3.11"):
        if find_python(version):
            return version
    raise SystemExit("bench: no CPython 3.11, 3.12 or 3.13 found (pyenv or PATH)")


def _run(cmd: list[str], **kwargs: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd[:4])} failed:\n{proc.stderr[-3000:]}")


def _venv(version: str, base: str) -> Path:
    venv = VENVS / version
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"making {venv.relative_to(ROOT)} ({base})")
        _run([base, "-m", "venv", str(venv)])
    return python


_prepared: dict[str, str] = {}


def prepare(version: str, *, main: bool = False, build: bool = True) -> str:
    """The path of a bench virtualenv's python for ``version``, with mighty_patcher built from
    this tree (and, for the main version, the peers) installed. Once per run."""
    if version in _prepared:
        return _prepared[version]
    python = _venv(version, get_python(version))
    if main:
        stamp = VENVS / version / ".requirements"
        wanted = REQUIREMENTS.read_text()
        if not stamp.exists() or stamp.read_text() != wanted:
            log(f"installing {REQUIREMENTS.relative_to(ROOT)} into {version}")
            _run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"])
            _run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)])
            stamp.write_text(wanted)
    if build:
        maturin = VENVS / main_version() / "bin" / "maturin"
        if not maturin.exists():
            prepare(main_version(), main=True, build=False)
        wheels = VENVS / "wheels" / version
        shutil.rmtree(wheels, ignore_errors=True)
        target = os.environ.get("BENCH_CARGO_TARGET_DIR", str(ROOT / "target" / "bench"))
        env = {**child_env(), "CARGO_TARGET_DIR": target, "PYO3_PYTHON": str(python)}
        start = time.monotonic()
        log(f"building mighty_patcher for {version} (release)")
        _run(
            [str(maturin), "build", "-q", "--release", "-i", str(python), "--out", str(wheels)],
            cwd=ROOT,
            env=env,
        )
        (wheel,) = wheels.glob("*.whl")
        _run([str(python), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", wheel])
        log(f"built and installed for {version} in {time.monotonic() - start:.0f} s")
        _prepared[version] = str(python)
    return str(python)
