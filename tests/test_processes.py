"""Every process of a program reloads: forked and spawned workers, pools, gunicorn and uvicorn
workers, each with real processes, real saves and (for the servers) real HTTP on 127.0.0.1.

Nothing here is timed: each test waits for what it expects (generous deadlines only turn a
missing event into a failure), polling until every worker answers with the new code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import require
from live import write

DEADLINE = 60.0

#: What the programs print with: one JSON line in one write (a line of one process is never
#: cut by another's).
OUT = """
import json, sys
def out(data):
    sys.stdout.write(json.dumps(data) + "\\n")
    sys.stdout.flush()
"""


def save(path: Path, text: str) -> None:
    """Saves as editors that write a temporary file and rename it into place do."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def inotify_count(pid: int) -> int:
    """How many inotify instances the process holds (its descriptors that are one)."""
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == "anon_inode:inotify":
                    count += 1
    return count


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return [p for p in found if alive(p)]


class Program:
    """``python -m mighty_patcher run ARGS`` in ``cwd``: its stdout lines in a queue, its
    stderr in a file; ended (its whole session) by :meth:`close`."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.stderr_path = cwd / "stderr.txt"
        self._stderr = self.stderr_path.open("w")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        full_env.pop("PYTHONPATH", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mighty_patcher", "run", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=full_env,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.eof = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.eof.set()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def results(self) -> Iterator[dict]:
        """The JSON lines the program prints, as they come, until :data:`DEADLINE`."""
        deadline = time.monotonic() + DEADLINE
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"waited {DEADLINE} s\n--- stderr\n{self.stderr}")
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.eof.is_set() and self.lines.empty():
                    raise AssertionError(
                        f"the program exited with {self.proc.poll()}\n--- stderr\n{self.stderr}"
                    ) from None
                continue
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    yield json.loads(line)

    def wait_for(self, accept: Callable[[dict], bool]) -> dict:
        for result in self.results():
            if accept(result):
                return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Ends the program as a service manager would (SIGTERM to its main process, which
        ends its workers), then whatever is left of its session."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._stderr.close()


@pytest.fixture
def run(tmp_path: Path):
    started: list[Program] = []

    def start(args: list[str], env: dict[str, str] | None = None, cwd: Path = tmp_path):
        program = Program(args, cwd, env)
        started.append(program)
        return program

    yield start
    for program in started:
        program.close()


# --- pools ----------------------------------------------------------------------------------

WORK = """
import os

REGISTRY = []

def value():
    return "v0"

def task(_):
    import time
    time.sleep(0.02)
    return os.getpid(), value(), len(REGISTRY)
"""

POOL = (
    OUT
    + """
import json, multiprocessing, os, sys, time
import work

def main(method):
    # the parent's own value, then (once "go" exists) rounds over the pool
    while not os.path.exists("go"):
        out({"parent": work.value()})
        time.sleep(0.05)
    with multiprocessing.get_context(method).Pool(2) as pool:
        while not os.path.exists("stop"):
            results = pool.map(work.task, range(8), chunksize=1)
            out({"workers": results, "parent": work.value()})
    out({"done": True})

if __name__ == "__main__":
    main(sys.argv[1])
"""
)


def all_workers(program: Program, value: str, workers: int = 2) -> dict:
    """Waits for a round in which two workers answered, every one with ``value``; returns
    the pids seen in that round."""
    return program.wait_for(
        lambda r: (
            "workers" in r
            and len({pid for pid, _, _ in r["workers"]}) == workers
            and all(v == value for _, v, _ in r["workers"])
        )
    )


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_pool_of_two_computes_with_the_new_code_after_an_edit(tmp_path, run, method):
    write(tmp_path / "work.py", WORK)
    write(tmp_path / "main.py", POOL)
    (tmp_path / "go").touch()
    program = run(["main.py", method])
    before = all_workers(program, "v0")
    pids = {pid for pid, _, _ in before["workers"]}
    save(tmp_path / "work.py", WORK.replace('"v0"', '"v1"'))
    after = all_workers(program, "v1")
    assert after["parent"] == "v1"
    # the same workers, patched (not replaced by new ones)
    assert {pid for pid, _, _ in after["workers"]} == pids
    # one inotify instance in the whole program: the parent's; none in a worker
    assert inotify_count(program.proc.pid) == 1
    assert all(inotify_count(pid) == 0 for pid in descendants(program.proc.pid))
    (tmp_path / "stop").touch()
    program.wait_for(lambda r: r.get("done", False))
    assert program.proc.wait(30) == 0
    # each process says which one it is, once more than one reloads; the workers' copies
    # of the module were each reloaded once
    stderr = program.stderr
    for pid in pids:
        assert stderr.count(f"[pid {pid}] reloaded work: patched value") == 1, stderr
    assert f"[pid {program.proc.pid}] reloaded work: patched value" in stderr, stderr
    assert not any(alive(pid) for pid in pids)


def test_a_worker_forked_after_several_reloads_applies_the_next_save(tmp_path, run):
    write(tmp_path / "work.py", WORK)
    write(tmp_path / "main.py", POOL)
    program = run(["main.py", "fork"])
    program.wait_for(lambda r: r.get("parent") == "v0")
    text = WORK
    edits = [
        # a function body
        lambda t: t.replace('"v0"', '"v1"'),
        # a statement with an effect, run once by the reload that adds it
        lambda t: t.replace("REGISTRY = []\n", "REGISTRY = []\nREGISTRY.append('x')\n").replace(
            '"v1"', '"v2"'
        ),
        # a new constant read by the function
        lambda t: t.replace("def value():", "SUFFIX = '!'\n\ndef value():").replace(
            'return "v2"', 'return "v3" + SUFFIX'
        ),
    ]
    for n, edit in enumerate(edits, 1):
        text = edit(text)
        save(tmp_path / "work.py", text)
        program.wait_for(lambda r, n=n: r.get("parent", "").startswith(f"v{n}"))
    (tmp_path / "go").touch()  # the pool is forked now, after three reloads
    before = all_workers(program, "v3!")
    assert all(count == 1 for _, _, count in before["workers"])
    save(tmp_path / "work.py", text.replace("SUFFIX = '!'", "SUFFIX = '?'"))
    after = all_workers(program, "v3?")
    # the workers diffed against what they run (inherited): the append did not run again
    assert all(count == 1 for _, _, count in after["workers"]), after
    assert after["parent"] == "v3?"
    (tmp_path / "stop").touch()
    program.wait_for(lambda r: r.get("done", False))


FAILING = """
import os

def value():
    return "v0"

def task(_):
    import time
    time.sleep(0.02)
    return os.getpid(), value(), 0
"""


def test_a_reload_failing_in_one_worker_leaves_the_others_reloaded(tmp_path, run):
    write(tmp_path / "work.py", FAILING)
    write(tmp_path / "main.py", POOL)
    (tmp_path / "go").touch()
    program = run(["main.py", "fork"])
    before = all_workers(program, "v0")
    failing, other = sorted({pid for pid, _, _ in before["workers"]})
    # the new version cannot be built in one of the workers: that one keeps the old one
    broken = FAILING.replace('"v0"', '"v1"').replace(
        "def value", f"if os.getpid() == {failing}:\n    raise RuntimeError('no')\n\ndef value"
    )
    save(tmp_path / "work.py", broken)
    program.wait_for(
        lambda r: (
            "workers" in r
            and {(pid, v) for pid, v, _ in r["workers"]} == {(failing, "v0"), (other, "v1")}
            and r["parent"] == "v1"
        )
    )
    assert f"[pid {failing}] reload of work failed" in program.stderr
    # the next save reaches every worker, the one that failed too
    save(tmp_path / "work.py", FAILING.replace('"v0"', '"v2"'))
    all_workers(program, "v2")
    (tmp_path / "stop").touch()
    program.wait_for(lambda r: r.get("done", False))


MIDWAY = """
import time

A = "a0"
SLOW = 0

def value():
    return "v0"
"""

FORKING = (
    OUT
    + """
import os, time
import work
while not os.path.exists("stop"):
    if os.fork() == 0:
        out({"child": os.getpid(), "a": work.A, "value": work.value()})
        os._exit(0)
    os.wait()
    time.sleep(0.02)
"""
)


def test_a_process_forked_while_a_reload_runs_gets_all_of_it_or_none(tmp_path, run):
    write(tmp_path / "work.py", MIDWAY)
    write(tmp_path / "main.py", FORKING)
    program = run(["main.py"])
    program.wait_for(lambda r: r.get("value") == "v0")
    # the statement between the two changes takes a second to run: the forks meanwhile
    # wait for the reload to end, so no child sees A changed and value() not yet
    save(
        tmp_path / "work.py",
        MIDWAY.replace('"a0"', '"a1"')
        .replace("SLOW = 0", "SLOW = time.sleep(1.0) or 1")
        .replace('"v0"', '"v1"'),
    )
    seen = set()
    for result in program.results():
        seen.add((result["a"], result["value"]))
        assert seen <= {("a0", "v0"), ("a1", "v1")}, seen
        if ("a1", "v1") in seen:
            break
    # and every child forked later runs the new version whole
    for _, result in zip(range(20), program.results(), strict=False):
        assert (result["a"], result["value"]) == ("a1", "v1")
    (tmp_path / "stop").touch()
    assert program.proc.wait(30) == 0


DIRECT = (
    OUT
    + """
import multiprocessing, os
from mighty_patcher.watch import AutoReloader

reloader = AutoReloader(".")
import work

if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(2) as pool:
        while not os.path.exists("stop"):
            out({"workers": pool.map(work.task, range(8), chunksize=1)})
"""
)


def test_forked_workers_reload_without_run_too(tmp_path):
    """The AutoReloader of a program that makes its own re-arms in its forked children."""
    write(tmp_path / "work.py", WORK)
    write(tmp_path / "main.py", DIRECT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "main.py"], cwd=tmp_path, stdout=subprocess.PIPE, text=True, env=env
    )
    program = Program.__new__(Program)  # reads the output of a process started here
    program.proc, program.lines, program.eof = proc, queue.Queue(), threading.Event()
    program.stderr_path = tmp_path / "none"
    program.stderr_path.write_text("")
    threading.Thread(target=program._read, daemon=True).start()
    try:
        all_workers(program, "v0")
        save(tmp_path / "work.py", WORK.replace('"v0"', '"v1"'))
        after = all_workers(program, "v1")
        assert all(inotify_count(pid) == 0 for pid, _, _ in after["workers"])
        (tmp_path / "stop").touch()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()


# --- spawned Python children, opting out ----------------------------------------------------

CHILD = (
    OUT
    + """
import json, os, sys, time
import work
while not os.path.exists("stop"):
    out({"child": os.getpid(), "value": work.value(),
                      "custom": os.environ.get("CUSTOMIZED"), "path": sys.path})
    time.sleep(0.05)
"""
)

PARENT = (
    OUT
    + """
import json, os, subprocess, sys, time
import work
child = subprocess.Popen([sys.executable, "child.py"])
while not os.path.exists("stop"):
    out({"parent": work.value()})
    time.sleep(0.05)
child.wait()
"""
)


def test_a_python_subprocess_of_the_program_reloads_and_its_sitecustomize_still_runs(tmp_path, run):
    write(tmp_path / "work.py", WORK)
    write(tmp_path / "child.py", CHILD)
    write(tmp_path / "main.py", PARENT)
    custom = tmp_path / "custom"
    # a sitecustomize of the user's own, which ours must not hide
    write(custom / "sitecustomize.py", "import os\nos.environ['CUSTOMIZED'] = 'yes'\n")
    program = run(["main.py"], env={"PYTHONPATH": str(custom)})
    first = program.wait_for(lambda r: r.get("value") == "v0")
    assert first["custom"] == "yes"
    # the program's sys.path is what it would be without the reloader
    assert not any("_startup" in p for p in first["path"]), first["path"]
    save(tmp_path / "work.py", WORK.replace('"v0"', '"v1"'))
    program.wait_for(lambda r: r.get("value") == "v1")
    program.wait_for(lambda r: r.get("parent") == "v1")
    child = first["child"]
    assert inotify_count(child) == 0
    (tmp_path / "stop").touch()
    assert program.proc.wait(30) == 0
    assert f"[pid {child}] reloaded work: patched value" in program.stderr


FORKS = (
    OUT
    + """
import json, os, subprocess, sys, time
import work
who = "forked" if os.fork() == 0 else "parent"
if who == "parent":
    child = subprocess.Popen([sys.executable, "child.py"])
while not os.path.exists("stop"):
    out({who: os.getpid(), "value": work.value()})
    time.sleep(0.05)
if who == "parent":
    child.wait()
    os.wait()
else:
    os._exit(0)
"""
)


def test_no_children_reloads_the_program_alone(tmp_path, run):
    write(tmp_path / "work.py", WORK)
    write(tmp_path / "child.py", CHILD)
    write(tmp_path / "main.py", FORKS)
    program = run(["--no-children", "main.py"])
    program.wait_for(lambda r: "forked" in r)
    program.wait_for(lambda r: "child" in r)
    save(tmp_path / "work.py", WORK.replace('"v0"', '"v1"'))
    program.wait_for(lambda r: "parent" in r and r["value"] == "v1")
    # the forked copy of the program and its spawned child go on with the old code: twenty
    # lines more from each (a second at least) after the parent had the new one
    later = {"forked": 0, "child": 0}
    for result in program.results():
        for who in later:
            if who in result:
                assert result["value"] == "v0", result
                later[who] += 1
        if min(later.values()) >= 20:
            break
    assert all(inotify_count(pid) == 0 for pid in descendants(program.proc.pid))
    (tmp_path / "stop").touch()
    assert program.proc.wait(30) == 0
    stderr = program.stderr
    assert "[pid" not in stderr and stderr.count("reloaded work: patched value") == 1, stderr


# --- the watching process ends --------------------------------------------------------------

ORPHAN = (
    OUT
    + """
import json, os, sys, time
import work
if os.fork() == 0:
    # the child: runs on after its parent is killed
    while not os.path.exists("stop"):
        out({"child": os.getpid(), "value": work.value()})
        time.sleep(0.05)
    os._exit(0)
while True:
    out({"parent": os.getpid()})
    time.sleep(0.05)
"""
)


def test_a_worker_whose_watching_process_died_watches_by_itself(tmp_path, run):
    write(tmp_path / "work.py", WORK)
    write(tmp_path / "main.py", ORPHAN)
    program = run(["main.py"])
    first = program.wait_for(lambda r: "child" in r)
    child = first["child"]
    assert inotify_count(program.proc.pid) == 1 and inotify_count(child) == 0
    os.kill(program.proc.pid, signal.SIGKILL)
    program.proc.wait(10)
    deadline = time.monotonic() + DEADLINE
    while inotify_count(child) != 1:  # it took over: its own watcher, the only one
        assert time.monotonic() < deadline, "the orphan never watched by itself"
        time.sleep(0.05)
    save(tmp_path / "work.py", WORK.replace('"v0"', '"v1"'))
    program.wait_for(lambda r: r.get("value") == "v1")
    (tmp_path / "stop").touch()
    while alive(child):
        assert time.monotonic() < deadline + DEADLINE
        time.sleep(0.05)


# --- servers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except OSError:
        return None


def serve_until_all_new(program: Program, url: str, old: str, new: str, edit: Callable[[], None]):
    """Waits until both workers answer ``old``, applies ``edit``, then polls until both
    answered ``new`` and then 40 requests more in a row all were new. Returns the pids."""

    def answers(count: int) -> list[tuple[int, str]]:
        with ThreadPoolExecutor(4) as pool:  # concurrent: each worker gets some
            bodies = list(pool.map(lambda _: get(url), range(count)))
        out = []
        for body in bodies:
            if body is not None:
                pid, _, text = body.partition(" ")
                out.append((int(pid), text))
        return out

    deadline = time.monotonic() + DEADLINE
    seen: set[int] = set()
    while len(seen) < 2:
        assert program.proc.poll() is None, f"the server exited\n{program.stderr}"
        assert time.monotonic() < deadline, f"not two workers answering\n{program.stderr}"
        seen |= {pid for pid, text in answers(8) if text == old}
    edit()
    new_from: set[int] = set()
    while new_from != seen:
        assert time.monotonic() < deadline, f"not all new: {new_from}\n{program.stderr}"
        got = answers(8)
        assert {pid for pid, _ in got} <= seen, "a worker was replaced"
        new_from |= {pid for pid, text in got if text == new}
    after = answers(40)
    assert len(after) == 40 and all(text == new for _, text in after), after
    return seen


FLASK_APP = """
import os, time
from flask import Flask

app = Flask(__name__)

@app.route("/")
def index():
    time.sleep(0.02)
    return f"{os.getpid()} {message()}"

def message():
    return "old body"
"""


def test_gunicorn_with_two_sync_workers_serves_the_new_body_on_every_worker(tmp_path, run):
    require(importlib.util.find_spec("gunicorn") is not None, "gunicorn is not installed")
    require(importlib.util.find_spec("flask") is not None, "flask is not installed")
    write(tmp_path / "app.py", FLASK_APP)
    port = free_port()
    program = run(["-m", "gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}", "app:app"])
    text = FLASK_APP.replace('"old body"', '"new body"')
    pids = serve_until_all_new(
        program,
        f"http://127.0.0.1:{port}/",
        "old body",
        "new body",
        lambda: save(tmp_path / "app.py", text),
    )
    assert inotify_count(program.proc.pid) == 1
    assert all(inotify_count(pid) == 0 for pid in pids)
    program.close()
    assert not any(alive(pid) for pid in pids)
    assert "Traceback" not in program.stderr and "panicked" not in program.stderr


FASTAPI_APP = """
import os, time
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()

@app.get("/", response_class=PlainTextResponse)
async def index():
    time.sleep(0.02)  # blocks this worker's loop: the next request goes to the other one
    return f"{os.getpid()} {message()}"

def message():
    return "old body"
"""


def test_uvicorn_with_two_workers_serves_the_new_body_on_every_worker(tmp_path, run):
    require(importlib.util.find_spec("uvicorn") is not None, "uvicorn is not installed")
    require(importlib.util.find_spec("fastapi") is not None, "fastapi is not installed")
    write(tmp_path / "main.py", FASTAPI_APP)
    port = free_port()
    program = run(
        ["-m", "uvicorn", "main:app", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
    )
    text = FASTAPI_APP.replace('"old body"', '"new body"')
    pids = serve_until_all_new(
        program,
        f"http://127.0.0.1:{port}/",
        "old body",
        "new body",
        lambda: save(tmp_path / "main.py", text),
    )
    assert inotify_count(program.proc.pid) == 1
    assert all(inotify_count(pid) == 0 for pid in pids)
    for pid in pids:
        assert f"[pid {pid}] reloaded main: patched message" in program.stderr
    program.close()
    assert not any(alive(pid) for pid in pids)


def test_the_watching_process_leaves_nothing_on_disk_and_accepts_its_own_user():
    from mighty_patcher import processes

    hub = processes.Hub(0)
    try:
        # Linux: an abstract address, no file to remove, even if the process is killed
        assert hub.address.startswith("\0") or sys.platform != "linux"
        upstream = processes.Upstream(hub.address)
        hub.start()
        assert upstream.wait(10) == "welcome" and upstream.welcome == 0
        hub.forward({"/x.py"}, 1)
        assert upstream.wait(10) == {"/x.py"} and upstream.seq == 1
        a, b = socket.socketpair()
        with a, b:
            assert processes.same_user(a)
        upstream.close()
    finally:
        hub.close()
    assert processes.Upstream(hub.address).wait(10) == "orphaned"
