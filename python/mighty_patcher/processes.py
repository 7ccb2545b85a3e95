"""Every process of a program reloads: forked and spawned children join the watching process.

One process watches the files: the *hub*, the process that made the ``AutoReloader`` (under
``python -m mighty_patcher run``, the one ``run`` started). It owns the program's only
watcher, so the program costs one inotify instance and one watch per directory however many
workers it has (``fs.inotify.max_user_instances`` is 128 per user by default, and a pool
has a worker per core). Every other process of the program joins it over a unix socket:

- a **forked** child (``os.fork``, multiprocessing ``fork`` and ``forkserver``, gunicorn,
  Celery prefork) re-arms its reloader in an ``os.register_at_fork`` hook: it keeps the
  baselines and graveyards it inherited (they describe the modules it inherited), closes
  what it inherited of its parent's watcher and sockets, and its new reloader thread joins
  the hub;
- a **spawned** child of a program run under ``run`` (multiprocessing ``spawn``,
  ``uvicorn --workers``, ``subprocess`` running Python) starts its reloader from the
  ``sitecustomize`` in ``_startup/``, which the ``PYTHONPATH`` that ``run`` sets names, with
  the roots and the hub's address from ``MIGHTY_PATCHER_CHILD``; before any module of the
  program is imported.

The hub applies each batch of saved paths its watcher reports and sends it, numbered, to
every process that joined; each process applies it with its own engine, in its own reloader
thread (a failure in one process changes nothing elsewhere). A process that joins is
answered with the number of the last batch sent so far (``welcome``); if it has not applied
that one (it was forked while a batch was on its way, or it is a spawned child that may have
imported a module before joining), it compares every file it runs with its text on disk
once (``reload_changed``). Applying is idempotent (a file whose text is the baseline is not
applied), so a batch that arrives twice changes nothing the second time; none is lost.

A process whose hub ended (killed, or exited while its children run on) takes over: after a
short grace it watches by itself, with its own watcher, and serves its own children.

Messages are lines of JSON: ``{"hello": pid}`` from a joining process; ``{"welcome": n}``
then ``{"seq": n, "paths": [...]}`` from the hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from . import report

__all__ = [
    "CHILD_ENV",
    "Hub",
    "Upstream",
    "child_spec",
    "start_child",
    "startup_dir",
]

#: The environment variable that tells a spawned Python child to join a hub (JSON).
CHILD_ENV = "MIGHTY_PATCHER_CHILD"
#: The version of what that variable holds and of the messages.
PROTOCOL = 1
#: How long a fork waits for a reload in progress to finish (the child would inherit it
#: half-applied); after that the fork goes ahead and the child compares every file once.
FORK_WAIT = 5.0
#: How long a process whose hub ended waits before it watches by itself (a program ending
#: ends its workers: they should not each start a watcher on the way out).
TAKEOVER_GRACE = 0.5
#: Bytes waiting for a process that does not read them; beyond that it is dropped (and,
#: finding its hub gone, watches by itself).
MAX_BACKLOG = 1 << 20


def startup_dir() -> str:
    """The directory whose ``sitecustomize`` starts a spawned child's reloader."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_startup")


# --- the watcher's descriptors --------------------------------------------------------------

_WATCHER_KINDS = ("anon_inode:inotify", "anon_inode:[eventpoll]", "anon_inode:[eventfd]")


def _anon_fds() -> dict[int, str]:
    """The descriptors of this process that are anonymous inodes, with what they are."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return {}
    found = {}
    for name in names:
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if link.startswith("anon_inode:"):
            found[int(name)] = link
    return found


def made_with_fds(make: Callable[[], Any]) -> tuple[Any, dict[int, str]]:
    """Calls ``make()`` (which makes a native watcher) and returns what it made, with the
    descriptors it opened: the inotify instance, and notify's epoll and eventfd. A forked
    child inherits them; they are its parent's, and it closes them. Only when exactly one
    inotify instance appeared (no other thread made one meanwhile) are they recorded."""
    before = _anon_fds()
    made = make()
    new = {
        fd: link
        for fd, link in _anon_fds().items()
        if before.get(fd) != link and link in _WATCHER_KINDS
    }
    if sum(link == "anon_inode:inotify" for link in new.values()) != 1:
        return made, {}
    return made, new


def close_inherited(fds: dict[int, str]) -> None:
    """In a forked child: closes the parent's watcher descriptors (still what they were)."""
    for fd, link in fds.items():
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == link:
                os.close(fd)
        except OSError:
            pass


def same_user(sock: socket.socket) -> bool:
    """Whether the process at the other end of ``sock`` runs as this one's user (where the
    system tells; elsewhere the socket lives in a private directory)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True
    try:
        import struct

        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, 12))
    except OSError:
        return False
    return bool(uid == os.getuid())


# --- the hub --------------------------------------------------------------------------------


class _Peer:
    __slots__ = ("dead", "inbox", "mask", "out", "pid", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = bytearray()
        self.out = bytearray()
        self.pid: int | None = None  # set by its hello: it then gets the batches
        self.mask = 0
        self.dead = False


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class Hub:
    """Serves the processes that join the watching process: a listening unix socket (an
    abstract address on Linux, else in a private directory), and a daemon thread that
    accepts them (the same user's only), answers their hello and sends what
    :meth:`forward` queued for a process whose socket was full."""

    def __init__(self, seq: int) -> None:
        self._owner = os.getpid()
        self._dir: str | None = None
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if sys.platform == "linux":
                # An abstract address: nothing on disk, so nothing left behind by a program
                # that is killed; who may join is checked with the peer's credentials.
                self.address = f"\0mighty_patcher-{os.getpid()}-{os.urandom(8).hex()}"
            else:
                import tempfile

                self._dir = tempfile.mkdtemp(prefix="mighty_patcher-")
                self.address = os.path.join(self._dir, "hub")
            self._listener.bind(self.address)
            self._listener.listen(socket.SOMAXCONN)
        except OSError:
            self._listener.close()
            if self._dir is not None:
                import shutil

                shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._lock = threading.Lock()
        self._peers: dict[int, _Peer] = {}
        self._seq = seq
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def joined(self) -> list[int]:
        """The pids of the processes that joined and are still connected."""
        with self._lock:
            return [p.pid for p in self._peers.values() if p.pid is not None and not p.dead]

    def start(self) -> None:
        if self._thread is None and not self._closed:
            thread = threading.Thread(target=self._run, name="mighty_patcher hub", daemon=True)
            self._thread = thread
            thread.start()

    def forward(self, paths: Iterable[str], seq: int) -> None:
        """Sends batch ``seq`` to every process that joined (never waits for one)."""
        line = _line({"seq": seq, "paths": sorted(paths)})
        with self._lock:
            self._seq = seq
            waiting = False
            for peer in self._peers.values():
                if peer.pid is not None and not peer.dead:
                    peer.out += line
                    self._flush(peer)
                    waiting |= bool(peer.out) or peer.dead
        if waiting:
            self._wake()

    def close(self) -> None:
        """Ends the thread and every connection, and removes the socket."""
        with self._lock:
            self._closed = True
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        self._release(remove=os.getpid() == self._owner)

    def abandon(self) -> None:
        """In a forked child: lets go of the parent's hub (its descriptors are closed; its
        socket, thread and connections stay the parent's)."""
        self._closed = True
        self._lock = threading.Lock()
        self._release(remove=False)

    def _release(self, *, remove: bool) -> None:
        for peer in list(self._peers.values()):
            peer.sock.close()
        self._peers.clear()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        if remove and self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)
        report.show_pid("hub", False)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _flush(self, peer: _Peer) -> None:
        """Sends what it can of ``peer.out`` now; the lock is held."""
        try:
            while peer.out:
                sent = peer.sock.send(peer.out)
                del peer.out[:sent]
        except BlockingIOError:
            if len(peer.out) > MAX_BACKLOG:
                report.logger.warning(
                    "process %s reads no reloads: it is dropped (%d bytes waiting)",
                    peer.pid,
                    len(peer.out),
                )
                peer.dead = True
        except OSError:
            peer.dead = True

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    self._sync(selector)
                for key, mask in selector.select():
                    try:
                        self._ready(key.fileobj, mask)  # type: ignore[arg-type]
                    except Exception:
                        report.logger.exception("serving the other processes failed")
        except Exception:
            report.logger.exception("serving the other processes failed; they stop reloading")
        finally:
            selector.close()

    def _sync(self, selector: selectors.BaseSelector) -> None:
        """Drops dead peers; asks to write to those with something waiting. Lock held."""
        for fd, peer in list(self._peers.items()):
            if peer.dead:
                if peer.mask:
                    selector.unregister(peer.sock)
                peer.sock.close()
                del self._peers[fd]
                continue
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.out else 0)
            if mask != peer.mask:
                if peer.mask:
                    selector.modify(peer.sock, mask)
                else:
                    selector.register(peer.sock, mask)
                peer.mask = mask
        report.show_pid("hub", any(p.pid is not None for p in self._peers.values()))

    def _ready(self, sock: socket.socket, mask: int) -> None:
        if sock is self._wake_r:
            with contextlib.suppress(OSError):
                while sock.recv(4096):
                    pass
            return
        if sock is self._listener:
            while True:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    return
                if not same_user(conn):
                    conn.close()
                    continue
                conn.setblocking(False)
                with self._lock:
                    self._peers[conn.fileno()] = _Peer(conn)
        with self._lock:
            peer = self._peers.get(sock.fileno())
            if peer is None or peer.dead:
                return
            if mask & selectors.EVENT_WRITE:
                self._flush(peer)
            if mask & selectors.EVENT_READ:
                self._read(peer)

    def _read(self, peer: _Peer) -> None:
        """Lock held."""
        try:
            data = peer.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            peer.dead = True
            if peer.pid is not None:
                report.logger.debug("process %d left", peer.pid)
            return
        peer.inbox += data
        while b"\n" in peer.inbox:
            raw, _, rest = peer.inbox.partition(b"\n")
            peer.inbox[:] = rest
            try:
                message = json.loads(raw)
                pid = int(message["hello"])
            except (ValueError, KeyError, TypeError):
                continue
            if peer.pid is None:
                peer.pid = pid
                peer.out += _line({"welcome": self._seq})
                self._flush(peer)
                report.logger.debug("process %d joined at batch %d", pid, self._seq)


# --- a process that joined ------------------------------------------------------------------


class Upstream:
    """What a process that joined a hub waits on, in place of a watcher (the same
    ``wait``/``stop``/``close``). ``wait`` connects first (``address`` None: there is no hub)
    and returns a batch of paths, ``"welcome"`` (then :attr:`welcome` is the hub's last
    batch), ``"orphaned"`` once the hub is gone, or ``"stop"``."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.welcome = 0
        #: The number of the last batch returned.
        self.seq = 0
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._stopped = False
        self._lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> set[str] | str:
        while True:
            if b"\n" in self._buffer:
                raw, _, rest = self._buffer.partition(b"\n")
                self._buffer[:] = rest
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if "welcome" in message:
                    self.welcome = int(message["welcome"])
                    return "welcome"
                if "paths" in message:
                    self.seq = int(message["seq"])
                    return {str(p) for p in message["paths"]}
                continue
            if self._stopped:
                return "stop"
            sock = self._sock if self._sock is not None else self._connect()
            if sock is None:
                return "stop" if self._stopped else "orphaned"
            try:
                sock.settimeout(timeout)
                data = sock.recv(65536)
            except TimeoutError:
                return "timeout"
            except OSError:
                data = b""
            if not data:
                return "stop" if self._stopped else "orphaned"
            self._buffer += data

    def _connect(self) -> socket.socket | None:
        if self.address is None:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(5.0)
            sock.connect(self.address)
            if not same_user(sock):
                raise ConnectionRefusedError("the process at the hub's address is another user's")
            sock.sendall(_line({"hello": os.getpid()}))
        except OSError:
            sock.close()
            return None
        with self._lock:
            if self._stopped:
                sock.close()
                return None
            self._sock = sock
        return sock

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stop()
        if self._sock is not None:
            self._sock.close()

    def abandon(self) -> None:
        """In a forked child: closes the parent's connection without ending it."""
        self._stopped = True
        self._lock = threading.Lock()
        if self._sock is not None:
            self._sock.close()


# --- fork ----------------------------------------------------------------------------------


class ForkAware(Protocol):
    def _before_fork(self) -> None: ...
    def _after_fork_in_parent(self) -> None: ...
    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_hooked = False


def track(reloader: ForkAware) -> None:
    """Has ``reloader`` told around every ``fork()`` of this process."""
    global _hooked
    if not _hooked:
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
        _hooked = True
    _live.add(reloader)


def untrack(reloader: ForkAware) -> None:
    _live.discard(reloader)


_forking: list[ForkAware] = []


def _before_fork() -> None:
    _forking[:] = list(_live)
    for reloader in _forking:
        try:
            reloader._before_fork()
        except Exception:
            report.logger.exception("preparing the reloader for fork() failed")


def _after_fork_in_parent() -> None:
    for reloader in _forking:
        try:
            reloader._after_fork_in_parent()
        except Exception:
            report.logger.exception("resuming the reloader after fork() failed")
    _forking.clear()


def _after_fork_in_child() -> None:
    forking, _forking[:] = list(_forking), []
    for reloader in forking:
        try:
            reloader._after_fork_in_child()
        except Exception:
            report.logger.exception("re-arming the reloader in a forked process failed")


# --- spawned children -----------------------------------------------------------------------


def child_spec(
    address: str,
    roots: Iterable[str],
    *,
    main: str | None,
    log_level: int,
    options: dict[str, Any],
) -> str:
    """What ``MIGHTY_PATCHER_CHILD`` holds: where the hub is and how to reload."""
    return json.dumps(
        {
            "protocol": PROTOCOL,
            "hub": address,
            "roots": list(roots),
            "main": main,
            "log_level": log_level,
            "options": options,
        }
    )


def with_startup_dir(pythonpath: str | None) -> str:
    """``PYTHONPATH`` with the startup directory first (once)."""
    here = startup_dir()
    parts = [p for p in (pythonpath or "").split(os.pathsep) if p and p != here]
    return os.pathsep.join([here, *parts])


def without_startup_dir(pythonpath: str) -> str:
    here = startup_dir()
    return os.pathsep.join(p for p in pythonpath.split(os.pathsep) if p and p != here)


#: The reloader :func:`start_child` started in this process, if any.
child_reloader: Any = None


def start_child(spec_text: str) -> None:
    """Starts this (spawned) process's reloader, joined to the hub ``spec_text`` names.
    Called by ``_startup/sitecustomize.py`` before the program's modules are imported."""
    global child_reloader
    spec = json.loads(spec_text)
    if spec.get("protocol") != PROTOCOL or child_reloader is not None:
        return
    from .sources import read_source, resolve
    from .watch import AutoReloader

    address = str(spec["hub"])
    report.show_pid("child")
    reloader = AutoReloader(
        [str(r) for r in spec["roots"]],
        log_level=int(spec.get("log_level", 20)),
        watcher_factory=lambda *args, **kwargs: Upstream(address),
        start=False,
        **spec.get("options", {}),
    )
    reloader._applied = None  # what it imports before the welcome is compared once
    # The source a script runs as __main__ (or as __mp_main__, the parent's main script a
    # multiprocessing child runs again) is not imported through the import hook: recorded
    # now, as `run` does for its own script.
    for script in (sys.argv[0] if sys.argv else None, spec.get("main")):
        if isinstance(script, str) and script.endswith(".py") and os.path.isfile(script):
            path = resolve(script)
            if reloader.sources.under_roots(path) and reloader.sources.baseline(path) is None:
                with contextlib.suppress(OSError, UnicodeDecodeError, SyntaxError):
                    reloader.sources.remember(path, read_source(path))
    reloader.start()
    child_reloader = reloader


def stop_child() -> None:
    """Stops the reloader :func:`start_child` started here (a nested ``run`` takes over)."""
    global child_reloader
    if child_reloader is not None:
        child_reloader.stop()
        child_reloader = None
