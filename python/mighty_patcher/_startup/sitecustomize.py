"""Run by Python at startup in each process a program run under ``python -m mighty_patcher
run`` starts (the ``PYTHONPATH`` that ``run`` sets names this directory): starts the
process's reloader, joined to the process that watches, before the program's modules are
imported; then runs the ``sitecustomize`` this one hides, if there is one.

It does nothing in an interpreter without ``mighty_patcher`` (another Python the program
runs), and says so on stderr, in one line, if the reloader cannot start. The syntax is kept
plain: any Python 3 may read it.
"""

import os
import sys


def _start() -> None:
    spec = os.environ.get("MIGHTY_PATCHER_CHILD")
    if not spec:
        return
    try:
        from mighty_patcher import processes
    except ImportError:
        return  # another interpreter, without the package: its own business
    try:
        processes.start_child(spec)
    except Exception as exc:
        sys.stderr.write(
            "[mighty_patcher] [pid " + str(os.getpid()) + "] this process runs without a "
            "reloader: " + type(exc).__name__ + ": " + str(exc) + "\n"
        )


def _chain() -> None:
    """Imports the sitecustomize module this one hides (later on sys.path), as site.py
    would have; its errors are reported by site.py as they would have been."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    this = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        if getattr(exc, "name", None) != "sitecustomize":
            raise
        if this is not None:
            sys.modules["sitecustomize"] = this


_start()
_chain()
