"""5. Watching a big tree: 50,000 files in 5,000 directories.

    python bench/watch_tree.py [--python PY] [--dirs 5000] [--files 50000] [--idle 10]
                               [--repeat 3] [--keep DIR]

Each run is a fresh child process, so its memory figures are its own; the modes take turns.
Columns: start (seconds to start watching: walk the tree and add every watch), RSS added by
it, the watches the kernel reports for the process's inotify descriptors, process CPU while
idle for ``--idle`` seconds, the latency of one save (append to a file) to its report, and
the time to close. Modes:

- ``ours``: ``mighty_patcher.Watcher([root])`` (inotify through the ``notify`` crate).
- ``ours-poll``: the same with ``poll=True`` (stats every file every 0.05 s).
- ``watchdog``: a watchdog ``Observer`` scheduled recursively on the root: the watcher that
  jurigged uses (jurigged itself only watches the directories of modules the program has
  imported, so ``jurigged.watch(root)`` on a tree nobody imported costs nothing and watches
  nothing). Its inotify queue overflows are counted (``overflows``): after one, watchdog
  walks the tree again to rebuild its watches. IPython's autoreload watches nothing: it
  stats every imported module's file before each cell.
- baselines: walking the tree with ``os.scandir`` only, and raw ``inotify_add_watch`` calls
  (ctypes) for every directory.
The page cache is warm (the tree was just written).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import rotated, rss_kib, run_child, summary

__all__ = ["MODES", "make_tree", "measure"]

MODES = ("ours", "ours-poll", "watchdog", "scandir", "raw-inotify")
MASK = 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200  # what notify asks inotify for


def cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def kernel_watches() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "inotify" in os.readlink(f"/proc/self/fd/{fd}"):
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    count += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            pass
    return count


def walk(root: str) -> list[str]:
    dirs, stack = [], [root]
    while stack:
        d = stack.pop()
        dirs.append(d)
        with os.scandir(d) as entries:
            stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
    return dirs


def idle_and_save(out: dict[str, Any], idle: float, target: str, saved: Any) -> None:
    """CPU while idle for ``idle`` seconds, then the latency of one save; ``saved(timeout)``
    waits for the watcher's report of ``target``."""
    cpu, start = cpu_seconds(), time.perf_counter()
    saved(idle, idle=True)
    out["idle_cpu"] = (cpu_seconds() - cpu) / (time.perf_counter() - start)
    start = time.perf_counter()
    with open(target, "a") as f:
        f.write("# touched\n")
    out["reported"] = saved(10.0, idle=False)
    if out["reported"]:
        out["latency"] = time.perf_counter() - start


def child(root: str, mode: str, idle: float) -> None:
    from common import emit

    out: dict[str, Any] = {"mode": mode}
    target = os.path.join(root, "p0", "d0", "m0.py")
    if mode == "scandir":
        base, start = rss_kib(), time.perf_counter()
        out["watches"] = len(walk(root))
        out["start"] = time.perf_counter() - start
        out["rss_kib"] = rss_kib() - base
    elif mode == "raw-inotify":
        import ctypes

        dirs = [d.encode() for d in walk(root)]
        libc = ctypes.CDLL(None, use_errno=True)
        base, start = rss_kib(), time.perf_counter()
        fd = libc.inotify_init1(os.O_CLOEXEC)
        for d in dirs:
            if libc.inotify_add_watch(fd, d, MASK) < 0:
                raise OSError(ctypes.get_errno(), "inotify_add_watch", d)
        out["start"] = time.perf_counter() - start
        out["rss_kib"] = rss_kib() - base
        out["watches"] = kernel_watches()
        start = time.perf_counter()
        os.close(fd)
        out["close"] = time.perf_counter() - start
    elif mode in ("ours", "ours-poll"):
        from mighty_patcher import Watcher

        base, start = rss_kib(), time.perf_counter()
        watcher = Watcher([root], poll=mode == "ours-poll")
        out["start"] = time.perf_counter() - start
        out["rss_kib"] = rss_kib() - base
        out["watches"] = kernel_watches() if mode == "ours" else watcher.watched_directories

        def saved(timeout: float, idle: bool) -> bool:
            got = watcher.wait(timeout=timeout)
            return got == "timeout" if idle else got == {target}

        idle_and_save(out, idle, target, saved)
        start = time.perf_counter()
        watcher.close()
        out["close"] = time.perf_counter() - start
    elif mode == "watchdog":
        import logging

        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        reported = threading.Event()
        overflows = []

        class Overflows(logging.Handler):  # watchdog logs each inotify queue overflow
            def emit(self, record: logging.LogRecord) -> None:
                if "overflowed" in record.getMessage():
                    overflows.append(record)

        logging.getLogger("watchdog").addHandler(Overflows())

        class Handler(FileSystemEventHandler):
            def on_modified(self, event: FileSystemEvent) -> None:
                if event.src_path == target:
                    reported.set()

        base, start = rss_kib(), time.perf_counter()
        observer = Observer()
        observer.schedule(Handler(), root, recursive=True)
        observer.start()  # adds every watch before it returns
        out["start"] = time.perf_counter() - start
        out["rss_kib"] = rss_kib() - base
        out["watches"] = kernel_watches()

        def saved(timeout: float, idle: bool) -> bool:
            if idle:
                time.sleep(timeout)
                return True
            return reported.wait(timeout)

        idle_and_save(out, idle, target, saved)
        out["overflows"] = len(overflows)
        start = time.perf_counter()
        observer.stop()
        observer.join()
        out["close"] = time.perf_counter() - start
    else:
        raise ValueError(f"unknown mode {mode!r}")
    emit(**out)


def make_tree(root: Path, dirs: int, files: int) -> tuple[int, int]:
    """``root/p<i>/d<j>``: packages of 100 directories (the package counts as one)."""
    per_dir = max(1, files // dirs)
    made_dirs = made_files = 0
    package = 0
    while made_dirs < dirs:
        pkg = root / f"p{package}"
        for j in range(100):
            if made_dirs >= dirs:
                break
            d = pkg if j == 0 else pkg / f"d{j - 1}"
            d.mkdir(parents=True, exist_ok=True)
            made_dirs += 1
            for k in range(per_dir):
                (d / f"m{k}.py").write_text(f"VALUE = {k}\n")
                made_files += 1
        package += 1
    # The file the latency probe appends to.
    (root / "p0" / "d0").mkdir(parents=True, exist_ok=True)
    (root / "p0" / "d0" / "m0.py").touch()
    return made_dirs, made_files


def measure(
    python: str,
    *,
    dirs: int = 5000,
    files: int = 50_000,
    idle: float = 10.0,
    repeat: int = 3,
    modes: tuple[str, ...] = MODES,
    keep: Path | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = (keep or Path(tmp)) / "tree"
        start = time.perf_counter()
        made_dirs, made_files = make_tree(root, dirs, files)
        results: dict[str, Any] = {
            "dirs": made_dirs,
            "files": made_files,
            "made_in": time.perf_counter() - start,
            "idle_seconds": idle,
            "max_user_watches": read_limit(),
        }
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        script = str(Path(__file__).resolve())
        for round_number in range(repeat):
            for mode in rotated(modes, round_number):
                (line,) = run_child(python, [script, "--child", str(root), mode, str(idle)])
                runs[mode].append(line)
    for mode, lines in runs.items():
        entry: dict[str, Any] = {}
        for key in ("start", "rss_kib", "idle_cpu", "latency", "close", "overflows"):
            values = [line[key] for line in lines if key in line]
            if values:
                entry[key] = summary(values)
        entry["watches"] = lines[0].get("watches")
        entry["unreported"] = sum(1 for line in lines if line.get("reported") is False)
        entry["runs"] = len(lines)
        results[mode] = entry
    return results


def read_limit() -> str:
    try:
        return Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip()
    except OSError:
        return "unknown"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a bench virtualenv's python")
    parser.add_argument("--dirs", type=int, default=5000)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (median shown)")
    parser.add_argument("--keep", type=Path, help="build the tree here and keep it")
    args = parser.parse_args()
    r = measure(
        args.python,
        dirs=args.dirs,
        files=args.files,
        idle=args.idle,
        repeat=args.repeat,
        keep=args.keep,
    )
    print(
        f"tree: {r['files']} files in {r['dirs']} directories, made in {r['made_in']:.1f} s; "
        f"fs.inotify.max_user_watches = {r['max_user_watches']}\n"
    )
    header = ("mode", "start s", "RSS +MiB", "watches", "idle CPU", "save→report", "close s")
    print("{:<12} {:>8} {:>9} {:>8} {:>9} {:>12} {:>8}".format(*header))
    for mode in MODES:
        e = r[mode]
        print(
            "{:<12} {:>8.3f} {:>9.1f} {:>8} {:>9} {:>12} {:>8}".format(
                mode,
                e["start"]["median"],
                e["rss_kib"]["median"] / 1024,
                e["watches"],
                f"{e['idle_cpu']['median']:.2%}" if "idle_cpu" in e else "-",
                f"{e['latency']['median'] * 1000:.1f} ms" if "latency" in e else "-",
                f"{e['close']['median']:.3f}" if "close" in e else "-",
            )
        )
        if e["unreported"]:
            print(f"    {mode}: the save was not reported in {e['unreported']} of {e['runs']} runs")
        if e.get("overflows", {}).get("median"):
            print(f"    {mode}: inotify queue overflows: {e['overflows']['median']:.0f} (median)")


if __name__ == "__main__":
    main()
