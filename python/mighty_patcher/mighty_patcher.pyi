"""Typed contract of the native module ``mighty_patcher.mighty_patcher``.

Every function needs the GIL and runs with it held from start to end: another thread sees a
patched object either as it was or as it is after, never half-way.
"""

from collections.abc import Collection, Iterable
from types import CodeType, FunctionType, TracebackType
from typing import Any

__version__: str
#: ``sys.version`` (first word) of the interpreter the extension was built for.
BUILT_FOR: str

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
    hook that raises refuses the patch and nothing changes. Old code, closure and defaults are
    released once nothing runs them; old globals and builtins stay alive while a frame
    running the old code exists.

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
    new: type,
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

    Raises :class:`NeedsRestart`, changing nothing, when instances could not follow: a
    different ``__slots__`` or instance layout, bases or a metaclass CPython refuses to switch.
    """

def functions_using(codes: Iterable[CodeType], /) -> list[FunctionType]:
    """Every live function whose ``__code__`` is one of ``codes``: one pass over the
    GC-tracked heap, in C (``PyUnstable_GC_VisitObjects`` on 3.12+, ``gc.get_objects()``
    before)."""

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
