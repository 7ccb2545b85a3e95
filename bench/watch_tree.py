"""Start-up cost of the native watcher on a large tree: 50,000 files in 5,000 directories.

    python bench/watch_tree.py [--dirs 5000] [--files 50000] [--keep DIR]

Each measurement runs in a fresh interpreter, so its memory figures are its own. Columns:
start (seconds to construct the watcher, i.e. walk the tree and add every watch), RSS added
by it, the watches the kernel reports for its inotify descriptor, process CPU over 2 s of
idle `wait()`, the latency of one save, and close. Baselines: walking the same tree with
`os.scandir` only, and adding raw `inotify_add_watch` calls (ctypes) for every directory.
The page cache is warm (the tree was just written).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = r"""
import ctypes, json, os, resource, sys, time

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def kernel_watches():
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "inotify" in os.readlink(f"/proc/self/fd/{fd}"):
                count += sum(1 for line in open(f"/proc/self/fdinfo/{fd}")
                             if line.startswith("inotify wd:"))
        except OSError:
            pass
    return count

root, mode = sys.argv[1], sys.argv[2]
dirs = []
out = {}
if mode == "scandir":
    base = rss_kib()
    t = time.perf_counter()
    stack = [root]
    while stack:
        d = stack.pop()
        dirs.append(d)
        with os.scandir(d) as entries:
            stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
    out["start"] = time.perf_counter() - t
    out["rss_kib"] = rss_kib() - base
    out["watches"] = len(dirs)
elif mode == "raw-inotify":
    stack = [root]
    while stack:
        d = stack.pop()
        dirs.append(d.encode())
        with os.scandir(d) as entries:
            stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
    libc = ctypes.CDLL(None, use_errno=True)
    base = rss_kib()
    t = time.perf_counter()
    fd = libc.inotify_init1(os.O_CLOEXEC)
    mask = 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200  # what notify asks for
    for d in dirs:
        if libc.inotify_add_watch(fd, d, mask) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch", d)
    out["start"] = time.perf_counter() - t
    out["rss_kib"] = rss_kib() - base
    out["watches"] = kernel_watches()
    t = time.perf_counter()
    os.close(fd)
    out["close"] = time.perf_counter() - t
else:
    from mighty_patcher import Watcher
    kwargs = {"poll": True} if mode == "poll" else {}
    base = rss_kib()
    t = time.perf_counter()
    w = Watcher([root], **kwargs)
    out["start"] = time.perf_counter() - t
    out["rss_kib"] = rss_kib() - base
    out["watched"] = w.watched_directories
    out["watches"] = kernel_watches() if mode == "inotify" else None
    c = cpu()
    t = time.perf_counter()
    assert w.wait(timeout=2.0) == "timeout"
    out["idle_cpu"] = (cpu() - c) / (time.perf_counter() - t)
    target = os.path.join(root, "p0", "d0", "m0.py")
    t = time.perf_counter()
    with open(target, "a") as f:
        f.write("# touched\n")
    got = w.wait(timeout=10)
    out["latency"] = time.perf_counter() - t
    assert got == {target}, got
    t = time.perf_counter()
    w.close()
    out["close"] = time.perf_counter() - t
print(json.dumps(out))
"""


def make_tree(root: Path, dirs: int, files: int) -> tuple[int, int]:
    """``root/p<i>/d<j>``: packages of 100 directories (the package counts as one)."""
    per_dir = files // dirs
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


def run(root: Path, mode: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(root), mode], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dirs", type=int, default=5000)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--keep", type=Path, help="build the tree here and keep it")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (best is shown)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = (args.keep or Path(tmp)) / "tree"
        t = time.perf_counter()
        dirs, files = make_tree(root, args.dirs, args.files)
        print(
            f"tree: {files} files in {dirs} directories under {root}, made in "
            f"{time.perf_counter() - t:.1f} s; "
            f"fs.inotify.max_user_watches = {read_limit()}\n"
        )
        header = ("mode", "start s", "RSS +MiB", "watches", "idle CPU", "save→report", "close s")
        print("{:<12} {:>8} {:>9} {:>8} {:>9} {:>12} {:>8}".format(*header))
        # scandir: the walk alone; raw-inotify: the syscalls alone; then the real watcher.
        for mode in ("scandir", "raw-inotify", "inotify", "poll"):
            best = min((run(root, mode) for _ in range(args.repeat)), key=lambda r: r["start"])
            print(
                "{:<12} {:>8.3f} {:>9.1f} {:>8} {:>9} {:>12} {:>8}".format(
                    mode,
                    best["start"],
                    best["rss_kib"] / 1024,
                    best.get("watches") or best.get("watched", "-"),
                    f"{best['idle_cpu']:.1%}" if "idle_cpu" in best else "-",
                    f"{best['latency'] * 1000:.1f} ms" if "latency" in best else "-",
                    f"{best['close']:.3f}" if "close" in best else "-",
                )
            )
        per_watch = (run(root, "inotify")["start"] - run(root, "scandir")["start"]) / dirs
        raw = run(root, "raw-inotify")["start"] / dirs
        print(
            f"\n(watcher start - Python scandir walk) / directories: {per_watch * 1e6:.1f} µs; "
            f"raw inotify_add_watch: {raw * 1e6:.1f} µs per directory"
        )


def read_limit() -> str:
    try:
        return Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
