"""The one table ``make bench`` prints, from the figures ``run.py`` gathered (results.json).

    python bench/table.py bench/out/results.json

Nine sections with six columns each; "ratio" is the peer's figure over ours (how many times
longer the peer takes) except in section 3, where it is calls/s after a patch over before,
and section 9, where it is a restart's time over the loop's. The goals of issues 7 and 16 are
marked where they apply, and listed at the end, met or missed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import LABELS, PEERS

__all__ = ["render"]

WIDTHS = (24, 18, 9, 9, 8)
GOALS = {
    "save": 0.005,  # median save -> live, small module
    "startup": 0.020,  # at 5M objects
    "edit": 0.010,  # 20 functions at 5M objects
    "calls": 0.95,  # calls/s after a patch over before
    "growth_kib": 1024,  # RSS growth from 100 to 1,000 reloads
    "large": 0.010,  # median save -> live, 5,000-line module
    "closure": 0.010,  # closure edit at 5M objects, 3.12+
    "creation": 0.05,  # function creation slower with the watcher, at most
    "loop": 20.0,  # test loop turnaround: times sooner than a pytest restart, at least
}


def t(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.01 else f"{seconds * 1000:.2f} ms"


def ratio(peer: float | None, ours: float | None) -> str:
    if not peer or not ours:
        return "-"
    r = peer / ours
    if r >= 10:
        return f"{r:.0f}x"
    return f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def row(cells: Sequence[str]) -> str:
    first = f"{cells[0]:<{WIDTHS[0]}} {cells[1]:<{WIDTHS[1]}}"
    numbers = " ".join(f"{c:>{w}}" for c, w in zip(cells[2:5], WIDTHS[2:], strict=False))
    return f"{first} {numbers}  {cells[5] if len(cells) > 5 else ''}".rstrip()


class Table:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.goals: list[str] = []

    def section(self, title: str, header: Sequence[str]) -> None:
        self.lines += ["", title, row(header), "-" * 100]

    def add(self, *cells: str) -> None:
        self.lines.append(row(cells))

    def goal(self, what: str, met: bool, detail: str) -> str:
        self.goals.append(f"  {'met   ' if met else 'MISSED'}  {what}: {detail}")
        return "goal met" if met else "goal MISSED"


def render(results: dict[str, Any]) -> str:
    m, tools = results["machine"], results.get("tools", {})
    peers = " and ".join(f"{LABELS[p]} {tools.get(p, '?')}" for p in PEERS)
    table = Table()
    table.lines += [
        f"Mighty Patcher {tools.get('mighty-patcher', '?')} against {peers}"
        + (" [SMOKE RUN: the figures mean nothing]" if results.get("smoke") else ""),
        f"{m['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Linux {m['kernel']}",
        f"CPython {m['python']} (section 3: each version)"
        + (f"; load average {m['load']:.1f} at the start" if "load" in m else ""),
        "ratio: the peer's time over ours (section 3: calls/s after a patch over before)",
    ]
    if "save" in results:
        _save(table, results["save"], results.get("settings", {}).get("save", {}))
    if "heap" in results:
        _heap(table, results["heap"])
    if "calls" in results:
        _calls(table, results["calls"])
    if "memory" in results:
        _memory(table, results["memory"])
    if "tree" in results:
        _tree(table, results["tree"])
    if "web" in results:
        _web(table, results["web"], results.get("settings", {}).get("web", {}))
    if "closures" in results:
        _closures(table, results["closures"])
    if "overhead" in results:
        _overhead(table, results["overhead"])
    if "loop" in results:
        _loop(table, results["loop"], results.get("settings", {}).get("loop", {}))
    seconds = results.get("seconds", {})
    table.lines += ["", f"Goals ({len(table.goals)} checked):", *table.goals]
    if "total" in seconds:
        table.lines.append(f"\n(whole run: {seconds['total'] / 60:.0f} min)")
    return "\n".join(table.lines)


def _save(table: Table, save: dict[str, Any], settings: dict[str, Any]) -> None:
    n = settings.get("saves", "")
    table.section(
        f"1. Save to live: write -> first call returning the new value ({n} saves per tool)",
        ("module", "tool", "median", "p95", "ratio", ""),
    )
    names = {"small": "20 lines", "large": "5,000 lines, f edited"}
    for size, by_tool in save.items():
        ours = by_tool["ours"]["median"]
        for i, (tool, r) in enumerate(by_tool.items()):
            note = f"{r['missed']} saves never live" if r.get("missed") else ""
            if tool == "ours" and size == "small" and ours is not None:
                met = ours <= GOALS["save"]
                note = table.goal(
                    "save to live, 20-line module, median <= 5 ms",
                    met,
                    f"{t(ours)}" + ("" if met else f", {t(ours - GOALS['save'])} over"),
                )
            if tool == "ours" and size == "large" and ours is not None:
                met = ours <= GOALS["large"]
                note = table.goal(
                    "save to live, 5,000-line module, median <= 10 ms",
                    met,
                    f"{t(ours)}" + ("" if met else f", {t(ours - GOALS['large'])} over"),
                )
            table.add(
                names.get(size, size) if i == 0 else "",
                LABELS[tool],
                t(r["median"]),
                t(r["p95"]),
                "" if tool == "ours" else ratio(r["median"], ours),
                note,
            )


def _heap(table: Table, heap: dict[str, Any]) -> None:
    table.section(
        "2. Heap size: start-up (import + start) and an edit of 20 functions, N live objects\n"
        "   (closure edit: one of the 20 is a factory whose 10 closures made earlier must follow)",
        ("what, objects", "tool", "median", "p95", "ratio", ""),
    )
    sizes = list(heap["ours"])
    largest = sizes[-1]
    kinds = {"startup": "start-up", "plain": "plain edit", "closures": "closure edit"}
    for kind, label in kinds.items():
        for size in sizes:
            ours = heap["ours"][size][kind]["median"]
            for i, tool in enumerate(heap):
                r = heap[tool][size][kind]
                notes = []
                if kind != "startup" and not r.get("applied", True):
                    notes.append("edit NOT applied")
                if kind == "closures" and not r.get("closures_moved", True):
                    notes.append("old closures keep old code")
                if tool == "ours" and size == largest and int(size) >= 5_000_000:
                    limit = GOALS["startup" if kind == "startup" else "edit"]
                    met = r["median"] <= limit
                    detail = t(r["median"]) + ("" if met else f", {r['median'] / limit:.1f}x")
                    notes.append(
                        table.goal(f"{label} at {int(size):,} objects <= {t(limit)}", met, detail)
                    )
                table.add(
                    f"{label}, {int(size):,}" if i == 0 else "",
                    LABELS[tool],
                    t(r["median"]),
                    t(r["p95"]),
                    "" if tool == "ours" else ratio(r["median"], ours),
                    "; ".join(notes),
                )


def _calls(table: Table, calls: list[dict[str, Any]]) -> None:
    table.section(
        "3. Call speed of a small hot function, after a patch (best of rounds, calls/s)",
        ("CPython", "patched with", "after", "before", "ratio", ""),
    )
    for r in calls:
        if "error" in r:
            table.add(str(r["python"]), "-", "-", "-", "-", f"not measured: {r['error']}")
            continue
        rates = r["calls_per_second"]
        met = r["patched_ratio"] >= GOALS["calls"]
        goal = table.goal(
            f"call speed after a patch on {r['python']} >= 0.95 of before",
            met,
            f"{r['patched_ratio']:.2f}",
        )
        table.add(
            str(r["python"]),
            "patch_function",
            f"{rates['patched'] / 1e6:.1f} M",
            f"{rates['baseline'] / 1e6:.1f} M",
            f"{r['patched_ratio']:.2f}",
            goal,
        )
        table.add(
            "",
            "__code__ = (peers)",
            f"{rates['assigned'] / 1e6:.1f} M",
            "",
            f"{r['assigned_ratio']:.2f}",
        )


def _memory(table: Table, memory: dict[str, Any]) -> None:
    any_tool = next(iter(memory.values()))
    checkpoints = [n for n in any_tool if n != "0"]
    labels = [f"{int(n):,}" for n in checkpoints[:3]]
    table.section(
        "4. Memory across reloads of a 50-function module (all 50 edited each time)",
        ("tool", "after N reloads", *labels, "growth, last two"),
    )
    for tool, lines in memory.items():
        first = True
        for metric, unit in (("rss_kib", "RSS MiB"), ("codes", "live code objects")):
            values = [lines[n][metric] for n in checkpoints[:3]]
            shown = [f"{v / 1024:.1f}" if metric == "rss_kib" else str(v) for v in values]
            if metric == "rss_kib":
                growth = values[-1] - values[-2]
                note = f"{growth / 1024:+.2f} MiB"
                if tool == "ours" and checkpoints[-1] == "1000":
                    met = growth < GOALS["growth_kib"]
                    note += "; " + table.goal(
                        "RSS growth from 100 to 1,000 reloads < 1 MB", met, f"{growth} KiB"
                    )
            else:
                reload_time = lines[checkpoints[-1]]["reload_seconds"]
                note = f"{values[-1] - values[-2]:+d}; {t(reload_time)}/reload"
            table.add(LABELS[tool] if first else "", unit, *shown, note)
            first = False


def _tree(table: Table, tree: dict[str, Any]) -> None:
    table.section(
        f"5. Watching a tree of {tree['files']:,} files in {tree['dirs']:,} directories "
        f"(idle CPU over {tree['idle_seconds']:g} s)",
        ("watcher", "", "start", "RSS +", "idle CPU", "a save seen after"),
    )
    names = {
        "ours": ("mighty_patcher", "inotify"),
        "ours-poll": ("mighty_patcher", "poll=True"),
        "watchdog": ("watchdog (jurigged's)", "recursive"),
        "scandir": ("baseline", "os.scandir walk"),
        "raw-inotify": ("baseline", "inotify_add_watch"),
    }
    for mode, (name, how) in names.items():
        if mode not in tree:
            continue
        e = tree[mode]
        notes = []
        if "latency" in e:
            notes.append(t(e["latency"]["median"]))
        if e.get("unreported"):
            notes.append(f"NOT seen in {e['unreported']} of {e['runs']} runs")
        table.add(
            name,
            how,
            t(e["start"]["median"]),
            f"{e['rss_kib']['median'] / 1024:.1f} MiB",
            f"{e['idle_cpu']['median']:.2%}" if "idle_cpu" in e else "",
            "; ".join(notes),
        )
        if e.get("overflows", {}).get("median"):
            overflows = e["overflows"]["median"]
            table.lines.append(
                " " * (WIDTHS[0] + 1)
                + f"inotify queue overflowed {overflows:.0f} times a run; each time it re-walks"
            )
    table.lines.append(
        f"(each watcher holds one inotify watch per directory: {tree['ours']['watches']}; "
        "start p95 and more in results.json)"
    )


def _web(table: Table, web: dict[str, Any], settings: dict[str, Any]) -> None:
    n = settings.get("saves", "")
    table.section(
        f"6. Save to new HTTP response: write -> first response showing a view's body edit "
        f"({n} saves per tool)",
        ("framework", "tool", "median", "p95", "ratio", ""),
    )
    names = {"flask": "Flask (werkzeug)", "fastapi": "FastAPI (uvicorn)"}
    for framework, by_tool in web.items():
        ours = by_tool["ours"]["median"]
        for i, (tool, r) in enumerate(by_tool.items()):
            table.add(
                names.get(framework, framework) if i == 0 else "",
                LABELS[tool],
                t(r["median"]),
                t(r["p95"]),
                "" if tool == "ours" else ratio(r["median"], ours),
                f"{r['missed']} saves never live" if r.get("missed") else "",
            )


def _closures(table: Table, closures: dict[str, Any]) -> None:
    size = closures["size"]
    table.section(
        f"7. Closure edit at {size:,} live objects, per CPython version: a factory edited, "
        f"{closures['closures']} closures\n"
        "   made before must follow (first: the first closure edit, which builds the function\n"
        "   index on 3.12+ with one heap walk; later: the next ones; 3.10/3.11 walk every time)",
        ("CPython", "tool", "first", "later", "ratio", ""),
    )
    rows = closures["rows"]
    ours_by_version = {r["version"]: r for r in rows if r["tool"] == "ours"}
    for r in rows:
        notes = []
        if not (r["first"]["moved"] and r["later"]["moved"]):
            notes.append("old closures keep old code")
        later = r["later"]["median"]
        ours = ours_by_version.get(r["version"])
        if r["tool"] == "ours":
            if r["walks"]:
                notes.append(f"{r['walks']} heap walk{'s' if r['walks'] > 1 else ''} in all")
            major, minor = (int(x) for x in r["version"].split("."))
            if (major, minor) >= (3, 12) and size >= 5_000_000 and later is not None:
                met = later <= GOALS["closure"]
                detail = t(later) + ("" if met else f", {later / GOALS['closure']:.1f}x")
                notes.append(
                    table.goal(
                        f"closure edit at {size:,} objects on {r['python']} <= 10 ms (later)",
                        met,
                        detail,
                    )
                )
        table.add(
            str(r["python"]),
            LABELS[r["tool"]],
            t(r["first"]["median"]),
            t(later),
            "" if r["tool"] == "ours" or ours is None else ratio(later, ours["later"]["median"]),
            "; ".join(notes),
        )


def _overhead(table: Table, overhead: dict[str, Any]) -> None:
    n = overhead.get("number", 0)
    table.section(
        f"8. Function creation with the function index's watcher (a loop making {n:,} closures;\n"
        "   ns per closure, best of all; slower: the median over processes of each one's cases\n"
        "   against its own baseline; instr.: instructions per closure, callgrind), for\n"
        "   closures of code the index does not follow (any program's) and of code it follows\n"
        "   (a factory an edit moved), beside a watcher that does nothing (CPython's own\n"
        "   dispatch: the floor under any watcher); and the reloader thread's idle CPU",
        ("CPython", "case", "ns", "slower", "instr.", ""),
    )
    names = {
        "off": "no watcher",
        "noop": "no-op watcher",
        "watched": "not followed",
        "followed": "followed",
    }
    for version, r in overhead.get("creation", {}).items():
        cases = [c for c in names if c in r["ns"]]
        for i, case in enumerate(cases):
            slower = r["slower"].get(case)
            instructions = r.get("instructions_more", {}).get(case)
            note = ""
            if case == "watched":
                met = slower is not None and slower <= GOALS["creation"]
                floor = r["slower"].get("noop")
                note = table.goal(
                    f"function creation with the watcher on {version} at most 5% slower",
                    met,
                    f"{slower:+.1%}"
                    + (f" ({instructions:+.1%} instructions)" if instructions else "")
                    + ("" if floor is None else f"; a no-op watcher: {floor:+.1%}"),
                )
            table.add(
                version if i == 0 else "",
                names[case],
                f"{r['ns'][case]:.1f}",
                "" if slower is None else f"{slower:+.1%}",
                "" if instructions is None else f"{instructions:+.1%}",
                note,
            )
    for tool, cpu in overhead.get("idle", {}).items():
        table.add(
            "idle CPU",
            LABELS[tool],
            f"{cpu:.3%}",
            "",
            "",
            f"over {overhead.get('idle_seconds', 0):g} s, a small project watched, nothing saved",
        )


def _loop(table: Table, loop: dict[str, Any], settings: dict[str, Any]) -> None:
    table.section(
        "9. Test loop: from saving a fix to the test's result, in a running pytest session, "
        f"against\n   starting pytest again ({settings.get('fixes', '')} fixes per session; "
        "the project imports Django, pydantic and SQLAlchemy)",
        ("how", "", "median", "p95", "ratio", ""),
    )
    restart = loop["restart"]["median"]
    for mode, label in (("watch", "pytest --reload-watch"), ("loop", "pytest --reload-loop")):
        r = loop[mode]
        times = restart / r["median"] if r["median"] else 0
        note = table.goal(
            f"test loop ({label}) at least 20x sooner than a restart",
            times >= GOALS["loop"],
            f"{times:.0f}x ({t(r['median'])} against {t(restart)})",
        )
        if "first" in r:
            note += f"; first save {t(r['first'])}"
        table.add(label, "save -> PASSED", t(r["median"]), t(r["p95"]), f"{times:.0f}x", note)
    table.add(
        "pytest (restart)",
        "start -> PASSED",
        t(restart),
        t(loop["restart"]["p95"]),
        "",
        f"to exit: {t(loop['restart_exit']['median'])}",
    )


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
