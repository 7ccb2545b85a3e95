"""The reload engine: from a saved file to patched modules, all or nothing per file.

For one file: read it; find the imported modules it backs; plan the change against the
source last applied (a syntax error stops here, nothing changed); apply the plan to every
one of those modules inside one transaction, with the thread marked as reloading; on any
exception roll everything back and report file, line and the line's text. After a success,
rebind ``from m import name`` copies in other watched modules that still hold the old value,
and re-run the statements there that read them.
"""

from __future__ import annotations

import ast
import importlib.util
import linecache
import os
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterable
from typing import Any

from . import mighty_patcher as native
from .applier import Applier
from .planner import Plan, plan_module
from .report import ReloadReport, logger
from .sources import Sources, read_source, resolve
from .transaction import Transaction

__all__ = ["Engine"]

_MISSING: Any = object()
BeforeHook = Callable[[str, list[types.ModuleType]], None]
AfterHook = Callable[[ReloadReport], None]


class Engine:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.lock = threading.RLock()
        self.before: list[BeforeHook] = []
        self.after: list[AfterHook] = []
        self._graveyards: dict[str, dict[str, Any]] = {}
        self._imports: dict[str, tuple[str, list[tuple[str, str, str]]]] = {}

    # --- entry points ----------------------------------------------------------------------

    def reload_paths(self, paths: Iterable[str]) -> list[ReloadReport]:
        """Applies each changed file (in import order); one failing does not stop the rest."""
        order = {f: i for i, f in enumerate(self.sources.tracked_files())}
        reports = []
        for path in sorted({resolve(p) for p in paths}, key=lambda p: order.get(p, len(order))):
            reports += self.reload_file(path)
        return reports

    def reload_changed(self) -> list[ReloadReport]:
        """Applies every watched file whose text differs from the source last applied."""
        changed = []
        for path in self.sources.tracked_files():
            try:
                text = read_source(path)
            except (OSError, UnicodeDecodeError, SyntaxError):
                changed.append(path)
                continue
            if text != self.sources.baseline(path):
                changed.append(path)
        return self.reload_paths(changed)

    def reload_file(self, path: str) -> list[ReloadReport]:
        with self.lock:
            modules = self.sources.modules_for(path)
            if not modules:
                logger.debug("%s changed but backs no imported module: not executed", path)
                return []
            name = ", ".join(m.__name__ for m in modules)
            start = time.perf_counter()
            try:
                source = read_source(path)
            except FileNotFoundError:
                logger.warning("%s was deleted; %s keeps running its last version", path, name)
                return []
            except (OSError, UnicodeDecodeError, SyntaxError) as exc:
                return [self._failed(name, path, start, f"cannot read the file: {exc}")]
            baseline = self.sources.baseline(path)
            if not source.strip() and baseline and baseline.strip():
                source = self._confirm_empty(path, source)
            if source == baseline:
                return []
            try:
                plan = plan_module(
                    baseline, source, path, is_main=any(m.__name__ == "__main__" for m in modules)
                )
            except SyntaxError as exc:
                return [self._failed(name, path, start, _syntax_error(exc, source))]
            report = ReloadReport(module=name, file=path)
            self._call_before(path, modules)
            before = {m.__name__: dict(m.__dict__) for m in modules}
            if not self._apply(plan, modules, path, baseline, source, report):
                report.seconds = time.perf_counter() - start
                self._finish(report)
                return [report]
            self.sources.remember(path, source)
            linecache.checkcache(path)
            report.seconds = time.perf_counter() - start
            self._finish(report)
            return [report, *self._rebind_copies(modules, before)]

    #: How long a file that reads as empty must stay empty before it is applied as such.
    empty_grace = 0.25

    def _confirm_empty(self, path: str, source: str) -> str:
        """A file that suddenly reads as empty is more often half-written (truncated by a
        writer not yet done) than emptied on purpose: read it again after a grace period."""
        time.sleep(self.empty_grace)
        try:
            return read_source(path)
        except (OSError, UnicodeDecodeError, SyntaxError):
            return source

    # --- applying --------------------------------------------------------------------------

    def _apply(
        self,
        plan: Plan,
        modules: list[types.ModuleType],
        path: str,
        baseline: str | None,
        source: str,
        report: ReloadReport,
    ) -> bool:
        txn = Transaction()
        old_lines = (baseline or "").splitlines(keepends=True)
        new_lines = source.splitlines(keepends=True)
        try:
            with native.reloading():
                appliers: list[Applier] = []
                for module in modules:
                    applier = Applier(
                        module=module,
                        path=path,
                        plan=plan,
                        old_lines=old_lines,
                        new_lines=new_lines,
                        txn=txn,
                        report=report if not appliers else ReloadReport(module.__name__, path),
                        graveyard=self._graveyards.setdefault(module.__name__, {}),
                    )
                    applier.apply()
                    appliers.append(applier)
                for applier in appliers:
                    applier.move_closures()
        except BaseException as exc:
            problems = txn.rollback()
            report.ok = False
            report.error = _runtime_error(exc, path, new_lines)
            if problems:
                report.error += "\n  could not fully restore: " + "; ".join(problems)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return False
        return True

    def _rebind_copies(
        self, modules: list[types.ModuleType], before: dict[str, dict[str, Any]]
    ) -> list[ReloadReport]:
        """``from m import name [as alias]`` copies in other watched modules that still hold
        the value ``name`` had before the reload get the new one; the statements there that
        read the alias re-run."""
        names = {m.__name__ for m in modules}
        changes: dict[str, tuple[Any, Any]] = {}
        for module in modules:
            saved = before.get(module.__name__, {})
            for key in set(saved) | set(module.__dict__):
                old, new = saved.get(key, _MISSING), module.__dict__.get(key, _MISSING)
                if old is not new and new is not _MISSING and old is not _MISSING:
                    changes[key] = (old, new)
        if not changes:
            return []
        reports = []
        for other_path in self.sources.tracked_files():
            for other in self.sources.modules_for(other_path):
                if other.__name__ in names:
                    continue
                rebound = []
                for alias, source_module, name in self._import_table(other_path, other):
                    if source_module not in names:
                        continue
                    pairs = changes.items() if name == "*" else [(name, changes.get(name))]
                    for member, change in pairs:
                        if change is None or (name == "*" and member.startswith("_")):
                            continue
                        target = member if name == "*" else alias
                        if other.__dict__.get(target, _MISSING) is change[0]:
                            other.__dict__[target] = change[1]
                            rebound.append(target)
                if rebound:
                    reports.append(self._follow_rebinding(other, other_path, rebound))
        return reports

    def _follow_rebinding(
        self, module: types.ModuleType, path: str, rebound: list[str]
    ) -> ReloadReport:
        start = time.perf_counter()
        report = ReloadReport(module=module.__name__, file=path, rebound=sorted(rebound))
        source = self.sources.baseline(path)
        if source is not None:
            plan = plan_module(
                source, source, path, seeds=rebound, is_main=module.__name__ == "__main__"
            )
            if plan.changed:
                self._apply(plan, [module], path, source, source, report)
        report.seconds = time.perf_counter() - start
        self._finish(report)
        return report

    def _import_table(self, path: str, module: types.ModuleType) -> list[tuple[str, str, str]]:
        """(alias, absolute module name, imported name or '*') of the module's top-level
        ``from ... import`` statements, cached by source text."""
        source = self.sources.baseline(path)
        if source is None:
            return []
        cached = self._imports.get(path)
        if cached is not None and cached[0] is source:
            return cached[1]
        table = []
        try:
            tree = ast.parse(source, path)
        except SyntaxError:
            tree = ast.Module(body=[], type_ignores=[])
        package = getattr(module, "__package__", None) or ""
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                try:
                    absolute = importlib.util.resolve_name(
                        "." * node.level + (node.module or ""), package
                    )
                except (ImportError, ValueError):
                    continue
                for alias in node.names:
                    table.append((alias.asname or alias.name, absolute, alias.name))
        self._imports[path] = (source, table)
        return table

    # --- reporting -------------------------------------------------------------------------

    def _failed(self, name: str, path: str, start: float, error: str) -> ReloadReport:
        report = ReloadReport(module=name, file=path, ok=False, error=error)
        report.seconds = time.perf_counter() - start
        self._finish(report)
        return report

    def _call_before(self, path: str, modules: list[types.ModuleType]) -> None:
        for hook in list(self.before):
            try:
                hook(path, modules)
            except Exception:
                logger.exception("before-reload hook %r failed", hook)

    def _finish(self, report: ReloadReport) -> None:
        report.log()
        for hook in list(self.after):
            try:
                hook(report)
            except Exception:
                logger.exception("after-reload hook %r failed", hook)
        notify = getattr(native, "_notify_reloaded", None)
        if notify is not None:
            try:
                notify(report.as_dict())
            except Exception:
                logger.exception("reload callbacks failed")


def _relative(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _syntax_error(exc: SyntaxError, source: str) -> str:
    line = exc.lineno or 0
    lines = source.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else (exc.text or "").rstrip("\n")
    where = f"{_relative(exc.filename or '?')}:{line}"
    caret = ""
    if exc.offset and text:
        caret = "\n    " + " " * (exc.offset - 1 - (len(text) - len(text.lstrip()))) + "^"
    return f"SyntaxError: {exc.msg}\n  at {where}\n    {text.strip()}{caret}"


def _runtime_error(exc: BaseException, path: str, lines: list[str]) -> str:
    """``ZeroDivisionError: division by zero`` and the innermost line of the file being
    reloaded that was running."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, SyntaxError):
        return _syntax_error(exc, "".join(lines))
    if not frames:
        return message
    frame = frames[-1]
    line = frame.lineno or 0
    text = lines[line - 1].strip() if 0 < line <= len(lines) else (frame.line or "")
    return f"{message}\n  at {_relative(path)}:{line}\n    {text}"
