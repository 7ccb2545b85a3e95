"""7. Closure edits against a big heap, per CPython version: the edit of a factory whose closures
made before must follow, with N live objects.

    python bench/closure_edit.py [--python PY] [--size 5000000] [--rounds 3] [--edits 5]

Each (tool, round) runs in a fresh child process. The child builds its heap (N objects: a third
plain instances, a third dicts, a third closures of another factory), imports the module that
will be edited (``heap_size.module_text``: 19 plain functions and the factory ``make``), makes
100 closures with ``make``, starts the tool (``peers.start``, its watcher's work done in the
calling thread), then saves edits of ``make``'s inner function, each timed from the call that
applies the save to its return:

- ``first``: the first closure edit. mighty_patcher on 3.12+ builds its function index here
  (one heap walk for the code objects asked about, then a function watcher follows them);
- ``later``: the next ones, after 100 more closures were made from the new code; on 3.12+
  the index answers without a walk. On 3.10 and 3.11 (no function watcher) every closure
  edit walks the heap: ``gc.get_referrers`` for a few code objects.

Each edit is checked: the 200 closures run the new code. mighty_patcher runs on every version;
the peers (jurigged, IPython autoreload) on the main bench version only.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import emit, run_child, summary
from heap_size import edited_module, module_text

__all__ = ["measure"]

CLOSURES = 100


def child(tool: str, objects: int, edits: int) -> None:
    import peers

    path, edited, ballast, state = edited_module("mp_bench_closures_", objects)
    made = [edited.make(k) for k in range(CLOSURES)]
    gc.collect()
    tracked = len(gc.get_objects())
    driver = peers.start(tool, os.path.dirname(path), thread=False)

    for n in range(edits + 1):
        state["inner"] += 1
        peers.save(path, module_text(**state))
        start = time.perf_counter()
        driver.apply(path)
        seconds = time.perf_counter() - start
        moved = all(f(1) == (k % CLOSURES) + state["inner"] for k, f in enumerate(made))
        index = None
        if tool == "ours":
            import mighty_patcher

            index = mighty_patcher.function_index()
        emit(
            kind="first" if n == 0 else "later",
            seconds=seconds,
            moved=moved,
            tracked=tracked,
            walks=index["walks"] if index else None,
            python=sys.version.split()[0],
        )
        if n == 0:
            made += [edited.make(k) for k in range(CLOSURES)]
    driver.stop()
    del ballast


def measure(
    python_for: dict[str, str],
    *,
    main: str,
    size: int = 5_000_000,
    rounds: int = 3,
    edits: int = 5,
    peers: tuple[str, ...] = ("jurigged", "ipython"),
) -> dict[str, Any]:
    """``python_for``: a bench virtualenv's python per CPython version ("3.13": path)."""
    script = str(Path(__file__).resolve())
    runs: list[tuple[str, str]] = [("ours", v) for v in python_for]
    runs += [(p, main) for p in peers if main in python_for]
    raw: dict[tuple[str, str], list[dict[str, Any]]] = {r: [] for r in runs}
    for _ in range(rounds):
        for tool, version in runs:
            args = [script, "--child", tool, str(size), str(edits)]
            raw[(tool, version)] += run_child(python_for[version], args)
    results: dict[str, Any] = {"size": size, "closures": 2 * CLOSURES, "rows": []}
    for (tool, version), lines in raw.items():
        row: dict[str, Any] = {"tool": tool, "version": version}
        for kind in ("first", "later"):
            mine = [line for line in lines if line["kind"] == kind]
            row[kind] = summary([line["seconds"] for line in mine])
            row[kind]["moved"] = all(line["moved"] for line in mine)
        row["walks"] = max((line["walks"] or 0 for line in lines), default=0) or None
        row["tracked"] = max(line["tracked"] for line in lines)
        row["python"] = lines[0]["python"] if lines else version
        results["rows"].append(row)
    return results


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a bench virtualenv's python")
    parser.add_argument("--size", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--peers", default="jurigged,ipython", help="'' for none")
    args = parser.parse_args()
    version = "{}.{}".format(*sys.version_info[:2])
    results = measure(
        {version: args.python},
        main=version,
        size=args.size,
        rounds=args.rounds,
        edits=args.edits,
        peers=tuple(p for p in args.peers.split(",") if p),
    )
    for row in results["rows"]:
        print(
            f"{row['tool']:<10} {row['python']:<8} first {row['first']['median'] * 1000:8.2f} ms"
            f"  later {row['later']['median'] * 1000:8.2f} ms  walks {row['walks']}"
            f"  moved {row['first']['moved'] and row['later']['moved']}"
        )


if __name__ == "__main__":
    main()
