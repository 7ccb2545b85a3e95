"""Shrinking a failing edit to the fewest changed lines that still fail.

The edit is cut into hunks (runs of changed lines, per file); delta debugging (``ddmin``)
looks for the smallest set of hunks that, saved over the state before the edit, still gives
the same kind of failure. A candidate that a fresh interpreter cannot import does not count.
Each try is a new program: started on the state before the edit when that alone
reproduces the failure, else started where the seed's program started and brought to that
state by the same saves.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from .model import MODULES
from .runner import Crash, Failure, Session, needs_restart, not_rerun

__all__ = ["ddmin", "hunks", "minimise", "patch"]

Hunk = tuple[str, int, int, tuple[str, ...]]


def hunks(before: dict[str, str], after: dict[str, str]) -> list[Hunk]:
    found = []
    for m in MODULES:
        a = before[m].splitlines(keepends=True)
        b = after[m].splitlines(keepends=True)
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
            None, a, b, autojunk=False
        ).get_opcodes():
            if tag != "equal":
                found.append((m, i1, i2, tuple(b[j1:j2])))
    return found


def split(chosen: list[Hunk]) -> list[Hunk]:
    """Line-sized hunks: the n-th old line of a replaced run paired with the n-th new one,
    the rest as deletions and insertions."""
    fine: list[Hunk] = []
    for m, i1, i2, new in chosen:
        paired = min(i2 - i1, len(new))
        fine += [(m, i1 + k, i1 + k + 1, (new[k],)) for k in range(paired)]
        fine += [(m, k, k + 1, ()) for k in range(i1 + paired, i2)]
        if len(new) > paired:
            fine.append((m, i2, i2, new[paired:]))
    return fine


def patch(before: dict[str, str], chosen: Sequence[Hunk]) -> dict[str, str]:
    result = {}
    for m in MODULES:
        lines = before[m].splitlines(keepends=True)
        for _, i1, i2, new in sorted((h for h in chosen if h[0] == m), key=lambda h: -h[1]):
            lines[i1:i2] = list(new)
        result[m] = "".join(lines)
    return result


def ddmin(items: list[Hunk], fails: Callable[[list[Hunk]], bool]) -> list[Hunk]:
    """A 1-minimal subset of ``items`` for which ``fails`` holds (it holds for ``items``)."""
    n = 2
    while len(items) >= 2:
        size = -(-len(items) // n)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        for chunk in chunks:
            if fails(chunk):
                items, n = chunk, 2
                break
        else:
            for chunk in chunks:
                rest = [h for h in items if h not in chunk]
                if rest and fails(rest):
                    items, n = rest, max(n - 1, 2)
                    break
            else:
                if n >= len(items):
                    break
                n = min(n * 2, len(items))
    return items


def attempt(
    failure: Failure,
    workdir: Path,
    start: dict[str, str],
    prefix: list[dict[str, str]],
    candidate: dict[str, str],
) -> tuple[str, str] | None:
    """Runs one program: ``start``, the ``prefix`` saves, then ``candidate``; the failure it
    gives (kind, detail), or None."""
    rng = random.Random("minimise")
    try:
        session = Session(workdir, f"fz{failure.seed}", start, failure.reloader_first)
    except Crash as exc:
        return "crash", str(exc)
    try:
        for state in prefix:
            session.apply(state, rng)
        reports = session.apply(candidate, rng)
        if needs_restart(reports) or not_rerun(reports):
            return None
        return session.check(reports)
    except Crash as exc:
        return "crash", str(exc)
    finally:
        session.close()


def minimise(failure: Failure, workdir: Path) -> str:
    """A readable account of the smallest failing edit: seed, diff, and what differed."""
    before, after = failure.before, failure.after
    start, prefix = before, []
    if attempt(failure, workdir, before, [], after) is None:
        start, prefix = failure.history[0], failure.history[1:]
        if attempt(failure, workdir, start, prefix, after) is None:
            return "(the failure did not happen again when replayed: not minimised)"
    tries = 0

    def fails(chosen: list[Hunk]) -> bool:
        nonlocal tries
        tries += 1
        result = attempt(failure, workdir, start, prefix, patch(before, chosen))
        return result is not None and result[0] == failure.kind

    chosen = ddmin(hunks(before, after), fails)
    fine = split(chosen)
    if len(fine) > len(chosen):
        chosen = ddmin(fine, fails)
    minimal = patch(before, chosen)
    final = attempt(failure, workdir, start, prefix, minimal)
    diff = []
    for m in MODULES:
        diff += difflib.unified_diff(
            before[m].splitlines(keepends=True),
            minimal[m].splitlines(keepends=True),
            f"{m}.py (before)",
            f"{m}.py (after)",
        )
    where = (
        "a program started on the state before the edit"
        if not prefix
        else f"a program started like the seed's, after {len(prefix)} earlier save(s)"
    )
    return (
        f"minimal edit ({len(chosen)} hunk(s), {tries} tries), applied in {where}:\n"
        + "".join(diff)
        + (f"\n{final[0]}:\n{final[1]}" if final else "\n(did not fail on the last run)")
    )
