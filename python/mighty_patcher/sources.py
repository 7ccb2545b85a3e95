"""Which modules a file backs, the source last applied to each file, and reading a saved
file safely.

A reload diffs the saved file against the source the module currently runs, so that source
is recorded when the module is imported: for modules imported after the reloader started, by
an import hook (a path hook whose loader is a ``SourceFileLoader`` that records the text it
executes); for modules imported before, by reading their file when the reloader starts.

A saved file is read once, here, with the checks that keep a bad save from changing anything:
too large, not decodable, unreadable, or empty (often a save caught half-way) are refused with
one clear message (:class:`SourceError`).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .report import relative

__all__ = [
    "SourceError",
    "Sources",
    "file_signature",
    "in_library",
    "library_dirs",
    "read_source",
    "resolve",
    "running_namespaces",
]


def resolve(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def library_dirs() -> tuple[str, ...]:
    """The standard library and site-packages directories of this interpreter and of the
    one its virtualenv is based on."""
    import site
    import sysconfig

    dirs: set[str] = set()
    base = {
        "base": sys.base_prefix,
        "platbase": sys.base_exec_prefix,
        "installed_base": sys.base_prefix,
        "installed_platbase": sys.base_exec_prefix,
    }
    for paths in (sysconfig.get_paths(), sysconfig.get_paths(vars=base)):
        dirs.update(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:  # an old virtualenv's site module
        pass
    dirs.add(site.getusersitepackages())
    return tuple(sorted({resolve(d).rstrip(os.sep) for d in dirs if d}))


def in_library(path: str, library: tuple[str, ...]) -> bool:
    """Whether ``path`` is a file of the standard library or of an installed package (not
    the program's own): ``library`` is :func:`library_dirs`."""
    parts = Path(path).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    return any(path.startswith(d + os.sep) for d in library)


#: How old a file's modification time must be for its stat to stand for its text.
_RACY_NS = 2_000_000_000


def file_signature(path: str) -> tuple[int, int, int] | None:
    """(mtime, size, inode) of a file, or None if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class SourceError(Exception):
    """A saved file that is not applied, and why (the message says it to the user)."""


def running_namespaces() -> set[int]:
    """The ids of the globals of every module whose body is executing in some thread (its
    ``<module>`` frame is on a stack): the ``__main__`` script, a module mid-import."""
    found = set()
    for frame in sys._current_frames().values():
        current: types.FrameType | None = frame
        while current is not None:
            if current.f_code.co_name == "<module>":
                found.add(id(current.f_globals))
            current = current.f_back
    return found


def read_source(path: str) -> str:
    """The text of a Python file, decoded as the interpreter would (PEP 263 coding line,
    universal newlines). Raises OSError or UnicodeDecodeError/SyntaxError on bad bytes."""
    with open(path, "rb") as f:
        data = f.read()
    return importlib.util.decode_source(data)


class Sources:
    """The roots being watched, the modules under them, and their last applied sources."""

    #: Larger files are not read: parsing 50 MB of statements takes a minute and gigabytes.
    max_size = 10 * 1024 * 1024
    #: How long a file that reads as empty is given to fill up before it is refused.
    empty_grace = 0.25

    def __init__(self, roots: Sequence[str | os.PathLike[str]]):
        self.roots = tuple(resolve(r) for r in roots)
        self._text: dict[str, str] = {}
        self._lock = threading.Lock()
        #: The index of sys.modules, rebuilt when its size changes: the names each file backs
        #: (in import order), each name's place in the import order, the id of each name's
        #: module and its ``__file__`` then with where that file resolved, and the files under
        #: the roots in import order.
        self._by_file: dict[str, list[str]] = {}
        self._order: dict[str, int] = {}
        self._resolved: dict[str, tuple[int, str, str]] = {}
        self._tracked: list[str] = []
        self._indexed_modules = -1
        self._module_names: dict[str, str | None] = {}
        self._adopted: dict[str, list[types.ModuleType]] = {}
        self._hook: Any = None
        #: Files that last read as their baseline, with their stat then.
        self._unchanged: dict[str, tuple[tuple[int, int, int], str]] = {}

    # --- roots and files -------------------------------------------------------------------

    def under_roots(self, path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)

    def module_name(self, path: str) -> str | None:
        """The dotted name ``path`` has relative to a root: ``src/pkg/mod.py`` -> ``pkg.mod``."""
        try:
            return self._module_names[path]
        except KeyError:
            pass
        if len(self._module_names) >= 4096:  # paths of files that come and go, too
            self._module_names.clear()
        name = self._module_names[path] = self._module_name(path)
        return name

    def _module_name(self, path: str) -> str | None:
        for root in self.roots:
            if path.startswith(root.rstrip(os.sep) + os.sep):
                rel = Path(path).relative_to(root).with_suffix("")
                parts = list(rel.parts)
                if parts and parts[-1] == "__init__":
                    parts.pop()
                if parts and all(p.isidentifier() for p in parts):
                    return ".".join(parts)
        return None

    # --- modules ---------------------------------------------------------------------------

    def _reindex(self) -> None:
        if len(sys.modules) == self._indexed_modules:
            return
        by_file: dict[str, list[str]] = {}
        order: dict[str, int] = {}
        resolved: dict[str, tuple[int, str, str]] = {}
        before = self._resolved
        for i, (name, module) in enumerate(list(sys.modules.items())):
            order[name] = i
            file = getattr(module, "__file__", None)
            if isinstance(file, str) and file.endswith(".py"):
                # A module the last index resolved, unchanged since, is not resolved again:
                # realpath costs a few lstat calls per module, some 40 ms for Django's 950.
                known = before.get(name)
                if known is not None and known[0] == id(module) and known[1] == file:
                    real = known[2]
                else:
                    real = resolve(file)
                by_file.setdefault(real, []).append(name)
                resolved[name] = (id(module), file, real)
        # in import order: by_file has each file where its first module is
        tracked = [f for f in by_file if self.under_roots(f)]
        self._by_file, self._order, self._resolved = by_file, order, resolved
        self._tracked = tracked
        self._indexed_modules = len(sys.modules)

    def _backed_by(self, name: str, module: types.ModuleType, file: Any, path: str) -> bool:
        """Whether ``module`` (``sys.modules[name]``, whose ``__file__`` is ``file``) runs
        ``path``: as the index found, unless the module or its file changed since."""
        known = self._resolved.get(name)
        if known is not None and known[0] == id(module) and known[1] == file:
            return known[2] == path
        return resolve(file) == path

    def modules_for(self, path: str) -> list[types.ModuleType]:
        """Every imported module backed by ``path``: the one its place under a root names,
        and every module whose ``__file__`` is that file (a module imported under two names
        is reloaded under both). In import order."""
        self._reindex()
        names = self._by_file.get(path, [])
        dotted = self.module_name(path)
        if dotted is not None and dotted in sys.modules and dotted not in names:
            order = self._order
            names = sorted([*names, dotted], key=lambda n: order.get(n, 0))
        modules: list[types.ModuleType] = []
        for name in names:
            module = sys.modules.get(name)
            # one module object under several names (__main__ and __mp_main__) is one module
            if module is None or any(module is m for m in modules):
                continue
            file = getattr(module, "__file__", None)
            if file is None or name == dotted or self._backed_by(name, module, file, path):
                modules.append(module)
        for module in self._adopted.get(path, ()):
            if all(module is not m for m in modules):
                modules.append(module)
        return modules

    def tracked_files(self) -> list[str]:
        """Files under the roots that back an imported module, in import order (adopted
        modules last)."""
        self._reindex()
        adopted = list(self._adopted)  # a copy: another thread may adopt meanwhile
        extra = [f for f in adopted if f not in self._by_file and self.under_roots(f)]
        return self._tracked + extra

    def adopt(self, module: types.ModuleType) -> None:
        """Follows a module the program keeps outside ``sys.modules`` (pytest does so with
        ``conftest.py`` files outside packages, which all have the name ``conftest``): its
        ``__file__`` backs it from now on, as if it were imported."""
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.endswith(".py"):
            return
        adopted = self._adopted.setdefault(resolve(file), [])
        if all(module is not m for m in adopted):
            adopted.append(module)

    # --- sources ---------------------------------------------------------------------------

    def read_saved(self, path: str, text: str | None = None) -> str:
        """The text of a saved file to apply: ``text`` if the caller just read it (checked not
        too large), else read now. Raises ``FileNotFoundError`` when it is gone, and
        :class:`SourceError` with the message to show when it is not to be applied."""
        if text is None:
            text = self._read(path)
        baseline = self.baseline(path)
        if not text.strip() and baseline and baseline.strip():
            # A file that suddenly reads as empty is more often half-written (truncated by a
            # writer not yet done) or lost than emptied on purpose: read it again after a
            # grace period; still empty, it is refused (a comment in it empties the module).
            time.sleep(self.empty_grace)
            text = self._read(path)
            if not text.strip():
                raise SourceError(
                    f"{relative(path)} is empty: not applied (to empty the module on purpose, "
                    f"leave a comment in it)"
                )
        return text

    def _read(self, path: str) -> str:
        try:
            size = os.stat(path).st_size
            if size > self.max_size:
                raise SourceError(_too_large(path, size, self.max_size))
            return read_source(path)
        except UnicodeDecodeError as exc:
            raise SourceError(_not_utf8(path, exc)) from None
        except FileNotFoundError:
            raise
        except (OSError, SyntaxError) as exc:
            raise SourceError(f"cannot read {relative(path)}: {exc}") from None

    def changed_files(
        self, skip: Callable[[str, tuple[int, int, int]], bool] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """The tracked files whose text differs from their baseline, and the text of those
        that could be read (one that cannot is listed without: applying it says why). A file
        whose stat is what it was when it last read as its baseline is not read again.
        ``skip(path, signature)``: the caller's own reason to leave a file out."""
        changed, texts = [], {}
        for path in self.tracked_files():
            signature = file_signature(path)
            if signature is None:
                changed.append(path)  # gone: applying it says what keeps running
                continue
            if skip is not None and skip(path, signature):
                continue
            baseline = self.baseline(path)
            seen = self._unchanged.get(path)
            if seen is not None and seen[0] == signature and seen[1] is baseline:
                continue
            if signature[1] > self.max_size:
                changed.append(path)
                continue
            try:
                text = read_source(path)
            except (OSError, UnicodeDecodeError, SyntaxError):
                changed.append(path)
                continue
            if text != baseline:
                changed.append(path)
                texts[path] = text
            elif baseline is not None and time.time_ns() - signature[0] > _RACY_NS:
                # (a file modified in the last moments may be modified again within the same
                # timestamp tick and size: its stat is not trusted until it is older, as git
                # does with racily clean files)
                self._unchanged[path] = (signature, baseline)
        return changed, texts

    def remember(self, path: str, source: str) -> None:
        with self._lock:
            self._text[path] = source

    def baseline(self, path: str) -> str | None:
        with self._lock:
            return self._text.get(path)

    def snapshot_imported(self) -> None:
        """Records the current text of every imported module's file under the roots that has
        none yet (modules imported before the reloader started)."""
        for path in self.tracked_files():
            if self.baseline(path) is None:
                try:
                    self.remember(path, read_source(path))
                except (OSError, UnicodeDecodeError, SyntaxError):
                    pass

    # --- import hook -----------------------------------------------------------------------

    def install_import_hook(self) -> None:
        if self._hook is not None:
            return
        sources = self

        class RecordingLoader(importlib.machinery.SourceFileLoader):
            """A SourceFileLoader that records the text of the module it executes, before the
            module is in ``sys.modules`` (``create_module`` comes first): a reload never finds
            the module without its baseline, and an import never overwrites the baseline a
            reload set meanwhile (a worker importing a module as a save arrives)."""

            def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
                path = resolve(self.path)
                try:
                    sources.remember(path, importlib.util.decode_source(self.get_data(self.path)))
                except (OSError, UnicodeDecodeError, SyntaxError):
                    pass
                return None  # (the default module)

        details: list[tuple[Any, list[str]]] = [
            (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
            (RecordingLoader, importlib.machinery.SOURCE_SUFFIXES),
            (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
        ]

        def hook(entry: str) -> importlib.machinery.FileFinder:
            if not entry or not os.path.isdir(entry) or not self.under_roots(resolve(entry)):
                raise ImportError("not under a watched root")
            return importlib.machinery.FileFinder(entry, *details)

        self._hook = hook
        sys.path_hooks.insert(0, hook)
        self._forget_finders()

    def remove_import_hook(self) -> None:
        if self._hook is None:
            return
        try:
            sys.path_hooks.remove(self._hook)
        except ValueError:
            pass
        self._hook = None
        self._forget_finders()

    def _forget_finders(self) -> None:
        """Drops cached finders for directories under the roots, so the next import there
        asks the path hooks again."""
        for entry in list(sys.path_importer_cache):
            if entry and self.under_roots(resolve(entry)):
                del sys.path_importer_cache[entry]


def _too_large(path: str, size: int, limit: int) -> str:
    return (
        f"{relative(path)} is {size / 2**20:.1f} MiB, more than the {limit / 2**20:.1f} MiB "
        f"a reload reads (Sources.max_size): not applied"
    )


def _not_utf8(path: str, exc: UnicodeDecodeError) -> str:
    """Where the bytes that are not UTF-8 (or not the declared encoding) are."""
    data = exc.object if isinstance(exc.object, bytes) else b""
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    return (
        f"cannot read {relative(path)}: line {line}, column {column} is not valid "
        f"{exc.encoding} (byte {data[exc.start : exc.start + 1]!r}); save it as UTF-8, or "
        f"declare its encoding in a coding line (PEP 263)"
    )
