"""Attach to a program that is already running: ``python -m mighty_patcher attach PID``.

CPython 3.14 can run a file in another live interpreter: ``sys.remote_exec(pid, path)``
(PEP 768) writes the path into the target's main thread state and sets its eval breaker, and
the target runs the file the next time its main thread checks the breaker, between two
bytecodes, as it would run a signal handler. ``attach`` runs a small bootstrap there that
starts an :class:`~mighty_patcher.watch.AutoReloader` on the roots asked for; from then on
every save is applied as under ``python -m mighty_patcher run``.

The handshake goes through a *channel*: a directory made for one request, readable only by
the two processes, ``$TMPDIR/mighty_patcher-<uid>/attach-<pid>-<random>/``:

- ``request.json``: what is asked (attach or detach, the roots, this package's version and
  location), written by the attaching side;
- ``bootstrap.py``: the script handed to ``sys.remote_exec``. It first *claims* the request
  by renaming it (``request.claimed``); if the request is gone (the attaching side gave up
  waiting and cancelled it by renaming it first, atomically), it does nothing at all;
- ``status.json``: the target's answer (written whole, then renamed into place), which the
  attaching side waits for: the confirmation, or a refusal with its reason;
- ``reports.log``: the reload reports, one line each, as on the target's stderr (what
  ``--follow`` prints), and ``detached`` once the reloader is stopped.

:func:`attach` and :func:`detach` run on the attaching side; :func:`serve` runs in the
target, called by the bootstrap, in its main thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import __version__

__all__ = ["AttachError", "Attached", "attach", "detach", "follow", "serve"]

log = logging.getLogger("mighty_patcher.attach")

#: How long the attaching side waits for the target to run the bootstrap, by default.
DEFAULT_TIMEOUT = 15.0
#: How often the attaching side looks for the answer, and for new lines with ``--follow``.
_POLL = 0.02

_RUN_INSTEAD = (
    "To reload it, restart it under the reloader instead: "
    "python -m mighty_patcher run script.py (or run -m module)."
)


class AttachError(Exception):
    """Attaching (or detaching) did not happen; the message says why and what to do."""


# --- the attaching side ------------------------------------------------------------------


@dataclass
class Attached:
    """The target's confirmation."""

    pid: int
    python: str
    executable: str
    package: str
    borrowed: bool
    roots: list[str]
    modules: list[str]
    log: str
    channel: str
    #: Modules whose file changed after they were imported: ``{"module", "file", "why"}``.
    stale: list[dict[str, Any]] = field(default_factory=list)
    #: When nothing is tracked: directories the program's modules were imported from.
    elsewhere: list[str] = field(default_factory=list)
    #: From the call of :func:`attach` to the confirmation.
    seconds: float = 0.0
    #: How long the bootstrap held the target's main thread.
    paused: float = 0.0


def attach(
    pid: int,
    paths: list[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    borrow: bool = True,
    poll: bool = False,
    log_level: int = logging.INFO,
) -> Attached:
    """Starts a reloader in process ``pid`` watching ``paths`` (default: its working
    directory) and returns its confirmation; raises :class:`AttachError` otherwise.

    ``borrow``: when the target cannot import ``mighty_patcher`` itself, load this copy into
    it (from where it is, without changing the target's ``sys.path``)."""
    started = time.monotonic()
    _check_here(pid)
    request = {
        "op": "attach",
        "paths": [os.path.abspath(p) for p in paths] if paths else None,
        "borrow": borrow,
        "poll": poll,
        "log_level": log_level,
        "attacher": os.getpid(),
    }
    status = _exchange(pid, request, timeout)
    attached = Attached(
        pid=pid,
        python=status["python"],
        executable=status["executable"],
        package=status["package"],
        borrowed=status["borrowed"],
        roots=status["roots"],
        modules=status["modules"],
        log=status["log"],
        channel=status["channel"],
        stale=status["stale"],
        elsewhere=status["elsewhere"],
        paused=status["paused"],
    )
    attached.seconds = time.monotonic() - started
    return attached


def detach(pid: int, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Stops the reloader ``attach`` started in process ``pid``; returns the target's answer
    (``roots``, ``reloads``: how many reports it logged)."""
    _check_here(pid)
    return _exchange(pid, {"op": "detach", "attacher": os.getpid()}, timeout)


def follow(
    pid: int,
    attached: Attached,
    out: TextIO | None = None,
    *,
    stop: Callable[[], bool] = lambda: False,
) -> str:
    """Prints the target's reload reports (its ``reports.log``) to ``out`` as they come,
    until the reloader is detached or the process ends; returns which (``"detached"``,
    ``"exited"``, or ``"stopped"`` when ``stop()`` said so)."""
    out = out if out is not None else sys.stdout
    channel = Path(attached.channel)
    with open(attached.log, encoding="utf-8", errors="replace") as reports:
        pending = ""
        while True:
            chunk = reports.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    print(line, file=out, flush=True)
                continue
            if (channel / "detached").exists():
                # the marker is written after the last report: one more read drains them
                rest = pending + reports.read()
                if rest:
                    print(rest.rstrip("\n"), file=out, flush=True)
                return "detached"
            if not _alive(pid):
                return "exited"
            if stop():
                return "stopped"
            time.sleep(_POLL)


def _check_here(pid: int) -> None:
    """What can be told before the target is touched: this interpreter can send the
    bootstrap, and ``pid`` is another live process that may run a CPython it can reach."""
    remote_exec = getattr(sys, "remote_exec", None)
    if sys.version_info < (3, 14) or remote_exec is None:
        raise AttachError(_needs_314(pid))
    if pid <= 0 or pid == os.getpid():
        raise AttachError(f"{pid} is not the pid of another process")
    if not _alive(pid):
        raise AttachError(f"there is no process {pid}")
    enabled: Callable[[], bool] = getattr(sys, "is_remote_debug_enabled", lambda: True)
    if not enabled():
        raise AttachError(_disabled_here())
    version, _, exe = _target_python(pid)
    if version is not None and _minor(version) < (3, 14):
        raise AttachError(
            f"process {pid} runs Python {version} ({exe}): attach needs CPython 3.14 or later "
            f"in the target (it sends its bootstrap with sys.remote_exec, PEP 768, new in 3.14)."
            f" {_RUN_INSTEAD}"
        )


def _exchange(pid: int, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Sends ``request`` to the target through a new channel and returns its answer, or
    raises :class:`AttachError` with the reason it gave (or why it could not be asked)."""
    op = request["op"]
    channel = _new_channel(pid, op)
    request = {
        **request,
        "version": __version__,
        "package": str(Path(__file__).resolve().parent),
        "channel": str(channel),
        "log": str(channel / "reports.log"),
    }
    scheduled = False
    status: dict[str, Any] | None = None
    try:
        (channel / "request.json").write_text(json.dumps(request), encoding="utf-8")
        bootstrap = channel / "bootstrap.py"
        bootstrap.write_text(BOOTSTRAP.replace("CHANNEL", repr(str(channel))), encoding="utf-8")
        scheduled = True  # from here on, as if it were (an interrupt may come in between)
        try:
            getattr(sys, "remote_exec")(pid, str(bootstrap))  # noqa: B009 (new in 3.14)
        except (OSError, RuntimeError, ValueError) as exc:
            scheduled = False
            raise AttachError(_explain(pid, exc)) from None
        status = _wait(pid, channel, timeout)
    finally:
        if status is None and scheduled:
            # No answer (a timeout, Ctrl-C): the bootstrap is scheduled and nothing can take
            # it back, so it must find its file when it runs, and then no request (cancelled
            # here, unless claimed just now: then it answers into the channel).
            with contextlib.suppress(OSError):
                os.rename(channel / "request.json", channel / "request.cancelled")
        elif status is None or not status.get("ok") or op != "attach":
            shutil.rmtree(channel, ignore_errors=True)  # an attach keeps its reports.log
    if not status.get("ok"):
        raise AttachError(_refusal(pid, status))
    return status


def _wait(pid: int, channel: Path, timeout: float) -> dict[str, Any]:
    """The target's answer, or :class:`AttachError` when it does not come in time (the
    caller then cancels the request)."""
    answer = channel / "status.json"
    deadline = time.monotonic() + timeout
    claimed = False
    while True:
        if answer.exists():
            with open(answer, encoding="utf-8") as f:
                status: dict[str, Any] = json.load(f)
                return status
        if not _alive(pid):
            raise AttachError(f"process {pid} ended before it answered")
        if not claimed and (channel / "request.claimed").exists():
            # the bootstrap runs: from now on it answers, however long it takes
            claimed = True
            deadline = time.monotonic() + max(timeout, 60.0)
        if time.monotonic() > deadline:
            if claimed:
                raise AttachError(
                    f"process {pid} started the bootstrap but did not answer; its stderr may "
                    f"say why"
                )
            try:
                os.rename(channel / "request.json", channel / "request.cancelled")
            except FileNotFoundError:  # claimed just now
                continue
            raise AttachError(_timed_out(pid, timeout))
        time.sleep(_POLL)


def _runtime_dir() -> Path:
    """``$TMPDIR/mighty_patcher-<uid>``: ours, traversable by the targets (which must reach
    their channel) but not listable."""
    base = Path(tempfile.gettempdir()) / f"mighty_patcher-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o711)
    info = os.lstat(base)
    if not os.path.isdir(base) or os.path.islink(base) or info.st_uid != os.getuid():
        raise AttachError(f"{base} is not a directory of this user's: remove it and try again")
    os.chmod(base, 0o711)
    return base


def _new_channel(pid: int, op: str) -> Path:
    base = _runtime_dir()
    for old in base.glob("*-*-*"):  # the channels of processes that have ended
        match = re.fullmatch(r"(?:attach|detach)-(\d+)-\w+", old.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    channel = Path(tempfile.mkdtemp(prefix=f"{op}-{pid}-", dir=base))
    owner = _owner(pid)
    if owner is not None and owner[0] != os.getuid():
        # A target of another user (we are root, or hold CAP_SYS_PTRACE) writes its answer
        # here: the channel becomes its own.
        try:
            os.chown(channel, *owner)
        except PermissionError:
            os.chmod(channel, 0o777)
    return channel


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except (OSError, IndexError):
        return True


def _owner(pid: int) -> tuple[int, int] | None:
    try:
        info = os.stat(f"/proc/{pid}")
    except OSError:
        return None
    return info.st_uid, info.st_gid


def _target_python(pid: int) -> tuple[str | None, bool, str]:
    """What the target's executable and mapped libraries say of its Python: the version
    ("3.13", or None when they do not say), free-threaded, and the interpreter it was started
    with (:func:`_started_with`; Linux)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = "?"
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        maps = ""
    found = re.search(r"/libpython(\d+\.\d+)(t?)\.so", maps)
    found = found or re.search(r"python(\d+\.\d+)(t?)$", os.path.basename(exe))
    started = _started_with(pid, exe)
    if found is None:
        return None, False, started
    return found.group(1), found.group(2) == "t", started


def _started_with(pid: int, exe: str) -> str:
    """The interpreter process ``pid`` was started with, what its ``sys.executable`` says: a
    virtualenv's ``bin/python``, where mighty_patcher is installed, rather than the base
    interpreter ``exe`` it runs. That is its ``argv[0]`` when it names an executable (resolved
    against its working directory), or the one its ``PATH`` finds for a bare name if it is
    ``exe``; else ``exe``."""
    argv = _proc_list(pid, "cmdline")
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return exe
    name = os.fsdecode(argv[0]) if argv else ""
    if "/" in name:
        candidate: str | None = os.path.normpath(os.path.join(cwd, name))
    else:
        environ = _proc_list(pid, "environ") or []
        paths = os.fsdecode(next((e[5:] for e in environ if e.startswith(b"PATH=")), b""))
        search = os.pathsep.join(os.path.join(cwd, d) for d in paths.split(os.pathsep) if d)
        candidate = shutil.which(name, path=search) if name and search else None
        if candidate is not None and os.path.realpath(candidate) != os.path.realpath(exe):
            candidate = None
    if candidate is None or not os.path.isfile(candidate) or not os.access(candidate, os.X_OK):
        return exe
    return candidate


def _proc_list(pid: int, name: str) -> list[bytes] | None:
    """``/proc/PID/cmdline`` or ``environ``: its NUL-separated entries; None if unreadable."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _needs_314(pid: int) -> str:
    here = sys.version.split()[0]
    version, _, exe = _target_python(pid) if pid > 0 else (None, False, "?")
    text = (
        f"attach needs Python 3.14 or later, here and in the target: it runs its bootstrap "
        f"in the target with sys.remote_exec (PEP 768, new in 3.14). This is Python {here}."
    )
    if version is not None and _minor(version) >= (3, 14):
        text += (
            f" Process {pid} runs Python {version}: run attach with that version, with "
            f"mighty_patcher installed for it ({exe} -m mighty_patcher attach {pid})."
        )
    elif version is not None:
        text += f" Process {pid} runs Python {version}, which cannot be attached to. {_RUN_INSTEAD}"
    else:
        text += (
            f" If process {pid} runs 3.14 or later, run attach with that version; if it runs "
            f"3.10-3.13 it cannot be attached to. {_RUN_INSTEAD}"
        )
    return text


def _disabled_here() -> str:
    if "PYTHON_DISABLE_REMOTE_DEBUG" in os.environ:
        how = (
            "PYTHON_DISABLE_REMOTE_DEBUG is set in this environment: run attach without it "
            "(env -u PYTHON_DISABLE_REMOTE_DEBUG python -m mighty_patcher attach ...)"
        )
    else:
        how = (
            "it was started with -X disable-remote-debug, or built --without-remote-debug: "
            "run attach with a Python that allows it"
        )
    return f"this Python has remote debugging disabled, and cannot send the bootstrap: {how}"


def _explain(pid: int, exc: BaseException) -> str:
    """What ``sys.remote_exec`` refusing means, in terms of the target, and what to do."""
    text = str(exc)
    version, free_threaded, exe = _target_python(pid)
    if isinstance(exc, PermissionError):
        return _permission(pid, exc)
    if "not enabled in the remote process" in text:
        return (
            f"process {pid} has remote debugging disabled ({_why_disabled(pid)}), so nothing "
            f"can be run in it from outside; it cannot be turned on while it runs. Restart it "
            f"without that setting to attach later, or under the reloader: "
            f"python -m mighty_patcher run script.py."
        )
    if "Remote debugging is not enabled" in text:
        return _disabled_here()
    if "Can't send commands" in text or "free-threaded" in text:
        there = f"Python {version}{'t (free-threaded)' if free_threaded else ''}"
        return (
            f"process {pid} runs {there if version else 'another Python version'} ({exe}) and "
            f"this is Python {_this_python()}: attach must run on the same version as the "
            f"target ({text}). Run it with the target's interpreter, with mighty_patcher "
            f"installed for it: {exe} -m mighty_patcher attach {pid}."
        )
    if "PyRuntime" in text or "Can't determine the Python version" in text:
        if version is not None:
            what = f"runs Python {version}, and attach needs CPython 3.14 or later"
        else:
            what = "does not look like a CPython process that sys.remote_exec can reach"
        return f"process {pid} ({exe}) {what} ({text}). {_RUN_INSTEAD}"
    return f"sys.remote_exec could not reach process {pid}: {type(exc).__name__}: {text}"


def _this_python() -> str:
    import sysconfig

    free = " (free-threaded)" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    return sys.version.split()[0] + free


def _why_disabled(pid: int) -> str:
    environ, argv = _proc_list(pid, "environ"), _proc_list(pid, "cmdline")
    if environ is None or argv is None:
        return "PYTHON_DISABLE_REMOTE_DEBUG, -X disable-remote-debug, or a build without it"
    for entry in environ:
        if entry.startswith(b"PYTHON_DISABLE_REMOTE_DEBUG="):
            return f"it was started with {entry.decode(errors='replace')} in its environment"
    for i, arg in enumerate(argv):
        if arg == b"-Xdisable-remote-debug" or (
            arg == b"-X" and i + 1 < len(argv) and argv[i + 1] == b"disable-remote-debug"
        ):
            return "it was started with -X disable-remote-debug"
    return "its Python was built --without-remote-debug, or embeds it with remote debugging off"


def _permission(pid: int, exc: BaseException) -> str:
    """Why Linux does not let this process read and write the target's memory."""
    reasons = []
    owner = _owner(pid)
    if owner is not None and owner[0] != os.getuid():
        reasons.append(
            f"Process {pid} belongs to uid {owner[0]} and this is uid {os.getuid()}: attach "
            f"as that user, or as root."
        )
    if os.getuid() == 0 and not _has_cap_sys_ptrace():
        reasons.append(
            "This runs as root but without the CAP_SYS_PTRACE capability (a container started "
            "without --cap-add=SYS_PTRACE, say)."
        )
    try:
        scope = Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        scope = None
    if scope == "1":
        reasons.append(
            "Yama's ptrace_scope is 1 here (only a process's ancestors may attach to it): run "
            "attach as root (sudo -E), or allow it until the next reboot with "
            "'echo 0 | sudo tee /proc/sys/kernel/yama/ptrace_scope'."
        )
    elif scope == "2":
        reasons.append("Yama's ptrace_scope is 2 here (only root may attach): run attach as root.")
    elif scope == "3":
        reasons.append(
            "Yama's ptrace_scope is 3 here: no process may attach to another until the next reboot."
        )
    reasons.append(
        "A target that is set-user-ID or made itself non-dumpable can be attached to by root "
        "(with CAP_SYS_PTRACE) only."
    )
    return (
        f"not allowed to attach to process {pid} ({exc}): attaching reads and writes the "
        f"target's memory, which Linux allows only where ptrace is allowed. "
        + " ".join(reasons)
        + f" {_RUN_INSTEAD}"
    )


def _has_cap_sys_ptrace() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            caps = next(line.split()[1] for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, IndexError):
        return True  # unknown: say nothing of it
    return bool(int(caps, 16) & (1 << 19))  # CAP_SYS_PTRACE


def _timed_out(pid: int, timeout: float) -> str:
    return (
        f"process {pid} did not run the bootstrap within {timeout:g} s, and the request is "
        f"cancelled (nothing will happen later). sys.remote_exec only schedules it: it runs "
        f"when the target's main thread next executes Python code, and that thread seems "
        f"blocked in a call that does not return (a long time.sleep, input(), a lock or queue "
        f"wait, an event loop idle on I/O). Try again while the program is busy (give it some "
        f"work), or with a longer --timeout."
    )


def _refusal(pid: int, status: dict[str, Any]) -> str:
    """A ``status.json`` saying no, as a sentence."""
    kind = status.get("kind")
    exe = status.get("executable", "?")
    if kind == "not-installed":
        install = f"{exe} -m pip install mighty-patcher=={__version__}"
        if status.get("borrow_error"):
            return (
                f"mighty_patcher cannot be imported in process {pid} ({status.get('error')}), "
                f"and loading this copy into it failed ({status['borrow_error']}). Install it "
                f"in the target's environment, the same version as here: {install}"
            )
        return (
            f"mighty_patcher is not installed in the environment of process {pid} "
            f"({status.get('error')}). Install it there, the same version as here: {install}; "
            f"or attach without --no-borrow, which loads this copy into the target"
        )
    if kind == "version":
        how = "has" if status.get("installed") else "already imported"
        return (
            f"process {pid} {how} mighty_patcher {status.get('version')} (from "
            f"{status.get('location')}), and this is {__version__}: attach with the same "
            f"version ({exe} -m mighty_patcher attach {pid} uses the target's), or install "
            f"{__version__} there ({exe} -m pip install mighty-patcher=={__version__})."
        )
    if kind == "error":
        return f"the bootstrap failed in process {pid}:\n{status.get('error')}"
    return str(status.get("message") or status)


# --- the target --------------------------------------------------------------------------

#: The script ``sys.remote_exec`` runs in the target (CHANNEL is replaced by its path). It
#: runs in the main thread, in a namespace of its own; it must never raise (an exception
#: would be printed on the program's stderr) and must change nothing unless asked.
BOOTSTRAP = """\
# Written by `python -m mighty_patcher attach`, run in this process by sys.remote_exec.
def _mighty_patcher_bootstrap(channel):
    import json, os, sys, time
    started = time.perf_counter()

    def answer(status):
        path = os.path.join(channel, "status.json")
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(status, f)
            os.replace(path + ".tmp", path)
        except OSError:
            pass  # the channel is gone: no one is waiting

    claimed = os.path.join(channel, "request.claimed")
    try:
        os.rename(os.path.join(channel, "request.json"), claimed)
    except OSError:
        return  # cancelled: the attach command gave up waiting
    facts = {"pid": os.getpid(), "python": sys.version.split()[0],
             "executable": sys.executable, "prefix": sys.prefix}
    try:
        with open(claimed, encoding="utf-8") as f:
            request = json.load(f)
        package = sys.modules.get("mighty_patcher")
        borrowed = False
        if package is None and request["op"] != "attach":
            answer({"ok": False, "message": f"mighty_patcher is not attached to process "
                    f"{os.getpid()} (it never imported it)", **facts})
            return
        if package is None:
            import importlib.metadata, importlib.util
            try:
                installed = importlib.metadata.version("mighty-patcher")
                spec = importlib.util.find_spec("mighty_patcher")
            except Exception:
                installed = spec = None
            if spec is not None and installed not in (None, request["version"]):
                # told without importing it: the program is left as it was
                answer({"ok": False, "kind": "version", "version": installed, "installed": True,
                        "location": os.path.dirname(spec.origin or "?"), **facts})
                return
            try:
                import mighty_patcher as package
            except ImportError as exc:
                if not request["borrow"]:
                    answer({"ok": False, "kind": "not-installed", "error": str(exc), **facts})
                    return
                import importlib.util
                location = request["package"]
                try:
                    spec = importlib.util.spec_from_file_location(
                        "mighty_patcher", os.path.join(location, "__init__.py"),
                        submodule_search_locations=[location])
                    package = importlib.util.module_from_spec(spec)
                    sys.modules["mighty_patcher"] = package
                    spec.loader.exec_module(package)
                    borrowed = True
                except BaseException as failure:
                    for name in [n for n in sys.modules if n.split(".")[0] == "mighty_patcher"]:
                        del sys.modules[name]
                    answer({"ok": False, "kind": "not-installed", "error": str(exc),
                            "borrow_error": f"{type(failure).__name__}: {failure}", **facts})
                    return
        if getattr(package, "__version__", None) != request["version"]:
            answer({"ok": False, "kind": "version", "version": getattr(package, "__version__", "?"),
                    "location": os.path.dirname(getattr(package, "__file__", None) or "?"),
                    **facts})
            return
        import importlib
        serve = importlib.import_module("mighty_patcher.attach").serve
        status = serve(request, borrowed=borrowed)
        answer({**facts, **status, "paused": time.perf_counter() - started})
    except BaseException:
        import traceback
        answer({"ok": False, "kind": "error", "error": traceback.format_exc(), **facts})


_mighty_patcher_bootstrap(CHANNEL)
"""


@dataclass
class _Attachment:
    """The reloader ``attach`` started in this process, and what to undo at detach."""

    reloader: Any
    channel: str
    by: int
    since: float
    handler: logging.FileHandler
    handlers_before: list[logging.Handler]
    propagate_before: bool
    level_before: int
    reloads: int = 0


_attachment: _Attachment | None = None
_borrowed = False
_lock = threading.Lock()


def serve(request: dict[str, Any], *, borrowed: bool = False) -> dict[str, Any]:
    """Runs in the target (called by the bootstrap, in its main thread): does what the
    request asks and returns the answer for ``status.json``."""
    global _borrowed
    _borrowed = _borrowed or borrowed
    with _lock:
        if request["op"] == "attach":
            return _attach_here(request)
        if request["op"] == "detach":
            return _detach_here()
    return {"ok": False, "message": f"unknown request {request['op']!r}"}


def _attach_here(request: dict[str, Any]) -> dict[str, Any]:
    global _attachment
    from .report import _Format, logger
    from .watch import AutoReloader, running_reloaders

    refusal = _already(running_reloaders())
    if refusal is not None:
        return {"ok": False, "message": refusal}
    roots = request["paths"] or [os.getcwd()]
    for root in roots:
        if not os.path.isdir(root):
            return {"ok": False, "message": f"{root} is not a directory in process {os.getpid()}"}
    if not request["paths"] and os.path.dirname(os.path.realpath(roots[0])) == roots[0]:
        return {
            "ok": False,
            "message": f"process {os.getpid()} runs in {roots[0]}: give the directories of its "
            f"modules with --path DIR rather than watch the whole file system",
        }
    try:
        handler = logging.FileHandler(request["log"], encoding="utf-8")
    except OSError as exc:
        return {"ok": False, "message": f"process {os.getpid()} cannot write its reports: {exc}"}
    handler.setFormatter(_Format("%(message)s"))
    handlers_before = list(logger.handlers)
    propagate_before, level_before = logger.propagate, logger.level
    try:
        reloader = AutoReloader(
            path=roots, poll=request["poll"], log_level=request["log_level"], start=False
        )
    except OSError as exc:  # WatchError: the inotify watch limit, say
        handler.close()
        return {"ok": False, "message": f"process {os.getpid()} cannot watch {roots}: {exc}"}
    logger.addHandler(handler)
    attachment = _Attachment(
        reloader=reloader,
        channel=request["channel"],
        by=request["attacher"],
        since=time.time(),
        handler=handler,
        handlers_before=handlers_before,
        propagate_before=propagate_before,
        level_before=level_before,
    )
    _attachment = attachment
    try:
        sources = reloader.sources
        files = sources.tracked_files()
        modules = [m.__name__ for path in files for m in sources.modules_for(path)]
        stale = _stale(sources, files)
    except BaseException:
        _detach_here(quiet=True)
        raise

    def count(report: Any) -> None:
        attachment.reloads += 1

    reloader.add_after_reload(count)
    if stale:
        reloader.add_after_reload(_stale_note({s["file"]: s for s in stale}))
    reloader.start()  # its watches were made above: a save made meanwhile is not missed
    log.info(
        "attached by `mighty_patcher attach` (from pid %d): watching %s; %d module%s tracked",
        request["attacher"],
        ", ".join(reloader.paths),
        len(modules),
        "" if len(modules) == 1 else "s",
    )
    if stale:
        log.warning("%s", _stale_text(stale))
    return {
        "ok": True,
        "package": str(Path(__file__).resolve().parent),
        "borrowed": _borrowed,
        "roots": list(reloader.paths),
        "modules": modules,
        "stale": stale,
        "elsewhere": [] if modules else _elsewhere(),
        "log": request["log"],
        "channel": request["channel"],
    }


def _already(running: list[Any]) -> str | None:
    if not running:
        return None
    attachment = _attachment
    roots = ", ".join(p for r in running for p in r.paths)
    if attachment is not None and any(r is attachment.reloader for r in running):
        since = time.strftime("%H:%M:%S", time.localtime(attachment.since))
        return (
            f"mighty_patcher is already attached to process {os.getpid()} (since {since}, by "
            f"pid {attachment.by}), watching {roots}: saves there are applied already. Its "
            f"reports: {attachment.handler.baseFilename} (tail -f it); to stop it: "
            f"python -m mighty_patcher attach --detach {os.getpid()}"
        )
    return (
        f"process {os.getpid()} already runs a reloader that it started itself (an "
        f"AutoReloader, or `mighty_patcher run`), watching {roots}: saves there are applied "
        f"already, and one process runs one reloader"
    )


def _detach_here(*, quiet: bool = False) -> dict[str, Any]:
    global _attachment
    from .report import logger
    from .watch import running_reloaders

    attachment = _attachment
    if attachment is None:
        others = running_reloaders()
        if others:
            return {
                "ok": False,
                "message": f"the reloader in process {os.getpid()} was started by the program "
                f"itself, not by attach: detach stops only what attach started",
            }
        return {"ok": False, "message": f"mighty_patcher is not attached to process {os.getpid()}"}
    reloader = attachment.reloader
    reloader.stop()
    if not quiet:
        reloads = attachment.reloads
        log.info(
            "detached: saves are no longer applied (%d reload%s while attached)",
            reloads,
            "" if reloads == 1 else "s",
        )
    for handler in list(logger.handlers):
        if handler not in attachment.handlers_before:
            logger.removeHandler(handler)
            handler.close()
    logger.propagate, logger.level = attachment.propagate_before, attachment.level_before
    with contextlib.suppress(OSError):
        Path(attachment.channel, "detached").touch()
    _attachment = None
    return {"ok": True, "roots": list(reloader.paths), "reloads": attachment.reloads}


def _elsewhere() -> list[str]:
    """Where the program's own modules come from, when none is under the roots: the
    ``sys.path`` entries (not the standard library, not site-packages) that back them."""
    import sysconfig

    skip = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    found: dict[str, int] = {}
    entries = [os.path.realpath(p or os.getcwd()) for p in sys.path]
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.endswith(".py"):
            continue
        real = os.path.realpath(file)
        for entry in entries:
            if real.startswith(entry + os.sep) and entry not in skip:
                if "site-packages" not in entry and not entry.endswith(".zip"):
                    found[entry] = found.get(entry, 0) + 1
                break
    return sorted(found, key=lambda e: -found[e])[:5]


# --- files that changed between import and attach ----------------------------------------


def _stale(sources: Any, files: list[str]) -> list[dict[str, Any]]:
    """The tracked modules whose running code is not what their file says now:
    ``{"module", "file", "why", "parts"}``. A function or method whose code differs from the
    same one compiled from the text, or that the text no longer has (named in ``parts``); a
    text that does not compile; or, for a module with no function to compare, a file
    modified after the process started (``parts`` empty: what differs is not known).

    A file last modified before the process started is what it imported: it is not compiled
    again (that keeps attaching to a large program quick: this runs in its main thread)."""
    started = _process_started()
    found = []
    for path in files:
        text = sources.baseline(path)
        if text is None:
            continue
        try:
            modified = os.stat(path).st_mtime
        except OSError:
            continue
        # The start time is known to the second: it may be up to 1 s early, never later.
        if started is not None and modified < started:
            continue
        for module in sources.modules_for(path):
            running = _functions(module, path)
            why, parts = _differs(running, module, path, text)
            if why is None and not running and started is not None and modified > started + 2:
                why = "modified after the program started"
            if why is not None:
                found.append({"module": module.__name__, "file": path, "why": why, "parts": parts})
    return found


def _stale_text(stale: list[dict[str, Any]]) -> str:
    from .report import relative

    listed = "; ".join(f"{relative(s['file'])} ({s['module']}: {s['why']})" for s in stale)
    return (
        f"these files changed after they were imported: {listed}. What runs is still what "
        f"was imported; the text read now is the baseline, so a save applies what it changes "
        f"from that text, and the parts named keep running their imported version until they "
        f"are edited (or the program restarts)"
    )


def _stale_note(stale: dict[str, dict[str, Any]]) -> Callable[[Any], None]:
    """An after-reload hook: the first reload of a stale file says which of its parts still
    run the version imported before attach (those this save did not patch)."""
    from .report import relative

    said: set[str] = set()

    def note(report: Any) -> None:
        entry = stale.get(report.file)
        if entry is None or report.file in said or not report.ok:
            return
        said.add(report.file)
        done = {*report.patched, *report.deleted, *report.rerun}
        left = [p for p in entry["parts"] if p not in done]
        if entry["parts"] and not left:
            return
        what = _names(left) if left else "what this save did not change"
        log.warning(
            "note: %s had changed between its import and attach (%s); %s still run%s as imported",
            relative(report.file),
            entry["why"],
            what,
            "s" if len(left) == 1 or not left else "",
        )

    return note


def _process_started() -> float | None:
    """When this process started, in seconds since the epoch (Linux), else None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK") - 0.05  # a tick's error, early
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _functions(module: types.ModuleType, path: str) -> dict[str, types.CodeType]:
    """The code of the module's functions and methods defined in ``path``, by qualified
    name (through decorators' ``__wrapped__``, properties, static and class methods)."""
    real = os.path.realpath(path)
    found: dict[str, types.CodeType] = {}
    seen: set[int] = set()

    def add(value: Any) -> None:
        for _ in range(8):
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            elif isinstance(value, property):
                for accessor in (value.fget, value.fset, value.fdel):
                    add(accessor)
                return
            else:
                break
        depth = 0
        while value is not None and depth < 8:
            code = getattr(value, "__code__", None)
            if isinstance(code, types.CodeType) and isinstance(value, types.FunctionType):
                if code.co_filename == path or os.path.realpath(code.co_filename) == real:
                    found.setdefault(_qualname(code), code)
                    return
            value = getattr(value, "__wrapped__", None)
            depth += 1

    def walk(namespace: dict[str, Any]) -> None:
        for value in list(namespace.values()):
            if isinstance(value, type):
                if getattr(value, "__module__", None) == module.__name__ and id(value) not in seen:
                    seen.add(id(value))
                    walk(dict(vars(value)))
            else:
                add(value)

    walk(module.__dict__)
    return found


def _fingerprint(code: types.CodeType) -> tuple[Any, ...]:
    """What a code object does, without where its lines are (moved code is not changed)."""
    consts = tuple(
        _fingerprint(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c))
        for c in code.co_consts
    )
    return (
        code.co_code,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_flags,
        consts,
    )


def _qualname(code: types.CodeType) -> str:
    name: str = getattr(code, "co_qualname", code.co_name)  # 3.11+
    return name


def _compiled(code: types.CodeType) -> Iterator[types.CodeType]:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield const
            yield from _compiled(const)


def _differs(
    running: dict[str, types.CodeType], module: types.ModuleType, path: str, text: str
) -> tuple[str | None, list[str]]:
    """Why the module's functions (``running``) are not what ``text`` compiles to, and which
    they are; (None, []) when they are."""
    if not running:
        return None, []
    try:
        fresh = compile(text, getattr(module, "__file__", None) or path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        return f"its text does not compile now: {exc}", []
    by_name: dict[str, list[tuple[Any, ...]]] = {}
    for code in _compiled(fresh):
        by_name.setdefault(_qualname(code), []).append(_fingerprint(code))
    changed, gone = [], []
    for name, code in running.items():
        if name not in by_name:
            gone.append(name)
        elif _fingerprint(code) not in by_name[name]:
            changed.append(name)
    parts = []
    if changed:
        parts.append(f"{_names(changed)} differ{'s' if len(changed) == 1 else ''}")
    if gone:
        parts.append(f"{_names(gone)} no longer in the file")
    return ("; ".join(parts) or None), sorted(changed + gone)


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
