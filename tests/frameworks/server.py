"""A web application run as a user runs it: ``python -m mighty_patcher run app.py`` in a
subprocess, serving on 127.0.0.1 on a free port (given as PORT), its source saved as an editor
saves it, and checked through real HTTP requests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import require

#: Generous: a missed reload turns into a failure after this long, never a slow pass.
TIMEOUT = 30.0


def need(*modules: str) -> None:
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            require(False, f"{name} is not installed (pip install -r requirements-dev.txt)")


def stop(proc: subprocess.Popen[str]) -> None:
    """Ends a server: asked first (SIGTERM), killed after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, root: Path, files: dict[str, str], script: str = "app.py") -> None:
        self.root = root
        for name, text in files.items():
            self.write(name, text, how="create")
        self.port = free_port()
        env = {
            **os.environ,
            "PORT": str(self.port),
            "PYTHONFAULTHANDLER": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mighty_patcher", "run", script],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_until(lambda: self.request("GET", "/__alive__")[0] != 0, "the server to start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def write(self, name: str, text: str, how: str = "rename") -> None:
        """Saves ``name``: ``rename`` as vim and JetBrains IDEs do (a temporary file moved
        over it), ``inplace`` as most editors (truncate and write)."""
        path = self.root / name
        text = textwrap.dedent(text)
        if how == "inplace":
            with open(path, "w") as f:
                f.write(text)
        elif how == "rename":
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """(status, body text); status 0 when nothing answers (yet)."""
        data = None
        all_headers = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, ""

    def get(self, path: str) -> tuple[int, str]:
        return self.request("GET", path)

    def wait_until(self, check: Any, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode})\n{self.log}")
            if check():
                return
            if time.monotonic() > deadline:
                tail = "\n".join(self.lines[-80:])
                raise AssertionError(f"waited {TIMEOUT} s for {what}\n--- server log (end)\n{tail}")
            time.sleep(0.05)

    def wait_for(self, method: str, path: str, status: int, text: str | None = None, body=None):
        """Polls until ``method path`` answers ``status`` (and contains ``text``); returns
        the body."""
        seen: list[tuple[int, str]] = []

        def check() -> bool:
            got = self.request(method, path, body)
            seen[:] = [got]
            return got[0] == status and (text is None or text in got[1])

        try:
            self.wait_until(check, f"{method} {path} -> {status} {text or ''}")
        except AssertionError as exc:
            raise AssertionError(f"last answer: {seen}\n{exc}") from None
        return seen[0][1]

    def wait_log(self, text: str, start: int = 0) -> str:
        """Waits for a log line (from line ``start`` on) containing ``text``; returns it."""
        found: list[str] = []

        def check() -> bool:
            found[:] = [line for line in self.lines[start:] if text in line]
            return bool(found)

        self.wait_until(check, f"a log line with {text!r}")
        return found[0]

    def mark(self) -> int:
        """Where the log is now (for :meth:`wait_log`)."""
        return len(self.lines)

    def close(self) -> str:
        stop(self.proc)
        self._reader.join(timeout=5)
        return self.log
