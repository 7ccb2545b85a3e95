"""The framework hook interface (mighty_patcher.hooks), as a third party uses it: an adapter
registered for its framework hears each reload's events, can refuse a change (needs a
restart, nothing of that definition changed), and undoes what it did when a reload fails."""

from __future__ import annotations

import sys
import types

import pytest

from mighty_patcher import NeedsRestart, hooks


@pytest.fixture
def adapter():
    events: list[tuple[str, str, str]] = []

    class Recording(hooks.Adapter):
        module = "some_framework_for_tests"
        refuse: set[str] = set()

        def before_reload(self, event):
            events.append(("before_reload", event.module.__name__.rsplit(".", 1)[1], ""))

        def after_reload(self, event):
            events.append(("after_reload", event.module.__name__.rsplit(".", 1)[1], ""))

        def before_definition(self, event):
            events.append(("before", event.action, event.name))
            if event.name in self.refuse:
                raise NeedsRestart(f"{event.name} is held by the framework")
            event.on_rollback(lambda: events.append(("undo", event.action, event.name)))

        def after_definition(self, event):
            events.append(("after", event.action, event.name))

    hooks.register(Recording)
    sys.modules[Recording.module] = types.ModuleType(Recording.module)
    yield Recording, events
    hooks.unregister(Recording)
    del sys.modules[Recording.module]


def test_an_adapter_is_active_only_once_its_framework_is_imported(adapter):
    cls, _ = adapter
    assert any(isinstance(a, cls) for a in hooks.active())
    del sys.modules[cls.module]
    try:
        assert not any(isinstance(a, cls) for a in hooks.active())
    finally:
        sys.modules[cls.module] = types.ModuleType(cls.module)
    with pytest.raises(ValueError, match="must name the framework"):
        hooks.register(type("Nameless", (hooks.Adapter,), {}))


#: A model class whose metaclass counts how often it ran (as an ORM's registers models).
ORM = """
class Meta(type):
    made = 0
    def __new__(mcs, name, bases, ns):
        Meta.made += 1
        return super().__new__(mcs, name, bases, ns)
class Model(metaclass=Meta):
    title = "a"
    def describe(self):
        return "old"
"""


def test_the_events_of_a_reload_in_order(project, adapter):
    _, events = adapter
    project.write("app", "def view():\n    return 1\ndef gone():\n    pass\n")
    project.module("app")
    project.start()
    project.save("app", "@staticmethod\ndef view():\n    return 2\ndef added():\n    pass\n")
    assert events == [
        ("before_reload", "app", ""),
        ("before", "rebuilt", "view"),
        ("after", "rebuilt", "view"),
        ("before", "added", "added"),
        ("after", "added", "added"),
        ("before", "removed", "gone"),
        ("after", "removed", "gone"),
        ("after_reload", "app", ""),
    ]


def test_a_refused_change_leaves_that_definition_and_applies_the_rest(project, adapter):
    cls, _ = adapter
    cls.refuse = {"Model"}
    project.write(
        "models",
        "class Model:\n    x = 1\n    def m(self):\n        return 1\ndef f():\n    return 1\n",
    )
    models = project.module("models")
    project.start()
    (report,) = project.save(
        "models",
        "class Model:\n    x = 2\n    def m(self):\n        return 2\ndef f():\n    return 2\n",
    )
    assert report.ok and report.needs_restart == ["Model is held by the framework"]
    assert (models.Model.x, models.Model().m(), models.f()) == (1, 1, 2)


def test_what_an_adapter_did_is_undone_when_the_reload_fails(project, adapter):
    _, events = adapter
    project.write("broken", "def f():\n    return 1\nX = 1\n")
    project.module("broken")
    project.start()
    (report,) = project.save("broken", "def f():\n    return 2\nX = 1 / 0\n")
    assert not report.ok
    assert ("undo", "patched", "f") in events
    assert events.index(("undo", "patched", "f")) > events.index(("after", "patched", "f"))


def test_a_refused_rebuild_of_a_model_still_patches_its_methods_in_place(project, adapter):
    # As the Django adapter does: a model's fields cannot change without a migration; its
    # methods can, in place, without the metaclass running again.
    cls, events = adapter
    original = cls.before_definition

    def refuse_rebuilds(self, event):
        if event.action == "rebuilt":
            raise NeedsRestart(f"the fields of {event.name} changed")
        original(self, event)

    cls.before_definition = refuse_rebuilds
    source = ORM
    project.write("orm", source)
    orm = project.module("orm")
    obj = orm.Model()
    project.start()
    (report,) = project.save(
        "orm", source.replace('title = "a"', 'title = "b"').replace('"old"', '"new"')
    )
    assert report.needs_restart == ["the fields of Model changed"]
    assert (orm.Model.title, obj.describe(), orm.Meta.made) == ("a", "new", 1)
    assert ("before", "patched", "Model") in events


def test_what_an_adapter_did_for_a_whole_reload_is_undone_when_it_fails(project, adapter):
    # A setup check turned off in before_reload (as the Flask adapter does) is turned back on
    # through ReloadEvent.on_rollback: after_reload does not run for a failed reload.
    cls, events = adapter
    original = cls.before_reload

    def before_reload(self, event):
        original(self, event)
        event.on_rollback(lambda: events.append(("undo", "reload", "")))

    cls.before_reload = before_reload
    project.write("whole", "X = 1\n")
    project.module("whole")
    project.start()
    (report,) = project.save("whole", "X = 1 / 0\n")
    assert not report.ok
    assert events[-1] == ("undo", "reload", "")
    assert not any(e[0] == "after_reload" for e in events)  # (the failure came before it)


def test_an_adapter_may_have_a_rebuild_patched_in_place(project, adapter):
    # As the Django adapter does for a model's new property: its metaclass reads fields only,
    # so the changed statements are patched in and the metaclass does not run again.
    cls, events = adapter
    original = cls.before_definition

    def in_place(self, event):
        original(self, event)
        if event.action == "rebuilt":
            assert event.members == frozenset({"describe", "loud", "LIMIT"})
            event.in_place = True

    cls.before_definition = in_place
    source = ORM
    project.write("orm", source)
    orm = project.module("orm")
    obj = orm.Model()
    project.start()
    new = source.replace('"old"', '"new"').replace(
        'title = "a"',
        'title = "a"\n    LIMIT = 3\n    @property\n    def loud(self):\n'
        "        return self.title.upper()",
    )
    (report,) = project.save("orm", new)
    assert report.ok and report.needs_restart == []
    assert (obj.describe(), obj.loud, orm.Model.LIMIT, orm.Meta.made) == ("new", "A", 3, 1)
    assert [e for e in events if e[0] == "before"] == [
        ("before", "rebuilt", "Model"),
        ("before", "patched", "Model"),
    ]


def test_a_refused_rebuild_says_patched_only_for_what_was(project, adapter):
    # A field refused while the methods only moved down: their line numbers follow, and the
    # report does not say the class was patched.
    cls, _ = adapter
    original = cls.before_definition

    def refuse_rebuilds(self, event):
        if event.action == "rebuilt":
            raise NeedsRestart(f"the fields of {event.name} changed")
        original(self, event)

    cls.before_definition = refuse_rebuilds
    source = """
    class Meta(type):
        pass
    class Model(metaclass=Meta):
        title = "a"
        def describe(self):
            return "old"
    """
    project.write("orm", source)
    orm = project.module("orm")
    project.start()
    (report,) = project.save("orm", source.replace('title = "a"', 'title = "a"\n        b = 1'))
    assert report.needs_restart == ["the fields of Model changed"]
    assert (report.patched, report.moved) == ([], ["Model"])
    assert orm.Model.describe.__code__.co_firstlineno == 7


def test_an_adapter_that_fails_fails_the_reload_naming_it_and_nothing_is_half_applied(
    project, adapter
):
    # (found by trying the product as a user: a Flask endpoint clash left a save half-applied)
    cls, _ = adapter

    def broken(self, event):
        raise AssertionError("View function mapping is overwriting an existing endpoint")

    cls.after_reload = broken
    project.write("plain", "def f():\n    return 1\nX = 1\n")
    plain = project.module("plain")
    project.start()
    (report,) = project.save("plain", "def f():\n    return 2\nX = 2\n")
    assert not report.ok and (plain.f(), plain.X) == (1, 1)
    assert (
        "the some_framework_for_tests adapter could not apply this reload (after_reload): "
        "AssertionError: View function mapping is overwriting" in report.error
    )


def test_an_adapter_not_in_use_hears_nothing(project, adapter):
    cls, events = adapter
    cls.in_use = lambda self: False
    project.write("quiet", "def f():\n    return 1\n")
    project.module("quiet")
    project.start()
    project.save("quiet", "def f():\n    return 2\n")
    assert events == []
