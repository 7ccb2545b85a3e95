"""Reload callbacks from Python: ``add_reload_callback``, ``remove_reload_callback`` and the
reload engine's ``_notify_reloaded(report)``. (C callbacks: tests/test_capi.py.)"""

from __future__ import annotations

import shutil
import sys

import pytest

from conftest import extension_path

REPORT = {
    "module": "shapes",
    "file": "/src/shapes.py",
    "ok": True,
    "patched": ["area", "Shape.describe"],
    "added": ["perimeter"],
    "deleted": [],
    "rerun": ["SIDES = 4"],
    "needs_restart": [],
    "seconds": 0.0018,
    "error": None,
}


@pytest.fixture
def notify(mp):
    return mp.mighty_patcher._notify_reloaded


@pytest.fixture
def registered(mp):
    """Registers callbacks for one test and removes whatever is left afterwards."""
    added: list = []

    def register(callback):
        added.append(mp.add_reload_callback(callback))
        return callback

    yield register
    for callback in added:
        try:
            mp.remove_reload_callback(callback)
        except ValueError:
            pass


@pytest.fixture
def unraisable(monkeypatch):
    caught: list = []
    monkeypatch.setattr(sys, "unraisablehook", caught.append)
    return caught


def test_callbacks_receive_the_report_in_registration_order(registered, notify):
    seen = []
    registered(lambda report: seen.append(("first", report)))
    registered(lambda report: seen.append(("second", report)))
    notify(REPORT)
    assert seen == [("first", REPORT), ("second", REPORT)]
    assert seen[0][1] is REPORT


def test_add_reload_callback_returns_the_callable_so_it_can_decorate(mp, notify):
    seen = []

    def on_reload(report):
        seen.append(report["module"])

    returned = mp.add_reload_callback(on_reload)
    try:
        assert returned is on_reload
        notify(REPORT)
        assert seen == ["shapes"]
    finally:
        mp.remove_reload_callback(on_reload)


def test_a_failing_callback_is_reported_and_the_next_one_still_runs(registered, notify, unraisable):
    seen = []

    def broken(report):
        raise RuntimeError("broken callback")

    registered(broken)
    registered(seen.append)
    notify(REPORT)
    assert seen == [REPORT]
    assert len(unraisable) == 1
    assert unraisable[0].exc_type is RuntimeError and unraisable[0].object is broken


def test_a_bound_method_made_again_is_removed_by_equality(mp, notify):
    class Listener:
        def __init__(self):
            self.seen = 0

        def on_reload(self, report):
            self.seen += 1

    listener = Listener()
    mp.add_reload_callback(listener.on_reload)
    notify(REPORT)
    mp.remove_reload_callback(listener.on_reload)
    notify(REPORT)
    assert listener.seen == 1


def test_a_callable_registered_twice_runs_twice_until_removed_twice(mp, notify):
    seen = []
    mp.add_reload_callback(seen.append)
    mp.add_reload_callback(seen.append)
    notify(REPORT)
    assert len(seen) == 2
    mp.remove_reload_callback(seen.append)
    notify(REPORT)
    assert len(seen) == 3
    mp.remove_reload_callback(seen.append)
    with pytest.raises(ValueError, match="not registered"):
        mp.remove_reload_callback(seen.append)


def test_arguments_are_checked(mp, notify):
    with pytest.raises(TypeError, match="callable"):
        mp.add_reload_callback(42)
    with pytest.raises(ValueError, match="not registered"):
        mp.remove_reload_callback(print)
    with pytest.raises(TypeError, match="dict"):
        notify([REPORT])
    with pytest.raises(TypeError):
        notify()


def test_a_callback_added_during_a_round_runs_from_the_next_round(registered, notify):
    seen = []

    def late(report):
        seen.append("late")

    def adder(report):
        if not seen:
            seen.append("adder")
            registered(late)

    registered(adder)
    notify(REPORT)
    assert seen == ["adder"]
    notify(REPORT)
    assert seen == ["adder", "late"]


def test_a_callback_removed_during_a_round_is_not_called_in_it(mp, registered, notify):
    seen = []

    def victim(report):
        seen.append("victim")

    def remover(report):
        mp.remove_reload_callback(victim)

    registered(remover)
    registered(victim)
    notify(REPORT)
    assert seen == []


def test_a_callback_that_removes_itself_runs_once(mp, notify):
    seen = []

    def once(report):
        seen.append(report)
        mp.remove_reload_callback(once)

    mp.add_reload_callback(once)
    notify(REPORT)
    notify(REPORT)
    assert seen == [REPORT]


def test_the_registry_does_not_keep_the_module_alive(isolated, tmp_path):
    """A callback that refers to the module makes a cycle through the module state, which the
    garbage collector sees (m_traverse) and breaks (m_clear)."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(extension_path(), alone)
    proc = isolated(
        f"""
        import gc, sys, weakref
        sys.path.insert(0, {str(alone)!r})
        import mighty_patcher as mp

        class Holder:
            module = mp

            def __call__(self, report):
                pass

        holder = Holder()
        mp.add_reload_callback(holder)
        gone, holder_gone = weakref.ref(mp), weakref.ref(holder)
        del sys.modules["mighty_patcher"], mp, holder, Holder
        gc.collect()
        assert gone() is None and holder_gone() is None, "the cycle was not collected"
        print("collected")
        """
    )
    assert proc.stdout.strip() == "collected"
