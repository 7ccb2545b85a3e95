"""Typed contract of the native module ``mighty_patcher.mighty_patcher``.

Every function needs the GIL and runs with it held from start to end: another thread sees a
patched object either as it was or as it is after, never half-way. (``Watcher`` is the
exception: it waits and walks directories with the GIL released.)
"""

import os
from collections.abc import Callable, Collection, Iterable, Sequence
from types import CodeType, FunctionType, TracebackType
from typing import Any, Literal, TypeVar

_ReloadCallback = TypeVar("_ReloadCallback", bound=Callable[[dict[str, Any]], object])

__version__: str
#: ``sys.version`` (first word) of the interpreter the extension was built for.
BUILT_FOR: str
#: The C API for other C extensions: a capsule named ``"mighty_patcher._C_API"`` holding a
#: ``MightyPatcher_CAPI`` table, described (with its reference and error conventions) by
#: ``mighty_patcher.h`` in the directory ``mighty_patcher.get_include()`` returns. C code
#: imports it with ``MightyPatcher_IMPORT``. (A ``types.CapsuleType`` from 3.13 on.)
_C_API: object

class PatchError(Exception):
    """A patch could not be applied; the objects involved were not changed."""

class NeedsRestart(PatchError):
    """The change cannot be made in place (a ``__slots__`` layout, a base class whose layout
    differs, a metaclass CPython cannot switch); restart the program to apply it. Nothing was
    changed."""

class Reloading:
    """Context manager returned by :func:`reloading`."""

    def __enter__(self) -> Reloading: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...

def patch_function(target: FunctionType, source: FunctionType, /) -> None:
    """Make ``target`` behave exactly like ``source``, in place.

    Every reference to ``target`` (a ``from m import f`` copy, a bound method, a callback in a
    registry, a decorator's wrapper) then runs ``source``'s code with ``source``'s closure
    cells, globals, builtins, defaults, keyword defaults, annotations (and ``__annotate__`` on
    3.14+), type parameters (3.12+), doc, name, qualname and module, and a copy of its
    ``__dict__``. ``target`` keeps its identity and weak references.

    Warm call sites specialised on ``target`` are invalidated; on 3.13+ the function is given
    the version a fresh function with the new code would have, so calls stay fast. The audit
    event ``object.__setattr__`` (``target``, ``"__code__"``, new code) is raised first; a
    hook that raises refuses the patch and nothing changes. Function watchers (3.12+) are
    told ``MODIFY_CODE``, ``MODIFY_DEFAULTS``, ``MODIFY_KWDEFAULTS`` (and ``MODIFY_QUALNAME``,
    3.15+) as CPython's own setters would tell them (``docs/native.md`` has the order). Old
    code, closure and defaults are released once nothing runs them; old globals and builtins
    stay alive while any frame that reads them (running, suspended in a generator or
    coroutine, or kept by a traceback) can still run.

    Raises ``TypeError`` unless both are Python functions.
    """

def swap_code(function: FunctionType, code: CodeType, /) -> None:
    """Give ``function`` the code ``code``, keeping its closure state.

    The new closure holds, for each free variable of ``code``, the cell ``function`` already
    had for a variable of the same name, so a closure made by a factory before an edit keeps
    the values it captured. Globals, defaults and the rest are unchanged.

    Raises :class:`PatchError`, changing nothing, when ``code`` uses a free variable that the
    closure has no cell for.
    """

def patch_class(
    old: type,
    new: type | dict[str, Any],
    /,
    *,
    update: Collection[str] | None = None,
    remove: Collection[str] | None = None,
) -> None:
    """Patch class ``old`` in place so that it behaves like ``new``.

    ``old`` keeps its identity, so its instances and subclasses follow. Members are set and
    deleted through ``type.__setattr__``, so dunders (``__repr__``, ``__add__``, ``__len__``,
    ``__eq__``, ...) take effect on existing instances. A method present in both versions is
    patched in place with :func:`patch_function` (as are the functions inside staticmethods,
    classmethods and properties, and nested classes, recursively), so references held
    elsewhere follow. The ``__class__`` cell of the new methods is pointed at ``old``, so
    zero-argument ``super()`` works in edited and in new methods. Bases are reassigned when
    they differ, and the metaclass when it differs and CPython allows it.

    ``update``: only these names are taken from ``new`` (default: every name whose value
    differs). ``remove``: only these names are deleted from ``old`` (default: every name
    ``new`` lacks).

    ``new`` may also be a dict of members (a class body run on its own, without the class
    statement, so that no metaclass, class decorator or ``__init_subclass__`` ran): only
    members are patched, as above; bases, metaclass and layout are left as they are, and
    nothing is removed but what ``remove`` names. Point the body's ``__class__`` cell at
    ``old`` first.

    Raises :class:`NeedsRestart`, changing nothing, when instances could not follow: a
    different ``__slots__`` or instance layout, bases or a metaclass CPython refuses to switch.
    All or nothing: an audit hook refusing any part of the patch (a method's new code, the
    new docstring, ...) leaves the class as it was.
    """

def functions_using(codes: Iterable[CodeType], /) -> list[FunctionType]:
    """Every live function whose ``__code__`` is one of ``codes``.

    On 3.12+ from the interpreter's function index: made at the first call, it walks the heap
    once (``PyUnstable_GC_VisitObjects``) for the code objects it does not follow yet, then
    follows their functions with a function watcher (created, destroyed, given new code), so
    that asking again costs what the answer holds, not what the heap holds. Without an index
    (3.10, 3.11; ``MIGHTY_PATCHER_FUNCTION_INDEX=0``; no function watcher left), one pass over
    the GC-tracked heap, in C: ``gc.get_referrers(*codes)`` for up to four code objects on
    3.10/3.11, ``gc.get_objects()`` otherwise."""

def instances_of(types: Iterable[type], /) -> list[object]:
    """Every live object the garbage collector tracks whose type is exactly one of ``types``:
    one pass over the heap, in C, comparing type pointers only (no code of the program runs:
    no ``__class__`` property, ``__eq__`` or ``__hash__``). Subclasses count only if listed."""

def track_new_code(code: CodeType, /) -> None:
    """Tells the function index (3.12+; made now, without a walk, if there is none) about
    ``code``, just compiled and not run yet: the nested code objects it holds that nothing
    else references (no function made from them is alive) are followed from now on, so that
    their closures are found without a heap walk. Any other code object is left out (a later
    :func:`functions_using` walks for it). Nothing happens before 3.12, or with
    ``MIGHTY_PATCHER_FUNCTION_INDEX=0``."""

def function_index() -> dict[str, int] | None:
    """What this interpreter's function index holds: ``codes`` followed, ``functions``
    indexed, heap ``walks`` made, the function ``watcher`` ID; ``None`` without an index."""

def member_functions(value: object, /) -> list[FunctionType]:
    """The functions ``value`` holds as a class member, which :func:`patch_class` patches in
    place when the member changes: a function itself; the function of a ``staticmethod`` or
    ``classmethod``; each accessor (``fget``, ``fset``, ``fdel``) of a ``property`` that is a
    function. Only those exact types: a subclass of ``property``, for example, holds none (a
    class patch replaces it). Anything else: an empty list."""

def member_function_pairs(
    old: object, new: object, /
) -> list[tuple[FunctionType, FunctionType]] | None:
    """How :func:`patch_class` patches class member ``old`` into ``new``: the ``(old, new)``
    function pairs it patches in place, role by role, when both are functions, both
    staticmethods (or both classmethods) around functions, or both properties whose accessors
    are, role by role, both functions or both absent (then possibly an empty list); ``None``
    when ``new`` replaces ``old`` instead (a property gaining a setter, a function becoming a
    staticmethod, anything else)."""

def currently_reloading() -> bool:
    """True while the calling thread is applying a reload (inside :func:`reloading`)."""

def reloading() -> Reloading:
    """A context manager that marks the calling thread as reloading; nestable."""

def specialization_version(function: FunctionType, /) -> int | None:
    """The function's specialisation version (``func_version``); ``None`` before 3.11.
    0 (and 1 on 3.14+) means call sites will not specialise on it."""

def build_info() -> dict[str, Any]:
    """What the extension was built for (``built_for``, ``free_threaded``, ``include_dir``,
    ``executable``), what it runs on (``running``), and the struct sizes it assumes."""

def selftest(*, verbose: bool = True) -> bool:
    """Check that this interpreter is the one the extension was built for, that the struct
    layouts it relies on hold, and that warm, specialised call sites (positional and keyword
    calls, defaults, ``*args``, bound methods, property getters, ``__getitem__``, closures)
    run new code after a patch and specialise again, and that old code is released. Prints a
    report when ``verbose``; returns True if every check passed."""

def add_reload_callback(callback: _ReloadCallback, /) -> _ReloadCallback:
    """Call ``callback(report)`` after each reload; returns ``callback``, so it can decorate.

    ``report`` is a dict describing the reload: ``module`` (str), ``file`` (str), ``ok``
    (bool), ``patched``, ``added``, ``deleted`` and ``rebound`` (lists of qualified names),
    ``rerun`` and ``moved`` (lists of statements, by name or first line), ``needs_restart``
    and ``notes`` (lists of messages), ``seconds`` (float) and ``error`` (str or None); it is
    shared by all callbacks, so do not modify it. Callbacks run in registration order,
    together with the ones C extensions register through the C API. An exception raised by a
    callback is reported through :func:`sys.unraisablehook` and does not stop the others. The
    same callable registered twice runs twice.

    Raises ``TypeError`` unless ``callback`` is callable.
    """

def remove_reload_callback(callback: Callable[[dict[str, Any]], object], /) -> None:
    """Stop calling ``callback`` after each reload: removes its earliest registration (found
    with ``==``, so ``obj.method`` given again matches). A callback removed while callbacks
    run is not called again, not even later in that round.

    Raises ``ValueError`` if ``callback`` is not registered.
    """

def _notify_reloaded(report: dict[str, Any], /) -> None:
    """Call every reload callback (Python and C) with ``report``, in registration order.
    Called by the reload engine once per reload; failures of callbacks are reported through
    :func:`sys.unraisablehook`, never raised. Raises ``TypeError`` unless ``report`` is a
    dict."""

class WatchError(OSError):
    """Watching files failed. Raised by :class:`Watcher` when a root does not exist
    (``errno`` ``ENOENT``, ``filename`` the root), when the inotify watch limit is reached
    (``ENOSPC``; the message names the directory, the current
    ``fs.inotify.max_user_watches`` and how to raise it: ``sudo sysctl
    fs.inotify.max_user_watches=524288``, made permanent in ``/etc/sysctl.d/``; or watch a
    smaller tree, or pass ``poll=True``), or when no more inotify instances can be created
    (``EMFILE``)."""

class Watcher:
    """Watches the ``.py`` files under ``roots`` and reports each change once the file is
    complete. The extension only collects and coalesces events; which modules to reload is
    decided in Python.

    ``roots``: directories, watched recursively, or single ``.py`` files; made absolute (like
    :func:`os.path.abspath`, symbolic links not resolved), duplicates dropped; may be empty.
    Below a root these directories are skipped: ``__pycache__``, hidden ones (a name starting
    with ``.``), virtualenvs (named ``venv``/``.venv``, or holding a ``pyvenv.cfg``),
    ``site-packages``, ``node_modules``, and every name in ``ignore``. Symbolic links to
    directories are not followed (a target inside a root is watched under its real path).
    Directories created later are watched as they appear, and the ``.py`` files they already
    hold are reported; removed ones are dropped (a root directory removed is not watched again,
    even if it comes back). Each directory costs one inotify watch.

    A file is reported when a handle that wrote to it is closed, or when a file is renamed
    onto it (temp file + rename, as vim, JetBrains IDEs and ``sed -i`` save); a change with
    no such signal is reported after ``quiet`` seconds without events and with no handle open
    on the file (an open handle holds it back until closed, 2 seconds after its last event at
    most), so a writer that truncates, pauses and writes is reported once, complete. A
    deleted (or renamed away) file is reported after ``quiet`` if it is still missing then,
    so delete-and-recreate within that window is one change; the caller finds a reported path
    missing when it was deleted. A watched directory deleted or renamed away is reported the
    same way, by its own path (the one reported path that is not a ``.py`` file), since the
    files a renamed directory takes along send no event of their own. Reading a file is not a
    change.

    ``poll=True`` uses a polling watcher (notify's ``PollWatcher``) instead of inotify, for
    file systems without inotify events (network mounts, some containers): it checks every
    ``poll_interval`` seconds, there are no open/close events, so readiness relies on
    ``quiet``, which is then at least two poll intervals (a writer pausing longer than that
    mid-write is reported half-way, then again once done). Files changed in the last two
    seconds are re-checked with nanosecond modification times, since ``PollWatcher`` compares
    whole seconds. Raise ``poll_interval`` for large trees: every poll looks at every file.

    Raises :class:`WatchError` when a root does not exist or cannot be watched (see there),
    ``ValueError`` for a root that is a file other than ``.py`` or for a negative duration,
    ``TypeError`` for a single string where a sequence is expected.

    After ``os.fork()``, the child's copy of a watcher is inert: its threads stayed in the
    parent, so there :meth:`wait` returns ``"stop"`` at once, ``watched_directories`` is 0,
    and :meth:`close` (or garbage collection) releases nothing of the parent's and never
    waits. The inotify descriptor the child inherited stays open in the child until it
    closes it itself (``mighty_patcher.watch.AutoReloader`` does).
    """

    def __init__(
        self,
        roots: Sequence[str | os.PathLike[str]],
        *,
        poll: bool = False,
        poll_interval: float = 0.05,
        quiet: float = 0.005,
        ignore: Sequence[str] = (),
    ) -> None: ...
    def wait(self, timeout: float | None = None) -> set[str] | Literal["stop", "timeout"]:
        """Waits, with the GIL released, until at least one changed file is complete, and
        returns the absolute paths of all that are complete by then (each once). Returns
        ``"stop"`` once :meth:`stop` or :meth:`close` was called (before or during the wait,
        from any thread), and ``"timeout"`` after ``timeout`` seconds with nothing complete
        (``None``: wait as long as it takes; 0 or negative: only look).

        Waits in slices of at most 50 ms; between them it takes the GIL and runs the signal
        handlers, so Ctrl-C in the main thread raises ``KeyboardInterrupt`` from here.
        Raises :class:`WatchError` if a directory created since the start could not be
        watched (the inotify watch limit); the watcher goes on with the others.
        """
    def stop(self) -> None:
        """Makes every current and later :meth:`wait` return ``"stop"`` at once. Callable
        from any thread; the OS watches stay until :meth:`close`."""
    def close(self) -> None:
        """Stops (as :meth:`stop`) and releases the OS watches; also done when the watcher
        is garbage-collected. Afterwards :meth:`wait` returns ``"stop"``, and
        ``watched_directories`` is 0. Calling it again does nothing."""
    def __enter__(self) -> Watcher: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool:
        """Closes the watcher; exceptions propagate."""
    @property
    def roots(self) -> tuple[str, ...]:
        """The watched roots, absolute, as given (after :func:`os.path.abspath`)."""
    @property
    def watched_directories(self) -> int:
        """How many directories are watched now (one inotify watch each; 0 once closed)."""
