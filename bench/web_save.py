"""6. Save to new HTTP response: from the write of a web application's file to the first HTTP
response that shows the edit.

    python bench/web_save.py [--python PY] [--saves 20] [--frameworks flask,fastapi]

A program (a child process, one per tool and framework) imports ``views.py`` (a Flask
application served by werkzeug's threaded server, or a FastAPI one served by uvicorn, both on
127.0.0.1 on a free port) after starting the tool as its users do (``peers.start``). Each
save changes what the ``/`` view returns (a body edit, the everyday edit; saved in place, as
most editors do); this process polls ``GET /`` every 0.5 ms until the new text comes back.
Measured from just before the write to that response, each save 0.2 s after the previous
one was seen. IPython's autoreload has no watcher of its own (it reloads before a cell runs)
and is left out.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import emit, rotated, start_child, summary

__all__ = ["FRAMEWORKS", "measure"]

TOOLS = ("ours", "jurigged")
GAP = 0.2  # seconds between a save seen and the next save
TIMEOUT = 10.0  # a save not live by then counts as missed

FLASK = """\
import logging

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "version {n}"


@app.route("/other")
def other():
    return "other"


def serve(port):
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app.run(host="127.0.0.1", port=port, threaded=True, use_reloader=False)
"""

FASTAPI = """\
import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
def index():
    return "version {n}"


@app.get("/other")
def other():
    return "other"


def serve(port):
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")
"""

FRAMEWORKS = {"flask": FLASK, "fastapi": FASTAPI}


def child(tool: str, root: str, port: int) -> None:
    """The running program: the tool, then the application, served in this thread."""
    import peers

    sys.path.insert(0, root)
    peers.start(tool, root, thread=True)
    import views  # type: ignore[import-not-found]

    emit(ready=True)
    views.serve(port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_for(port: int, text: str, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        if get(port) == text:
            return time.monotonic()
        time.sleep(0.0005)
    return None


def measure(
    python: str, *, saves: int = 20, frameworks: tuple[str, ...] = ("flask", "fastapi")
) -> dict[str, Any]:
    per_round = min(10, saves)
    rounds = -(-saves // per_round)
    results: dict[str, Any] = {}
    for framework in frameworks:
        source = FRAMEWORKS[framework]
        latencies: dict[str, list[float]] = {tool: [] for tool in TOOLS}
        missed = dict.fromkeys(TOOLS, 0)
        for round_number in range(rounds):
            for tool in rotated(TOOLS, round_number):
                root = Path(tempfile.mkdtemp(prefix=f"mp_bench_web_{tool}_"))
                views = root / "views.py"
                views.write_text(source.replace("{n}", "0"))
                time.sleep(0.05)
                port = free_port()
                args = [str(Path(__file__).resolve()), "--child", tool, str(root), str(port)]
                proc, pipe = start_child(python, args, subprocess.DEVNULL)
                try:
                    if wait_for(port, "version 0", time.monotonic() + 120) is None:
                        raise RuntimeError(f"the {framework} server under {tool} did not start")
                    for _ in range(min(per_round, saves - len(latencies[tool]) - missed[tool])):
                        n = len(latencies[tool]) + missed[tool] + 1
                        time.sleep(GAP)
                        start = time.monotonic()
                        with open(views, "w") as f:
                            f.write(source.replace("{n}", str(n)))
                        seen = wait_for(port, f"version {n}", start + TIMEOUT)
                        if seen is None:
                            missed[tool] += 1
                        else:
                            latencies[tool].append(seen - start)
                finally:
                    proc.kill()
                    proc.wait()
                    pipe.close()
        results[framework] = {
            tool: {**summary(latencies[tool]), "missed": missed[tool], "values": latencies[tool]}
            for tool in TOOLS
        }
    return results


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a bench virtualenv's python")
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--frameworks", default="flask,fastapi")
    args = parser.parse_args()
    results = measure(args.python, saves=args.saves, frameworks=tuple(args.frameworks.split(",")))
    for framework, tools in results.items():
        ours = tools["ours"]["median"]
        for tool, r in tools.items():
            if r["n"] == 0:
                print(f"{framework:<8} {tool:<10} no save went live")
                continue
            ratio = f"  ratio {r['median'] / ours:5.1f}x" if ours and tool != "ours" else ""
            print(
                f"{framework:<8} {tool:<10} median {r['median'] * 1000:8.2f} ms  "
                f"p95 {r['p95'] * 1000:8.2f} ms  missed {r['missed']}{ratio}"
            )


if __name__ == "__main__":
    main()
