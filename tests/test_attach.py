"""`python -m mighty_patcher attach PID`: a reloader started inside a program that is already
running, through sys.remote_exec (PEP 768, CPython 3.14+ on both sides).

The programs are plain: a loop calling a function from a module, started without the
reloader and without importing this package, on the base interpreter of the test's
virtualenv (where mighty_patcher is not installed: attach loads its own copy into them). Most
attaches run in the test process through ``cli.main`` (the parent of the program: that is
what Yama's ptrace_scope=1 still allows); ``--follow`` and the refusals that need it run the
real command line. Where this machine does not let the tests attach to their own programs,
they skip, and fail under MIGHTY_PATCHER_REQUIRE_ALL=1 (CI).

These run where the suite runs on 3.14 or later: in CI, the 3.14 and 3.15 rows of
``make matrix``. On 3.10-3.13 only the refusal of an older Python runs."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import other_interpreters, require, sigint_as_in_a_terminal
from live import write
from mighty_patcher import __version__
from mighty_patcher.cli import main

ATTACHABLE = sys.version_info >= (3, 14)
needs_314 = pytest.mark.skipif(
    not ATTACHABLE, reason="attach needs CPython 3.14+ (in CI: the 3.14 and 3.15 matrix rows)"
)

LOOP = """
import time
from helper import value
while True:
    print(value(), flush=True)
    time.sleep(0.02)
"""


def helper(word: str) -> str:
    return f"def value():\n    return {word!r}\n"


def base_python() -> str:
    """The interpreter the test's virtualenv was made from: mighty_patcher is not there."""
    return getattr(sys, "_base_executable", None) or sys.executable


def plain_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONFAULTHANDLER": "1", **extra}


class Lines:
    """The lines a process prints, read by a thread: waiting for one has a timeout."""

    def __init__(self, stream) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, wanted: str, timeout: float = 30) -> list[str]:
        """Reads until a line containing ``wanted``; returns the lines read meanwhile."""
        deadline = time.monotonic() + timeout
        read = []
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"waited {timeout} s for {wanted!r}; got {read[-10:]}"
                ) from None
            if line is None:
                raise AssertionError(f"ended before printing {wanted!r}; printed {read[-10:]}")
            self.seen.append(line)
            read.append(line)
            if wanted in line:
                return read


class Program:
    """A plain program in ``root`` (its working directory), run by ``python``."""

    def __init__(
        self,
        root: Path,
        source: str = LOOP,
        *,
        python: str | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        stdin: bool = False,
        cwd: Path | None = None,
    ) -> None:
        self.root = root
        write(root / "prog.py", source)
        if not (root / "helper.py").exists():
            write(root / "helper.py", helper("old"))
        self.stderr_path = root / "stderr.txt"
        self._stderr = open(self.stderr_path, "w")
        if cwd is not None:
            cwd.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [python or base_python(), *args, str(root / "prog.py") if cwd else "prog.py"],
            cwd=cwd or root,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env if env is not None else plain_env(),
        )
        self.pid = self.proc.pid
        self.out = Lines(self.proc.stdout)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._stderr.close()


@pytest.fixture
def programs():
    started: list[Program] = []

    def start(*args, **kwargs) -> Program:
        program = Program(*args, **kwargs)
        started.append(program)
        return program

    yield start
    for program in started:
        program.close()


def not_allowed(err: str) -> None:
    require(
        "not allowed to attach" not in err,
        f"this machine does not let the tests attach to their own programs: {err}",
    )


def attach(capsys, *args: object) -> tuple[int, str, str]:
    """``python -m mighty_patcher attach *args``, in this process (the program's parent)."""
    code = main(["attach", *map(str, args)])
    out, err = capsys.readouterr()
    not_allowed(err)
    return code, out, err


def attach_command(*args: object) -> list[str]:
    """The real command line, in a process of its own."""
    return [sys.executable, "-u", "-m", "mighty_patcher", "attach", *map(str, args)]


def has_mighty_patcher(python: str) -> bool:
    probe = subprocess.run(
        [python, "-c", "import mighty_patcher"], env=plain_env(), capture_output=True
    )
    return probe.returncode == 0


# --- attaching ----------------------------------------------------------------------------


@needs_314
def test_attach_to_a_plain_program_save_detach_and_a_save_is_no_longer_applied(
    tmp_path, programs, capsys
):
    program = programs(tmp_path)
    program.out.until("old")
    code, out, err = attach(capsys, program.pid)
    assert code == 0, err
    root = os.path.realpath(tmp_path)
    assert f"attached to process {program.pid} (Python {sys.version.split()[0]}" in out
    assert f"watching {root}: 2 modules tracked: __main__, helper" in out
    if not has_mighty_patcher(base_python()):
        assert "was loaded into it from" in out and "its sys.path is unchanged" in out
    assert "changed after they were imported" not in out
    assert f"to stop: python -m mighty_patcher attach --detach {program.pid}" in out

    write(tmp_path / "helper.py", helper("new"))
    program.out.until("new")

    code, out, err = attach(capsys, program.pid)
    assert code == 1
    assert f"mighty_patcher is already attached to process {program.pid}" in err
    assert f"attach --detach {program.pid}" in err

    code, out, err = attach(capsys, "--detach", program.pid)
    assert code == 0, err
    assert f"detached from process {program.pid}: saves under {root} are no longer applied" in out
    assert "(1 reload while attached" in out

    write(tmp_path / "helper.py", helper("newer"))
    # Attaching again is accepted, so no reloader runs in the program any more; and the save
    # above was not applied: the running `value` is not what the file says now.
    code, out, err = attach(capsys, program.pid)
    assert code == 0, err
    assert "these files changed after they were imported:\n  helper.py (helper: value differs)" in (
        out
    )
    lines = program.out.until("new")
    assert "newer" not in lines

    write(tmp_path / "helper.py", helper("newest"))
    program.out.until("newest")
    code, out, err = attach(capsys, "--detach", program.pid)
    assert code == 0, err

    stderr = program.stderr
    assert stderr.count("[mighty_patcher] attached by `mighty_patcher attach`") == 2
    assert stderr.count("[mighty_patcher] reloaded helper: patched value") == 2
    assert "[mighty_patcher] detached: saves are no longer applied (1 reload while" in stderr
    assert "newer" not in "".join(program.out.seen)


@needs_314
def test_the_roots_are_the_working_directory_unless_path_names_them(tmp_path, programs, capsys):
    app = tmp_path / "app"
    program = programs(app, cwd=tmp_path / "elsewhere")
    program.out.until("old")
    code, out, err = attach(capsys, program.pid)
    assert code == 0, err
    assert f"watching {os.path.realpath(tmp_path / 'elsewhere')}: 0 modules tracked\n" in out
    assert (
        f"none of its modules comes from there: a save there changes nothing until it imports "
        f"one; its modules come from {os.path.realpath(app)} (to watch those: attach --detach "
        f"{program.pid}, then attach --path DIR {program.pid})"
    ) in out
    code, out, err = attach(capsys, "--detach", program.pid)
    assert code == 0, err
    code, out, err = attach(capsys, "--path", app, program.pid)
    assert code == 0, err
    assert f"watching {os.path.realpath(app)}: 2 modules tracked: __main__, helper" in out
    write(app / "helper.py", helper("new"))
    program.out.until("new")
    code, out, err = attach(capsys, "--detach", program.pid)
    assert code == 0, err


@needs_314
def test_follow_prints_the_reports_until_the_program_is_detached(tmp_path, programs, capsys):
    program = programs(tmp_path)
    program.out.until("old")
    follower = subprocess.Popen(
        attach_command("--follow", program.pid),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        followed = Lines(follower.stdout)
        try:
            followed.until("following its reports")
        except AssertionError:
            follower.wait(timeout=30)
            assert follower.stderr is not None
            err = follower.stderr.read()
            not_allowed(err)
            raise AssertionError(err) from None
        followed.until("[mighty_patcher] attached by `mighty_patcher attach`")
        write(tmp_path / "helper.py", "def value():\n    return 'new'\n")
        program.out.until("new")
        followed.until("[mighty_patcher] reloaded helper: patched value")
        write(tmp_path / "helper.py", "def value(:\n    return 'new'\n")
        followed.until("[mighty_patcher] reload of helper failed; it keeps running")
        followed.until("SyntaxError: invalid syntax")

        code, _, err = attach(capsys, "--detach", program.pid)
        assert code == 0, err
        followed.until("[mighty_patcher] detached: saves are no longer applied (2 reloads")
        followed.until(f"process {program.pid} was detached")
        assert follower.wait(timeout=30) == 0
    finally:
        follower.kill()
        follower.wait()


@needs_314
def test_files_changed_between_import_and_attach_are_named_and_keep_running_as_imported(
    tmp_path, programs, capsys
):
    write(tmp_path / "config.py", "RATE = 1\n")
    write(
        tmp_path / "helper.py", "def value():\n    return 'v1'\n\ndef other():\n    return 'o1'\n"
    )
    source = """
        import time
        import config
        from helper import value, other
        while True:
            print(value(), other(), config.RATE, flush=True)
            time.sleep(0.02)
        """
    program = programs(tmp_path, source)
    program.out.until("v1 o1 1")
    write(
        tmp_path / "helper.py", "def value():\n    return 'v2'\n\ndef other():\n    return 'o2'\n"
    )
    write(tmp_path / "config.py", "RATE = 2\n")
    # A module of values only is judged by its file's time: a minute after the program
    # started, as a later edit is (the start time is known to the second only).
    later = time.time() + 60
    os.utime(tmp_path / "config.py", (later, later))

    code, out, err = attach(capsys, program.pid)
    assert code == 0, err
    assert "these files changed after they were imported:" in out
    assert "  config.py (config: modified after the program started)" in out
    assert "  helper.py (helper: other, value differ)" in out
    assert "keep their imported version until they are edited" in out

    write(
        tmp_path / "helper.py", "def value():\n    return 'v3'\n\ndef other():\n    return 'o2'\n"
    )
    program.out.until("v3 o1 1")  # value as saved; other and RATE as imported
    code, out, err = attach(capsys, "--detach", program.pid)
    assert code == 0, err
    stderr = program.stderr
    assert "these files changed after they were imported: config.py" in stderr
    assert (
        "note: helper.py had changed between its import and attach (other, value differ); "
        "other still runs as imported"
    ) in stderr


@needs_314
def test_a_main_thread_that_never_runs_python_code_times_out_and_the_request_is_cancelled(
    tmp_path, programs, capsys
):
    source = """
        import sys
        sys.addaudithook(
            lambda event, args: event == "cpython.remote_debugger_script"
            and print("the bootstrap ran", flush=True)
        )
        print("waiting", flush=True)
        sys.stdin.readline()
        def tick():
            pass
        for _ in range(1000):  # calls and loops check the eval breaker: the bootstrap runs
            tick()
        print("imported:", "mighty_patcher" in sys.modules, flush=True)
        """
    program = programs(tmp_path, source, stdin=True)
    program.out.until("waiting")
    code, _, err = attach(capsys, "--timeout", "1", program.pid)
    assert code == 1
    assert f"process {program.pid} did not run the bootstrap within 1 s" in err
    assert "the request is cancelled (nothing will happen later)" in err
    assert "blocked in a call that does not return" in err

    # Ctrl-C while the command waits cancels as well. (Its bootstrap replaces the first one
    # in the program's single slot for a scheduled script.)
    attacher = subprocess.Popen(
        attach_command(program.pid),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    channels = Path(tempfile.gettempdir(), f"mighty_patcher-{os.getuid()}")
    deadline = time.monotonic() + 30
    while not list(channels.glob(f"attach-{program.pid}-*/request.json")):
        if attacher.poll() is not None:
            assert attacher.stderr is not None
            err = attacher.stderr.read()
            not_allowed(err)
            raise AssertionError(err)
        assert time.monotonic() < deadline, "the attach command never sent its request"
        time.sleep(0.02)
    attacher.send_signal(signal.SIGINT)
    _, err = attacher.communicate(timeout=30)
    assert attacher.returncode == 130, err
    assert "interrupted; the request is cancelled" in err

    assert program.proc.stdin is not None
    program.proc.stdin.write("wake up\n")
    program.proc.stdin.flush()
    lines = program.out.until("imported:")
    assert lines == ["the bootstrap ran", "imported: False"]
    assert program.proc.wait(timeout=30) == 0
    assert program.stderr == ""  # the late bootstrap found nothing to do and said nothing


# --- refusals -----------------------------------------------------------------------------


@needs_314
@pytest.mark.parametrize(
    ("args", "env", "cause"),
    [
        (
            (),
            {"PYTHON_DISABLE_REMOTE_DEBUG": "1"},
            "PYTHON_DISABLE_REMOTE_DEBUG=1 in its environment",
        ),
        (("-X", "disable-remote-debug"), {}, "-X disable-remote-debug"),
    ],
    ids=["environment", "X-option"],
)
def test_a_program_with_remote_debugging_disabled_is_refused(
    tmp_path, programs, capsys, args, env, cause
):
    program = programs(tmp_path, args=args, env=plain_env(**env))
    program.out.until("old")
    code, out, err = attach(capsys, program.pid)
    assert code == 1 and out == ""
    assert f"process {program.pid} has remote debugging disabled (it was started with {cause})" in (
        err
    )
    assert "cannot be turned on while it runs" in err
    assert "python -m mighty_patcher run script.py" in err


@needs_314
def test_a_program_on_an_older_python_is_refused(tmp_path, programs, capsys):
    older = {v: exe for v, exe in other_interpreters().items() if v < "3.14"}
    require(bool(older), "needs a CPython 3.10-3.13 on this machine")
    version, python = sorted(older.items())[-1]
    program = programs(tmp_path, python=python)
    program.out.until("old")
    code, out, err = attach(capsys, program.pid)
    assert code == 1 and out == ""
    assert f"process {program.pid} runs Python {version}" in err
    assert "attach needs CPython 3.14 or later in the target" in err
    assert "restart it under the reloader instead: python -m mighty_patcher run" in err


@pytest.mark.skipif(ATTACHABLE, reason="the refusal of a Python older than 3.14, here")
def test_attach_from_a_python_older_than_314_is_refused(tmp_path, programs, capsys):
    program = programs(tmp_path, python=sys.executable)
    program.out.until("old")
    code = main(["attach", str(program.pid)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    here = sys.version.split()[0]
    assert "attach needs Python 3.14 or later, here and in the target" in err
    assert f"This is Python {here}. Process {program.pid} runs Python " in err
    assert "python -m mighty_patcher run" in err


@pytest.mark.parametrize("how", ["absolute", "relative", "on-PATH"])
def test_a_refusal_names_the_virtualenv_python_the_program_was_started_with(
    tmp_path, programs, capsys, how
):
    # The refusal of a version on the other side of 3.14 from this one names the target's
    # interpreter: its virtualenv's python (where mighty_patcher would be installed), not the
    # base interpreter that /proc/PID/exe resolves to.
    other = {v: exe for v, exe in other_interpreters().items() if (v >= "3.14") != ATTACHABLE}
    require(bool(other), f"needs a CPython {'3.10-3.13' if ATTACHABLE else '3.14+'} here")
    version, base = sorted(other.items())[0]
    venv = tmp_path / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = {"absolute": str(venv / "bin" / "python"), "relative": "venv/bin/python"}
    env = plain_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    program = programs(tmp_path, python=python.get(how, "python"), env=env)
    program.out.until("old")
    code, out, err = attach(capsys, program.pid)
    assert code == 1 and out == ""
    named = os.path.join(os.path.realpath(venv), "bin", "python")
    assert f"runs Python {version}" in err and os.path.realpath(base) not in err, err
    if ATTACHABLE:
        assert f"process {program.pid} runs Python {version} ({named}): " in err, err
    else:
        assert f"({named} -m mighty_patcher attach {program.pid})" in err, err


@needs_314
def test_what_is_not_a_python_program_or_no_process_is_refused(tmp_path, capsys):
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        code, _, err = attach(capsys, sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert code == 1
    assert f"process {sleeper.pid} (" in err
    assert "does not look like a CPython process that sys.remote_exec can reach" in err
    code, _, err = attach(capsys, sleeper.pid)  # reaped: no such process now
    assert code == 1 and f"there is no process {sleeper.pid}" in err
    code, _, err = attach(capsys, os.getpid())
    assert code == 1 and f"{os.getpid()} is not the pid of another process" in err


@needs_314
def test_without_borrowing_a_program_lacking_the_package_is_told_how_to_install_it(
    tmp_path, programs, capsys
):
    require(
        not has_mighty_patcher(base_python()),
        f"needs an interpreter without mighty_patcher ({base_python()} has it)",
    )
    program = programs(tmp_path)
    program.out.until("old")
    code, out, err = attach(capsys, "--no-borrow", program.pid)
    assert code == 1 and out == ""
    assert f"mighty_patcher is not installed in the environment of process {program.pid}" in err
    assert f"{base_python()} -m pip install mighty-patcher==" in err
    assert "or attach without --no-borrow" in err
    code, out, err = attach(capsys, "--detach", program.pid)
    assert code == 1
    assert f"mighty_patcher is not attached to process {program.pid}" in err
    program.out.until("old")
    assert program.stderr == ""


@needs_314
def test_a_program_running_its_own_reloader_is_refused(tmp_path, programs, capsys):
    program = programs(tmp_path, python=sys.executable, args=("-m", "mighty_patcher", "run"))
    program.out.until("old")
    code, _, err = attach(capsys, program.pid)
    assert code == 1
    assert f"process {program.pid} already runs a reloader that it started itself" in err
    code, _, err = attach(capsys, "--detach", program.pid)
    assert code == 1
    assert "was started by the program itself, not by attach" in err
    write(tmp_path / "helper.py", helper("new"))
    program.out.until("new")  # its own reloader still runs


@needs_314
def test_attach_from_a_python_with_remote_debugging_disabled_says_how_to_run_it(tmp_path, programs):
    program = programs(tmp_path)
    program.out.until("old")
    proc = subprocess.run(
        attach_command(program.pid),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON_DISABLE_REMOTE_DEBUG": "1"},
    )
    assert proc.returncode == 1
    assert "this Python has remote debugging disabled" in proc.stderr
    assert "env -u PYTHON_DISABLE_REMOTE_DEBUG python -m mighty_patcher attach" in proc.stderr


@needs_314
def test_a_program_that_ptrace_rules_protect_is_refused_with_the_reason(tmp_path, programs):
    """A program that made itself non-dumpable may be attached to only with CAP_SYS_PTRACE:
    the attach command runs without it (dropped with setpriv when the tests run as root)."""
    source = """
        import ctypes, time
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE: not dumpable
        from helper import value
        while True:
            print(value(), flush=True)
            time.sleep(0.02)
        """
    command = attach_command()
    if os.getuid() == 0:
        setpriv = shutil.which("setpriv")
        require(setpriv is not None, "needs setpriv (util-linux) to drop CAP_SYS_PTRACE")
        command = [setpriv, "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", "--", *command]
    program = programs(tmp_path, textwrap.dedent(source))
    program.out.until("old")
    proc = subprocess.run([*command, str(program.pid)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout
    assert f"not allowed to attach to process {program.pid}" in proc.stderr
    assert "which Linux allows only where ptrace is allowed" in proc.stderr
    assert "made itself non-dumpable can be attached to by root" in proc.stderr
    if os.getuid() == 0:
        assert "This runs as root but without the CAP_SYS_PTRACE capability" in proc.stderr


@needs_314
def test_a_program_with_another_version_installed_is_refused_without_importing_it(
    tmp_path, programs, capsys
):
    site = tmp_path / "site"
    write(site / "mighty_patcher/__init__.py", "print('imported', flush=True)\n")
    write(
        site / "mighty_patcher-0.0.1.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: mighty-patcher\nVersion: 0.0.1\n",
    )
    program = programs(tmp_path / "app", env=plain_env(PYTHONPATH=str(site)))
    program.out.until("old")
    code, out, err = attach(capsys, program.pid)
    assert code == 1 and out == ""
    assert (
        f"process {program.pid} has mighty_patcher 0.0.1 (from {site / 'mighty_patcher'}), "
        f"and this is {__version__}: attach with the same version"
    ) in err
    assert "-m pip install mighty-patcher==" in err
    program.out.until("old")
    assert "imported" not in program.out.seen
    assert program.stderr == ""
