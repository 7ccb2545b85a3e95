"""Running seeds: the program under the real watcher on one side, a restart on the other.

For each seed: generate a package, write it to a fresh directory, start the program (a
subprocess: a crash there is a failed run, not a dead fuzzer), then for each edit save the
changed files one at a time, in import order (temp file + rename, or written in place),
wait for the watcher's reload of each, probe the program and a fresh interpreter importing
the same files, and compare. A seed stops at its first failure; the failure is minimised
(:mod:`.minimise`) when asked.

An edit whose reload reports ``needs_restart`` is not compared: the program is restarted on
the current files (as its user would) and the seed goes on. So is one whose report lists
statements not re-run by design (an ``if`` or a loop reading a rebound name).
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .generator import Editor, initial
from .model import MODULES

__all__ = ["Crash", "Failure", "Live", "SeedResult", "compare", "restart_probe", "run_seed"]

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.py"
REF_KINDS = ("H ", "I ", "B ", "K ")
#: Generous: nothing here is timed, these only turn a hang into a failure.
TIMEOUT = 60.0


class Crash(Exception):
    """The program died, hung, or answered with an internal error."""


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    return env


class Live:
    """The program being reloaded."""

    def __init__(self, root: Path, package: str, *, reloader_first: bool, log: Path):
        self.root = root
        self.log = log
        self._stderr = open(log, "ab")  # closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(DRIVER), "live", str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=root,
            env=_env(),
        )
        self._buffer = b""
        self.count = 0
        self.baseline: dict[str, str] = {}
        self._answer()
        self.request(
            op="start", package=package, modules=list(MODULES), reloader_first=reloader_first
        )

    def _readline(self, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Crash(f"no answer in {timeout:.0f} s (hung?)\n{self.stderr_tail()}")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                code = self.proc.wait(timeout=10)
                how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
                raise Crash(f"the program {how}\n{self.stderr_tail()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _answer(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self._readline(timeout))
        if "error" in answer:
            raise Crash(f"the program failed to answer: {answer['error']}")
        return answer

    def request(self, read_timeout: float = TIMEOUT, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(command) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the read below says how it ended
        return self._answer(read_timeout)

    def save(self, files: dict[str, str], rng: random.Random) -> list[dict[str, Any]]:
        """Saves each file (path -> text) in turn, waiting until the watcher applied it;
        returns the reload reports."""
        reports: list[dict[str, Any]] = []
        for path, text in files.items():
            write(Path(path), text, in_place=rng.random() < 0.3)
            if self.baseline.get(path) == text:
                continue  # what runs already: the watcher has nothing to apply
            answer = self.request(
                TIMEOUT + 10, op="wait", files=[path], since=self.count, timeout=TIMEOUT
            )
            if not answer["complete"]:
                raise Crash(f"no reload of {path} within {TIMEOUT:.0f} s")
            self.count = answer["count"]
            reports += answer["reports"]
            for report in answer["reports"]:
                if report["file"] == path and report["ok"] and not report["rebound"]:
                    self.baseline[path] = text
        return reports

    def probe(self) -> dict[str, str]:
        results: dict[str, str] = self.request(op="probe")["results"]
        return results

    def stderr_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "exit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def write(path: Path, text: str, *, in_place: bool) -> None:
    """Saves as editors do: in place, or to a temporary file renamed over the old one."""
    if in_place:
        with open(path, "w") as f:
            f.write(text)
        return
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def restart_probe(root: Path, package: str) -> dict[str, Any]:
    """The probe in a fresh interpreter importing the current files."""
    proc = subprocess.run(
        [sys.executable, "-I", "-B", str(DRIVER), "restart", str(root), package, *MODULES],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=root,
        env=_env(),
    )
    if proc.returncode != 0:
        return {
            "import_error": f"the fresh interpreter exited with {proc.returncode}\n{proc.stderr}"
        }
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def compare(live: dict[str, str], fresh: dict[str, str]) -> list[tuple[str, str, str]]:
    """(key, running program, restart) for each difference. References taken before the
    first edit to definitions deleted since (keys only the program has) and definitions
    added since (keys only the restart has) are not compared."""
    diffs = []
    for key in sorted(set(live) | set(fresh)):
        a, b = live.get(key, "<missing>"), fresh.get(key, "<missing>")
        if a == b:
            continue
        if key.startswith(REF_KINDS) and (key not in live or key not in fresh):
            continue
        diffs.append((key, a, b))
    return diffs


def package_files(root: Path, package: str) -> dict[str, Path]:
    return {m: root / package / f"{m}.py" for m in MODULES}


def write_package(root: Path, package: str, files: dict[str, str]) -> None:
    (root / package).mkdir(parents=True, exist_ok=True)
    (root / package / "__init__.py").write_text("")
    for module, path in package_files(root, package).items():
        path.write_text(files[module])


@dataclass
class Failure:
    seed: int
    edit: int  # index of the failing edit in the seed's sequence
    kind: str  # "mismatch", "crash", "reload failed", "invalid program"
    ops: list[str]
    detail: str
    #: file texts: the state before the failing edit, and after it
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    #: every state of the sequence up to ``before`` (for replaying)
    history: list[dict[str, str]] = field(default_factory=list)
    reloader_first: bool = True
    minimal: str | None = None


@dataclass
class SeedResult:
    seed: int
    edits: int = 0  # applied and compared
    excluded: int = 0  # reported as needing a restart: not compared
    by_design: int = 0  # left statements unrun by design, as reported: not compared
    probes: int = 0  # results compared
    failure: Failure | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Session:
    """One program on one directory: start, save states, compare."""

    def __init__(self, workdir: Path, package: str, start: dict[str, str], reloader_first: bool):
        self.root = Path(tempfile.mkdtemp(prefix="run-", dir=workdir)).resolve()
        self.package = package
        write_package(self.root, package, start)
        self.paths = {m: str(p) for m, p in package_files(self.root, package).items()}
        self.live = Live(self.root, package, reloader_first=reloader_first, log=self.root / "log")
        for m in MODULES:
            self.live.baseline[self.paths[m]] = start[m]
        self.files = dict(start)
        self.compared = 0

    def apply(self, files: dict[str, str], rng: random.Random) -> list[dict[str, Any]]:
        changed = {self.paths[m]: files[m] for m in MODULES if files[m] != self.files[m]}
        self.files = dict(files)
        return self.live.save(changed, rng)

    def check(self, reports: list[dict[str, Any]]) -> tuple[str, str] | None:
        """None if the program matches a restart; else (kind, detail)."""
        fresh = restart_probe(self.root, self.package)
        if "import_error" in fresh:
            return "invalid program", fresh["import_error"]
        failed = [r for r in reports if not r["ok"]]
        if failed:
            return "reload failed", "\n".join(f"{r['module']}: {r['error']}" for r in failed)
        live = self.live.probe()
        self.compared = len(fresh["results"])
        diffs = compare(live, fresh["results"])
        if diffs:
            return "mismatch", format_diffs(diffs)
        return None

    def close(self) -> None:
        self.live.close()
        shutil.rmtree(self.root, ignore_errors=True)


def format_diffs(diffs: list[tuple[str, str, str]], limit: int = 12) -> str:
    lines = []
    for key, a, b in diffs[:limit]:
        lines += [f"  {key}", f"    running: {a}", f"    restart: {b}"]
    if len(diffs) > limit:
        lines.append(f"  ... and {len(diffs) - limit} more")
    return "\n".join(lines)


def needs_restart(reports: list[dict[str, Any]]) -> bool:
    return any(r["needs_restart"] for r in reports)


def not_rerun(reports: list[dict[str, Any]]) -> bool:
    """A reload that left, by design, statements reading a rebound name unrun (an ``if`` or
    loop at module level): what they made differs from a restart, and the report says so."""
    return any(r["not_rerun"] for r in reports)


def run_seed(seed: int, edits: int, workdir: Path, *, minimise: bool = True) -> SeedResult:
    """Runs one seed's sequence of ``edits`` edits; stops at the first failure."""
    started = time.perf_counter()
    result = SeedResult(seed)
    package = f"fz{seed}"
    model = initial(seed, package)
    editor = Editor(random.Random(f"edits {seed}"))
    saver = random.Random(f"saves {seed}")
    reloader_first = random.Random(f"start {seed}").random() < 0.5
    files = model.render()
    history = [files]
    session = Session(workdir, package, files, reloader_first)
    try:
        for index in range(edits):
            model, ops = editor.edit(model)
            new = model.render()
            failure = None
            try:
                reports = session.apply(new, saver)
                for r in reports:
                    result.notes += [f"seed {seed} edit {index}: {n}" for n in r["notes"]]
                if needs_restart(reports) or not_rerun(reports):
                    if needs_restart(reports):
                        result.excluded += 1
                    else:
                        result.by_design += 1
                    session.close()
                    session = Session(workdir, package, new, reloader_first)
                    history = [new]
                    continue
                checked = session.check(reports)
            except Crash as exc:
                checked = ("crash", str(exc))
            if checked is not None:
                kind, detail = checked
                failure = Failure(
                    seed, index, kind, ops, detail, files, new, list(history), reloader_first
                )
                result.failure = failure
                break
            result.edits += 1
            result.probes += session.compared
            files = new
            history.append(new)
    finally:
        session.close()
    if result.failure is not None and minimise and result.failure.kind != "invalid program":
        from .minimise import minimise as shrink

        result.failure.minimal = shrink(result.failure, workdir)
    result.seconds = time.perf_counter() - started
    return result
