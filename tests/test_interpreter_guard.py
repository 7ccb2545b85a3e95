"""An interpreter other than the one the extension was built for gets a clear ImportError."""

from __future__ import annotations

import shutil
import sys

from conftest import ROOT, extension_path, other_interpreters, require

IMPORT_AND_PRINT_THE_ERROR = """
import sys
sys.path.insert(0, {where!r})
try:
    import mighty_patcher
except ImportError as exc:
    print(exc)
else:
    raise SystemExit("imported under the wrong interpreter")
"""


def test_every_other_supported_version_gets_an_import_error_naming_both(isolated, tmp_path):
    others = other_interpreters()
    require(bool(others), "needs a second supported CPython version on this machine")
    # An untagged file name: any interpreter would try to load it.
    target = tmp_path / "untagged"
    target.mkdir()
    shutil.copy(extension_path(), target / "mighty_patcher.so")
    built = sys.version.split()[0]
    for version, python in sorted(others.items()):
        proc = isolated(IMPORT_AND_PRINT_THE_ERROR.format(where=str(target)), python=python)
        message = proc.stdout.strip()
        assert f"built for CPython {built}" in message, (version, message)
        assert f"this is CPython {version}." in message, (version, message)


def test_an_unsupported_version_is_refused_by_the_package(isolated):
    """The package checks the interpreter before it loads anything (simulated here by
    faking ``sys.version_info``; the next test uses a real older CPython when there is one)."""
    proc = isolated(
        """
        import sys
        sys.version_info = (3, 9, 18, "final", 0)
        sys.version = "3.9.18 (simulated)"
        try:
            import mighty_patcher
        except ImportError as exc:
            print(exc)
        """
    )
    message = proc.stdout.strip()
    assert message == "mighty_patcher supports CPython 3.10 to 3.15; this is CPython 3.9.18"


def test_a_real_older_cpython_is_refused_by_the_package(isolated):
    older = other_interpreters(supported=False)
    require(bool(older), "needs a CPython older than 3.10 on this machine")
    for version, python in sorted(older.items()):
        proc = isolated(
            IMPORT_AND_PRINT_THE_ERROR.format(where=str(ROOT / "python")), python=python
        )
        message = proc.stdout.strip()
        assert "supports CPython 3.10 to 3.15" in message, (version, message)
        assert f"this is CPython {version}" in message, (version, message)
