"""IPython and Jupyter: ``%load_ext mighty_patcher``.

Watches the files of the modules imported from outside the standard library and
site-packages (or the roots given with ``%mighty_patcher watch PATH...``) and patches every
save into the live objects, with the engine of :class:`~mighty_patcher.watch.AutoReloader`:
objects made in earlier cells run the new code. Each reload is reported under a cell, in the
same words as in a program (a syntax error with its file, line and text).

When a save applies (docs/ipython.md says why):

- while no cell runs: at once, by the watcher's thread, so that threads the notebook started
  follow it as they would in a program; the report shows under the next cell that runs;
- while a cell runs: when it ends (``post_run_cell``), reported under that cell. A running
  cell is never patched half-way; one that wants a save applied mid-run calls
  :func:`reload_now` where it chooses (between two rounds of its loop, say);
- before each cell (``pre_run_cell``), whatever was saved and not applied yet (a save the
  watcher has not reported yet) is applied too, so a save made just before a cell is in it.

``%mighty_patcher`` shows what is watched and the last reloads; ``%mighty_patcher off`` and
``on`` pause and resume (saves made while off apply on ``on``).

IPython is not imported here (nor by ``import mighty_patcher``): the shell is the object
IPython hands to ``load_ipython_extension``.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import mighty_patcher as native
from .report import ReloadReport
from .sources import file_signature, in_library, library_dirs, resolve
from .watch import AutoReloader, Watcher

__all__ = [
    "IPythonReloader",
    "active",
    "load_ipython_extension",
    "reload_now",
    "unload_ipython_extension",
]

log = logging.getLogger("mighty_patcher.ipython")
_LOGGER = logging.getLogger("mighty_patcher")  # the engine's, and this module's parent
PREFIX = "[mighty_patcher] "

USAGE = """\
%mighty_patcher                  what is watched, and the last reloads
%mighty_patcher off              stop applying saves (they are kept)
%mighty_patcher on               apply what was saved while off, and every save again
%mighty_patcher watch PATH...    watch these module roots instead of the automatic ones
%mighty_patcher watch --auto     back to the roots of the imported modules"""

_active: IPythonReloader | None = None


# --- entry points --------------------------------------------------------------------------


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext mighty_patcher``."""
    global _active
    if _active is not None:
        _active.close()
    _active = IPythonReloader(shell)
    _active.start()


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext mighty_patcher``: stops watching; what was patched stays patched."""
    global _active
    if _active is not None:
        _active.close()
        _active = None


def active() -> IPythonReloader | None:
    """The loaded extension's state, or None."""
    return _active


def reload_now() -> list[ReloadReport]:
    """Applies, here and now, everything saved and not applied yet, and shows the reports:
    for a long-running cell that wants saves applied at a point it chooses."""
    if _active is None:
        raise RuntimeError("the mighty_patcher extension is not loaded: %load_ext mighty_patcher")
    return _active.reload_now()


# --- where the user's modules are ----------------------------------------------------------


def _root_of(name: str, path: str) -> str | None:
    """The directory the module ``name`` was found in through ``sys.path``: ``/r`` for
    ``a.b`` in ``/r/a/b.py`` or ``/r/a/b/__init__.py``; None when the path does not spell the
    name (a module loaded from a file under another name)."""
    file = Path(path)
    if file.suffix != ".py":
        return None
    spelled = list(file.parent.parts) + ([] if file.stem == "__init__" else [file.stem])
    parts = name.split(".")
    if len(spelled) <= len(parts) or spelled[-len(parts) :] != parts:
        return None
    return str(Path(*spelled[: -len(parts)]))


def _outermost(roots: Iterable[str]) -> set[str]:
    """The roots not inside another one (the one watch covers both)."""
    kept: list[str] = []
    for root in sorted(set(roots), key=len):
        if not any(root.startswith(k.rstrip(os.sep) + os.sep) for k in kept):
            kept.append(root)
    return set(kept)


class _Lines(logging.Handler):
    """The records of the ``mighty_patcher`` loggers, from any thread, kept until the main
    thread shows them under a cell (printed from the watcher's thread, they would land under
    whichever cell the kernel last ran, or over a terminal prompt)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._kept: list[tuple[int, str]] = []
        self._format = logging.Formatter("%(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self._format.format(record)
        except Exception:
            self.handleError(record)
            return
        self._kept.append((record.levelno, text))  # emit runs under the handler's lock

    def take(self) -> list[tuple[int, str]]:
        self.acquire()
        try:
            kept, self._kept = self._kept, []
        finally:
            self.release()
        return kept


class _SkipFailed:
    """The native watcher, less the files unchanged since their last reload failed: the
    watcher's thread does not try again a save that a cell's catch-up already tried (and
    reported), when the watcher reports it after."""

    def __init__(self, inner: Watcher, failed: Any) -> None:
        self._inner = inner
        self._failed = failed

    def wait(self, timeout: float | None = None) -> set[str] | str:
        result = self._inner.wait(timeout)
        if isinstance(result, str):
            return result
        return {p for p in result if not self._failed(resolve(p))}

    def stop(self) -> None:
        self._inner.stop()

    def close(self) -> None:
        self._inner.close()


# --- the extension -------------------------------------------------------------------------


class IPythonReloader:
    """The extension's state for one shell: the reloader (made again when the roots
    change), the cells running, whether it is on, and the last reloads."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.enabled = True
        self.reloader: AutoReloader | None = None
        #: Roots given with ``%mighty_patcher watch``, or None: the automatic ones.
        self.explicit: tuple[str, ...] | None = None
        self.roots: tuple[str, ...] = ()
        #: (time, report) of the last reloads, for ``%mighty_patcher``.
        self.history: deque[tuple[float, ReloadReport]] = deque(maxlen=10)
        self._auto: set[str] = set()
        self._refused: set[str] | None = None  # roots the last attempt could not watch
        self._cells: list[object] = []  # the ExecutionInfo of each cell running (nested runs)
        #: Files whose last reload failed, with their signature then: not tried again
        #: before each cell until saved again (it would run their statements every time).
        self._failed: dict[str, tuple[int, int, int] | None] = {}
        #: By file: the source its modules run, as the reloaders so far last applied it.
        self._baselines: dict[str, str] = {}
        #: By file: its signature when it last read as the source its modules run (that
        #: source): not read again before each cell until one of them changes.
        #: Files an earlier reloader was told about and did not apply.
        self._carried: set[str] = set()
        self._library = library_dirs()
        self._scanned: dict[tuple[str, str], str | None] = {}
        self._lines = _Lines()
        self._logger_state: tuple[int, bool] = (_LOGGER.level, _LOGGER.propagate)
        self._warned_autoreload = False

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._logger_state = (_LOGGER.level, _LOGGER.propagate)
        _LOGGER.addHandler(self._lines)
        if _LOGGER.level == logging.NOTSET:
            _LOGGER.setLevel(logging.INFO)
        _LOGGER.propagate = False  # shown under the cells, not again by the root's handlers
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        self.shell.register_magic_function(self.magic, "line", "mighty_patcher")
        self._update_roots(announce=False)
        self._show()
        print(PREFIX + self._state_line(), flush=True)

    def close(self) -> None:
        for event, callback in (
            ("pre_run_cell", self.pre_run_cell),
            ("post_run_cell", self.post_run_cell),
        ):
            try:
                self.shell.events.unregister(event, callback)
            except ValueError:
                pass
        try:
            self.shell.magics_manager.magics["line"].pop("mighty_patcher", None)
        except AttributeError:
            pass
        if self.reloader is not None:
            self.reloader.stop()
            self.reloader = None
        _LOGGER.removeHandler(self._lines)
        _LOGGER.setLevel(self._logger_state[0])
        _LOGGER.propagate = self._logger_state[1]

    # --- cells -----------------------------------------------------------------------------

    def pre_run_cell(self, info: object = None) -> None:
        self._cells.append(info)
        if len(self._cells) > 1:
            return
        self._check_autoreload()
        reloader = self.reloader
        if reloader is not None:
            reloader.pause()  # an idle reload the watcher's thread is applying finishes first
            if self.enabled:
                self._catch_up(reloader)
        self._show()

    def post_run_cell(self, result: object = None) -> None:
        if result is None:  # an interrupted cell, in ipykernel
            if self._cells:
                self._cells.pop()
        else:
            info = getattr(result, "info", None)
            for i in range(len(self._cells) - 1, -1, -1):
                if self._cells[i] is info:
                    del self._cells[i]
                    break
            else:
                return  # a cell that never started (an empty one), or the %load_ext one
        if self._cells:
            return
        try:
            self._update_roots()  # the modules this cell imported
            reloader = self.reloader
            if reloader is not None and self.enabled:
                with reloader.engine.lock:
                    self._catch_up(reloader, reloader.resume())
        finally:
            self._show()

    # --- applying --------------------------------------------------------------------------

    def reload_now(self) -> list[ReloadReport]:
        reloader = self.reloader
        reports: list[ReloadReport] = []
        if reloader is not None:
            with reloader.engine.lock:
                told = reloader.resume()
                if self._cells or not self.enabled:
                    reloader.pause()
                reports = self._catch_up(reloader, told)
        self._show()
        return reports

    def _catch_up(self, reloader: AutoReloader, told: Iterable[str] = ()) -> list[ReloadReport]:
        """Applies, in this thread, the files the watcher's thread was told about and kept
        (``told``), and every watched file whose text differs from what runs, except a file
        unchanged since its last reload failed."""
        try:
            return self._apply(reloader, told)
        except Exception:  # never let a bad reload break the shell's cell loop
            log.exception("applying the saves failed unexpectedly")
            return []

    def _apply(self, reloader: AutoReloader, told: Iterable[str]) -> list[ReloadReport]:
        sources, engine = reloader.sources, reloader.engine
        told = {resolve(p) for p in told} | self._carried
        self._carried = set()
        changed, texts = sources.changed_files(skip=self._failed_unchanged)
        # new files and directories the watcher told of: the engine says what they are
        wanted = set(changed) | (told - set(sources.tracked_files()))
        if not wanted:
            return []
        return engine.reload_paths(wanted, texts=texts)

    def _failed_unchanged(self, path: str, signature: tuple[int, int, int] | None = None) -> bool:
        """Whether ``path`` is as it was when its last reload failed (``signature``: its
        signature, if known)."""
        if path not in self._failed:
            return False
        return self._failed.get(path) == (signature or file_signature(path))

    def _watcher(self, *args: Any, **kwargs: Any) -> Watcher:
        return _SkipFailed(native.Watcher(*args, **kwargs), self._failed_unchanged)

    def _after(self, report: ReloadReport) -> None:
        """After each reload, in the thread that made it."""
        self.history.append((time.time(), report))
        if report.ok:
            self._failed.pop(report.file, None)
        else:
            self._failed[report.file] = file_signature(report.file)

    # --- roots -----------------------------------------------------------------------------

    def _imported_roots(self) -> set[str]:
        found = set()
        for name, module in list(sys.modules.items()):
            try:
                file = getattr(module, "__file__", None)
            except Exception:
                continue
            if not isinstance(file, str):
                continue
            key = (name, file)
            if key not in self._scanned:
                self._scanned[key] = self._user_root(name, file)
            root = self._scanned[key]
            if root is not None:
                found.add(root)
        return found

    def _user_root(self, name: str, file: str) -> str | None:
        """The root of a module imported from outside the standard library and
        site-packages, or None."""
        if name == "__main__" or name.partition(".")[0] == "mighty_patcher":
            return None
        path = resolve(file)
        if not path.endswith(".py") or in_library(path, self._library):
            return None
        root = _root_of(name, path)
        if root is None or not os.path.isdir(root):  # or in a zip file
            log.debug("%s (%s) is not where its name says: not watched", name, path)
            return None
        if Path(root).parent == Path(root):
            log.warning(
                "%s is at the top of the file system: not watched (a root there would watch "
                "everything); %%mighty_patcher watch PATH chooses the roots",
                path,
            )
            return None
        return root

    def _update_roots(self, *, announce: bool = True) -> None:
        if self.explicit is not None:
            roots = set(self.explicit)
        else:
            self._auto |= self._imported_roots()
            roots = _outermost(self._auto)
        if roots == set(self.roots) or roots == self._refused:
            return
        self._restart(tuple(sorted(roots)), announce=announce)

    def _restart(self, roots: tuple[str, ...], *, announce: bool) -> None:
        """A reloader for the new roots, which keeps the sources the old one last applied."""
        old, new = self.reloader, None
        if old is not None:
            self._keep_baselines(old)
        if roots:
            try:
                new = AutoReloader(
                    list(roots),
                    start=False,
                    after_reload=self._after,
                    watcher_factory=self._watcher,
                )
            except Exception as exc:  # the inotify watch limit, a root gone
                log.error("cannot watch %s: %s", ", ".join(roots), exc)
                self._refused = set(roots)  # said once, not before every cell
                return
            for path, text in self._baselines.items():
                new.sources.remember(path, text)
        if old is not None:
            old.stop()
            self._carried |= old.resume()
        self.reloader, self.roots = new, roots
        if new is not None:
            if self._cells or not self.enabled:
                new.pause()
            new.start()
        if announce:
            log.info("%s", self._watching_line())

    def _keep_baselines(self, reloader: AutoReloader) -> None:
        """The source each module runs, as the reloader last applied it: a later reloader
        starts from it, also for a file saved while no root covered it."""
        for path in reloader.sources.tracked_files():
            text = reloader.sources.baseline(path)
            if text is not None:
                self._baselines[path] = text

    # --- showing ---------------------------------------------------------------------------

    def _show(self) -> None:
        """Prints what was logged since the last time, here (under the cell running)."""
        for level, text in self._lines.take():
            stream = sys.stderr if level >= logging.WARNING else sys.stdout
            print(PREFIX + text, file=stream, flush=True)

    def _watching_line(self) -> str:
        if not self.roots:
            return (
                "watching nothing yet: the modules you import from outside the standard "
                "library and site-packages will be watched once a cell imports them"
            )
        how = "given" if self.explicit is not None else "where your modules were imported from"
        return f"watching {', '.join(self.roots)} ({how})"

    def _state_line(self) -> str:
        if not self.enabled:
            return "off: saves are kept, not applied, until %mighty_patcher on"
        return (
            "on (a save applies at once when no cell runs, at the end of the cell when one "
            f"does); {self._watching_line()}"
        )

    def _check_autoreload(self) -> None:
        if self._warned_autoreload:
            return
        try:
            magics = self.shell.magics_manager.registry.get("AutoreloadMagics")
            on = bool(magics is not None and magics._reloader.enabled)
        except Exception:
            on = False
        if on:
            self._warned_autoreload = True
            log.warning(
                "IPython's autoreload is on too: both would reload the same modules, "
                "autoreload by running them again; turn it off with %autoreload 0"
            )

    # --- the magic -------------------------------------------------------------------------

    def magic(self, line: str) -> None:
        """%mighty_patcher [off | on | watch PATH... | watch --auto]"""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            print(f"%mighty_patcher: {exc}", file=sys.stderr)
            return
        command, args = (words[0], words[1:]) if words else ("", [])
        if command == "" and not args:
            print(self.status())
        elif command == "off" and not args:
            self.enabled = False
            if self.reloader is not None:
                self.reloader.pause()
            print(PREFIX + self._state_line())
        elif command == "on" and not args:
            was = self.enabled
            self.enabled = True
            print(PREFIX + self._state_line())
            if not was:
                self.reload_now()  # what was saved while off, shown here
        elif command == "watch" and args:
            self._watch(args)
        else:
            print(USAGE, file=sys.stderr)

    def _watch(self, args: list[str]) -> None:
        if args == ["--auto"]:
            self.explicit = None
        else:
            missing = [a for a in args if not os.path.isdir(a)]
            if missing:
                print(
                    f"%mighty_patcher watch: not a directory: {' '.join(missing)}", file=sys.stderr
                )
                return
            self.explicit = tuple(sorted(_outermost(resolve(a) for a in args)))
        self._update_roots(announce=False)
        self._show()
        print(PREFIX + self._watching_line())

    def status(self) -> str:
        lines = [f"mighty_patcher is {self._state_line()}"]
        reloader = self.reloader
        if reloader is not None:
            names = [
                m.__name__
                for path in reloader.sources.tracked_files()
                for m in reloader.sources.modules_for(path)
            ]
            more = f" and {len(names) - 20} more" if len(names) > 20 else ""
            lines.append(f"modules: {', '.join(names[:20]) or 'none imported yet'}{more}")
        if self.history:
            lines.append("last reloads:")
            for when, report in self.history:
                text = report.summary().splitlines()[0]
                if not report.ok and report.error:
                    text += ": " + " ".join(line.strip() for line in report.error.splitlines()[:2])
                lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(when))}  {text}")
        else:
            lines.append("no reload yet")
        return "\n".join(lines)
