"""The benchmarks, side by side with the peers, in one run: ``make bench`` runs this.

    python bench/run.py [--smoke] [--only save,heap,calls,memory,tree,web,closures,overhead,loop]
                        [--versions 3.13]

Makes or updates the bench virtualenvs (``envs.py``: mighty_patcher built from this tree for
each CPython version, and jurigged, IPython and matplotlib for the main one), then runs, for
mighty_patcher and each peer, the tools taking turns within each measurement:

1. save to live (``save_to_live.py``)      4. memory across reloads (``memory.py``)
2. heap-size independence (``heap_size.py``) 5. watching a big tree (``watch_tree.py``)
3. call speed after a patch, per CPython version (``call_speed.py``)
6. save to new HTTP response, Flask and FastAPI (``web_save.py``; ours and jurigged)
7. closure edits at 5,000,000 objects, per CPython version (``closure_edit.py``)
8. what the function index's watcher costs function creation, per version from 3.12, and the
   reloader thread's idle CPU (``overhead.py``)
9. the test loop's turnaround against a pytest restart (``test_loop.py``)

and prints one table (``table.py``), written also to ``bench/out/table.txt``, with the raw
figures in ``bench/out/results.json`` and a chart in ``bench/out/bench.png`` (``chart.py``);
a smoke run writes to ``bench/out/smoke/``.
``--smoke`` runs one small case of each, in about a minute once the virtualenv exists: it
checks that everything still runs, and its figures mean nothing. Timed goals are never
asserted; the table says which are met.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

for _name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYO3_PYTHON"):
    os.environ.pop(_name, None)  # children must import the installed wheel, not the tree

import call_speed  # noqa: E402
import closure_edit  # noqa: E402
import envs  # noqa: E402
import heap_size  # noqa: E402
import memory  # noqa: E402
import overhead  # noqa: E402
import save_to_live  # noqa: E402
import table  # noqa: E402
import test_loop  # noqa: E402
import watch_tree  # noqa: E402
import web_save  # noqa: E402
from common import BENCH, child_env, machine  # noqa: E402

MEASURES = ("save", "heap", "calls", "memory", "tree", "web", "closures", "overhead", "loop")
VERSIONS = ("3.10", "3.11", "3.12", "3.13", "3.14", "3.15")

FULL = {
    "save": {"saves": 50, "sizes": ("small", "large")},
    "heap": {"sizes": (0, 1_000_000, 5_000_000), "rounds": 3, "edits": 5},
    "calls": {"rounds": 7, "calls": 300_000},
    "memory": {"checkpoints": (1, 100, 1000)},
    "tree": {"dirs": 5000, "files": 50_000, "idle": 10.0, "repeat": 3},
    "web": {"saves": 20, "frameworks": ("flask", "fastapi")},
    "closures": {"size": 5_000_000, "rounds": 3, "edits": 5},
    "overhead": {"rounds": 5, "number": 1_000_000, "idle": 10.0, "counted": 200_000},
    "loop": {"fixes": 10, "restarts_": 5},
}
SMOKE = {
    "save": {"saves": 2, "sizes": ("small",)},
    "heap": {"sizes": (10_000,), "rounds": 1, "edits": 1},
    "calls": {"rounds": 2, "calls": 20_000},
    "memory": {"checkpoints": (1, 2, 5)},
    "tree": {"dirs": 20, "files": 200, "idle": 0.5, "repeat": 1},
    "web": {"saves": 2, "frameworks": ("flask", "fastapi")},
    "closures": {"size": 10_000, "rounds": 1, "edits": 1},
    "overhead": {"rounds": 1, "number": 20_000, "idle": 0.5, "counted": 0},
    "loop": {"fixes": 1, "restarts_": 1},
}


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def tool_versions(python: str) -> dict[str, str]:
    code = "import json, peers; print(json.dumps(peers.versions()))"
    out = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**child_env(), "PYTHONPATH": str(BENCH)},
        cwd="/",
    )
    versions: dict[str, str] = json.loads(out.stdout)
    return versions


def call_speeds(main_version: str, versions: list[str], settings: dict[str, Any]) -> list[Any]:
    rows: list[Any] = []
    for version in versions:
        try:
            python = envs.prepare(version, main=version == main_version)
            log(f"call speed on {version}")
            rows.append(call_speed.measure(python, settings["rounds"], settings["calls"]))
        except (SystemExit, RuntimeError, subprocess.CalledProcessError) as exc:
            log(f"no call speed for {version}: {exc}")
            rows.append({"python": version, "error": str(exc).strip().splitlines()[-1]})
    return rows


def pythons(main_version: str, versions: list[str]) -> dict[str, str]:
    """A bench virtualenv's python for each version that can be prepared (the others are
    reported and left out)."""
    found = {}
    for version in versions:
        try:
            found[version] = envs.prepare(version, main=version == main_version)
        except (SystemExit, RuntimeError, subprocess.CalledProcessError) as exc:
            log(f"no bench virtualenv for {version}: {exc}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one small case of each, quickly")
    parser.add_argument("--only", default=",".join(MEASURES), help="a comma-separated subset")
    parser.add_argument("--python", help="the main CPython version (default: newest of 3.13-3.11)")
    parser.add_argument("--versions", help="CPython versions for the call speed (default: all)")
    parser.add_argument("--out", type=Path, help="default: bench/out (smoke: bench/out/smoke)")
    args = parser.parse_args(argv)
    only = args.only.split(",")
    args.out = args.out or (BENCH / "out" / "smoke" if args.smoke else BENCH / "out")
    settings = SMOKE if args.smoke else FULL
    started = time.monotonic()

    main_version = args.python or envs.main_version()
    python = envs.prepare(main_version, main=True)
    results: dict[str, Any] = {
        "smoke": args.smoke,
        "machine": machine(python),
        "tools": tool_versions(python),
        "settings": {k: v for k, v in settings.items() if k in only},
        "seconds": {},
    }

    args.out.mkdir(parents=True, exist_ok=True)
    failed = []

    def timed(name: str, run: Any) -> None:
        """Runs one measurement; a failure is reported and the others still run. The figures
        so far are saved after each one."""
        if name not in only:
            return
        log(f"measuring: {name}")
        start = time.monotonic()
        try:
            results[name] = run()
        except Exception as exc:  # e.g. a child process failed: its stderr is in the message
            log(f"{name} failed: {exc}")
            failed.append(name)
        results["seconds"][name] = time.monotonic() - start
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    timed("save", lambda: save_to_live.measure(python, **settings["save"]))
    timed("heap", lambda: heap_size.measure(python, **settings["heap"]))
    if args.versions:
        versions = args.versions.split(",")
    else:
        versions = [main_version] if args.smoke else list(VERSIONS)
    timed("calls", lambda: call_speeds(main_version, versions, settings["calls"]))
    timed("memory", lambda: memory.measure(python, **settings["memory"]))
    timed("tree", lambda: watch_tree.measure(python, **settings["tree"]))
    timed("web", lambda: web_save.measure(python, **settings["web"]))
    timed(
        "closures",
        lambda: closure_edit.measure(
            pythons(main_version, versions), main=main_version, **settings["closures"]
        ),
    )
    timed(
        "overhead",
        lambda: overhead.measure(
            pythons(main_version, versions), main=main_version, **settings["overhead"]
        ),
    )
    timed("loop", lambda: test_loop.measure(python, **settings["loop"]))
    results["seconds"]["total"] = time.monotonic() - started

    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = table.render(results)
    (args.out / "table.txt").write_text(text + "\n")
    print(text)
    chart = args.out / "bench.png"
    subprocess.run(
        [python, str(BENCH / "chart.py"), str(args.out / "results.json"), str(chart)],
        check=True,
        env=child_env(),
    )
    log(f"wrote {args.out / 'table.txt'}, {args.out / 'results.json'} and {chart}")
    log(f"done in {time.monotonic() - started:.0f} s")
    if failed:
        log(f"FAILED: {', '.join(failed)} (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
