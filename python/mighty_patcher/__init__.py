"""Mighty Patcher: restart-less hot code reloading for CPython.

The native core (``mighty_patcher.mighty_patcher``, a Rust extension) patches live functions
and classes in place; everything it offers is re-exported here.
"""

from .mighty_patcher import (
    BUILT_FOR,
    NeedsRestart,
    PatchError,
    Reloading,
    __version__,
    build_info,
    currently_reloading,
    functions_using,
    patch_class,
    patch_function,
    reloading,
    selftest,
    specialization_version,
    swap_code,
)

__all__ = [
    "BUILT_FOR",
    "NeedsRestart",
    "PatchError",
    "Reloading",
    "__version__",
    "build_info",
    "currently_reloading",
    "functions_using",
    "patch_class",
    "patch_function",
    "reloading",
    "selftest",
    "specialization_version",
    "swap_code",
]
