"""The pytest plugin: fix a failing test without restarting pytest.

``pytest --reload-loop``: a failing test opens pdb post-mortem at the failure, its fixtures
still alive. Edit and save the code (application code, the test module, ``conftest.py``
fixtures): each save is patched into the running session. ``c`` applies what is left, then
runs the same test again with the new code and fresh function-scoped fixtures, until it
passes (the session goes on) or ``q`` (the session ends, as with ``--pdb``).
``pytest --reload-watch`` is the same loop without pdb: the failure is printed, the next save
is applied and the test runs again, until it passes or Ctrl-C.

Installed through the ``pytest11`` entry point, and inert unless one of the two flags is
given: no reloader, no import hook, no hook of the loop registered, nothing imported.

Only the final attempt of a test is reported, so ``-x``, ``--lf``, the exit code and the
summary see a test fixed in the loop as passed; the failures before it are printed as they
happen, and the summary lists the tests the loop fixed.
"""

from __future__ import annotations

import ast
import contextlib
import os
import sys
import threading
import types
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from _pytest._io import TerminalWriter
    from _pytest.capture import CaptureManager
    from _pytest.nodes import Node

    from .report import ReloadReport
    from .watch import AutoReloader

__all__ = ["ReloadLoop", "pytest_addoption", "pytest_configure"]

Mode = Literal["pdb", "watch"]
PLUGIN_NAME = "mighty_patcher.loop"


# --- options -------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mighty_patcher", "reload loop (mighty_patcher)")
    group.addoption(
        "--reload-loop",
        action="store_true",
        help="when a test fails, open pdb at the failure; save your edits, then 'c' runs the "
        "test again with the new code, until it passes ('q' ends the session)",
    )
    group.addoption(
        "--reload-watch",
        action="store_true",
        help="the reload loop without pdb: print the failure, wait for the next save, apply "
        "it and run the test again, until it passes (Ctrl-C ends the session)",
    )
    group.addoption(
        "--reload-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a module root of the code under test, watched by the reload loop (repeatable; "
        "default: the rootdir, and its src/ when there is one); the collected test files and "
        "their conftest.py files are watched in any case",
    )


# --- hooks ---------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    mode = _mode(config)
    if mode is None or config.getoption("collectonly"):
        return
    if _distributed(config):
        raise pytest.UsageError(
            f"--reload-{'loop' if mode == 'pdb' else 'watch'} cannot run with pytest-xdist "
            "(-n, --dist, --tx): the workers have no terminal to debug or wait in. Run the "
            "failing tests without -n (or with -n 0)."
        )
    config.pluginmanager.register(ReloadLoop(config, mode, _roots(config)), PLUGIN_NAME)


@dataclass
class _Attempt:
    """One run of a test in the loop."""

    item: pytest.Item
    number: int
    reports: list[pytest.TestReport] = field(default_factory=list)
    again: bool = False  # run it again once this run is torn down


class ReloadLoop:
    """What ``--reload-loop`` and ``--reload-watch`` register: the loop, as hooks in the
    order of a session."""

    def __init__(self, config: pytest.Config, mode: Mode, roots: list[str]) -> None:
        self.config = config
        self.mode: Mode = mode
        self.roots = roots
        self.reloader: AutoReloader | None = None
        self.fixed: list[tuple[str, int]] = []  # (nodeid, attempts) of tests the loop fixed
        self._attempt: _Attempt | None = None
        self._pending: list[ReloadReport] = []  # reloads not shown yet, from any thread
        self._saved = threading.Condition()
        self._rewritten: dict[str, bool] = {}
        #: By file: the last source looked at for PYTEST_DONT_REWRITE, and whether it has it.
        self._dont_rewrite: dict[str, tuple[str, bool]] = {}
        self._pdbinvoke: Any = None

    # --- session start ---------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> str:
        how = "pdb at a failure, 'c' reruns" if self.mode == "pdb" else "a save reruns"
        where = ", ".join(os.path.relpath(r, config.rootpath) for r in self.roots)
        return f"reload loop ({how}), watching: {where}"

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from .watch import AutoReloader

        if self.mode == "pdb":
            # The loop opens pdb at a test's failure itself; --pdb still covers the rest
            # (teardown and collection errors), through this plugin.
            manager = self.config.pluginmanager
            self._pdbinvoke = manager.get_plugin("pdbinvoke")
            if self._pdbinvoke is not None:
                manager.unregister(self._pdbinvoke)
        try:
            self.reloader = AutoReloader(self.roots, after_reload=self._collect)
        except OSError as exc:  # WatchError: the inotify watch limit, say
            raise pytest.UsageError(f"the reload loop cannot watch its roots: {exc}") from exc
        self.reloader.engine.transform = self._rewrite_asserts
        self._adopt_conftests()
        self.reloader.sources.snapshot_imported()

    # --- collection ------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        """Test modules and ``conftest.py`` files are imported by pytest (through its
        assertion rewriter), not through the reloader's import hook: their text is read just
        before pytest imports them, as the source a save is compared with."""
        path = _file_imported_by(collector)
        text = _read(path) if path is not None else None
        try:
            return (yield)
        finally:
            self._adopt_conftests()
            if path is not None and text is not None:
                self._remember(path, text)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # Anything imported some other way (pytest_plugins modules, say): its text now.
        self._adopt_conftests()
        assert self.reloader is not None
        self.reloader.sources.snapshot_imported()

    # --- running tests ---------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        number = 0
        while True:
            number += 1
            attempt = self._attempt = _Attempt(item, number)
            self._take_pending()  # saves applied before this run are in it already
            try:
                self._run(attempt, nextitem)
            except BaseException:
                # 'q' in pdb, Ctrl-C, pytest.exit(): the session ends on this run's outcome.
                _log(item, attempt.reports)
                raise
            finally:
                self._attempt = None
            if not attempt.again:
                break
            self._prepare_rerun(item)
            self._say(f"running {item.nodeid} again (attempt {number + 1})", bold=True)
        _log(item, attempt.reports)
        if number > 1 and any(r.when == "call" and r.passed for r in attempt.reports):
            self.fixed.append((item.nodeid, number))
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        attempt = self._attempt
        if attempt is not None and item is attempt.item:
            attempt.reports.append(report)
        return report

    @pytest.hookimpl(trylast=True)  # after pytest-timeout has cancelled its timer
    def pytest_exception_interact(
        self,
        node: Node,
        call: pytest.CallInfo[Any],
        report: pytest.CollectReport | pytest.TestReport,
    ) -> None:
        attempt = self._attempt
        if (
            attempt is None
            or node is not attempt.item
            or not isinstance(report, pytest.TestReport)
            or report.when == "teardown"
            or not report.failed
            or call.excinfo is None
        ):
            if self._pdbinvoke is not None:
                self._pdbinvoke.pytest_exception_interact(node=node, call=call, report=report)
            return
        if self.mode == "pdb":
            attempt.again = self._debug(attempt, call.excinfo, report)
        else:
            attempt.again = self._watch(attempt, report)

    def pytest_internalerror(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if self._pdbinvoke is not None:
            self._pdbinvoke.pytest_internalerror(excinfo=excinfo)

    # --- session end -----------------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.fixed:
            return
        terminalreporter.section("fixed in the reload loop")
        for nodeid, attempts in self.fixed:
            terminalreporter.line(f"{nodeid} passed on attempt {attempts}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.reloader is not None:
            self.reloader.stop()
            self.reloader = None

    # --- one run of a test -----------------------------------------------------------------

    def _run(self, attempt: _Attempt, nextitem: pytest.Item | None) -> None:
        """Setup, call and teardown, as pytest's own protocol but with the reports kept back,
        and a teardown that keeps what a rerun reuses when the test is to run again."""
        from _pytest.runner import call_and_report

        item = attempt.item
        sections = getattr(item, "_report_sections", None)
        if isinstance(sections, list):
            sections.clear()  # the captured output of this run only
        has_request = hasattr(item, "_request")
        if has_request and not item._request:  # type: ignore[attr-defined]
            item._initrequest()  # type: ignore[attr-defined]
        try:
            setup = call_and_report(item, "setup", log=False)
            if setup.passed:
                setup_only = bool(self.config.getoption("setuponly", False))
                if self.config.getoption("setupshow", False):
                    _show_test_item(item, setup_only)
                if not setup_only:
                    call_and_report(item, "call", log=False)
            following: Node | None = nextitem
            if attempt.again:
                following = _kept_for_rerun(item)
            elif item.session.shouldfail or item.session.shouldstop:
                following = None
            call_and_report(item, "teardown", log=False, nextitem=following)
        finally:
            if has_request:
                item._request = False  # type: ignore[attr-defined]
                item.funcargs = None  # type: ignore[attr-defined]

    def _prepare_rerun(self, item: pytest.Item) -> None:
        """An edit of the test's arguments is taken into account."""
        info = getattr(item, "_fixtureinfo", None)
        if not isinstance(item, pytest.Function) or info is None:
            return
        if hasattr(item, "callspec"):
            from _pytest.compat import getfuncargnames

            if getfuncargnames(item.obj, name=item.name, cls=item.cls) != info.argnames:
                self._say(
                    f"the arguments of {item.originalname} changed: a parametrized test "
                    "needs a new pytest session to pick that up",
                    yellow=True,
                )
            return
        fresh = item.session._fixturemanager.getfixtureinfo(item, item.obj, item.cls)
        if fresh.argnames != info.argnames:
            item._fixtureinfo = fresh
            item.fixturenames = fresh.names_closure

    # --- after a failure -------------------------------------------------------------------

    def _debug(
        self,
        attempt: _Attempt,
        excinfo: pytest.ExceptionInfo[BaseException],
        report: pytest.TestReport,
    ) -> bool:
        """pdb post-mortem at the failure, as ``--pdb`` opens it; on 'c' the saves are
        applied, and the test runs again if they all applied ('q' raises Exit)."""
        from _pytest.debugging import post_mortem

        tw = self._flush_captured(in_=True)
        _show_failure(tw, self.config, report)
        self._say("save your edits, then 'c' runs the test again with them ('q' ends the session)")
        tw.sep(">", "entering PDB")
        while True:
            post_mortem(_postmortem_target(excinfo))
            with self._terminal():  # pdb's 'c' resumed capturing
                if self._reload():
                    return True
                self._say("fix it and save, then 'c' to try again", red=True)
                tw.sep(">", "entering PDB")

    def _watch(self, attempt: _Attempt, report: pytest.TestReport) -> bool:
        """Prints the failure, then waits for saves until one applies cleanly."""
        tw = self._flush_captured(in_=False)
        _show_failure(tw, self.config, report)
        while True:
            reports = self._take_pending()  # a save applied while the test ran counts
            if reports and self._show(reports):
                return True
            self._say(
                f"waiting for a save to run {attempt.item.nodeid} again (Ctrl-C ends the session)"
            )
            self._wait_for_save()
            assert self.reloader is not None
            self.reloader.reload_now()  # a file saved together with it, say

    def _reload(self) -> bool:
        """Applies what was saved and not applied yet; shows every reload since the failure.
        Whether they all applied."""
        assert self.reloader is not None
        self.reloader.reload_now()
        reports = self._take_pending()
        if not reports:
            self._say("no change since the failure")
        return self._show(reports)

    def _show(self, reports: list[ReloadReport]) -> bool:
        """Shows what was reloaded, and the reloads that failed unless a later one of the same
        file applied (the same broken save is often tried twice: by the watcher's thread, and
        again on 'c'). Whether the last reload of each file applied."""
        applied = True
        for i, report in enumerate(reports):
            if report.ok:
                self._say(report.summary(), green=True)
                new = [n for n in report.added if n.rsplit(".", 1)[-1].startswith("test")]
                if new and os.path.basename(report.file).startswith("test"):
                    self._say(
                        f"new: {', '.join(new)}. pytest collects tests when a session starts: "
                        f"a new test runs in the next session, not in this one",
                        yellow=True,
                    )
            elif not any(later.file == report.file for later in reports[i + 1 :]):
                self._say(report.summary(), red=True)
                applied = False
        return applied

    # --- reloads ---------------------------------------------------------------------------

    def _collect(self, report: ReloadReport) -> None:
        """After each reload, in the thread that made it (the watcher's, or ours)."""
        with self._saved:
            self._pending.append(report)
            self._saved.notify_all()

    def _take_pending(self) -> list[ReloadReport]:
        with self._saved:
            reports, self._pending = self._pending, []
        return reports

    def _wait_for_save(self) -> None:
        with self._saved:
            while not self._pending:
                self._saved.wait(0.25)  # short waits: Ctrl-C gets through at once

    def _remember(self, path: Path, text: str) -> None:
        assert self.reloader is not None
        sources = self.reloader.sources
        file = os.path.realpath(path)
        if sources.baseline(file) is None and sources.modules_for(file):
            sources.remember(file, text)

    def _adopt_conftests(self) -> None:
        """conftest.py files outside packages all have the name ``conftest``: pytest keeps
        them out of ``sys.modules``, so they are followed by file."""
        assert self.reloader is not None
        for plugin in self.config.pluginmanager.get_plugins():
            if isinstance(plugin, types.ModuleType) and _is_conftest(plugin):
                self.reloader.sources.adopt(plugin)

    def _rewrite_asserts(self, tree: ast.Module, path: str, source: str) -> ast.Module:
        """The engine's transform: statements of a module pytest imported with its assertion
        rewriter are rewritten the same way, so failures show the values again."""
        from _pytest.assertion.rewrite import (
            AssertionRewriter,
            AssertionRewritingHook,
            rewrite_asserts,
        )

        rewritten = self._rewritten.get(path)
        if rewritten is None:
            assert self.reloader is not None
            modules = self.reloader.sources.modules_for(path)
            rewritten = self._rewritten[path] = any(
                isinstance(getattr(m, "__loader__", None), AssertionRewritingHook) for m in modules
            )
        if not rewritten:
            return tree
        if "PYTEST_DONT_REWRITE" in source:
            # decided once per source: the transform runs for each statement compiled
            cached = self._dont_rewrite.get(path)
            if cached is None or cached[0] != source:
                docstring = ast.get_docstring(ast.parse(source)) or ""
                cached = self._dont_rewrite[path] = (
                    source,
                    AssertionRewriter.is_rewrite_disabled(docstring),
                )
            if cached[1]:
                return tree
        rewrite_asserts(tree, source.encode("utf-8"), path, self.config)
        return tree

    # --- the terminal ----------------------------------------------------------------------

    def _capman(self) -> CaptureManager | None:
        capman: CaptureManager | None = self.config.pluginmanager.getplugin("capturemanager")
        return capman

    def _flush_captured(self, *, in_: bool) -> TerminalWriter:
        """Suspends capturing (``in_``: stdin too, for pdb) and writes out what was captured
        since the test's phase ended, as ``--pdb`` does."""
        capman = self._capman()
        if capman is not None:
            capman.suspend_global_capture(in_=in_)
            out, err = capman.read_global_capture()
            sys.stdout.write(out)
            sys.stdout.write(err)
        return self.config.get_terminal_writer()

    @contextlib.contextmanager
    def _terminal(self) -> Iterator[None]:
        capman = self._capman()
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            yield

    def _say(self, text: str, **markup: bool) -> None:
        self.config.get_terminal_writer().line(f"[mighty_patcher] {text}", **markup)


# --- helpers -------------------------------------------------------------------------------


def _mode(config: pytest.Config) -> Mode | None:
    if config.getoption("reload_watch"):
        return "watch"
    if config.getoption("reload_loop"):
        return "pdb"
    return None


def _distributed(config: pytest.Config) -> bool:
    """Whether pytest-xdist is to distribute the tests (its options exist only with it)."""
    return (
        config.getoption("dist", "no") not in ("no", None)
        or bool(config.getoption("tx", None))
        or bool(config.getoption("numprocesses", None))
    )


def _roots(config: pytest.Config) -> list[str]:
    """The roots to watch: the ``--reload-dir`` directories (default: ``src/`` when there is
    one, and the rootdir), then those of the test files pytest collects and the
    ``conftest.py`` files above them, where the first ones do not cover them."""
    here = config.invocation_params.dir
    dirs = [here / d for d in config.getoption("reload_dir")]
    for d in dirs:
        if not d.is_dir():
            raise pytest.UsageError(f"--reload-dir {d}: no such directory")
    if not dirs:
        src = config.rootpath / "src"
        dirs = [src, config.rootpath] if src.is_dir() else [config.rootpath]
    roots = [os.path.realpath(d) for d in dirs]
    for extra in _test_roots(config):
        if not any(extra == r or extra.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            roots.append(extra)
    return roots


def _test_roots(config: pytest.Config) -> list[str]:
    found = []
    rootpath = Path(os.path.realpath(config.rootpath))
    for arg in config.args:
        path = Path(os.path.realpath(config.invocation_params.dir / arg.split("::")[0]))
        directory = path if path.is_dir() else path.parent
        if not directory.is_dir():
            continue
        found.append(str(directory))
        for parent in directory.parents:
            if parent != rootpath and rootpath not in parent.parents:
                break
            if (parent / "conftest.py").is_file():
                found.append(str(parent / "conftest.py"))
    return found


def _file_imported_by(collector: pytest.Collector) -> Path | None:
    """The Python file pytest imports to collect ``collector``, if any."""
    if isinstance(collector, pytest.Module):
        return collector.path
    if isinstance(collector, pytest.Directory):
        return collector.path / "conftest.py"
    return None


def _read(path: Path) -> str | None:
    from .sources import read_source

    try:
        return read_source(str(path))
    except (OSError, UnicodeDecodeError, SyntaxError):
        return None


def _is_conftest(module: types.ModuleType) -> bool:
    file = getattr(module, "__file__", None)
    return isinstance(file, str) and os.path.basename(file) == "conftest.py"


def _kept_for_rerun(item: pytest.Item) -> Node | None:
    """The node whose chain a rerun reuses (pytest tears down the nodes not in it, and the
    fixtures they hold): the test's parents, up to the first that failed to set up itself or
    holds a fixture that did (pytest would raise the same exception again otherwise)."""
    chain = item.listchain()
    keep = chain[:-1]
    failed = {_scope_node(chain, d.scope) for d in _failed_fixtures(item)}
    stack = item.session._setupstate.stack
    for i, node in enumerate(keep):
        entry = stack.get(node)
        if node in failed or (entry is not None and entry[1] is not None):
            keep = keep[:i]
            break
    return keep[-1] if keep else None


def _failed_fixtures(item: pytest.Item) -> Iterator[Any]:
    """The fixture definitions of the item whose last setup raised."""
    info = getattr(item, "_fixtureinfo", None)
    for fixturedefs in getattr(info, "name2fixturedefs", {}).values():
        for fixturedef in fixturedefs:
            cached = getattr(fixturedef, "cached_result", None)
            if cached is not None and cached[2] is not None:
                yield fixturedef


_SCOPE_NODES: dict[str, type[Node]] = {
    "class": pytest.Class,
    "module": pytest.Module,
    "package": pytest.Package,
    "session": pytest.Session,
}


def _scope_node(chain: list[Node], scope: str) -> Node:
    """The node that holds a fixture of ``scope`` for the last node of ``chain``."""
    kind = _SCOPE_NODES.get(scope)
    if kind is None:  # function scope
        return chain[-1]
    for node in reversed(chain):
        if isinstance(node, kind):
            return node
    return chain[0]  # the session (a package-scoped fixture outside any package)


def _postmortem_target(excinfo: pytest.ExceptionInfo[BaseException]) -> Any:
    """What ``post_mortem`` takes: the exception (pytest 8.4+) or its traceback."""
    from _pytest import debugging

    target = getattr(debugging, "_postmortem_exc_or_tb", None)
    if target is None:  # older pytest
        target = debugging._postmortem_traceback  # type: ignore[attr-defined]
    return target(excinfo)


def _log(item: pytest.Item, reports: list[pytest.TestReport]) -> None:
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)


def _show_test_item(item: pytest.Item, setup_only: bool) -> None:
    from _pytest.runner import show_test_item

    try:
        show_test_item(item, add_space=not setup_only)
    except TypeError:  # older pytest takes only the item
        show_test_item(item)  # type: ignore[call-arg]


def _show_failure(tw: TerminalWriter, config: pytest.Config, report: pytest.TestReport) -> None:
    """The captured output and the traceback, as ``--pdb`` shows them before pdb opens."""
    tw.line()
    showcapture = config.option.showcapture
    for name, content in (
        ("stdout", report.capstdout),
        ("stderr", report.capstderr),
        ("log", report.caplog),
    ):
        if showcapture in (name, "all") and content:
            tw.sep(">", "captured " + name)
            tw.line(content.rstrip("\n"))
    tw.sep(">", "traceback")
    report.toterminal(tw)
    # As with --pdb, the summary does not show the failure again if it is the final one.
    report._pdbshown = True  # type: ignore[attr-defined]
