"""currently_reloading() and reloading(): nestable, per thread."""

from __future__ import annotations

import threading

import pytest


def test_false_outside_any_reload(mp):
    assert mp.currently_reloading() is False


def test_nests_and_unwinds(mp):
    with mp.reloading() as outer:
        assert isinstance(outer, mp.Reloading)
        assert mp.currently_reloading()
        with mp.reloading():
            assert mp.currently_reloading()
        assert mp.currently_reloading()
    assert not mp.currently_reloading()


def test_an_exception_inside_unwinds_and_propagates(mp):
    with pytest.raises(KeyError), mp.reloading():
        raise KeyError("boom")
    assert not mp.currently_reloading()


def test_other_threads_are_not_reloading(mp):
    seen = []
    with mp.reloading():
        t = threading.Thread(target=lambda: seen.append(mp.currently_reloading()))
        t.start()
        t.join()
        assert mp.currently_reloading()
    assert seen == [False]


def test_the_package_re_exports_it(mp):
    from mighty_patcher import currently_reloading

    assert currently_reloading is mp.currently_reloading
