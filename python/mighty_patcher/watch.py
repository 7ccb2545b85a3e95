"""``AutoReloader``: watch module roots and patch every save into the running program.

    from mighty_patcher.watch import AutoReloader
    reloader = AutoReloader(path="src/")     # a daemon thread starts at once

Each path is a module root: ``src/some_module/math.py`` is the module ``some_module.math``,
and a file also reloads every module in ``sys.modules`` whose ``__file__`` it is. Only files
that back an imported module are ever executed.

A process forked from this one reloads too (``children=True``): it joins this process, which
watches for the whole program (see :mod:`mighty_patcher.processes`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from . import mighty_patcher as native
from . import processes
from .engine import AfterHook, BeforeHook, Engine
from .report import ReloadReport, install_default_handler, logger, show_pid
from .sources import Sources

__all__ = ["AutoReloader", "Watcher", "currently_reloading", "running_reloaders"]

#: True while a reload runs: ``mighty_patcher.currently_reloading``, also here beside the
#: reloader.
currently_reloading = native.currently_reloading

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
    ``children``: a process forked from this one reloads too, joined to this one (which keeps
    the only watcher); ``False``: a forked child runs without a reloader.
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
        children: bool = True,
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
        self.children = children
        self._options: dict[str, Any] = {
            "poll": poll,
            "poll_interval": poll_interval,
            "quiet": quiet,
            "ignore": list(ignore),
        }
        #: The descriptors of the native watcher (closed by a forked child, which inherits them).
        self._watcher_fds: dict[int, str] = {}
        self._watcher: Watcher = self._make_watcher(watcher_factory)
        #: The number of the last batch of saves applied (batches are numbered by the process
        #: that watches); None: unknown (a spawned child before it joined).
        self._applied: int | None = 0
        #: Serves the processes that join this one (made at the first fork, or by `run`).
        self._hub: processes.Hub | None = None
        self._fork_locked = False
        self._fork_running = False
        self.sources.snapshot_imported()
        self.sources.install_import_hook()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._paused = False
        self._deferred: set[str] = set()
        processes.track(self)
        if start:
            self.start()

    def _make_watcher(self, factory: WatcherFactory | None = None) -> Watcher:
        roots = list(self.sources.roots)
        if factory is not None:
            self._watcher_fds = {}
            watcher: Watcher = factory(roots, **self._options)
            return watcher
        watcher, self._watcher_fds = processes.made_with_fds(
            lambda: native.Watcher(roots, **self._options)
        )
        return watcher

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
        if self._hub is not None:
            self._hub.start()
        logger.debug("watching %s", ", ".join(self.paths))

    def stop(self, timeout: float = 2.0) -> None:
        """Stops watching (promptly) and releases the watches and the import hook; the
        processes that joined this one watch by themselves from then on."""
        self._stopped.set()
        with _started_lock:
            _started.discard(self)
        processes.untrack(self)
        self._watcher.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._watcher.close()
        if self._hub is not None:
            self._hub.close()
            self._hub = None
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
            if result == "welcome":
                self._joined()
            elif result == "orphaned":
                self._take_over()
            elif not isinstance(result, str):
                self._apply(result)

    def _apply(self, paths: set[str]) -> None:
        """Applies a batch of saves, sent first to the processes that joined this one; while
        paused, this process keeps them for :meth:`resume` (the others apply them)."""
        with self.engine.lock:  # pause() waits for this reload, or this one sees it
            watcher = self._watcher
            if isinstance(watcher, processes.Upstream):
                seq = watcher.seq
            else:
                seq = (self._applied or 0) + 1
                if self._hub is not None:
                    self._hub.forward(paths, seq)
            if self._paused:
                self._deferred |= paths
                self._applied = seq
                return
            try:
                self.engine.reload_paths(paths)
            except Exception:  # never let one bad reload end the reloader
                logger.exception("reloading %s failed unexpectedly", ", ".join(sorted(paths)))
            finally:
                self._applied = seq

    # --- other processes -------------------------------------------------------------------

    def serve(self) -> str:
        """Lets other processes join this one (spawned children do, through the address
        returned); processes forked from it join without this. Returns the address."""
        with self.engine.lock:
            hub = self._serve()
        if self.running:
            hub.start()
        return hub.address

    def _serve(self) -> processes.Hub:
        """The hub, made if need be (not started); the engine lock is held."""
        if isinstance(self._watcher, processes.Upstream):
            raise RuntimeError("this reloader joined another process; it serves none")
        if self._hub is None:
            self._hub = processes.Hub(self._applied or 0)
        return self._hub

    @property
    def joined(self) -> list[int]:
        """The pids of the processes that joined this one and are connected now."""
        return self._hub.joined if self._hub is not None else []

    def _joined(self) -> None:
        """The hub answered: what a batch sent before may have changed (and this process did
        not apply) is compared with the disk once."""
        upstream = self._watcher
        assert isinstance(upstream, processes.Upstream)
        with self.engine.lock:
            if self._applied != upstream.welcome:
                logger.debug("joined at batch %d, having %s", upstream.welcome, self._applied)
                try:
                    self.engine.reload_changed()
                except Exception:
                    logger.exception("catching up with the saves made meanwhile failed")
            self._applied = upstream.welcome

    def _take_over(self) -> None:
        """The process this one joined is gone: after a grace (a program that ends ends its
        workers first), watch by ourselves, and apply what changed meanwhile."""
        if self._stopped.wait(processes.TAKEOVER_GRACE):
            return
        logger.debug("the process that watched is gone: this one watches by itself")
        try:
            watcher = self._make_watcher()
        except Exception as exc:
            logger.error("cannot watch after the process that watched ended: %s", exc)
            self._stopped.set()
            return
        with self.engine.lock:
            old, self._watcher = self._watcher, watcher
            old.close()
            self._applied = 0
            if self._stopped.is_set():
                watcher.close()
                return
            spec = os.environ.get(processes.CHILD_ENV)
            if spec is not None:
                # spawned children join this process from now on
                hub = self._serve()
                hub.start()
                os.environ[processes.CHILD_ENV] = _with_hub(spec, hub.address)
            try:
                self.engine.reload_changed()
            except Exception:
                logger.exception("catching up with the saves made meanwhile failed")

    def _before_fork(self) -> None:
        """Before ``fork()``: a reload in progress finishes first (the child inherits the
        modules whole), and a running reloader gets a hub for the child to join."""
        self._fork_running = self.running or threading.current_thread() is self._thread
        self._fork_locked = self.engine.lock.acquire(timeout=processes.FORK_WAIT)
        if not self._fork_locked:
            logger.warning(
                "fork() waited %.0f s for a reload to finish; the new process compares its "
                "files once instead",
                processes.FORK_WAIT,
            )
        upstream = isinstance(self._watcher, processes.Upstream)
        if self._fork_running and self.children and not upstream:
            try:
                self._serve()
            except OSError as exc:
                logger.warning("a forked process cannot join this one: %s", exc)

    def _after_fork_in_parent(self) -> None:
        if self._fork_locked:
            self._fork_locked = False
            self.engine.lock.release()
        if self._hub is not None and self.running:
            self._hub.start()

    def _after_fork_in_child(self) -> None:
        """In the forked child: the modules, baselines and graveyards inherited are this
        process's own, consistent (no reload was in progress); the watcher, the hub and the
        threads are the parent's. Lets go of those and joins the watching process."""
        was_running = self._fork_running
        self.engine.lock = threading.RLock()
        self.sources._lock = threading.Lock()
        if not self._fork_locked:
            self._applied = None
        self._fork_locked = False
        address = None
        if isinstance(self._watcher, processes.Upstream):
            address = self._watcher.address
            self._watcher.abandon()
        else:
            processes.close_inherited(self._watcher_fds)
        self._watcher_fds = {}
        if self._hub is not None:
            address = self._hub.address
            self._hub.abandon()
            self._hub = None
        self._watcher = processes.Upstream(address)
        self._stopped = threading.Event()
        if not self.children:
            self._stopped.set()
            processes.untrack(self)
            self.sources.remove_import_hook()
            self._thread = None
            return
        show_pid("child")
        if threading.current_thread() is self._thread:
            return  # forked by a reload itself: this thread goes on as the reloader
        self._thread = None
        if was_running:
            self.start()


def _with_hub(spec: str, address: str) -> str:
    data = json.loads(spec)
    data["hub"] = address
    return json.dumps(data)
