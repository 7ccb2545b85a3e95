"""The figures of a bench run as one PNG (matplotlib; runs in the main bench virtualenv):
``python bench/chart.py bench/out/results.json bench/out/bench.png``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import LABELS, TOOLS
from matplotlib.ticker import FuncFormatter, NullFormatter

COLORS = {"ours": "#1b7837", "jurigged": "#c51b7d", "ipython": "#2166ac"}


def _plain_log(ax: Any, axis: str = "y") -> None:
    """A log axis labelled 1, 10, 100 rather than 10^0, 10^1, 10^2."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _count(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n:,}"


def _ms(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v * 1000 for v in values]


def save_panel(ax: Any, save: dict[str, Any]) -> None:
    sizes = list(save)
    width = 0.8 / len(TOOLS)
    for i, tool in enumerate(TOOLS):
        med = _ms([save[s][tool]["median"] for s in sizes])
        p95 = _ms([save[s][tool]["p95"] for s in sizes])
        xs = [x + i * width for x in range(len(sizes))]
        errors = [[0] * len(sizes), [p - m for p, m in zip(p95, med, strict=True)]]
        ax.bar(xs, med, width, yerr=errors, color=COLORS[tool], label=LABELS[tool], capsize=3)
        for x, v in zip(xs, med, strict=True):
            label = f"{v:.0f}" if v >= 100 else f"{v:.3g}"
            ax.annotate(label, (x, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks([x + width for x in range(len(sizes))])
    ax.set_xticklabels(
        [{"small": "20-line module", "large": "5,000-line module"}.get(s, s) for s in sizes]
    )
    ax.set_yscale("log")
    _plain_log(ax)
    ax.set_ylabel("ms (median; bar to p95)")
    ax.set_title("1. save -> live")
    ax.legend(fontsize=7)


def heap_panel(ax: Any, heap: dict[str, Any], kinds: tuple[str, ...], title: str) -> None:
    styles = {"startup": "-", "plain": "-", "closures": "--"}
    sizes = list(heap["ours"])
    xs = list(range(len(sizes)))
    for tool in heap:
        for kind in kinds:
            ys = _ms([heap[tool][s][kind]["median"] for s in sizes])
            label = LABELS[tool] + ("" if len(kinds) == 1 else f", {kind}")
            ax.plot(xs, ys, styles[kind], marker="o", color=COLORS[tool], label=label)
    ax.set_yscale("log")
    _plain_log(ax)
    ax.set_xticks(xs)
    ax.set_xticklabels([_count(int(s)) for s in sizes])
    ax.set_xlabel("live objects")
    ax.set_ylabel("ms (median)")
    ax.set_title(title)
    ax.legend(fontsize=6)


def calls_panel(ax: Any, calls: list[dict[str, Any]]) -> None:
    rows = [r for r in calls if "error" not in r]
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["patched_ratio"] for r in rows], 0.4, color=COLORS["ours"])
    ax.bar([x + 0.2 for x in xs], [r["assigned_ratio"] for r in rows], 0.4, color="#999999")
    ax.axhline(0.95, color="black", linewidth=0.8, linestyle=":")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([str(r["python"]) for r in rows], fontsize=7)
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("calls/s after / before")
    ax.set_title("3. call speed after a patch")
    ax.legend(["goal 0.95", "patch_function", "f.__code__ = (peers)"], fontsize=7)


def memory_panel(ax: Any, memory: dict[str, Any]) -> None:
    for tool, lines in memory.items():
        points = sorted((int(n), line["rss_kib"] / 1024) for n, line in lines.items() if n != "0")
        ax.plot(*zip(*points, strict=True), marker="o", color=COLORS[tool], label=LABELS[tool])
    ax.set_xscale("log")
    _plain_log(ax, "x")
    ax.set_xlabel("reloads of a 50-function module")
    ax.set_ylabel("RSS, MiB")
    ax.set_title("4. memory across reloads")
    ax.legend(fontsize=7)


def tree_panel(ax: Any, tree: dict[str, Any]) -> None:
    modes = [m for m in ("ours", "ours-poll", "watchdog") if m in tree]
    names = {"ours": "ours\ninotify", "ours-poll": "ours\npoll", "watchdog": "watchdog\n(jurigged)"}
    colors = [COLORS["ours"], COLORS["ours"], COLORS["jurigged"]]
    starts = [tree[m]["start"]["median"] * 1000 for m in modes]
    bars = ax.bar(range(len(modes)), starts, color=colors)
    for bar, mode in zip(bars, modes, strict=True):
        idle = tree[mode]["idle_cpu"]["median"]
        rss = tree[mode]["rss_kib"]["median"] / 1024
        missed = "\nsave NOT seen" if tree[mode].get("unreported") else ""
        ax.annotate(
            f"{rss:.0f} MiB\nidle {idle:.1%}{missed}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(modes)))
    ax.set_xticklabels([names[m] for m in modes], fontsize=7)
    ax.set_ylabel("ms to start watching")
    ax.set_title(f"5. watching {tree['files']:,} files / {tree['dirs']:,} dirs")
    ax.margins(y=0.3)


def closures_panel(ax: Any, closures: dict[str, Any]) -> None:
    rows = closures["rows"]
    xs = range(len(rows))
    for offset, kind, alpha in ((-0.2, "first", 0.45), (0.2, "later", 1.0)):
        ys = _ms([r[kind]["median"] for r in rows])
        colors = [COLORS[r["tool"]] for r in rows]
        ax.bar([x + offset for x in xs], ys, 0.4, color=colors, alpha=alpha)
        for x, v in zip(xs, ys, strict=True):
            ax.annotate(f"{v:.3g}", (x + offset, v), ha="center", va="bottom", fontsize=6)
    ax.axhline(10, color="black", linewidth=0.8, linestyle=":")
    ax.set_xticks(list(xs))
    names = {"ours": "", "jurigged": "\njurigged", "ipython": "\nIPython"}
    ax.set_xticklabels([f"{r['version']}{names[r['tool']]}" for r in rows], fontsize=7)
    ax.set_yscale("log")
    _plain_log(ax)
    ax.set_ylabel("ms (median): first edit pale, later solid")
    ax.set_title(f"7. closure edit at {_count(closures['size'])} objects (goal 10 ms dotted)")


def overhead_panel(ax: Any, overhead: dict[str, Any]) -> None:
    creation = overhead.get("creation", {})
    versions = list(creation)
    xs = range(len(versions))
    for offset, case, color in ((-0.2, "watched", COLORS["ours"]), (0.2, "followed", "#999999")):
        ys = [creation[v]["slower"][case] * 100 for v in versions]
        ax.bar([x + offset for x in xs], ys, 0.4, color=color, label=f"watcher, {case}")
    ax.axhline(5, color="black", linewidth=0.8, linestyle=":")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(versions, fontsize=7)
    ax.set_ylabel("% slower than without the watcher")
    idle = overhead.get("idle", {})
    shown = ", ".join(f"{LABELS[k]} {v:.2%}" for k, v in idle.items())
    ax.set_title(f"8. making closures (goal 5% dotted)\nidle CPU: {shown}", fontsize=9)
    ax.legend(fontsize=7)


def loop_panel(ax: Any, loop: dict[str, Any]) -> None:
    labels = [
        "--reload-watch\nsave -> result",
        "--reload-loop\nsave -> result",
        "restart\n-> result",
    ]
    ys = _ms([loop["watch"]["median"], loop["loop"]["median"], loop["restart"]["median"]])
    bars = ax.bar(range(3), ys, color=[COLORS["ours"], COLORS["ours"], "#999999"])
    for bar, v in zip(bars, ys, strict=True):
        ax.annotate(
            f"{v:.3g} ms",
            (bar.get_x() + bar.get_width() / 2, v),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(3))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_yscale("log")
    _plain_log(ax)
    ax.set_ylabel("ms (median)")
    ratio = loop["restart"]["median"] / loop["watch"]["median"]
    ax.set_title(f"9. pytest: fix -> result ({ratio:.0f}x sooner than a restart)")


def draw(results: dict[str, Any], out: Path) -> None:
    fig, axes = plt.subplots(3, 3, figsize=(15, 13))
    panels = axes.flat
    if "save" in results:
        save_panel(next(panels), results["save"])
    if "heap" in results:
        heap_panel(next(panels), results["heap"], ("startup",), "2. start-up vs heap size")
        heap_panel(
            next(panels), results["heap"], ("plain", "closures"), "2. 20-function edit vs heap"
        )
    if "calls" in results:
        calls_panel(next(panels), results["calls"])
    if "memory" in results:
        memory_panel(next(panels), results["memory"])
    if "tree" in results:
        tree_panel(next(panels), results["tree"])
    if "closures" in results:
        closures_panel(next(panels), results["closures"])
    if "overhead" in results:
        overhead_panel(next(panels), results["overhead"])
    if "loop" in results:
        loop_panel(next(panels), results["loop"])
    for ax in panels:
        ax.axis("off")
    m = results["machine"]
    fig.suptitle(
        f"mighty_patcher vs jurigged and IPython autoreload: {m['date']}, {m['cpu']}, "
        f"CPython {m['python']}" + (" (SMOKE RUN)" if results.get("smoke") else ""),
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
