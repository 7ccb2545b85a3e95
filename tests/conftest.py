"""Shared helpers: run code in a fresh interpreter, define functions without rebinding them,
warm call sites up, find the other CPython versions on this machine."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import mighty_patcher

ROOT = Path(__file__).resolve().parent.parent

if sysconfig.get_config_var("Py_GIL_DISABLED"):
    # On a free-threaded build CPython warns, in every process that imports the extension,
    # that it enabled the GIL for it (see README, "Supported interpreters"): expected here,
    # and noise in the output of the programs the tests run.
    os.environ.setdefault(
        "PYTHONWARNINGS", "ignore:The global interpreter lock (GIL) has been enabled:RuntimeWarning"
    )
WARM = 3000
SPECIALISING = sys.version_info >= (3, 11)


def define(source: str, globals_: dict, name: str):
    """Compile ``source`` with ``globals_`` as its globals and return ``name`` from it,
    without rebinding anything in ``globals_`` (as the reloader builds a new version)."""
    local: dict = {}
    # dont_inherit: the test module's own `from __future__` flags must not leak in.
    code = compile(textwrap.dedent(source), "<new version>", "exec", dont_inherit=True)
    exec(code, globals_, local)
    return local[name]


def warm(site, n: int = WARM):
    for _ in range(n):
        site()


def call_opnames(func) -> list[str]:
    """Adaptive opnames of the call-like instructions in ``func``."""
    import dis

    if not SPECIALISING:
        return []
    wanted = ("CALL", "LOAD_ATTR", "BINARY_SUBSCR", "BINARY_OP")
    return [
        i.opname for i in dis.get_instructions(func, adaptive=True) if i.opname.startswith(wanted)
    ]


class Isolated:
    """Runs a script in a fresh interpreter, so a crash is a failed test, not a dead suite."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path

    def __call__(
        self,
        source: str,
        *,
        python: str = sys.executable,
        expect_ok: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        script = self.tmp_path / "isolated_script.py"
        script.write_text(textwrap.dedent(source))
        full_env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
        proc = subprocess.run(
            [python, str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp_path,
            env=full_env,
        )
        if expect_ok and proc.returncode != 0:
            signal = f" (killed by signal {-proc.returncode})" if proc.returncode < 0 else ""
            pytest.fail(
                f"isolated script exited with {proc.returncode}{signal}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
                pytrace=False,
            )
        return proc


@pytest.fixture
def isolated(tmp_path: Path) -> Isolated:
    return Isolated(tmp_path)


@pytest.fixture
def mp():
    return mighty_patcher


@pytest.fixture
def program(tmp_path: Path):
    """Starts running programs under the real watcher (tests/live.py), rooted at ``tmp_path``
    unless given ``root``; closes them after the test."""
    from live import LiveProgram

    started = []

    def start(setup: str = "", root: Path = tmp_path, **options):
        p = LiveProgram(root, setup, **options)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


@pytest.fixture
def project(tmp_path: Path):
    """A throwaway package on disk, reloaded through an AutoReloader (tests/reload_project.py).
    test_pytest_plugin.py overrides this name with its own pytester project."""
    from reload_project import Project

    p = Project(tmp_path)
    yield p
    p.close()


def extension_path() -> Path:
    """The built extension module file inside the installed package."""
    from mighty_patcher import mighty_patcher as native

    return Path(native.__file__)


SUPPORTED = ("3.10", "3.11", "3.12", "3.13", "3.14", "3.15")


def other_interpreters(*, supported: bool = True) -> dict[str, str]:
    """CPython executables of minor versions other than the running one, by 'X.Y': the
    supported ones (3.10-3.15), or with ``supported=False`` the older, unsupported ones."""
    found: dict[str, str] = {}
    candidates = sorted(Path.home().glob(".pyenv/versions/3.*/bin/python3"))
    cache = Path(
        os.environ.get("CPYTHON_CACHE", Path.home() / ".cache" / "mighty-patcher" / "cpython")
    )
    candidates += sorted(cache.glob("3.*/bin/python3"))
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for exe in candidates:
        proc = subprocess.run(
            [str(exe), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        version = proc.stdout.strip()
        wanted = (version in SUPPORTED) == supported
        if (
            proc.returncode == 0
            and version != here
            and wanted
            and "t" not in exe.parent.parent.name
        ):
            found.setdefault(version, str(exe))
    return found


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: a shell's background job
    (CI may be one) starts its children with SIGINT ignored, and Python then keeps it ignored;
    in a terminal it is not."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def require(condition: bool, reason: str) -> None:
    """Skip when ``condition`` is false, unless the environment says everything must run
    (CI sets MIGHTY_PATCHER_REQUIRE_ALL=1, so a missing prerequisite fails there)."""
    if condition:
        return
    if os.environ.get("MIGHTY_PATCHER_REQUIRE_ALL") == "1":
        pytest.fail(f"required by MIGHTY_PATCHER_REQUIRE_ALL: {reason}")
    pytest.skip(reason)


def compiler() -> list[str]:
    """The C compiler the interpreter was built with, or ``cc``."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        cc = ["cc"]
    require(shutil.which(cc[0]) is not None, "needs a C compiler")
    return cc


def build_extension(
    source: Path, out_dir: Path, name: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    """Compiles the C file ``source`` into ``out_dir`` as the extension module ``name``, with
    the running interpreter's headers and ``mighty_patcher.get_include()``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    command = [
        *compiler(),
        *shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC"),
        "-shared",
        "-O1",
        "-Wall",
        "-Wextra",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{mighty_patcher.get_include()}",
        *flags,
        str(source),
        "-o",
        str(out_dir / f"{name}{suffix}"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, f"{shlex.join(command)}\n{proc.stderr}"
    return proc


README_FILE_HEADER = re.compile(r"# ([\w/]+\.py)\n")


def readme_blocks(language: str) -> list[str]:
    """The README's ``.. code-block:: <language>`` blocks, dedented."""
    readme = (ROOT / "README.rst").read_text()
    pattern = rf"^\.\. code-block:: {re.escape(language)}\n\n((?:   .*\n|\n)+)"
    return [textwrap.dedent(m.group(1)).strip() + "\n" for m in re.finditer(pattern, readme, re.M)]


def readme_project_files() -> dict[str, str]:
    """The README's example project: the Python blocks whose first line names their file."""
    return {
        m.group(1): block[m.end() :]
        for block in readme_blocks("python")
        if (m := README_FILE_HEADER.match(block))
    }


def write_readme_project(dest: Path) -> None:
    """Writes the README's example project (a src layout) under ``dest``."""
    for name, text in readme_project_files().items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (dest / "src/some_module/__init__.py").write_text("")
