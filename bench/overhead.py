"""8. What the reloader costs a program that runs: making functions with the function index's
watcher installed (3.12+), and the CPU of the reloader's thread while nothing is saved.

    python bench/overhead.py [--python PY] [--rounds 5] [--number 1000000] [--idle 10]

*Function creation*: a loop makes a million closures (``timeit`` of ``make()``,
``def make(): return lambda: 1``, best of 5 repeats), in three cases measured one after the
other in the same process (so that the process's memory layout, which moves such a loop by a
few percent from one process to the next, is the same for all three), in several processes:

- ``off``: before anything asked for the index: no watcher (the baseline);
- ``noop``: a watcher that does nothing (``noop_watcher.c``, built here with the C compiler
  when there is one): what CPython's own dispatch to any watcher costs, the floor under ours;
- ``watched``: after ``functions_using`` was asked about 100 closures of another factory: the
  watcher is installed and the index follows those; the loop's closures are of code the index
  does not follow, so each creation and destruction costs the watcher a filter check (any
  program's functions, and those of a module the reloader has not compiled);
- ``followed``: after ``functions_using`` was asked about the loop's closure code too: each
  closure is entered into the index when made and taken out when freed (the closures of a
  factory the reloader patched).

Wall-clock figures move with the machine's load; where ``valgrind`` is installed, the same
three cases are also counted in instructions (callgrind, 200,000 closures against none, the
difference per closure), which the load does not change.

*Idle CPU*: a program starts the tool on a small project (``peers.start``, its own thread),
then sleeps; the process's CPU time over ``--idle`` seconds, over the wall time. Ours and
jurigged (IPython autoreload has no thread: it checks before each cell).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import emit, run_child, summary

__all__ = ["measure"]

CASES = ("off", "noop", "watched", "followed")
NOOP_DIR = "BENCH_NOOP_WATCHER_DIR"


def _make() -> Any:  # the loop's function: it makes a closure each call
    return lambda: 1


def _factory(k: int) -> Any:  # the closures the index follows in every case but "off"
    def inner() -> int:
        return k

    return inner


def creation_child(number: int) -> None:
    import timeit

    import mighty_patcher

    make = _make

    def best() -> float:  # ns per closure
        return min(timeit.repeat(make, number=number, repeat=5)) / number * 1e9

    kept = [_factory(i) for i in range(100)]
    assert mighty_patcher.function_index() is None
    measured = {"off": best()}
    noop = _noop_watcher()
    if noop is not None:
        watcher = noop.add()
        measured["noop"] = best()
        noop.clear(watcher)
    mighty_patcher.functions_using([kept[0].__code__])
    indexed = mighty_patcher.function_index() is not None
    measured["watched"] = best()
    mighty_patcher.functions_using([make().__code__])
    measured["followed"] = best()
    for case, ns in measured.items():
        emit(case=case, ns=ns, indexed=indexed)


def _noop_watcher() -> Any:
    """The no-op watcher's module, if ``measure`` could build it for this interpreter."""
    where = os.environ.get(NOOP_DIR)
    if not where:
        return None
    sys.path.insert(0, where)
    import noop_watcher  # type: ignore[import-not-found]

    return noop_watcher


def build_noop_watcher(python: str, dest: str) -> bool:
    """Compiles ``noop_watcher.c`` for ``python`` into ``dest``; False without a compiler."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        return False
    include, suffix = subprocess.run(
        [
            python,
            "-c",
            "import sysconfig as s; print(s.get_paths()['include']);"
            "print(s.get_config_var('EXT_SUFFIX'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    source = Path(__file__).resolve().with_name("noop_watcher.c")
    out = os.path.join(dest, "noop_watcher" + suffix)
    proc = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", f"-I{include}", str(source), "-o", out],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


def loop_child(case: str, number: int) -> None:
    """What valgrind counts: the same set-up, then ``number`` closures in a plain loop."""
    import mighty_patcher

    make = _make
    kept = [_factory(i) for i in range(100)]
    if case == "noop":
        _noop_watcher().add()
    elif case != "off":
        codes = [kept[0].__code__] + ([make().__code__] if case == "followed" else [])
        mighty_patcher.functions_using(codes)
    for _ in range(number):
        make()


def instructions(python: str, case: str, number: int, extra: dict[str, str]) -> int | None:
    """Instructions the whole program ran under callgrind, or None without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    env = {**os.environ, **extra, **_env(case)}
    proc = subprocess.run(
        [
            valgrind,
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            python,
            str(Path(__file__).resolve()),
            "--loop",
            case,
            str(number),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", proc.stderr)
    return int(match.group(1)) if match else None


def idle_child(tool: str, seconds: float) -> None:
    import peers

    root = tempfile.mkdtemp(prefix="mp_bench_idle_")
    for name in ("a", "b", "c"):
        peers.save(os.path.join(root, f"{name}.py"), f"def {name}():\n    return 1\n")
    sys.path.insert(0, root)
    for name in ("a", "b", "c"):
        __import__(name)

    driver = peers.start(tool, root, thread=True)
    time.sleep(1.0)  # past start-up
    cpu, wall = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    driver.stop()
    emit(tool=tool, cpu=cpu / wall)


def measure(
    python_for: dict[str, str],
    *,
    main: str,
    rounds: int = 5,
    number: int = 1_000_000,
    idle: float = 10.0,
    idle_tools: tuple[str, ...] = ("ours", "jurigged"),
    counted: int = 200_000,
) -> dict[str, Any]:
    """Function creation on each version in ``python_for`` from 3.12 on; idle CPU on ``main``."""
    script = str(Path(__file__).resolve())
    creation: dict[str, Any] = {}
    for version, python in python_for.items():
        if tuple(map(int, version.split("."))) < (3, 12):
            continue
        raw: dict[str, list[float]] = {}
        noop_dir = tempfile.mkdtemp(prefix="mp_bench_noop_")
        env = {NOOP_DIR: noop_dir} if build_noop_watcher(python, noop_dir) else {}
        for _ in range(rounds):
            for line in run_child(python, [script, "--creation", str(number)], env=env):
                raw.setdefault(line["case"], []).append(line["ns"])
        cases = [c for c in CASES if c in raw]
        best = {case: min(values) for case, values in raw.items()}
        # Paired: each process's case against its own baseline, the median over processes.
        paired = {
            c: statistics.median(x / o - 1 for x, o in zip(raw[c], raw["off"], strict=True))
            for c in cases
            if c != "off"
        }
        creation[version] = {
            "ns": best,
            "rounds": {case: summary(values) for case, values in raw.items()},
            "slower": paired,
        }
        if counted:
            per: dict[str, float] = {}
            for case in cases:
                none, many = (instructions(python, case, n, env) for n in (0, counted))
                if none is None or many is None:
                    break
                per[case] = (many - none) / counted
            else:
                creation[version]["instructions"] = per
                creation[version]["instructions_more"] = {
                    c: per[c] / per["off"] - 1 for c in cases if c != "off"
                }
        shutil.rmtree(noop_dir, ignore_errors=True)
    idle_cpu: dict[str, Any] = {}
    if main in python_for:
        for tool in idle_tools:
            lines = run_child(python_for[main], [script, "--idle", tool, str(idle)])
            idle_cpu[tool] = lines[0]["cpu"]
    return {"creation": creation, "idle": idle_cpu, "idle_seconds": idle, "number": number}


def _env(case: str) -> dict[str, str]:
    return {"MIGHTY_PATCHER_FUNCTION_INDEX": "0"} if case in ("off", "noop") else {}


def main() -> None:
    if sys.argv[1:2] == ["--creation"]:
        creation_child(int(sys.argv[2]))
        return
    if sys.argv[1:2] == ["--loop"]:
        loop_child(sys.argv[2], int(sys.argv[3]))
        return
    if sys.argv[1:2] == ["--idle"]:
        idle_child(sys.argv[2], float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a bench virtualenv's python")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=1_000_000)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--idle-tools", default="ours,jurigged")
    parser.add_argument("--counted", type=int, default=200_000, help="0: no valgrind count")
    args = parser.parse_args()
    version = "{}.{}".format(*sys.version_info[:2])
    results = measure(
        {version: args.python},
        main=version,
        rounds=args.rounds,
        number=args.number,
        idle=args.idle,
        idle_tools=tuple(args.idle_tools.split(",")),
        counted=args.counted,
    )
    for version, r in results["creation"].items():
        ns, slower = r["ns"], r["slower"]
        print(
            f"{version}: off {ns['off']:.1f} ns, "
            + ", ".join(f"{c} {ns[c]:.1f} ns ({slower[c]:+.1%})" for c in slower)
        )
        if "instructions" in r:
            more = r["instructions_more"]
            print(
                f"  instructions per closure: off {r['instructions']['off']:.0f}, "
                + ", ".join(f"{c} {more[c]:+.1%}" for c in more)
            )
    for tool, cpu in results["idle"].items():
        print(f"idle CPU {tool}: {cpu:.3%}")


if __name__ == "__main__":
    main()
