"""Release artefacts: one binary wheel per supported CPython, installable on any common Linux
distribution (a ``manylinux2014`` / ``manylinux_2_17`` tag: glibc 2.17 or newer), and an sdist.

    python tools/wheels.py [3.10 3.11 ...] [--out dist] [--no-sdist]
    python tools/wheels.py --interpreter PATH ...  # one wheel, for that interpreter

Each wheel is linked with zig (``maturin build --zig --compatibility manylinux2014``), which
targets glibc 2.17 from this machine whatever its own glibc is, with no manylinux container
(there is no Docker engine here). ``auditwheel show`` then checks the tag each wheel claims;
a wheel that is not manylinux fails the run. The extension links nothing but libc, so there
is nothing for ``auditwheel repair`` to bundle.

Interpreters come from where ``tools/matrix.py`` finds them (pyenv, ``tools/cpython.sh``'s
cache, PATH), or are built by ``tools/cpython.sh``. The tools (ziglang, auditwheel, from
PyPI: requirements-wheels.txt) are installed into the running interpreter's environment when
missing. The Rust build goes to ``target/wheels`` (``$WHEELS_TARGET_DIR``), apart from the
development build, so that neither rebuilds the other's dependencies.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from matrix import VERSIONS, get_python  # noqa: E402

REQUIREMENTS = ROOT / "requirements-wheels.txt"
TARGET_DIR = Path(os.environ.get("WHEELS_TARGET_DIR", ROOT / "target" / "wheels"))
COMPATIBILITY = "manylinux2014"


@dataclass
class Built:
    version: str
    wheel: Path
    tag: str
    seconds: float


def log(message: str) -> None:
    print(f"wheels: {message}", file=sys.stderr, flush=True)


def ensure_tools() -> None:
    """ziglang and auditwheel in this environment (maturin comes with requirements-dev.txt)."""
    missing = [m for m in ("ziglang", "auditwheel") if importlib.util.find_spec(m) is None]
    if importlib.util.find_spec("maturin") is None:
        missing.append("maturin")
    if not missing:
        return
    log(f"installing {', '.join(missing)} from {REQUIREMENTS.name}")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True
    )


def tool_env() -> dict[str, str]:
    """maturin finds zig as ``python3 -m ziglang``: this environment's bin comes first."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["CARGO_TARGET_DIR"] = str(TARGET_DIR)
    env.pop("PYO3_PYTHON", None)  # the Makefile's; each build names its interpreter
    env.pop("VIRTUAL_ENV", None)
    return env


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    return found or name


def platform_tag(wheel: Path) -> str:
    """The tag ``auditwheel show`` says the wheel is consistent with."""
    out = subprocess.run(
        [tool("auditwheel"), "show", str(wheel)], capture_output=True, text=True, check=False
    )
    text = " ".join(out.stdout.split())
    found = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"auditwheel show {wheel.name} failed:\n{out.stdout}{out.stderr}")
    return found.group(1)


def build_wheel(version: str, out: Path, python: str | None = None) -> Built:
    python = python or get_python(version)
    start = time.monotonic()
    for old in out.glob(f"mighty_patcher-*-cp{version.replace('.', '')}-*.whl"):
        old.unlink()
    log(f"{version}: building with {python}")
    proc = subprocess.run(
        [
            tool("maturin"),
            "build",
            "--release",
            "--zig",
            "--compatibility",
            COMPATIBILITY,
            "--interpreter",
            python,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the {version} wheel failed:\n{proc.stderr[-4000:]}")
    wheels = list(out.glob(f"mighty_patcher-*-cp{version.replace('.', '')}-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one {version} wheel in {out}, found {wheels}")
    tag = platform_tag(wheels[0])
    if not tag.startswith("manylinux"):
        raise RuntimeError(f"{wheels[0].name}: auditwheel says {tag!r}, not a manylinux tag")
    return Built(version, wheels[0], tag, time.monotonic() - start)


def interpreter_version(python: str) -> str:
    proc = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def build_sdist(out: Path) -> Path:
    for old in out.glob("mighty_patcher-*.tar.gz"):
        old.unlink()
    subprocess.run(
        [tool("maturin"), "sdist", "--out", str(out)],
        cwd=ROOT,
        env=tool_env(),
        check=True,
        capture_output=True,
    )
    return next(out.glob("mighty_patcher-*.tar.gz"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", help=f"default: {' '.join(VERSIONS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="default: dist/")
    parser.add_argument("--no-sdist", action="store_true", help="wheels only")
    parser.add_argument(
        "--interpreter", metavar="PATH", help="build one wheel, for this interpreter"
    )
    args = parser.parse_args(argv)
    versions = args.versions or list(VERSIONS)
    if args.interpreter:
        versions = [interpreter_version(args.interpreter)]
    unknown = [v for v in versions if v not in VERSIONS]
    if unknown:
        parser.error(f"unsupported version(s) {' '.join(unknown)}; supported: {' '.join(VERSIONS)}")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    started = time.monotonic()
    built, failed = [], []
    for version in versions:
        try:
            built.append(build_wheel(version, out, args.interpreter))
        except RuntimeError as exc:
            failed.append(version)
            log(str(exc))
    for b in built:
        size = b.wheel.stat().st_size / 2**20
        print(f"{b.version:5}  {b.tag:22}  {size:4.1f} MiB  {b.seconds:5.0f} s  {b.wheel.name}")
    if not args.no_sdist:
        sdist = build_sdist(out)
        print(f"sdist  {sdist.name}")
    print(f"{len(built)} wheel(s) in {out} in {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        log(f"failed: {' '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
