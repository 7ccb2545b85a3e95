"""Live objects following a class edit, against the heap size (``make bench`` runs it; alone:
``python bench/migration.py [--sizes 0,1000000] [--edits 5]``).

A module defines ``Cart``; the program holds 1,000 carts among N other live objects. Three
edits are timed from ``reload_now()`` to its return, each against the same heap:

- *method*: a method body changes (nothing to migrate: no heap pass; the baseline);
- *new attribute*: ``__init__`` gains ``self.extra = []``, filled on the 1,000 carts (one heap
  pass finds them);
- *dataclass field*: a dataclass gains ``tags: list = field(default_factory=list)``.

Prints a table: median milliseconds per edit, and each migration against the method edit of
the same heap. Runs in this interpreter, with the mighty_patcher it imports.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

PLAIN = """
class Cart:
    def __init__(self):
        self.items = []{extra}
    def total(self):
        return {total}
"""

DATA = """
from dataclasses import dataclass, field

@dataclass
class Line:
    name: str = ""{extra}
    def total(self):
        return {total}
"""


class Filler:
    """The other live objects (instances of a class nobody edits)."""

    __slots__ = ("a",)

    def __init__(self) -> None:
        self.a = None


def measure(heap: int, edits: int) -> dict[str, float]:
    from mighty_patcher.watch import AutoReloader

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from reload_project import FakeWatcher

    root = Path(tempfile.mkdtemp(prefix="mp-migrate-"))
    sys.path.insert(0, str(root))
    package = root / f"migrate{heap}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plain.py").write_text(PLAIN.format(extra="", total=0))
    (package / "data.py").write_text(DATA.format(extra="", total=0))
    import importlib

    plain = importlib.import_module(f"{package.name}.plain")
    data = importlib.import_module(f"{package.name}.data")
    others = [Filler() for _ in range(heap)]  # noqa: F841  (kept alive for the heap)
    carts = [plain.Cart() for _ in range(1000)]
    lines = [data.Line() for _ in range(1000)]
    reloader = AutoReloader(str(root), watcher_factory=FakeWatcher, start=False)
    gc.collect()
    results: dict[str, list[float]] = {"method": [], "new attribute": [], "dataclass field": []}

    def timed(path: Path, text: str) -> float:
        path.write_text(text)
        start = time.perf_counter()
        (report,) = reloader.reload_now()
        assert report.ok, report.error
        return (time.perf_counter() - start) * 1000

    timed(package / "plain.py", PLAIN.format(extra="", total=-1))  # warm up
    extras, fields = "", ""
    for i in range(1, edits + 1):
        results["method"].append(timed(package / "plain.py", PLAIN.format(extra=extras, total=i)))
        extras += f"\n        self.extra{i} = []"
        results["new attribute"].append(
            timed(package / "plain.py", PLAIN.format(extra=extras, total=i))
        )
        assert hasattr(carts[0], f"extra{i}")
        fields += f"\n    tags{i}: list = field(default_factory=list)"
        results["dataclass field"].append(
            timed(package / "data.py", DATA.format(extra=fields, total=i))
        )
        assert hasattr(lines[-1], f"tags{i}")
    reloader.stop()
    return {k: statistics.median(v) for k, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,1000000")
    parser.add_argument("--edits", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"Live objects following a class edit (CPython {sys.version.split()[0]}; median ms)")
    print(f"{'other live objects':>20}  {'method edit':>12}  {'new attribute':>14}  {'field':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        r = measure(size, args.edits)
        print(
            f"{size:>20,}  {r['method']:>9.2f} ms  {r['new attribute']:>11.2f} ms  "
            f"{r['dataclass field']:>7.2f} ms"
        )
    print("(1,000 instances of each edited class are migrated on each edit)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
