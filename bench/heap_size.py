"""2. Heap-size independence: start-up, and an edit of 20 functions, with N live objects.

    python bench/heap_size.py [--python PY] [--sizes 0,1000000,5000000] [--rounds 3]

Each (tool, size) runs in a fresh child process, the tools taking turns. The child builds its
heap (N objects: a third plain instances, a third dicts, a third closures), imports the
module that will be edited and makes 10 closures with its factory ``make``, then:

- start-up: imports the tool and starts it (``peers.start``), timed together;
- edits, alternating, each changing 20 functions, applied in the calling thread the way the
  tool's watcher applies a save (``peers.Driver.apply``):
  ``plain``: 20 plain functions; ``closures``: 19 plain functions and the factory's inner
  function, whose 10 closures made earlier must move to the new code (the edit that makes
  mighty_patcher walk the heap, once, in C).
Each edit is checked: the functions return the new values; ``closures_moved`` says whether
the closures made earlier run the new code.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import TOOLS, emit, rotated, run_child, summary

__all__ = ["measure", "module_text"]


def module_text(plain: int, last: int, inner: int) -> str:
    """f0..f18 return ``x + i * plain``, f19 ``x + 19 * last``, ``make(k)``'s closures
    ``x * k + inner``."""
    functions = [f"def f{i}(x):\n    return x + {i} * {plain}\n" for i in range(19)]
    functions.append(f"def f19(x):\n    return x + 19 * {last}\n")
    factory = (
        f"def make(k):\n    def inner(x):\n        return x * k + {inner}\n\n    return inner\n"
    )
    return "\n\n".join([*functions, factory])


class Thing:
    def __init__(self, i: int) -> None:
        self.i = i


def _closure(k: int) -> Any:  # closures the edits do not touch
    return lambda x: x + k


def edited_module(prefix: str, objects: int) -> tuple[str, Any, list[object], dict[str, int]]:
    """The module the edits change (``edited.py`` in a new temporary directory, imported), with
    ``objects`` live objects besides: a third plain instances, a third dicts, a third closures.
    Returns its path, the module, the objects and the state its text was made from."""
    import peers

    root = tempfile.mkdtemp(prefix=prefix)
    path = str(Path(root) / "edited.py")
    state = {"plain": 1, "last": 1, "inner": 1}
    peers.save(path, module_text(**state))

    third = objects // 3
    ballast: list[object] = [Thing(i) for i in range(third)]
    ballast += [{"i": i} for i in range(third)]
    ballast += [_closure(i) for i in range(objects - 2 * third)]
    sys.path.insert(0, root)
    import edited  # type: ignore[import-not-found]

    return path, edited, ballast, state


def child(tool: str, objects: int, edits: int) -> None:
    import peers

    path, edited, ballast, state = edited_module("mp_bench_heap_", objects)
    made = [edited.make(k) for k in range(10)]
    gc.collect()
    tracked = len(gc.get_objects())

    start = time.perf_counter()
    driver = peers.start(tool, os.path.dirname(path), thread=False)
    emit(kind="startup", seconds=time.perf_counter() - start, tracked=tracked)

    for n in range(edits):
        for variant in ("plain", "closures"):
            state["plain"] += 1
            state["last" if variant == "plain" else "inner"] += 1
            peers.save(path, module_text(**state))
            start = time.perf_counter()
            driver.apply(path)
            seconds = time.perf_counter() - start
            ok = edited.f3(1) == 1 + 3 * state["plain"] and edited.f19(0) == 19 * state["last"]
            emit(
                kind=variant,
                n=n,
                seconds=seconds,
                applied=ok,
                closures_moved=made[2](1) == 2 + state["inner"],
            )
    driver.stop()
    del ballast


def measure(
    python: str,
    *,
    sizes: tuple[int, ...] = (0, 1_000_000, 5_000_000),
    rounds: int = 3,
    edits: int = 5,
    tools: tuple[str, ...] = TOOLS,
) -> dict[str, Any]:
    raw: dict[str, dict[int, list[dict[str, Any]]]] = {t: {s: [] for s in sizes} for t in tools}
    script = str(Path(__file__).resolve())
    for round_number in range(rounds):
        for size in sizes:
            for tool in rotated(tools, round_number):
                args = [script, "--child", tool, str(size), str(edits)]
                raw[tool][size] += run_child(python, args)
    results: dict[str, Any] = {}
    for tool in tools:
        results[tool] = {}
        for size in sizes:
            lines = raw[tool][size]
            entry: dict[str, Any] = {}
            for kind in ("startup", "plain", "closures"):
                mine = [line for line in lines if line["kind"] == kind]
                entry[kind] = {**summary([line["seconds"] for line in mine])}
                if kind != "startup":
                    entry[kind]["applied"] = all(line["applied"] for line in mine)
                    entry[kind]["closures_moved"] = all(line["closures_moved"] for line in mine)
            entry["tracked"] = max((line.get("tracked", 0) for line in lines), default=0)
            results[tool][str(size)] = entry
    return results


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a bench virtualenv's python")
    parser.add_argument("--sizes", default="0,1000000,5000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    results = measure(
        args.python,
        sizes=tuple(int(s) for s in args.sizes.split(",")),
        rounds=args.rounds,
        edits=args.edits,
        tools=tuple(args.tools.split(",")),
    )
    for tool, sizes in results.items():
        for size, entry in sizes.items():
            parts = [f"{tool:<10} {int(size):>10,}"]
            for kind in ("startup", "plain", "closures"):
                parts.append(f"{kind} {entry[kind]['median'] * 1000:9.2f} ms")
            parts.append(f"closures moved: {entry['closures']['closures_moved']}")
            print("  ".join(parts))


if __name__ == "__main__":
    main()
