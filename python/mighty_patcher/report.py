"""What a reload did, as data (hooks and the C API get it as a dict) and as one log line."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ReloadReport", "install_default_handler", "logger", "relative", "show_pid"]

logger = logging.getLogger("mighty_patcher")


def relative(path: str) -> str:
    """``path`` relative to the current directory when it is below it, else as it is."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


@dataclass
class ReloadReport:
    module: str
    file: str
    ok: bool = True
    patched: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)
    rebound: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    #: Live instances brought to their class's new state: ``Cart.extra on 3 instances``.
    migrated: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    #: Changed statements of a running module (the ``__main__`` script): not run, they take
    #: effect at the next start (``app.py:12 "cart = Cart(3)"``).
    deferred: list[str] = field(default_factory=list)
    #: Unchanged statements that read a rebound name and were not run again (not a binding,
    #: or in a running module): ``b.py:7 "for i in range(3):" reads RATE``.
    not_rerun: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    #: The process that applied it (every process of a multi-process program reloads).
    pid: int = field(default_factory=os.getpid)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """``reloaded pkg.mod: patched f, C.m; added g; 1.8 ms`` or the failure."""
        if not self.ok:
            return (
                f"reload of {self.module} failed; it keeps running its previous version\n"
                f"{self.error}"
            )
        parts = []
        for label, names in (
            ("patched", self.patched),
            ("added", self.added),
            ("deleted", self.deleted),
            ("re-ran", self.rerun),
            ("rebound", self.rebound),
            ("moved", self.moved),
            ("filled", self.migrated),
        ):
            if names:
                shown = names if len(names) <= 8 else [*names[:6], f"and {len(names) - 6} more"]
                parts.append(f"{label} {', '.join(shown)}")
        if self.needs_restart:
            parts.append(f"needs a restart: {'; '.join(self.needs_restart)}")
        if not parts:
            # (statements that read a name another reload rebound, none of them run; a block
            # that runs at the first import only, changed)
            quiet = not self.deferred and not self.not_rerun and not self.notes
            parts.append("no change to apply" if quiet else "nothing run")
        text = f"reloaded {self.module}: {'; '.join(parts)}; {self.seconds * 1000:.1f} ms"
        if self.deferred:
            text += (
                "\n  takes effect at the next start (the module is running, its top-level "
                "statements are not run again): " + "; ".join(self.deferred)
            )
        if self.not_rerun:
            text += "\n  not re-run: " + "; ".join(self.not_rerun)
        if self.notes:
            text += "".join(f"\n  note: {n}" for n in self.notes)
        return text

    def log(self) -> None:
        if not self.ok:
            logger.error(self.summary())
        elif self.needs_restart or self.deferred:
            logger.warning(self.summary())
        else:
            logger.info(self.summary())


#: Why log lines name their process, if they do: "child" (this process joined the one that
#: watches), "hub" (processes joined this one). Single-process output has no pid.
_pid_reasons: set[str] = set()


def show_pid(reason: str, on: bool = True) -> None:
    """Log lines say ``[pid N]`` while some reason holds (more than one process reloads)."""
    if on:
        _pid_reasons.add(reason)
    else:
        _pid_reasons.discard(reason)


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "[mighty_patcher] "
        if _pid_reasons:
            prefix += f"[pid {record.process or os.getpid()}] "
        return prefix + super().format(record)


def install_default_handler(level: int = logging.INFO) -> None:
    """A readable handler on stderr for the ``mighty_patcher`` loggers, unless the program
    configured logging itself (a handler on the root logger or on ours)."""
    if logger.handlers or logging.getLogger().handlers:
        if logger.level == logging.NOTSET:
            logger.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
