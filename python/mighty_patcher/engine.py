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
from .applier import Applier, Transform
from .planner import Plan, parsed_tree, plan_module
from .report import ReloadReport, logger
from .sources import Sources, read_source, resolve
from .transaction import Transaction

__all__ = ["Engine"]

_MISSING: Any = object()
BeforeHook = Callable[[str, list[types.ModuleType]], None]
AfterHook = Callable[[ReloadReport], None]


class Engine:
    def __init__(self, sources: Sources, *, transform: Transform | None = None) -> None:
        self.sources = sources
        #: ``transform(tree, path, source) -> tree`` applied to each statement's syntax tree
        #: before it is compiled (see :data:`mighty_patcher.applier.Transform`); ``None``: none.
        self.transform = transform
        self.lock = threading.RLock()
        self.before: list[BeforeHook] = []
        self.after: list[AfterHook] = []
        self._graveyards: dict[str, dict[str, Any]] = {}
        #: By (path, package): the source an import table was made from, and the table.
        self._imports: dict[tuple[str, str], tuple[str, list[tuple[str, str, str]]]] = {}
        #: Files said to be gone (with their directory), not to say it again.
        self._missing: set[str] = set()

    # --- entry points ----------------------------------------------------------------------

    def reload_paths(
        self, paths: Iterable[str], *, texts: dict[str, str] | None = None
    ) -> list[ReloadReport]:
        """Applies each changed file (in import order); one failing does not stop the rest.
        ``texts``: the text of some of the files (resolved paths), just read."""
        with self.lock:
            tracked = self.sources.tracked_files()
            order = {f: i for i, f in enumerate(tracked)}
            wanted = {resolve(p) for p in paths}
            wanted -= self._gone_directories(wanted, tracked)
            reports = []
            for path in sorted(wanted, key=lambda p: order.get(p, len(order))):
                reports += self.reload_file(path, text=(texts or {}).get(path))
            return reports

    def _gone_directories(self, paths: set[str], tracked: list[str]) -> set[str]:
        """A directory deleted or renamed away takes its files along (a rename sends no event
        for them): says once which modules keep running their last version, and returns the
        paths that says it all for."""
        tops: set[str] = set()
        for path in paths:
            if os.path.lexists(path):
                continue
            top = path
            while True:
                parent = os.path.dirname(top)
                if parent == top or os.path.lexists(parent) or not self.sources.under_roots(parent):
                    break
                top = parent
            if top != path or not path.endswith(".py"):  # a file alone: reload_file says so
                tops.add(top)
        handled: set[str] = set()
        for top in sorted(tops):
            below = top.rstrip(os.sep) + os.sep
            handled |= {p for p in paths if p == top or p.startswith(below)}
            files = [f for f in tracked if f.startswith(below) and not os.path.lexists(f)]
            news = [f for f in files if f not in self._missing]
            if news:
                self._missing.update(news)
                names = [m.__name__ for f in news for m in self.sources.modules_for(f)]
                logger.warning(
                    "%s was deleted or renamed away; %s keep%s running their last version",
                    _relative(top),
                    ", ".join(names),
                    "s" if len(names) == 1 else "",
                )
        return handled

    def reload_changed(self) -> list[ReloadReport]:
        """Applies every watched file whose text differs from the source last applied. A
        reload another thread is making finishes first (its copies rebound, its hooks run):
        when this returns, every save made before the call is applied."""
        with self.lock:
            changed = []
            texts: dict[str, str] = {}
            for path in self.sources.tracked_files():
                try:
                    if os.stat(path).st_size > self.max_size:
                        raise OSError("too large")  # reload_file says so
                    text = read_source(path)
                except (OSError, UnicodeDecodeError, SyntaxError):
                    changed.append(path)
                    continue
                if text != self.sources.baseline(path):
                    changed.append(path)
                    texts[path] = text
            return self.reload_paths(changed, texts=texts)

    def reload_file(self, path: str, *, text: str | None = None) -> list[ReloadReport]:
        """Applies one file. ``text``: its text, just read (checked not too large); None:
        read it here."""
        with self.lock:
            if not self.sources.under_roots(path):
                # e.g. reached through a symbolic link inside a root: never followed out
                logger.debug("%s is outside the watched roots: not reloaded", path)
                return []
            modules = self.sources.modules_for(path)
            if not modules:
                logger.debug("%s changed but backs no imported module: not executed", path)
                return []
            name = ", ".join(m.__name__ for m in modules)
            start = time.perf_counter()
            try:
                if text is None:
                    size = os.stat(path).st_size
                    if size > self.max_size:
                        error = _too_large(path, size, self.max_size)
                        return [self._failed(name, path, start, error)]
                    text = read_source(path)
                source = text
                self._missing.discard(path)
            except FileNotFoundError:
                if path not in self._missing:
                    self._missing.add(path)
                    logger.warning("%s was deleted; %s keeps running its last version", path, name)
                return []
            except UnicodeDecodeError as exc:
                return [self._failed(name, path, start, _not_utf8(path, exc))]
            except (OSError, SyntaxError) as exc:
                error = f"cannot read {_relative(path)}: {exc}"
                return [self._failed(name, path, start, error)]
            baseline = self.sources.baseline(path)
            if not source.strip() and baseline and baseline.strip():
                source = self._confirm_empty(path, source)
                if not source.strip():
                    return [self._failed(name, path, start, _empty(path))]
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
            return [report, *self._rebind_copies(modules, before, _written(plan))]

    #: How long a file that reads as empty is given to fill up before it is refused.
    empty_grace = 0.25
    #: Larger files are not read: parsing 50 MB of statements takes a minute and gigabytes.
    max_size = 10 * 1024 * 1024

    def _confirm_empty(self, path: str, source: str) -> str:
        """A file that suddenly reads as empty is more often half-written (truncated by a
        writer not yet done) or lost than emptied on purpose: read it again after a grace
        period; still empty, it is refused (a comment in it empties the module)."""
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
                        transform=self.transform,
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
        self,
        modules: list[types.ModuleType],
        before: dict[str, dict[str, Any]],
        in_place: frozenset[str] = frozenset(),
        chain: frozenset[str] = frozenset(),
    ) -> list[ReloadReport]:
        """``from m import name [as alias]`` copies in other watched modules that still hold
        the value ``name`` had before the reload get the new one; the statements there that
        read the alias re-run (also when ``name`` is in ``in_place``: redefined, or run again,
        and patched into the same object), and what they change is passed on the same way to
        the modules that import it in turn (``chain``: the modules already followed on the
        way here, which an import cycle does not bring back)."""
        names = {m.__name__ for m in modules}
        chain = chain | names
        changes: dict[str, tuple[Any, Any]] = {}
        for module in modules:
            saved = before.get(module.__name__, {})
            for key in set(saved) | set(module.__dict__):
                old, new = saved.get(key, _MISSING), module.__dict__.get(key, _MISSING)
                if new is _MISSING or old is _MISSING or (old is new and key not in in_place):
                    continue
                changes[key] = (old, new)
        if not changes:
            return []
        reports = []
        for other_path in self.sources.tracked_files():
            for other in self.sources.modules_for(other_path):
                if other.__name__ in chain:
                    continue
                rebound, seeds = [], []
                # its namespace before the rebinding (a rebound copy is a change to pass on,
                # too), copied only once there is something to rebind
                snapshot: dict[str, Any] | None = None
                for alias, source_module, name in self._import_table(other_path, other):
                    if source_module not in names:
                        continue
                    pairs = changes.items() if name == "*" else [(name, changes.get(name))]
                    for member, change in pairs:
                        if change is None or (name == "*" and member.startswith("_")):
                            continue
                        target = member if name == "*" else alias
                        if other.__dict__.get(target, _MISSING) is change[0]:
                            if change[1] is not change[0]:
                                if snapshot is None:
                                    snapshot = dict(other.__dict__)
                                other.__dict__[target] = change[1]
                                rebound.append(target)
                            seeds.append(target)
                if seeds:
                    if snapshot is None:
                        snapshot = dict(other.__dict__)
                    reports += self._follow_rebinding(
                        other, other_path, rebound, seeds, snapshot, chain
                    )
        return reports

    def _follow_rebinding(
        self,
        module: types.ModuleType,
        path: str,
        rebound: list[str],
        seeds: list[str],
        before: dict[str, Any],
        chain: frozenset[str],
    ) -> list[ReloadReport]:
        """Re-runs the statements of ``module`` that read the ``seeds`` (the copies
        ``rebound``, and names whose object was changed in place); then passes on what
        changed there since ``before`` (its namespace before the rebinding)."""
        start = time.perf_counter()
        report = ReloadReport(module=module.__name__, file=path, rebound=sorted(rebound))
        source = self.sources.baseline(path)
        if source is None:
            return []
        plan = plan_module(source, source, path, seeds=seeds, is_main=module.__name__ == "__main__")
        if not plan.changed and not rebound:
            return []  # nothing read them: nothing to do, nothing to say
        if plan.changed:
            self._apply(plan, [module], path, source, source, report)
        report.seconds = time.perf_counter() - start
        self._finish(report)
        if not report.ok:
            return [report]
        later = self._rebind_copies([module], {module.__name__: before}, _written(plan), chain)
        return [report, *later]

    def _import_table(self, path: str, module: types.ModuleType) -> list[tuple[str, str, str]]:
        """(alias, absolute module name, imported name or '*') of the module's top-level
        ``from ... import`` statements, cached by source text and package (relative imports
        resolve against it)."""
        source = self.sources.baseline(path)
        if source is None:
            return []
        package = getattr(module, "__package__", None) or ""
        key = (path, package)
        cached = self._imports.get(key)
        if cached is not None and cached[0] is source:
            return cached[1]
        table = []
        # usually the tree the planner made when it applied this source
        tree = parsed_tree(source, path)
        if tree is None:
            try:
                tree = ast.parse(source, path)
            except SyntaxError:
                tree = ast.Module(body=[], type_ignores=[])
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
        self._imports[key] = (source, table)
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


def _empty(path: str) -> str:
    return (
        f"{_relative(path)} is empty: not applied (to empty the module on purpose, leave a "
        f"comment in it)"
    )


def _too_large(path: str, size: int, limit: int) -> str:
    return (
        f"{_relative(path)} is {size / 2**20:.1f} MiB, more than the {limit / 2**20:.1f} MiB "
        f"a reload reads (Engine.max_size): not applied"
    )


def _not_utf8(path: str, exc: UnicodeDecodeError) -> str:
    """Where the bytes that are not UTF-8 (or not the declared encoding) are."""
    data = exc.object if isinstance(exc.object, bytes) else b""
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    return (
        f"cannot read {_relative(path)}: line {line}, column {column} is not valid "
        f"{exc.encoding} (byte {data[exc.start : exc.start + 1]!r}); save it as UTF-8, or "
        f"declare its encoding in a coding line (PEP 263)"
    )


def _written(plan: Plan) -> frozenset[str]:
    """The names the statements a plan runs or redefines assign."""
    found: set[str] = set()
    for step in plan.steps:
        if step.action in ("run", "redefine"):
            found |= step.new.writes
    return frozenset(found)


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
