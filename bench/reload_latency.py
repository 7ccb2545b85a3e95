"""How fast a save reaches a running program, and what a big heap costs a reload.

    python bench/reload_latency.py [--saves 50] [--objects 1000000]

1. save -> live: a program (a subprocess) calls ``b.f()`` in a loop, where ``b`` did
   ``from a import f``; each save of ``a.py`` changes what ``f`` returns. Measured from just
   before the write to the first call that returns the new value (CLOCK_MONOTONIC, which is
   shared by both processes).
2. an edit of 20 functions applied (``reload_now()``) while the process holds 0 and N live
   objects (instances, dicts and closures), and the reloader's start-up at each size.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = """
import sys, time
sys.path.insert(0, {root!r})
from mighty_patcher.watch import AutoReloader
import logging
AutoReloader({root!r}, log_level=logging.WARNING)
import b
last = b.f()
print("ready", flush=True)
while True:
    value = b.f()
    if value != last:
        print(time.monotonic(), value, flush=True)
        last = value
    time.sleep(0.0002)
"""

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


def save_to_live(saves: int) -> list[float]:
    root = Path(tempfile.mkdtemp(prefix="mp_bench_"))
    (root / "a.py").write_text(SMALL.format(n=0))
    (root / "b.py").write_text("from a import f\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM.format(root=str(root))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    latencies = []
    try:
        for n in range(1, saves + 1):
            time.sleep(0.05)
            start = time.monotonic()
            (root / "a.py").write_text(SMALL.format(n=n))
            stamp, value = proc.stdout.readline().split()
            assert int(value) == n
            latencies.append(float(stamp) - start)
    finally:
        proc.kill()
        proc.wait()
    return latencies


def twenty_functions(version: int) -> str:
    return (
        "\n".join(f"def f{i}(x):\n    return x + {i} * {version}\n" for i in range(20))
        + f"\ndef make(k):\n    def inner(x):\n        return x * k + {version}\n"
        + "    return inner\n"
    )


def heap_edit(objects: int) -> tuple[float, float]:
    """(start-up seconds, apply seconds) with ``objects`` extra live objects."""
    from mighty_patcher.watch import AutoReloader

    root = Path(tempfile.mkdtemp(prefix="mp_bench_heap_"))
    (root / "edited.py").write_text(twenty_functions(1))
    sys.path.insert(0, str(root))
    import edited  # type: ignore[import-not-found]

    class Thing:
        def __init__(self, i: int) -> None:
            self.i = i

    def factory(k: int):  # closures the edit does not touch
        return lambda x: x + k

    third = objects // 3
    ballast: list[object] = [Thing(i) for i in range(third)]
    ballast += [{"i": i} for i in range(third)]
    ballast += [factory(i) for i in range(objects - 2 * third)]
    made = [edited.make(i) for i in range(10)]  # closures the edit moves to new code
    gc.collect()
    start = time.perf_counter()
    reloader = AutoReloader(str(root), start=False)
    started = time.perf_counter() - start
    (root / "edited.py").write_text(twenty_functions(2))
    start = time.perf_counter()
    (report,) = reloader.reload_now()
    applied = time.perf_counter() - start
    assert report.ok and edited.f3(0) == 6 and made[2](1) == 4, report
    reloader.stop()
    del ballast
    sys.modules.pop("edited")
    sys.path.remove(str(root))
    return started, applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=50)
    parser.add_argument("--objects", type=int, default=1_000_000)
    args = parser.parse_args()
    import logging

    logging.getLogger("mighty_patcher").setLevel(logging.WARNING)
    latencies = sorted(save_to_live(args.saves))
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    print(f"CPython {sys.version.split()[0]}")
    print(f"{'measure':<48} {'median':>10} {'p95':>10}")
    print(
        f"{'save -> live, 20-line module (' + str(args.saves) + ' saves)':<48} "
        f"{statistics.median(latencies) * 1000:>8.2f}ms {p95 * 1000:>8.2f}ms"
    )
    for objects in (0, args.objects):
        started, applied = heap_edit(objects)
        label = f"{objects:,} objects"
        print(f"{'reloader start-up, ' + label:<48} {started * 1000:>8.2f}ms")
        print(f"{'apply an edit of 20 functions, ' + label:<48} {applied * 1000:>8.2f}ms")


if __name__ == "__main__":
    main()
