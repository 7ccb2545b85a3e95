"""Mighty Patcher: restart-less hot code reloading for CPython.

The native core (``mighty_patcher.mighty_patcher``, a Rust extension) patches live functions
and classes in place; everything it offers is re-exported here.
"""

import os as _os
import sys as _sys

# Checked before anything else is imported, in syntax any Python 3 reads: an unsupported
# interpreter gets this message rather than a dynamic-loader or syntax error.
if _sys.implementation.name != "cpython" or not (3, 10) <= _sys.version_info[:2] <= (3, 15):
    _name = "CPython" if _sys.implementation.name == "cpython" else _sys.implementation.name
    raise ImportError(
        "mighty_patcher supports CPython 3.10 to 3.15; this is "
        + _name
        + " "
        + _sys.version.split()[0]
    )

from typing import Any

# The C API capsule, re-exported so that `PyCapsule_Import("mighty_patcher._C_API", 0)` finds
# it on the package as it does on the bare extension module.
from .mighty_patcher import _C_API as _C_API
from .mighty_patcher import (
    BUILT_FOR,
    NeedsRestart,
    PatchError,
    Reloading,
    Watcher,
    WatchError,
    __version__,
    add_reload_callback,
    build_info,
    currently_reloading,
    function_index,
    functions_using,
    instances_of,
    member_function_pairs,
    member_functions,
    patch_class,
    patch_function,
    reloading,
    remove_reload_callback,
    selftest,
    specialization_version,
    swap_code,
    track_new_code,
)

__all__ = [
    "BUILT_FOR",
    "NeedsRestart",
    "PatchError",
    "Reloading",
    "WatchError",
    "Watcher",
    "__version__",
    "add_reload_callback",
    "build_info",
    "currently_reloading",
    "function_index",
    "functions_using",
    "get_include",
    "instances_of",
    "load_ipython_extension",
    "member_function_pairs",
    "member_functions",
    "patch_class",
    "patch_function",
    "reloading",
    "remove_reload_callback",
    "selftest",
    "specialization_version",
    "swap_code",
    "track_new_code",
    "unload_ipython_extension",
]


def get_include() -> str:
    """The directory holding ``mighty_patcher.h``, the C API header for other C extensions
    (add it to their include path, as with ``numpy.get_include()``)."""
    return _os.path.join(_os.path.dirname(_os.path.realpath(__file__)), "include")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mighty_patcher`` in IPython or Jupyter: every save of the modules imported
    from outside the standard library and site-packages is patched in place, between cells
    (``mighty_patcher.ipython``; IPython is not imported until then)."""
    from .ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext mighty_patcher``: stops watching."""
    from .ipython import unload_ipython_extension as unload

    unload(ipython)
