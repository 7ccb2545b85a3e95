"""Command line.

python -m mighty_patcher run script.py [args...]
python -m mighty_patcher run -m package.module [args...]
python -m mighty_patcher --selftest
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import logging
import os
import runpy
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import __version__, build_info, processes, selftest
from .sources import read_source, resolve

if TYPE_CHECKING:
    from .watch import AutoReloader

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mighty_patcher",
        description="Restart-less hot code reloading for CPython.",
    )
    parser.add_argument(
        "--selftest",
        action="store_true",
        help="check this build against the running interpreter and exit 0 if it is sound",
    )
    parser.add_argument(
        "--info", action="store_true", help="print what the extension was built for, as JSON"
    )
    parser.add_argument("--version", action="version", version=f"mighty_patcher {__version__}")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser(
        "run",
        help="run a program and patch every save of its source into it",
        description="Run a script (or -m module) with a reloader watching its directory.",
    )
    run.add_argument(
        "--path",
        action="append",
        metavar="DIR",
        help="a module root to watch (repeatable; default: the script's directory, or the "
        "current directory with -m)",
    )
    run.add_argument("--poll", action="store_true", help="poll instead of using inotify")
    run.add_argument(
        "--no-children",
        action="store_true",
        help="reload in this process only: the processes it forks or starts (workers) run "
        "without a reloader",
    )
    loudness = run.add_mutually_exclusive_group()
    loudness.add_argument("--verbose", action="store_true", help="also log debug details")
    loudness.add_argument("--quiet", action="store_true", help="log only failures")
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a module as a script")
    run.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        metavar="script.py | args",
        help="the script to run (unless -m), then the program's own arguments",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    head, program = _split_run(argv)
    args = parser.parse_args(head)
    if args.command == "run":
        if program is not None:
            args.program = program
        return _run(parser, args)
    if args.selftest:
        return 0 if selftest() else 1
    if args.info:
        print(json.dumps(build_info(), indent=2))
        return 0
    parser.print_help()
    return 2


#: The options of ``run`` that take a value.
_RUN_VALUES = ("--path",)


def _split_run(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``run``'s own arguments, and the program's: everything after ``-m MODULE`` or the
    script, options included (``run -m gunicorn -w 2 app:app``: ``-w 2`` is gunicorn's)."""
    if not argv or argv[0] != "run":
        return argv, None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv[:i], argv[i + 1 :]
        if arg == "-m":
            return argv[: i + 2], argv[i + 2 :]
        if arg.startswith("-m") and not arg.startswith("--"):
            return argv[: i + 1], argv[i + 1 :]
        if not arg.startswith("-"):
            return argv[:i], argv[i:]
        i += 2 if arg in _RUN_VALUES else 1
    return argv, None


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .watch import AutoReloader

    program = list(args.program)
    if args.module is None and not program:
        parser.error("run: give a script or -m module")
    if args.module is not None:
        module, rest = args.module, program
        script = None
        default_root = os.getcwd()
        sys.path.insert(0, default_root)
    else:
        script, rest = resolve(program[0]), program[1:]
        module = None
        default_root = os.path.dirname(script)
        sys.path.insert(0, default_root)
    roots = [os.path.abspath(p) for p in args.path] if args.path else [default_root]
    # The roots are where the program's modules are imported from (``--path src -m app``):
    # on sys.path, as PYTHONPATH would put them, ahead of the default root.
    for root in reversed(roots):
        if root not in sys.path:
            sys.path.insert(0, root)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    # Started by a program run under `run` (its sitecustomize joined us to that program's
    # reloader): this run watches for itself and the processes it starts.
    processes.stop_child()
    children = not args.no_children
    reloader = AutoReloader(path=roots, poll=args.poll, log_level=level, children=children)
    # Registered before the program imports multiprocessing, so it runs after the exit
    # handler of multiprocessing (exit handlers run last registered first), which ends or
    # joins the workers still running: until then they keep getting the saves.
    atexit.register(reloader.stop)
    try:
        main = script
        if script is not None:
            sys.argv = [script, *rest]
        else:
            assert module is not None
            sys.argv = [module, *rest]
            spec = importlib.util.find_spec(module)
            origin = spec.origin if spec is not None else None
            if origin is not None and origin.endswith(".py"):
                main = resolve(origin)
        if main is not None:
            reloader.sources.remember(main, read_source(main))
        if children:
            _serve_children(reloader, main, level, args)
        else:
            _no_children()
        if script is not None:
            runpy.run_path(script, run_name="__main__")
        else:
            assert module is not None
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        if not reloader.joined:
            reloader.stop()
    return 0


def _serve_children(
    reloader: AutoReloader, main: str | None, level: int, args: argparse.Namespace
) -> None:
    """Spawned Python children of the program (multiprocessing spawn, uvicorn --workers,
    subprocess) start a reloader joined to this one, from the sitecustomize of the startup
    directory that PYTHONPATH names, with what MIGHTY_PATCHER_CHILD says."""
    address = reloader.serve()
    options = {"poll": bool(args.poll)}
    os.environ[processes.CHILD_ENV] = processes.child_spec(
        address, reloader.paths, main=main, log_level=level, options=options
    )
    os.environ["PYTHONPATH"] = processes.with_startup_dir(os.environ.get("PYTHONPATH"))


def _no_children() -> None:
    """A run inside a program run under `run`, with --no-children: its children do not
    join the outer program either."""
    os.environ.pop(processes.CHILD_ENV, None)
    pythonpath = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        rest = processes.without_startup_dir(pythonpath)
        if rest:
            os.environ["PYTHONPATH"] = rest
        else:
            del os.environ["PYTHONPATH"]
