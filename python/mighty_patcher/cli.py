"""Command line: ``python -m mighty_patcher --selftest``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from . import __version__, build_info, selftest

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.selftest:
        return 0 if selftest() else 1
    if args.info:
        print(json.dumps(build_info(), indent=2))
        return 0
    parser.print_help()
    return 2
