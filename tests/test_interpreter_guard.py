"""An interpreter other than the one the extension was built for gets a clear ImportError."""

from __future__ import annotations

import shutil
import sys

from conftest import extension_path, other_interpreters, require


def test_another_cpython_version_gets_an_import_error_naming_both(isolated, tmp_path):
    others = other_interpreters()
    require(bool(others), "needs a second CPython version on this machine")
    version, python = sorted(others.items())[0]
    # An untagged file name: any interpreter would try to load it.
    target = tmp_path / "untagged"
    target.mkdir()
    shutil.copy(extension_path(), target / "mighty_patcher.so")
    proc = isolated(
        f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        try:
            import mighty_patcher
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported under the wrong interpreter")
        """,
        python=python,
    )
    built = sys.version.split()[0]
    message = proc.stdout.strip()
    assert f"built for CPython {built}" in message, message
    assert f"this is CPython {version}." in message, message
