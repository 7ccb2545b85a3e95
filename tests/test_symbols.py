"""The extension links only against C API symbols that every supported CPython exports, so
that loading it into the wrong interpreter reaches our own version check (a clear
ImportError) instead of failing in the dynamic loader."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import extension_path, other_interpreters, require


def undefined_python_symbols(library: Path) -> set[str]:
    out = subprocess.run(
        ["nm", "-D", "--undefined-only", str(library)], capture_output=True, text=True, check=True
    ).stdout
    names = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    return {n for n in names if n.startswith(("Py", "_Py"))}


def exported_symbols(python: str) -> set[str]:
    """What an interpreter exports: its libpython if shared, else its executable."""
    info = subprocess.run(
        [
            python,
            "-c",
            "import sys, sysconfig; v = sysconfig.get_config_var; print(v('LIBDIR') + '/' + "
            "v('LDLIBRARY') if v('Py_ENABLE_SHARED') else sys.executable)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    out = subprocess.run(
        ["nm", "-D", "--defined-only", info], capture_output=True, text=True
    ).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_every_python_symbol_the_extension_needs_exists_in_every_supported_version():
    require(shutil.which("nm") is not None, "needs nm (binutils)")
    needed = undefined_python_symbols(extension_path())
    assert "PyModuleDef_Init" in needed, "nm gave no sensible answer"
    interpreters = {f"{sys.version_info[0]}.{sys.version_info[1]}": sys.executable}
    interpreters.update(other_interpreters())
    require(len(interpreters) >= 2, "needs another CPython version on this machine")
    missing = {}
    for version, python in sorted(interpreters.items()):
        lacking = needed - exported_symbols(python)
        if lacking:
            missing[version] = sorted(lacking)
    assert not missing, f"symbols to look up at run time instead (see src/abi/ffi.rs): {missing}"
