"""1. Save to live: from the write of a file to the first call that returns the new value.

    python bench/save_to_live.py [--python PY] [--saves 50] [--sizes small,large]

A program (a child process, one per tool) calls ``b.f()`` in a loop, where ``b`` did
``from a import f``, sleeping 0.2 ms between calls; each save of ``a.py`` changes what ``f``
returns. Measured from just before the write to the first call that returns the new value
(``CLOCK_MONOTONIC``, shared by both processes). The small module has 20 lines; the large one
5,000 lines, of which only ``f`` changes. Saves are plain in-place writes, each 0.1 s (more
than jurigged's debounce) after the previous reload ended, in rounds of ten saves per tool,
the tools taking turns.
"""

from __future__ import annotations

import argparse
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import TOOLS, emit, parse_results, rotated, start_child, summary

__all__ = ["large_module", "measure", "small_module"]

GAP = 0.1  # seconds between saves
TIMEOUT = 10.0  # a save not live by then counts as missed

SMALL = """\
def f():
    return {n}


def g(x):
    return x + 1


class K:
    def m(self):
        return 1


LIMIT = 10
NAMES = ["a", "b"]


def h():
    return LIMIT
"""


def small_module(n: int) -> str:
    return SMALL.format(n=n)


def large_module(n: int, lines: int = 5000) -> str:
    """``lines`` lines: five-line functions, with ``f`` (the one edited) in the middle."""
    head = '"""A large module: one function of many is edited."""\n\n\n'
    blocks = [f"def g{i}(x):\n    y = x + {i}\n    return y * 2\n\n\n" for i in range(lines // 5)]
    blocks[len(blocks) // 2] = f"def f():\n    return {n}\n\n\n"
    return head + "".join(blocks)


MODULES = {"small": small_module, "large": large_module}


def child(tool: str, root: str) -> None:
    """The running program."""
    import peers

    def done() -> None:
        emit(done=time.monotonic())

    sys.path.insert(0, root)
    driver = peers.start(tool, root, thread=True, on_done=done) if tool != "ipython" else None
    import b  # type: ignore[import-not-found]  # does `from a import f`

    if driver is None:  # `%autoreload 2` in a session whose earlier cells imported `b`
        driver = peers.start(tool, root, thread=True)
    last = b.f()
    emit(ready=True)
    before_call, pause = driver.before_call, time.sleep
    while True:
        before_call()
        value = b.f()
        if value != last:
            emit(at=time.monotonic(), value=value)
            if tool == "ipython":  # the reload ran in this thread: it is over
                done()
            last = value
        pause(0.0002)


class Program:
    """One tool's running program, and the lines it reports."""

    def __init__(self, python: str, tool: str, root: Path) -> None:
        args = [str(Path(__file__).resolve()), "--child", tool, str(root)]
        self.proc, self.results = start_child(python, args, subprocess.DEVNULL)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with self.results:
            for result in parse_results(iter(self.results.readline, "")):
                self.lines.put(result)

    def drain(self) -> None:
        while not self.lines.empty():
            self.lines.get_nowait()

    def wait_for(self, value: int, deadline: float) -> float | None:
        """When the program first saw ``value`` (None if not by the deadline); returns once
        the reload is also over (it may go on after the new value is live)."""
        seen = done = None
        while (seen is None or done is None) and (
            line := self.next(max(0.0, deadline - time.monotonic()))
        ):
            if line.get("value") == value:
                seen = line["at"]
            elif "done" in line:
                done = line["done"]
        return seen

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def measure(python: str, *, saves: int = 50, sizes: tuple[str, ...] = ("small", "large")) -> dict:
    per_round = min(10, saves)
    rounds = -(-saves // per_round)
    results: dict[str, Any] = {}
    for size in sizes:
        make = MODULES[size]
        roots = {tool: Path(tempfile.mkdtemp(prefix=f"mp_bench_{tool}_")) for tool in TOOLS}
        latencies: dict[str, list[float]] = {tool: [] for tool in TOOLS}
        missed = dict.fromkeys(TOOLS, 0)
        version = dict.fromkeys(TOOLS, 0)
        for round_number in range(rounds):
            for tool in rotated(TOOLS, round_number):
                root = roots[tool]
                (root / "a.py").write_text(make(version[tool]))
                (root / "b.py").write_text("from a import f\n")
                time.sleep(0.05)  # the module's mtime is older than any save
                program = Program(python, tool, root)
                try:
                    if program.next(120) is None:
                        raise RuntimeError(f"the {tool} program did not start")
                    for _ in range(min(per_round, saves - len(latencies[tool]) - missed[tool])):
                        version[tool] += 1
                        n = version[tool]
                        time.sleep(GAP)
                        program.drain()
                        start = time.monotonic()
                        (root / "a.py").write_text(make(n))
                        seen = program.wait_for(n, start + TIMEOUT)
                        if seen is None:
                            missed[tool] += 1
                        else:
                            latencies[tool].append(seen - start)
                finally:
                    program.close()
        results[size] = {
            tool: {**summary(latencies[tool]), "missed": missed[tool], "values": latencies[tool]}
            for tool in TOOLS
        }
    return results


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a bench virtualenv's python")
    parser.add_argument("--saves", type=int, default=50)
    parser.add_argument("--sizes", default="small,large")
    args = parser.parse_args()
    results = measure(args.python, saves=args.saves, sizes=tuple(args.sizes.split(",")))
    for size, tools in results.items():
        for tool, r in tools.items():
            if r["n"] == 0:
                print(f"{size:<6} {tool:<10} no save went live")
                continue
            print(
                f"{size:<6} {tool:<10} median {r['median'] * 1000:8.2f} ms  "
                f"p95 {r['p95'] * 1000:8.2f} ms  missed {r['missed']}"
            )


if __name__ == "__main__":
    main()
