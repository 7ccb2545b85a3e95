"""Calls per second of a small hot function before and after it is patched.

    python bench/call_speed.py [--json] [--rounds 7] [--calls 300000]
    python bench/call_speed.py --pythons /path/python3.12 /path/python3.13 ...

Three identical functions are called from warm call sites, in interleaved rounds, in one
process: one left alone (the baseline), one patched in place with ``patch_function`` (new
code object, same behaviour), one given new code through plain ``f.__code__ = ...`` (for
contrast: on 3.13 and later CPython never specialises such a function again). The figures
are each function's best rate over the rounds, and the ratios to the baseline; the goal for
the patched function is at least 0.95.

``measure(python)`` runs this in another interpreter (which must have mighty_patcher
installed) and returns the figures as a dict; the build matrix and ``make bench`` use it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import sysconfig
import time

SOURCE = "def hot(a, b):\n    return a + b\n"


def _make(namespace: dict[str, object]):  # type: ignore[no-untyped-def]
    local: dict[str, object] = {}
    exec(compile(SOURCE, "<bench>", "exec"), namespace, local)
    return local["hot"]


def _site(func):  # type: ignore[no-untyped-def]
    namespace = {"hot": func}
    exec(
        "def site(n):\n    for _ in range(n):\n        hot(1, 2)\n",
        namespace,
    )
    return namespace["site"]


def run(rounds: int, calls: int) -> dict[str, object]:
    import mighty_patcher

    ns: dict[str, object] = {}
    baseline, patched, assigned = _make(ns), _make(ns), _make(ns)
    sites = {"baseline": _site(baseline), "patched": _site(patched), "assigned": _site(assigned)}
    for site in sites.values():
        site(5000)  # warm up: the call sites specialise
    mighty_patcher.patch_function(patched, _make(ns))
    assigned.__code__ = _make(ns).__code__
    best = dict.fromkeys(sites, 0.0)
    for _ in range(rounds):
        for name, site in sites.items():
            start = time.perf_counter()
            site(calls)
            rate = calls / (time.perf_counter() - start)
            best[name] = max(best[name], rate)
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return {
        "python": sys.version.split()[0] + ("t" if free_threaded else ""),
        "calls_per_second": best,
        "patched_ratio": best["patched"] / best["baseline"],
        "assigned_ratio": best["assigned"] / best["baseline"],
    }


def measure(python: str, rounds: int = 7, calls: int = 300_000) -> dict[str, object]:
    """Runs the measurement in ``python`` (a path to an interpreter with mighty_patcher)."""
    proc = subprocess.run(
        [python, __file__, "--json", "--rounds", str(rounds), "--calls", str(calls)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def table(results: list[dict[str, object]]) -> str:
    lines = [
        f"{'CPython':<10} {'baseline calls/s':>17} {'patched':>12} {'ratio':>6} "
        f"{'__code__ =':>12} {'ratio':>6}"
    ]
    for r in results:
        rates = r["calls_per_second"]
        assert isinstance(rates, dict)
        lines.append(
            f"{r['python']!s:<10} {rates['baseline']:>17,.0f} {rates['patched']:>12,.0f} "
            f"{r['patched_ratio']:>6.2f} {rates['assigned']:>12,.0f} {r['assigned_ratio']:>6.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300_000)
    parser.add_argument("--pythons", nargs="+", help="measure in these interpreters instead")
    args = parser.parse_args()
    if args.pythons:
        results = [measure(p, args.rounds, args.calls) for p in args.pythons]
    else:
        results = [run(args.rounds, args.calls)]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        print(table(results))


if __name__ == "__main__":
    main()
