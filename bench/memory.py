"""4. Memory across reloads: RSS and live objects after 1, 100 and 1,000 reloads.

    python bench/memory.py [--python PY] [--reloads 1,100,1000]

Each tool runs in a fresh child process. The module has 50 functions; every reload changes
all 50 (their return value), and is applied the way the tool's watcher applies a save
(``peers.Driver.apply``). At each checkpoint, after ``gc.collect()``: RSS (``VmRSS`` of
``/proc/self/status``), the live function objects (``gc.get_objects()``), and the live code
objects compiled from the module's file (reachable from GC-tracked objects, nested code
included).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from common import TOOLS, emit, rotated, rss_kib, run_child

__all__ = ["measure", "module_text"]

FUNCTIONS = 50


def module_text(version: int) -> str:
    return "\n\n".join(f"def f{i}(x):\n    return x + {i} * {version}\n" for i in range(FUNCTIONS))


def live_codes(filename: str) -> int:
    """Code objects from ``filename`` reachable from the GC-tracked heap (code objects
    themselves are not tracked: they are found through what refers to them)."""
    seen: dict[int, types.CodeType] = {}
    stack = [
        x
        for o in gc.get_objects()
        for x in gc.get_referents(o)
        if type(x) is types.CodeType and x.co_filename == filename
    ]
    while stack:
        code = stack.pop()
        if id(code) not in seen:
            seen[id(code)] = code
            stack += [c for c in code.co_consts if type(c) is types.CodeType]
    return len(seen)


def child(tool: str, checkpoints: list[int]) -> None:
    import peers

    root = tempfile.mkdtemp(prefix="mp_bench_memory_")
    path = str(Path(root) / "fifty.py")
    peers.save(path, module_text(0))
    sys.path.insert(0, root)
    import fifty  # type: ignore[import-not-found]

    held = fifty.f7  # a reference held elsewhere, as `from fifty import f7` would
    driver = peers.start(tool, root, thread=False)
    gc.collect()
    emit(reloads=0, rss_kib=rss_kib())
    times = []
    for n in range(1, max(checkpoints) + 1):
        peers.save(path, module_text(n))
        start = time.perf_counter()
        driver.apply(path)
        times.append(time.perf_counter() - start)
        if n in checkpoints:
            assert held(0) == 7 * n and fifty.f49(0) == 49 * n, f"{tool}: reload {n} not applied"
            gc.collect()
            functions = sum(1 for o in gc.get_objects() if type(o) is types.FunctionType)
            emit(
                reloads=n,
                rss_kib=rss_kib(),
                functions=functions,
                codes=live_codes(path),
                reload_seconds=statistics.median(times),
            )


def measure(
    python: str, *, checkpoints: tuple[int, ...] = (1, 100, 1000), tools: tuple[str, ...] = TOOLS
) -> dict[str, Any]:
    script = str(Path(__file__).resolve())
    results: dict[str, Any] = {}
    for tool in rotated(tools, 0):
        lines = run_child(python, [script, "--child", tool, ",".join(map(str, checkpoints))])
        results[tool] = {str(line["reloads"]): line for line in lines}
    return results


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], [int(n) for n in sys.argv[3].split(",")])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a bench virtualenv's python")
    parser.add_argument("--reloads", default="1,100,1000")
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    checkpoints = tuple(int(n) for n in args.reloads.split(","))
    results = measure(args.python, checkpoints=checkpoints, tools=tuple(args.tools.split(",")))
    for tool, lines in results.items():
        for n, line in lines.items():
            if n == "0":
                continue
            print(
                f"{tool:<10} {int(n):>5} reloads  RSS {line['rss_kib'] / 1024:7.1f} MiB  "
                f"functions {line['functions']:>6}  codes {line['codes']:>5}  "
                f"reload {line['reload_seconds'] * 1000:7.2f} ms"
            )


if __name__ == "__main__":
    main()
