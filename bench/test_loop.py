"""9. The test loop's turnaround: from saving a fix to the test's result, in a running
``pytest --reload-watch`` (and ``--reload-loop``) session, against starting pytest again.

    python bench/test_loop.py [--python PY] [--fixes 10] [--restarts 5]

A small project in a temporary directory: ``shop/pricing.py``, whose imports take about a
second (Django set up with the admin, auth and sessions apps, Django's forms, models and test
case, pydantic with a model, SQLAlchemy with a declarative model: real libraries from PyPI,
``bench/requirements.txt``), and ``tests/test_pricing.py``, whose tests ``test_0`` ...
each fail until ``pricing.f_<k>`` is fixed. Real pytest processes, reading what they print
from a pipe:

- ``watch``: ``pytest -v --reload-watch``. For each test in turn: once the session says it
  waits for a save, the fix of that test's function is saved (the whole module written
  again), timed from just before the write to the moment ``PASSED`` arrives on the pipe;
- ``loop``: ``pytest -v --reload-loop``: the same, the session waiting in pdb; the fix is
  saved, then ``c`` typed, timed the same way;
- ``restart``: the fix already saved, ``pytest -v tests/test_pricing.py::test_0`` started
  anew, timed from the start of the process to ``PASSED`` on its pipe (what a developer
  without the loop waits for after each save).

The ratio is the restart's median over the loop's: how many times sooner the result comes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import child_env, summary

__all__ = ["measure", "project"]

IMPORTS = """\
import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    )
    django.setup()

import pydantic
import sqlalchemy
import sqlalchemy.dialects.postgresql
from django import forms
from django.contrib.admin import ModelAdmin
from django.contrib.auth.models import User
from django.db import models
from django.test import SimpleTestCase
from sqlalchemy import orm


class Base(orm.DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id = orm.mapped_column(sqlalchemy.Integer, primary_key=True)


class Order(pydantic.BaseModel):
    id: int
    total: float = 0.0
"""


def pricing(fixed: int, tests: int) -> str:
    """The module with ``f_0`` ... ``f_<fixed - 1>`` fixed."""
    functions = []
    for k in range(tests):
        body = f"2 * x + {k}" if k < fixed else f"x + {k}"
        functions.append(f"def f_{k}(x):\n    return {body}\n")
    return IMPORTS + "\n\n" + "\n\n".join(functions)


def tests_text(tests: int) -> str:
    lines = ["from shop import pricing\n"]
    for k in range(tests):
        lines.append(f"\ndef test_{k}():\n    assert pricing.f_{k}(2) == 4 + {k}\n")
    return "".join(lines)


def project(tests: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="mp_bench_loop_"))
    (root / "shop").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "pricing.py").write_text(pricing(0, tests))
    (root / "tests").mkdir()
    (root / "tests" / "test_pricing.py").write_text(tests_text(tests))
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    return root


class Session:
    """A pytest process whose output is read from a pipe by a thread, each piece stamped."""

    def __init__(self, python: str, root: Path, args: list[str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [python, "-m", "pytest", "-v", "-p", "no:cacheprovider", *args],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**child_env(), "COLUMNS": "200"},
        )
        self.text = ""
        self.stamps: list[tuple[int, float]] = []  # (end offset in text, arrival)
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            now = time.perf_counter()
            with self.changed:
                if chunk:
                    self.text += chunk.decode(errors="replace")
                    self.stamps.append((len(self.text), now))
                else:
                    self.stamps.append((len(self.text), now))
                    self.text += "\0"  # the end
                self.changed.notify_all()
            if not chunk:
                return

    def wait_for(self, pattern: str, start: int, timeout: float = 120) -> tuple[int, float]:
        """The end offset of the first match of ``pattern`` at or after ``start``, and when
        the piece of output that completed it arrived."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                match = regex.search(self.text, start)
                if match:
                    arrived = next(t for end, t in self.stamps if end >= match.end())
                    return match.end(), arrived
                if self.text.endswith("\0") or time.monotonic() > deadline:
                    tail = self.text[-3000:]
                    raise RuntimeError(f"pytest never printed {pattern!r}:\n{tail}")
                self.changed.wait(0.5)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()

    def close(self, timeout: float = 60) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)


def in_session(python: str, mode: str, fixes: int) -> list[float]:
    """Seconds from each save of a fix to ``PASSED``, in one ``--reload-<mode>`` session."""
    root = project(fixes)
    module = root / "shop" / "pricing.py"
    flag = "--reload-watch" if mode == "watch" else "--reload-loop"
    session = Session(python, root, [flag, "tests/test_pricing.py"])
    turnarounds = []
    position = 0
    try:
        for k in range(fixes):
            if mode == "watch":
                ready = rf"waiting for a save to run tests/test_pricing\.py::test_{k}\b"
            else:
                ready = r"\(Pdb\) "
            position, _ = session.wait_for(ready, position)
            time.sleep(0.2)  # as a person would: the session sits waiting
            with session.changed:
                position = len(session.text)
            start = time.perf_counter()
            module.write_text(pricing(k + 1, fixes))
            if mode == "loop":
                session.type("c\n")
            position, arrived = session.wait_for(r"\bPASSED\b", position)
            turnarounds.append(arrived - start)
    finally:
        session.close()
    return turnarounds


def restarts(python: str, count: int) -> dict[str, list[float]]:
    """Seconds from starting pytest on the fixed project to ``PASSED``, and to its exit."""
    root = project(1)
    (root / "shop" / "pricing.py").write_text(pricing(1, 1))
    result: list[float] = []
    exits: list[float] = []
    for _ in range(count):
        session = Session(python, root, ["tests/test_pricing.py::test_0"])
        _, arrived = session.wait_for(r"\bPASSED\b", 0)
        result.append(arrived - session.started)
        session.close()
        exits.append(time.perf_counter() - session.started)
    return {"result": result, "exit": exits}


def measure(python: str, *, fixes: int = 10, restarts_: int = 5) -> dict[str, Any]:
    runs = {
        "watch": in_session(python, "watch", fixes),
        "loop": in_session(python, "loop", fixes),
    }
    restart = restarts(python, restarts_)
    results: dict[str, Any] = {mode: summary(values) for mode, values in runs.items()}
    for mode, values in runs.items():
        results[mode]["first"] = values[0]  # the session's first reload also indexes sources
    results["restart"] = summary(restart["result"])
    results["restart_exit"] = summary(restart["exit"])
    base = results["restart"]["median"]
    for mode in runs:
        ours = results[mode]["median"]
        results[mode]["ratio"] = base / ours if ours else None
    results["raw"] = {**runs, "restart": restart["result"]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a bench virtualenv's python")
    parser.add_argument("--fixes", type=int, default=10)
    parser.add_argument("--restarts", type=int, default=5)
    args = parser.parse_args()
    r = measure(args.python, fixes=args.fixes, restarts_=args.restarts)
    for mode in ("watch", "loop"):
        print(
            f"--reload-{mode}: median {r[mode]['median'] * 1000:.0f} ms, "
            f"p95 {r[mode]['p95'] * 1000:.0f} ms, {r[mode]['ratio']:.0f}x sooner than a restart"
        )
    print(
        f"restart: median {r['restart']['median'] * 1000:.0f} ms to the result "
        f"({statistics.median(r['raw']['restart']) * 1000:.0f} ms), "
        f"{r['restart_exit']['median'] * 1000:.0f} ms to exit"
    )


if __name__ == "__main__":
    main()
