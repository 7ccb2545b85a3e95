"""Command line.

python -m mighty_patcher run script.py [args...]
python -m mighty_patcher run -m package.module [args...]
python -m mighty_patcher --selftest
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import runpy
import sys
from collections.abc import Sequence

from . import __version__, build_info, selftest
from .sources import read_source, resolve

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
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(parser, args)
    if args.selftest:
        return 0 if selftest() else 1
    if args.info:
        print(json.dumps(build_info(), indent=2))
        return 0
    parser.print_help()
    return 2


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
    reloader = AutoReloader(path=roots, poll=args.poll, log_level=level)
    try:
        if script is not None:
            sys.argv = [script, *rest]
            reloader.sources.remember(script, read_source(script))
            runpy.run_path(script, run_name="__main__")
        else:
            assert module is not None
            sys.argv = [module, *rest]
            spec = importlib.util.find_spec(module)
            origin = spec.origin if spec is not None else None
            if origin is not None and origin.endswith(".py"):
                reloader.sources.remember(resolve(origin), read_source(origin))
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        reloader.stop()
    return 0
