"""How each tool is driven, inside a child process: the way its users run it.

- ``ours``: ``AutoReloader(root)`` (``mighty_patcher.watch``), defaults (its own watcher
  thread, inotify, log line per reload on stderr).
- ``jurigged``: ``jurigged.watch(root)``, defaults (watchdog observer, 50 ms debounce, its
  default logger printing each update). Importing ``jurigged`` imports ``codefind``, which
  indexes every function on the heap at that moment; that is part of its start-up.
- ``ipython``: ``IPython.extensions.autoreload.ModuleReloader`` set up as ``%autoreload 2``
  sets it up (``enabled``, ``check_all``, deduperreload on), and ``check()`` called before
  each "cell", as IPython's ``pre_run_cell`` hook does. It has no watcher: the program's loop
  calls ``check()`` before each call of the function, which is the honest equivalent.

``start(tool, root, thread=...)`` returns a ``Driver``. With ``thread=True`` the tool reacts
to saves by itself (its watcher thread; for IPython, ``before_call`` must be called). With
``thread=False`` nothing runs in the background and ``apply(path)`` does, in the calling
thread, what the tool's watcher does for a save of ``path``: ``reload([path])``,
``Watcher.refresh(path)``, ``check()``. Timing ``apply`` is timing the tool's reload itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Driver", "save", "start", "versions"]


def _nothing() -> None:
    pass


@dataclass
class Driver:
    apply: Callable[[str], object]
    stop: Callable[[], object] = _nothing
    #: IPython only: what runs before each cell.
    before_call: Callable[[], object] = _nothing
    keep: list[object] = field(default_factory=list)


def start(
    tool: str, root: str, *, thread: bool, on_done: Callable[[], object] | None = None
) -> Driver:
    """``on_done()`` runs after each reload the tool's own thread applies (ours, jurigged)."""
    if tool == "ours":
        from mighty_patcher.watch import AutoReloader

        after = (lambda report: on_done()) if on_done else None
        reloader = AutoReloader(root, start=thread, after_reload=after)
        return Driver(apply=lambda path: reloader.reload([path]), stop=reloader.stop)
    if tool == "jurigged":
        import jurigged

        watcher = jurigged.watch(root, autostart=thread)
        if on_done:
            watcher.postrun.register(lambda path, codefile: on_done())
        return Driver(apply=watcher.refresh, stop=watcher.stop if thread else _nothing)
    if tool == "ipython":
        from IPython.extensions.autoreload import ModuleReloader

        reloader = ModuleReloader()  # caches every module's mtime and source
        reloader.enabled = True  # %autoreload 2
        reloader.check_all = True
        reloader.autoload_obj = False
        return Driver(
            apply=lambda path: reloader.check(),
            before_call=reloader.check if thread else _nothing,
            keep=[reloader],
        )
    raise ValueError(f"unknown tool {tool!r}")


_last_mtime: dict[str, int] = {}


def save(path: str, text: str) -> None:
    """Writes ``text`` in place (as most editors do) and makes sure the file's mtime moves
    forward even when saves come faster than the file system's timestamp granularity
    (IPython decides what to reload by mtime)."""
    with open(path, "w") as f:
        f.write(text)
    mtime = max(os.stat(path).st_mtime_ns, _last_mtime.get(path, 0) + 1_000_000)
    os.utime(path, ns=(mtime, mtime))
    _last_mtime[path] = mtime


def versions() -> dict[str, str]:
    """The versions of the tools importable here."""
    from importlib import metadata

    found = {}
    for dist in ("mighty-patcher", "jurigged", "watchdog", "ipython", "matplotlib"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found
