"""A throwaway project on disk for reload tests: files written under a temporary module root,
imported under a unique package name, reloaded through an AutoReloader."""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
import types
from pathlib import Path

from mighty_patcher.watch import AutoReloader

_counter = itertools.count()


class FakeWatcher:
    """Never reports anything: the tests drive reloads with ``reload_now()``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.closed = False

    def wait(self, timeout: float | None = None) -> str:
        return "timeout"

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Project:
    def __init__(self, root: Path):
        self.root = root
        self.package = f"proj{next(_counter)}"
        (root / self.package).mkdir(parents=True)
        (root / self.package / "__init__.py").write_text("")
        self.reloader: AutoReloader | None = None
        sys.path.insert(0, str(root))

    def path(self, name: str) -> Path:
        return self.root / self.package / f"{name}.py"

    def write(self, name: str, source: str) -> Path:
        """Writes module ``name`` of the package (``a`` -> ``<package>/a.py``)."""
        path = self.path(name)
        path.write_text(textwrap.dedent(source))
        return path

    def module(self, name: str) -> types.ModuleType:
        return importlib.import_module(f"{self.package}.{name}")

    def start(self, **kwargs: object) -> AutoReloader:
        kwargs.setdefault("watcher_factory", FakeWatcher)
        kwargs.setdefault("start", False)
        self.reloader = AutoReloader(str(self.root), **kwargs)  # type: ignore[arg-type]
        return self.reloader

    def save(self, name: str, source: str):
        """Writes the file and applies it now; returns the reports."""
        self.write(name, source)
        assert self.reloader is not None
        return self.reloader.reload_now()

    def close(self) -> None:
        if self.reloader is not None:
            self.reloader.stop()
        for name in [
            n for n in sys.modules if n == self.package or n.startswith(self.package + ".")
        ]:
            del sys.modules[name]
        sys.path.remove(str(self.root))
