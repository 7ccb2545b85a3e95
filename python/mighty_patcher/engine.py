"""The reload engine: orchestration only. A saved path goes through each piece once:

    sources (read it, with its checks; the modules it backs)
    -> planner (the plan: what the edit changed, what follows)
    -> applier (the plan applied in the module's namespace, all or nothing)
    -> planner.plan_imports (one plan for the ``from m import name`` copies it reaches)
    -> applier again, module by module, and one report each.

A failure anywhere changes nothing of its file and is reported with file, line and text; the
program keeps running its previous version.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import hooks
from . import mighty_patcher as native
from .report import ReloadReport, logger, relative
from .sources import SourceError, Sources, resolve, running_namespaces
from .transaction import Transaction

if TYPE_CHECKING:
    from .applier import Applier, Transform
    from .planner import ImportedName, Importer, Plan

# The planner and the applier (with ast, copy, enum and the dataclasses they define) are
# imported at the first reload, not at start-up: a program that is never edited never pays
# for them.

__all__ = ["Engine"]

_MISSING: Any = object()
BeforeHook = Callable[[str, list[types.ModuleType]], None]
AfterHook = Callable[[ReloadReport], None]


class Engine:
    #: A reload still running after this many seconds says where it is (one log line).
    slow_after = 2.0

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
        self._imports: dict[tuple[str, str], tuple[str, list[ImportedName]]] = {}
        #: Files said to be gone (with their directory), not to say it again.
        self._missing: set[str] = set()
        #: By file: the text (or the message) of its last failed reload and when, so that the
        #: same bad save written twice in a row (editors do) is said once.
        self._failures: dict[str, tuple[str, float]] = {}
        #: Files whose last save failed while it ran (an error raised by the module's code,
        #: not a syntax error): tried again, once, after another file's reload succeeds, since
        #: what they needed may have come with it (``urls.py`` saved before ``views.py``).
        self._retry: set[str] = set()

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
            reports: list[ReloadReport] = []
            for path in sorted(wanted, key=lambda p: order.get(p, len(order))):
                again = path in self._retry and any(r.ok for r in reports)
                reports += self.reload_file(path, text=(texts or {}).get(path), retry=again)
            if self._retry - wanted and any(r.ok for r in reports):
                for path in sorted(self._retry - wanted, key=lambda p: order.get(p, len(order))):
                    reports += self.reload_file(path, retry=True)
            return reports

    def reload_changed(self) -> list[ReloadReport]:
        """Applies every watched file whose text differs from the source last applied. A
        reload another thread is making finishes first (its copies rebound, its hooks run):
        when this returns, every save made before the call is applied."""
        with self.lock:
            changed, texts = self.sources.changed_files()
            return self.reload_paths(changed, texts=texts)

    def reload_file(
        self, path: str, *, text: str | None = None, retry: bool = False
    ) -> list[ReloadReport]:
        """Applies one file. ``text``: its text, just read (checked not too large); None:
        read it here. ``retry``: its last save failed while it ran, and another file changed
        since; if the same text fails again, nothing is said (it was said)."""
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
            _wait_for_imports(modules)
            start = time.perf_counter()
            try:
                source = self.sources.read_saved(path, text)
            except FileNotFoundError:
                if path not in self._missing:
                    self._missing.add(path)
                    logger.warning("%s was deleted; %s keeps running its last version", path, name)
                return []
            except SourceError as exc:
                self._retry.discard(path)
                if self._failed_just_now(path, str(exc)):
                    return []
                self._failures[path] = (str(exc), time.monotonic())
                return [self._failed(name, path, start, str(exc))]
            self._missing.discard(path)
            baseline = self.sources.baseline(path)
            # Tried again: the same text that failed while it ran, after another file changed.
            retry = retry and path in self._retry and self._failures.get(path, ("",))[0] == source
            if not retry and source != baseline and self._failed_just_now(path, source):
                return []  # (the same bad save written twice: said once, tried again later)
            self._retry.discard(path)
            if source == baseline:
                return []
            start = time.perf_counter()  # (not counting the time a half-written file had)
            running = _running(modules)
            from .planner import plan_module

            try:
                plan = plan_module(baseline, source, path, running=running)
            except SyntaxError as exc:
                self._failures[path] = (source, time.monotonic())
                return [self._failed(name, path, start, _syntax_error(exc, source))]
            report = ReloadReport(module=name, file=path)
            self._call_before(path, modules)
            before = {m.__name__: dict(m.__dict__) for m in modules}
            ok = self._apply(plan, modules, path, baseline, source, report)
            if ok:
                self.sources.remember(path, source)
                linecache.checkcache(path)
                self._failures.pop(path, None)
                if retry:
                    report.notes.append(
                        "applied now: its last save failed, and a file it needs changed since"
                    )
            else:
                self._failures[path] = (source, time.monotonic())
                self._retry.add(path)
                if retry:
                    return []  # (the same failure, said when it was saved)
            report.seconds = time.perf_counter() - start
            self._finish(report)
            if not ok:
                return [report]
            return [report, *self._follow_imports(modules, before)]

    def _failed_just_now(self, path: str, what: str) -> bool:
        """Whether ``what`` (a text, or why it could not be read) failed for ``path`` less than
        two seconds ago: the same bad save written twice (editors do) is said once. Later, the
        same text is tried again (what it needs may have changed meanwhile)."""
        last = self._failures.get(path)
        return last is not None and last[0] == what and time.monotonic() - last[1] < 2.0

    # --- applying --------------------------------------------------------------------------

    def _apply(
        self,
        plan: Plan,
        modules: list[types.ModuleType],
        path: str,
        baseline: str | None,
        source: str,
        report: ReloadReport,
        rebind: list[tuple[str, Any]] = (),  # type: ignore[assignment]
        attributes: frozenset[str] = frozenset(),
    ) -> bool:
        """Applies ``plan`` to each of ``modules`` (the names of ``rebind`` first: imported
        copies; ``attributes``: ``m.name`` rebound in a module held as ``m``), inside one
        transaction: on any exception everything is restored."""
        txn = Transaction()
        old_lines = (baseline or "").splitlines(keepends=True)
        new_lines = source.splitlines(keepends=True)
        try:
            with native.reloading(), self._watchdog(report.module, path):
                from .applier import Applier

                appliers: list[Applier] = []
                for module in modules:
                    hooks.call("before_reload", hooks.ReloadEvent(module, path, report, txn.undo))
                    if rebind:
                        txn.keep_namespace(module.__dict__)
                        module.__dict__.update(rebind)
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
                        rebound={alias for alias, _ in rebind} | attributes,
                    )
                    applier.apply()
                    appliers.append(applier)
                for module in modules:
                    hooks.call("after_reload", hooks.ReloadEvent(module, path, report))
                for applier in appliers:
                    applier.move_closures()
                for applier in appliers:
                    applier.fill_instances()
                    applier.note_running_calls()
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

    @contextlib.contextmanager
    def _watchdog(self, name: str, path: str) -> Iterator[None]:
        """Says once, after :attr:`slow_after` seconds, where a reload still running is: a
        statement that blocks (a loop, a call that waits) is then visible, not silent."""
        thread = threading.get_ident()
        started = time.monotonic()

        def say() -> None:
            frame = sys._current_frames().get(thread)
            where = _innermost(frame, path, self.sources)
            logger.warning(
                "the reload of %s is still running after %.0f s, at %s",
                name,
                time.monotonic() - started,
                where,
            )

        timer = threading.Timer(self.slow_after, say)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _follow_imports(
        self, modules: list[types.ModuleType], before: dict[str, dict[str, Any]]
    ) -> list[ReloadReport]:
        """The ``from m import name`` copies of the names the reload rebound (to a different
        object: a name patched in place is not rebound), and their followers, everywhere."""
        from .planner import plan_imports, same_value

        rebound = {}
        for module in modules:
            saved = before[module.__name__]
            buried = self._graveyards.get(module.__name__, {})
            names = set()
            for key, value in list(module.__dict__.items()):
                old = saved.get(key, _MISSING)
                if old is value:
                    continue
                if old is _MISSING:
                    # (a name an earlier reload deleted, bound again: copies of what it held
                    # before are still about, in the importers)
                    if key in buried:
                        names.add(key)
                elif not same_value(old, value):
                    names.add(key)
            rebound[module.__name__] = frozenset(names)
        if not any(rebound.values()):
            return []
        by_name: dict[str, types.ModuleType] = {}
        steps = plan_imports(rebound, self._importers(before, by_name))
        reports: list[ReloadReport] = []
        failed: set[str] = set()
        #: The names each module really rebound so far (a follower may leave a name as it was).
        changed = {module: set(names) for module, names in rebound.items()}
        for step in steps:
            if step.after & failed:
                failed.add(step.module)
                continue
            module = by_name[step.module]
            start = time.perf_counter()
            values = [
                (alias, vars(by_name.get(m) or sys.modules[m])[n]) for alias, m, n in step.rebind
            ]
            # (a follower in between may have left a name as it was: nothing to pass on)
            values = [
                (a, v) for a, v in values if not same_value(module.__dict__.get(a, _MISSING), v)
            ]
            attributes = frozenset(d for d, m, n in step.attributes if n in changed.get(m, ()))
            if not values and not attributes:
                continue
            ns = module.__dict__
            kept = {n: ns.get(n, _MISSING) for n in step.plan.rebinds}
            report = ReloadReport(
                module=step.module, file=step.path, rebound=sorted(a for a, _ in values)
            )
            source = self.sources.baseline(step.path) or ""
            applied = self._apply(
                step.plan, [module], step.path, source, source, report, values, attributes
            )
            changed.setdefault(step.module, set()).update(
                [a for a, _ in values]
                + [n for n, v in kept.items() if not same_value(ns.get(n, _MISSING), v)]
            )
            if not applied:
                failed.add(step.module)
            report.seconds = time.perf_counter() - start
            self._finish(report)
            reports.append(report)
        return reports

    def _importers(
        self, before: dict[str, dict[str, Any]], by_name: dict[str, types.ModuleType]
    ) -> list[Importer]:
        """Every watched module with ``from ... import`` statements, with the copies it holds
        of what the exporters held before the reload (``before`` for the modules reloaded,
        their namespace now for the others, which nothing changed yet)."""
        from .planner import Importer

        running = running_namespaces()
        importers = []
        for path in self.sources.tracked_files():
            source = self.sources.baseline(path)
            if source is None:
                continue
            for module in self.sources.modules_for(path):
                table = self._import_table(path, source, module)
                if not table:
                    continue
                ns = module.__dict__
                copies = set()
                for imported in table:
                    exporter = before.get(imported.module)
                    if exporter is None:
                        exporter = getattr(sys.modules.get(imported.module), "__dict__", None)
                    if exporter is None:
                        continue
                    if not imported.name:  # import m (or a.b): the alias holds the module
                        first, *rest = imported.alias.split(".")
                        held = ns.get(first)
                        for part in rest:
                            held = getattr(held, part, None)
                        if held is not None and held is sys.modules.get(imported.module):
                            copies.add(imported.alias)
                        continue
                    if imported.name == "*":
                        # (a copy: the exporter's namespace is live, and another thread may
                        # add to it meanwhile, importing one of its submodules, say)
                        copies |= {
                            n
                            for n, v in list(exporter.items())
                            if not n.startswith("_") and ns.get(n, _MISSING) is v
                        }
                    elif ns.get(imported.alias, _MISSING) is exporter.get(imported.name, _MISSING):
                        copies.add(imported.alias)
                    elif imported.name not in exporter:
                        # deleted from the exporter by an earlier reload: a copy still holds
                        # the object it was (a function moved to another module in two saves)
                        buried = self._graveyards.get(imported.module, {}).get(imported.name)
                        if isinstance(buried, tuple) and ns.get(imported.alias) is buried[0]:
                            copies.add(imported.alias)
                by_name[module.__name__] = module
                importers.append(
                    Importer(
                        name=module.__name__,
                        path=path,
                        source=source,
                        imports=table,
                        copies=frozenset(copies),
                        running=_running([module], running),
                    )
                )
        return importers

    def _import_table(self, path: str, source: str, module: types.ModuleType) -> list[ImportedName]:
        """The module's top-level ``from ... import`` statements, cached by source text and
        package (relative imports resolve against it)."""
        package = getattr(module, "__package__", None) or ""
        key = (path, package)
        cached = self._imports.get(key)
        if cached is not None and cached[0] is source:
            return cached[1]
        from .planner import import_table, parsed_tree

        table = import_table(parsed_tree(source, path), package)
        self._imports[key] = (source, table)
        return table

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
                    relative(top),
                    ", ".join(names),
                    "s" if len(names) == 1 else "",
                )
        return handled

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


#: How long a reload waits for another thread's import of the module to finish.
IMPORT_WAIT = 2.0


def _wait_for_imports(modules: list[types.ModuleType]) -> None:
    """Waits (a while) for another thread that is importing one of ``modules`` to finish: a
    save that arrives as a worker imports the module applies to the module whole, not to
    half of it that the rest of the import would then redefine with the old code. A module
    whose import goes on (one that serves at import) is reloaded as a running module after
    :data:`IMPORT_WAIT`; one this thread is importing is not waited for."""
    me = threading.get_ident()
    deadline = time.monotonic() + IMPORT_WAIT
    while time.monotonic() < deadline:
        importing = {
            id(m.__dict__)
            for m in modules
            if getattr(getattr(m, "__spec__", None), "_initializing", False)
        }
        if not importing:
            return
        frames = sys._current_frames()
        mine = set()
        current: types.FrameType | None = frames.get(me)
        while current is not None:
            mine.add(id(current.f_globals))
            current = current.f_back
        if importing & mine:
            return
        time.sleep(0.005)


def _running(modules: list[types.ModuleType], namespaces: set[int] | None = None) -> bool:
    """Whether the body of one of ``modules`` is still executing: the ``__main__`` script
    (always: it is the program), or a module whose ``<module>`` frame is on a stack."""
    if any(m.__name__ == "__main__" or m is sys.modules.get("__main__") for m in modules):
        return True
    found = running_namespaces() if namespaces is None else namespaces
    return any(id(m.__dict__) in found for m in modules)


def _innermost(frame: types.FrameType | None, path: str, sources: Sources) -> str:
    """Where a thread is, told by its innermost frame in the file being reloaded, else in a
    watched file, else its innermost frame: ``app.py:12 (while True:)``."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    if not frames:
        return "an unknown place"
    chosen = next((f for f in frames if f.f_code.co_filename == path), None)
    if chosen is None:
        chosen = next((f for f in frames if sources.under_roots(f.f_code.co_filename)), frames[0])
    text = linecache.getline(chosen.f_code.co_filename, chosen.f_lineno).strip()
    return f"{relative(chosen.f_code.co_filename)}:{chosen.f_lineno} ({text})"


def _syntax_error(exc: SyntaxError, source: str) -> str:
    line = exc.lineno or 0
    lines = source.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else (exc.text or "").rstrip("\n")
    where = f"{relative(exc.filename or '?')}:{line}"
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
    return f"{message}\n  at {relative(path)}:{line}\n    {text}"
