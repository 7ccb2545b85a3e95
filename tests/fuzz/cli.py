"""``python -m fuzz`` (from ``tests/``; ``make fuzz N=...``): runs seeds, prints a summary.

python -m fuzz --edits 10000          # seeds 0, 1, ... of --per-seed edits each
python -m fuzz --seed 17 --per-seed 40  # one seed, e.g. to reproduce a failure
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

from .runner import SeedResult, run_seed

__all__ = ["main", "run", "summary"]


def run(
    seeds: list[int],
    per_seed: int,
    *,
    jobs: int = 2,
    minimise: bool = True,
    progress: bool = False,
) -> list[SeedResult]:
    """Runs every seed (``jobs`` at a time) in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="mighty-fuzz-") as tmp:
        workdir = Path(tmp)
        results: list[SeedResult] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [
                pool.submit(run_seed, s, per_seed, workdir, minimise=minimise) for s in seeds
            ]
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                results.append(result)
                if progress:
                    edits = sum(r.edits for r in results)
                    mark = "FAIL" if result.failure else "ok"
                    print(
                        f"seed {result.seed}: {mark} ({result.edits} edits, "
                        f"{result.seconds:.1f} s); {len(results)}/{len(seeds)} seeds, "
                        f"{edits} edits so far",
                        file=sys.stderr,
                        flush=True,
                    )
    return sorted(results, key=lambda r: r.seed)


def summary(results: list[SeedResult], seconds: float) -> str:
    edits = sum(r.edits for r in results)
    excluded = sum(r.excluded for r in results)
    by_design = sum(r.by_design for r in results)
    probes = sum(r.probes for r in results)
    failures = [r.failure for r in results if r.failure is not None]
    lines = [
        f"fuzzed {len(results)} seeds: {edits} edits compared with a restart "
        f"({probes} probe results), {excluded} edits needing a restart (reported as such, "
        f"not compared), {by_design} edits leaving statements unrun by design (reported as "
        f"such, not compared), in {seconds:.0f} s",
    ]
    by_kind: dict[str, list[int]] = {}
    for f in failures:
        by_kind.setdefault(f.kind, []).append(f.seed)
    for kind, label in (
        ("mismatch", "mismatches"),
        ("reload failed", "failed reloads of programs a restart imports"),
        ("crash", "crashes or hangs"),
        ("invalid program", "programs that do not import (generator errors)"),
    ):
        seeds = by_kind.get(kind, [])
        lines.append(f"{label}: {len(seeds)}" + (f" (seeds {seeds})" if seeds else ""))
    notes = sorted({n for r in results for n in r.notes})
    if notes:
        lines.append(f"reload notes: {len(notes)}")
    for f in failures:
        lines += [
            "",
            f"=== seed {f.seed}, edit {f.edit}: {f.kind}",
            "edit: " + "; ".join(f.ops),
            f.detail,
        ]
        if f.minimal:
            lines.append(f.minimal)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=300, help="edits in all (default 300)")
    parser.add_argument("--per-seed", type=int, default=10, help="edits per seed (default 10)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, action="append", help="run only this seed")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-minimise", action="store_true")
    args = parser.parse_args(argv)
    if args.seed:
        seeds = args.seed
    else:
        count = -(-args.edits // args.per_seed)
        seeds = list(range(args.first_seed, args.first_seed + count))
    started = time.perf_counter()
    results = run(
        seeds, args.per_seed, jobs=args.jobs, minimise=not args.no_minimise, progress=True
    )
    print(summary(results, time.perf_counter() - started))
    return 1 if any(r.failure for r in results) else 0
