"""``AutoReloader``: watch module roots and patch every save into the running program.

    from mighty_patcher.watch import AutoReloader
    reloader = AutoReloader(path="src/")     # a daemon thread starts at once

Each path is a module root: ``src/some_module/math.py`` is the module ``some_module.math``,
and a file also reloads every module in ``sys.modules`` whose ``__file__`` it is. Only files
that back an imported module are ever executed.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from . import mighty_patcher as native
from .engine import AfterHook, BeforeHook, Engine
from .report import ReloadReport, install_default_handler, logger
from .sources import Sources

__all__ = ["AutoReloader", "Watcher", "running_reloaders"]

PathArg = str | os.PathLike[str]


class Watcher(Protocol):
    """What the reloader needs from a watcher (the native ``mighty_patcher.Watcher``; tests
    pass fakes fed with canned change sets)."""

    def wait(self, timeout: float | None = None) -> set[str] | str: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


WatcherFactory = Callable[..., Watcher]

#: The reloaders of this process whose thread was started and not stopped.
_started: weakref.WeakSet[AutoReloader] = weakref.WeakSet()
_started_lock = threading.Lock()


def running_reloaders() -> list[AutoReloader]:
    """The reloaders watching in this process now (started and not stopped): ``attach``
    refuses to start a second one."""
    with _started_lock:
        return [r for r in _started if r.running]


class AutoReloader:
    """Watches ``path`` (one module root or several) and reloads what is saved there.

    ``poll``: use a polling watcher (file systems without inotify), checking every
    ``poll_interval`` seconds. ``quiet``: how long a file must be left alone before a change
    without a close event is applied. ``ignore``: directory names not to watch (besides
    ``__pycache__``, hidden directories, virtualenvs and ``site-packages``).
    ``before_reload(path, modules)`` and ``after_reload(report)`` run around every reload.
    ``start=False`` builds the reloader without its thread (call :meth:`start`, or drive it
    with :meth:`reload_now`). ``log_level``: level of the readable default handler installed
    on the ``mighty_patcher`` logger when the program has not configured logging.
    """

    def __init__(
        self,
        path: PathArg | Sequence[PathArg] = ".",
        *,
        poll: bool = False,
        poll_interval: float = 0.05,
        quiet: float = 0.005,
        ignore: Sequence[str] = (),
        before_reload: BeforeHook | None = None,
        after_reload: AfterHook | None = None,
        start: bool = True,
        log_level: int = logging.INFO,
        watcher_factory: WatcherFactory | None = None,
    ) -> None:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths:
            raise ValueError("AutoReloader needs at least one path to watch")
        self.sources = Sources(paths)
        self.engine = Engine(self.sources)
        if before_reload is not None:
            self.engine.before.append(before_reload)
        if after_reload is not None:
            self.engine.after.append(after_reload)
        install_default_handler(log_level)
        factory: Any = watcher_factory if watcher_factory is not None else native.Watcher
        self._watcher: Watcher = factory(
            list(self.sources.roots),
            poll=poll,
            poll_interval=poll_interval,
            quiet=quiet,
            ignore=list(ignore),
        )
        self.sources.snapshot_imported()
        self.sources.install_import_hook()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._paused = False
        self._deferred: set[str] = set()
        if start:
            self.start()

    @property
    def paths(self) -> tuple[str, ...]:
        """The watched roots, absolute."""
        return self.sources.roots

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="mighty_patcher", daemon=True)
        self._thread.start()
        with _started_lock:
            _started.add(self)
        logger.debug("watching %s", ", ".join(self.paths))

    def stop(self, timeout: float = 2.0) -> None:
        """Stops watching (promptly) and releases the watches and the import hook."""
        self._stopped.set()
        with _started_lock:
            _started.discard(self)
        self._watcher.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._watcher.close()
        self.sources.remove_import_hook()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """From now until :meth:`resume`, the watcher's thread applies no save: it keeps the
        files it is told about for :meth:`resume`. A reload it is applying finishes first.
        :meth:`reload_now` and :meth:`reload` still apply, in the calling thread."""
        with self.engine.lock:
            self._paused = True

    def resume(self) -> set[str]:
        """Lets the watcher's thread apply saves again, and returns the files it was told
        about while paused, not applied: ``reloader.reload(reloader.resume())`` applies them
        in the calling thread."""
        with self.engine.lock:
            self._paused = False
            deferred, self._deferred = self._deferred, set()
        return deferred

    def __enter__(self) -> AutoReloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_before_reload(self, hook: BeforeHook) -> None:
        self.engine.before.append(hook)

    def add_after_reload(self, hook: AfterHook) -> None:
        self.engine.after.append(hook)

    def reload_now(self) -> list[ReloadReport]:
        """Applies, now, in the calling thread, every watched file whose text differs from
        what is running (whether or not the watcher reported it yet)."""
        return self.engine.reload_changed()

    def reload(self, paths: Iterable[PathArg]) -> list[ReloadReport]:
        """Applies the given files now, in the calling thread."""
        return self.engine.reload_paths(os.fspath(p) for p in paths)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                result = self._watcher.wait(None)
            except native.WatchError as exc:
                # e.g. a directory made later hit the inotify watch limit: say so, keep going
                logger.error("%s", exc)
                continue
            except Exception:
                logger.exception("the file watcher failed; reloading stops")
                return
            if result == "stop" or self._stopped.is_set():
                return
            if isinstance(result, str):
                continue
            with self.engine.lock:  # pause() waits for this reload, or this one sees it
                if self._paused:
                    self._deferred |= result
                    continue
                try:
                    self.engine.reload_paths(result)
                except Exception:  # never let one bad reload end the reloader
                    logger.exception("reloading %s failed unexpectedly", ", ".join(sorted(result)))
