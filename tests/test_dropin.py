"""The extension file alone, dropped into a directory on sys.path, is a usable module."""

from __future__ import annotations

import shutil

from conftest import extension_path


def test_the_shared_library_alone_imports_as_mighty_patcher(isolated, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(extension_path(), alone)
    proc = isolated(
        f"""
        import sys
        sys.path.insert(0, {str(alone)!r})
        import mighty_patcher as mp
        assert mp.__file__.startswith({str(alone)!r}), mp.__file__
        assert not hasattr(mp, "__path__"), "imported the package, not the file"

        def f():
            return "old"
        held = f
        ns = {{}}
        exec("def f():\\n    return 'new'\\n", globals(), ns)
        mp.patch_function(f, ns["f"])
        assert held() == "new"
        with mp.reloading():
            assert mp.currently_reloading()
        assert mp.selftest(verbose=False)
        print("drop-in ok")
        """,
    )
    assert proc.stdout.strip() == "drop-in ok"
