"""AutoReloader's thread, driven by a fake watcher fed canned change sets (no timing)."""

from __future__ import annotations

import logging
import queue
import threading

import pytest

import mighty_patcher


class CannedWatcher:
    """Hands out the change sets (or exceptions) put in its queue, then "stop"."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.queue: queue.Queue[object] = queue.Queue()
        self.closed = False
        CannedWatcher.last = self

    def wait(self, timeout: float | None = None) -> object:
        item = self.queue.get(timeout=5)
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self.queue.put("stop")

    def close(self) -> None:
        self.closed = True


def started(project, **kwargs):
    done = threading.Event()
    reports = []

    def after(report):
        reports.append(report)
        done.set()

    reloader = project.start(
        watcher_factory=CannedWatcher, start=True, after_reload=after, **kwargs
    )
    return reloader, CannedWatcher.last, reports, done


def test_a_change_set_from_the_watcher_is_applied_in_the_thread(project):
    project.write("mod", "def f():\n    return 1\n")
    mod = project.module("mod")
    reloader, watcher, reports, done = started(project)
    path = project.write("mod", "def f():\n    return 2\n")
    watcher.queue.put({str(path)})
    assert done.wait(5)
    assert mod.f() == 2 and reports[0].patched == ["f"]
    assert reloader.running


def test_currently_reloading_is_also_where_the_reloader_is(project):
    from mighty_patcher.watch import currently_reloading

    assert currently_reloading is mighty_patcher.currently_reloading
    assert "currently_reloading" in mighty_patcher.watch.__all__
    source = "from mighty_patcher.watch import currently_reloading\nSEEN = currently_reloading()\n"
    project.write("mod", source)
    mod = project.module("mod")
    _, watcher, reports, done = started(project)
    watcher.queue.put({str(project.write("mod", source + "# saved\n"))})
    assert done.wait(5)
    assert mod.SEEN is True and reports[0].ok


def test_timeouts_are_ignored_and_stop_ends_the_thread_and_closes(project):
    project.write("mod", "def f():\n    return 1\n")
    mod = project.module("mod")
    reloader, watcher, reports, done = started(project)
    watcher.queue.put("timeout")
    watcher.queue.put("timeout")
    # The change set queued after the timeouts is applied only if the thread went on
    # waiting after them.
    path = project.write("mod", "def f():\n    return 2\n")
    watcher.queue.put({str(path)})
    assert done.wait(5), "the thread did not apply a change after a timeout"
    assert mod.f() == 2 and reports[0].patched == ["f"]
    assert reloader.running and not watcher.closed
    reloader.stop()
    assert not reloader.running and watcher.closed


def test_a_watch_error_is_logged_and_watching_goes_on(project, caplog):
    project.write("mod", "def f():\n    return 1\n")
    mod = project.module("mod")
    _, watcher, _, done = started(project)
    with caplog.at_level(logging.ERROR, logger="mighty_patcher"):
        watcher.queue.put(mighty_patcher.WatchError("out of inotify watches in /x"))
        path = project.write("mod", "def f():\n    return 3\n")
        watcher.queue.put({str(path)})
        assert done.wait(5)
    assert mod.f() == 3
    assert any("out of inotify watches" in r.getMessage() for r in caplog.records)


def test_an_unexpected_watcher_failure_is_logged_and_ends_the_thread(project, caplog):
    reloader, watcher, _, _ = started(project)
    with caplog.at_level(logging.ERROR, logger="mighty_patcher"):
        watcher.queue.put(RuntimeError("boom"))
        reloader._thread.join(5)
    assert not reloader.running
    assert any("the file watcher failed" in r.getMessage() for r in caplog.records)


def test_several_roots_and_a_context_manager(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with mighty_patcher.watch.AutoReloader(
        [tmp_path / "a", str(tmp_path / "b")], watcher_factory=CannedWatcher
    ) as reloader:
        assert reloader.paths == (str(tmp_path / "a"), str(tmp_path / "b"))
        assert reloader.running
    assert not reloader.running


def test_no_path_at_all_is_refused():
    with pytest.raises(ValueError, match="at least one path"):
        mighty_patcher.watch.AutoReloader([], watcher_factory=CannedWatcher)


def drained(watcher: CannedWatcher) -> None:
    """Returns once the thread has finished with everything queued so far (it took a
    "timeout" queued after it, so it is waiting again)."""
    watcher.queue.put("timeout")
    for _ in range(500):
        if watcher.queue.empty():
            return
        threading.Event().wait(0.01)
    raise AssertionError("the thread did not take its change sets")


def test_while_paused_the_thread_keeps_the_change_sets_for_resume(project):
    project.write("mod", "def f():\n    return 1\n")
    mod = project.module("mod")
    reloader, watcher, reports, _ = started(project)
    reloader.pause()
    assert reloader.paused
    path = str(project.write("mod", "def f():\n    return 2\n"))
    watcher.queue.put({path})
    drained(watcher)
    assert mod.f() == 1 and reports == []
    assert reloader.resume() == {path} and not reloader.paused
    assert reloader.resume() == set()
    reloader.reload([path])
    assert mod.f() == 2
    path = str(project.write("mod", "def f():\n    return 3\n"))
    watcher.queue.put({path})  # resumed: the thread applies it again
    drained(watcher)
    assert mod.f() == 3
