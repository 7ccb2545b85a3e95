"""Command line.

python -m mighty_patcher run script.py [args...]
python -m mighty_patcher run -m package.module [args...]
python -m mighty_patcher attach [--path DIR ...] [--follow] PID   (CPython 3.14+)
python -m mighty_patcher attach --detach PID
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
    attach = commands.add_parser(
        "attach",
        help="start a reloader inside a program that is already running (CPython 3.14+)",
        description="Start a reloader inside the running Python process PID, through "
        "sys.remote_exec (PEP 768: CPython 3.14 or later, here and in the target); from then "
        "on every save under its roots is patched into it. See docs/attach.md.",
    )
    attach.add_argument("pid", type=int, metavar="PID", help="the process to attach to")
    attach.add_argument(
        "--path",
        action="append",
        metavar="DIR",
        help="a module root to watch (repeatable; default: the target's working directory)",
    )
    attach.add_argument(
        "--detach", action="store_true", help="stop the reloader attach started in PID"
    )
    attach.add_argument(
        "--follow",
        action="store_true",
        help="then print the target's reload reports here, until it is detached or ends "
        "(Ctrl-C stops following, not the reloader)",
    )
    attach.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long to wait for the target to run the bootstrap (default 15)",
    )
    attach.add_argument(
        "--no-borrow",
        action="store_true",
        help="use only a mighty_patcher installed in the target's environment (by default, "
        "when it has none, this copy is loaded into it)",
    )
    attach.add_argument("--poll", action="store_true", help="poll instead of using inotify")
    attach_loudness = attach.add_mutually_exclusive_group()
    attach_loudness.add_argument("--verbose", action="store_true", help="also log debug details")
    attach_loudness.add_argument("--quiet", action="store_true", help="log only failures")
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
    if args.command == "attach":
        return _attach(parser, args)
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
        if not os.path.isfile(script):
            print(
                f"python -m mighty_patcher run: can't open file {program[0]!r}: no such file",
                file=sys.stderr,
            )
            return 2
        default_root = os.path.dirname(script)
        sys.path.insert(0, default_root)
    roots = [os.path.abspath(p) for p in args.path] if args.path else [default_root]
    if script is not None and not any(
        script == r or script.startswith(r.rstrip(os.sep) + os.sep) for r in map(resolve, roots)
    ):
        roots.append(script)  # the script itself is watched too (its definitions are patched)
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
    except BaseException as exc:
        # As Python shows an uncaught exception of a script: the program's frames only.
        _print_program_traceback(exc)
        return 1
    finally:
        if not reloader.joined:
            reloader.stop()
    return 0


def _print_program_traceback(exc: BaseException) -> None:
    """The traceback of an exception that ended the program, without the frames of this
    package and of runpy that started it."""
    import traceback

    ours = (
        os.path.dirname(os.path.abspath(__file__)),
        os.path.abspath(runpy.__file__),
        "<frozen runpy>",
    )
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(ours):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _attach(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .attach import AttachError, attach, detach, follow

    pid = args.pid
    if args.detach and (args.path or args.follow or args.no_borrow):
        parser.error("attach --detach takes only the PID (and --timeout)")
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    try:
        if args.detach:
            answer = detach(pid, timeout=args.timeout)
            reloads = answer["reloads"]
            print(
                f"detached from process {pid}: saves under {', '.join(answer['roots'])} are no "
                f"longer applied ({reloads} reload{'' if reloads == 1 else 's'} while attached; "
                f"what they applied stays)"
            )
            return 0
        attached = attach(
            pid,
            args.path,
            timeout=args.timeout,
            borrow=not args.no_borrow,
            poll=args.poll,
            log_level=level,
        )
    except AttachError as exc:
        print(f"mighty_patcher attach: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"mighty_patcher attach: interrupted; the request is cancelled (if process {pid} "
            f"runs the bootstrap later, it does nothing)",
            file=sys.stderr,
        )
        return 130
    print(
        f"attached to process {pid} (Python {attached.python}, {attached.executable}) "
        f"in {attached.seconds:.2f} s (its main thread ran the bootstrap for "
        f"{attached.paused * 1000:.0f} ms)"
    )
    names = attached.modules
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    print(
        f"watching {', '.join(attached.roots)}: {len(names)} module"
        f"{'' if len(names) == 1 else 's'} tracked{': ' + shown if names else ''}"
    )
    if not names:
        print(
            "  none of its modules comes from there: a save there changes nothing until it "
            "imports one"
            + (
                f"; its modules come from {', '.join(attached.elsewhere)} (to watch those: "
                f"attach --detach {pid}, then attach --path DIR {pid})"
                if attached.elsewhere
                else ""
            )
        )
    if attached.borrowed:
        print(
            f"mighty_patcher {__version__} was loaded into it from {attached.package} (it has "
            f"none installed; its sys.path is unchanged)"
        )
    if attached.stale:
        print("these files changed after they were imported:")
        for entry in attached.stale:
            print(f"  {_under(entry['file'], attached.roots)} ({entry['module']}: {entry['why']})")
        print(
            "  what runs is still what was imported, and the text read now is the baseline: a "
            "save applies what it changes from that text; the parts named keep their imported "
            "version until they are edited (or the program restarts)"
        )
    print(f"reports: on its stderr, and in {attached.log}")
    print(f"to stop: python -m mighty_patcher attach --detach {pid}", flush=True)
    if not args.follow:
        return 0
    print("following its reports (Ctrl-C stops following; the reloader keeps running):")
    try:
        how = follow(pid, attached)
    except KeyboardInterrupt:
        print(f"stopped following; mighty_patcher stays attached to process {pid}")
        return 0
    print(f"process {pid} {'was detached' if how == 'detached' else 'has ended'}", flush=True)
    return 0


def _under(path: str, roots: list[str]) -> str:
    """``path`` relative to the root it is under (the target's roots, not our directory)."""
    for root in roots:
        if path.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, root)
    return path


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
