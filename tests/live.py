"""A running program for live reload tests: a subprocess that imports a project, starts an
AutoReloader with the real watcher on it, and then answers questions on stdin/stdout while
the test saves files. A crash there is a failed test, not a dead suite."""

from __future__ import annotations

import ast
import json
import os
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

DRIVER = r"""
import json, sys, threading
# The program's own output goes to stderr; stdout carries the answers.
answers, sys.stdout = sys.stdout, sys.stderr
sys.path.insert(0, ROOT)
reports, cond = [], threading.Condition()

def _after(report):
    with cond:
        reports.append(report.as_dict())
        cond.notify_all()

exec(compile(SETUP, "<setup>", "exec"), globals())
from mighty_patcher.watch import AutoReloader
reloader = AutoReloader(ROOT, after_reload=_after, **OPTIONS)
print(json.dumps({"ready": True}), file=answers, flush=True)
for line in sys.stdin:
    command = json.loads(line)
    op = command["op"]
    if op == "exit":
        break
    try:
        if op == "eval":
            value = eval(command["expr"], globals())
            answer = {"repr": repr(value)}
        elif op == "exec":
            exec(command["code"], globals())
            answer = {"ok": True}
        elif op == "wait":
            with cond:
                cond.wait_for(lambda: len(reports) >= command["count"], timeout=command["timeout"])
                answer = {"reports": list(reports)}
        else:
            answer = {"error": "unknown op " + op}
    except BaseException as exc:
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(answer), file=answers, flush=True)
reloader.stop()
"""


class LiveError(AssertionError):
    pass


class LiveProgram:
    def __init__(self, root: Path, setup: str, **options: Any):
        self.root = root
        script = root / "_driver.py"
        script.write_text(
            f"ROOT = {str(root)!r}\nSETUP = {textwrap.dedent(setup)!r}\nOPTIONS = {options!r}\n"
            + DRIVER
        )
        env = {**os.environ, "PYTHONFAULTHANDLER": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=root,
            env=env,
        )
        self.seen = 0
        self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=10)
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise LiveError(f"the program exited with {code}\n--- stderr\n{stderr}")
        answer = json.loads(line)
        if "error" in answer:
            raise LiveError(answer["error"])
        return answer

    def _send(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def eval(self, expr: str) -> Any:
        text = self._send(op="eval", expr=expr)["repr"]
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text

    def exec(self, code: str) -> None:
        self._send(op="exec", code=textwrap.dedent(code))

    def wait_for(self, expr: str, timeout: float = 30) -> None:
        """Polls the program until ``expr`` is true there; raises LiveError if it still is
        not after ``timeout`` seconds (waiting, not timing: the generous timeout only turns
        a missing event into a failure)."""
        deadline = time.monotonic() + timeout
        while not self.eval(f"bool({expr})"):
            if time.monotonic() > deadline:
                raise LiveError(f"waited {timeout} s for {expr}; it is still false")
            time.sleep(0.02)

    def wait_reload(self, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        """Waits until ``count`` more reports arrived; returns them."""
        reports = self._send(op="wait", count=self.seen + count, timeout=timeout)["reports"]
        new = reports[self.seen :]
        if len(new) < count:
            raise LiveError(f"waited {timeout} s for {count} reload(s), got {new}")
        self.seen = len(reports)
        return new

    def close(self) -> str:
        """Ends the program; returns what it logged on stderr."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        try:
            _, stderr = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate()
        if self.proc.returncode not in (0, None):
            raise LiveError(f"the program exited with {self.proc.returncode}\n{stderr}")
        return stderr


def start_run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, python: str = sys.executable
) -> subprocess.Popen[str]:
    """``python -m mighty_patcher run <args>`` in ``cwd``, its output piped; ``env`` replaces
    the environment when given."""
    return subprocess.Popen(
        [python, "-u", "-m", "mighty_patcher", "run", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(proc: subprocess.Popen[str], *logged: str, timeout: float = 30) -> tuple[str, str]:
    """Stops a program started by :func:`start_run` and returns what it printed (stdout,
    stderr). ``logged``: texts the reloader's log must hold before the program is stopped. A
    save is live before its report is written, so a test that saw the new output waits for
    the report too (a generous bound: waiting, not timing)."""
    assert proc.stderr is not None
    seen = b""
    fd = proc.stderr.fileno()  # the text wrapper has read nothing yet: no buffered text
    deadline = time.monotonic() + timeout
    while not all(text.encode() in seen for text in logged) and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    proc.kill()
    out, err = proc.communicate()
    return out, seen.decode(errors="replace") + err


def read_until(proc: subprocess.Popen[str], wanted: str, timeout: float = 30) -> list[str]:
    """The lines a program printed up to the first that is ``wanted`` (a regular expression
    it must match whole); raises AssertionError with what it printed if none comes in time
    (a generous bound: waiting, not timing)."""
    assert proc.stdout is not None
    pattern = re.compile(wanted)
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if pattern.fullmatch(seen[-1]):
            return seen
    raise AssertionError(f"never printed /{wanted}/; printed {seen[-20:]}")


def write(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
