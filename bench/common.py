"""What every measurement shares: the tools compared, statistics, the machine, child processes.

The orchestrator (``run.py``) and the measurement modules import only the standard library;
the code that imports a reloader runs in child processes started with a bench virtualenv's
interpreter. A child reports with lines ``RESULT <json>`` written to a pipe of its own (file
descriptor ``$MP_BENCH_RESULT_FD``), never mixed with what it prints: every tool keeps its
default logging (jurigged prints each update on stdout, mighty_patcher logs on stderr).
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH",
    "LABELS",
    "PEERS",
    "TOOLS",
    "child_env",
    "emit",
    "machine",
    "p95",
    "parse_results",
    "rotated",
    "rss_kib",
    "run_child",
    "start_child",
    "summary",
]

BENCH = Path(__file__).resolve().parent
#: The tools compared, ours first. Each child program drives one of them (see ``peers.py``).
TOOLS = ("ours", "jurigged", "ipython")
PEERS = TOOLS[1:]
LABELS = {"ours": "mighty_patcher", "jurigged": "jurigged", "ipython": "IPython autoreload"}
RESULT = "RESULT "
RESULT_FD = "MP_BENCH_RESULT_FD"


def p95(values: Sequence[float]) -> float:
    """The 95th percentile, nearest rank (the largest value for fewer than 20 samples)."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


def summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "p95": None}
    return {"n": len(values), "median": statistics.median(values), "p95": p95(values)}


def rotated(items: Sequence[str], round_number: int) -> list[str]:
    """The tools in a different order each round, so that no tool always goes first."""
    k = round_number % len(items)
    return list(items[k:]) + list(items[:k])


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def emit(**fields: Any) -> None:
    """Reports from a child process (see the module docstring): one line, one ``write`` on
    the results pipe, so that it never mixes with what the tool prints."""
    line = (RESULT + json.dumps(fields) + "\n").encode()
    fd = int(os.environ.get(RESULT_FD, "1"))
    if fd == 1:
        sys.stdout.flush()
    os.write(fd, line)


def child_env() -> dict[str, str]:
    """The environment of a child: nothing that would put the source tree on ``sys.path``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_child(
    python: str, args: Sequence[str], stderr: Any, *, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, Any]:
    """Starts ``python args...`` (``env``: variables set besides ``child_env()``); returns it
    and the read end of its results pipe (text)."""
    read, write = os.pipe()
    env = {**child_env(), **(env or {})}
    env[RESULT_FD] = str(write)
    try:
        proc = subprocess.Popen(
            [python, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd="/",
            pass_fds=(write,),
        )
    finally:
        os.close(write)
    return proc, os.fdopen(read, "r")


def run_child(
    python: str,
    args: Sequence[str],
    *,
    timeout: float = 3600,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Runs ``python args...`` to the end and returns what it reported."""
    with tempfile.TemporaryFile("w+") as errors:
        proc, results = start_child(python, args, errors, env=env)
        with results:
            lines = results.read().splitlines()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        if code != 0:
            errors.seek(0)
            tail = "\n".join(errors.read().splitlines()[-30:])
            raise RuntimeError(f"{' '.join(args[:3])} failed ({code}):\n{tail}")
    return list(parse_results(lines))


def parse_results(lines: Sequence[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith(RESULT):
            yield json.loads(line[len(RESULT) :])


def machine(python: str) -> dict[str, Any]:
    """Date, CPU, cores, memory, kernel, and the bench interpreter's version."""
    cpu = "unknown CPU"
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            cpu = match.group(1).strip()
    except OSError:
        pass
    mem_kib = 0
    try:
        match = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
        if match:
            mem_kib = int(match.group(1))
    except OSError:
        pass
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
        env=child_env(),
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20),
        "kernel": platform.release(),
        "load": os.getloadavg()[0],
        "python": version,
        "orchestrator": sys.version.split()[0],
    }
