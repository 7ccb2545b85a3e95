"""Which functions a class member holds: one rule, in the native core (patch/members.rs),
followed by patch_class and used by the reload engine through codes.py."""

from __future__ import annotations

import functools
import textwrap

import pytest

from mighty_patcher import codes

SOURCE = """
import functools

def deco(f):
    @functools.wraps(f)
    def wrapper(*args):
        return f(*args)
    return wrapper

class Prop(property):
    pass

class C:
    def method(self):
        return {v}
    @staticmethod
    def static():
        return {v}
    @classmethod
    def klass(cls):
        return {v}
    @property
    def getter(self):
        return {v}
    @property
    def both(self):
        return {v}
    @both.setter
    def both(self, value):
        pass
    @property
    def grows(self):
        return {v}
    {grows_setter}
    custom = Prop(lambda self: {v})
    @deco
    def decorated(self):
        return {v}
    wrapped_static = staticmethod(len)
    value = {v}
    class Inner:
        def method(self):
            return {v}
"""
SETTER = "@grows.setter\n    def grows(self, value):\n        pass"


def build(version: int, *, setter: bool = False) -> type:
    ns: dict = {}
    source = SOURCE.format(v=version, grows_setter=SETTER if setter else "")
    exec(compile(textwrap.dedent(source), "/members.py", "exec"), ns)
    return ns["C"]


def held(cls: type, name: str) -> list[str]:
    return [f.__qualname__ for f in codes.member_functions(cls.__dict__[name])]


def test_the_functions_each_kind_of_member_holds():
    C = build(1)
    assert held(C, "method") == ["C.method"]
    assert held(C, "static") == ["C.static"]
    assert held(C, "klass") == ["C.klass"]
    assert held(C, "getter") == ["C.getter"]
    assert held(C, "both") == ["C.both", "C.both"]
    decorated = C.__dict__["decorated"]
    assert codes.member_functions(decorated) == [decorated], "the wrapper is the member"
    for name in ("custom", "wrapped_static", "value", "Inner"):
        assert held(C, name) == [], f"{name} holds no function patch_class patches in place"


def test_pairs_are_what_patch_class_patches_in_place():
    old, new = build(1), build(2, setter=True)
    pairs = {
        name: codes.member_function_pairs(old.__dict__[name], new.__dict__[name])
        for name in old.__dict__
        if name in new.__dict__ and not name.startswith("__")
    }
    in_place = {name for name, p in pairs.items() if p}
    assert in_place == {"method", "static", "klass", "getter", "both", "decorated"}
    assert codes.member_function_pairs(old.__dict__["grows"], new.__dict__["grows"]) == []
    kept = {name: old.__dict__[name] for name in old.__dict__}
    held_before = {name: codes.member_functions(kept[name]) for name in in_place}

    import mighty_patcher as mp

    mp.patch_class(old, new)
    for name in in_place:
        assert old.__dict__[name] is kept[name], f"{name} was patched in place"
        assert codes.member_functions(old.__dict__[name]) == held_before[name]
    assert old.__dict__["grows"] is not kept["grows"], "a property gaining a setter is replaced"
    assert old.__dict__["grows"].fset is not None
    assert old().method() == 2 and old.static() == 2 and old().both == 2


def test_the_native_answer_distinguishes_replaced_from_in_place_without_functions():
    import mighty_patcher as mp

    empty_old, empty_new = property(), property()
    assert mp.member_function_pairs(empty_old, empty_new) == []
    assert mp.member_function_pairs(property(len), property(lambda: 1)) is None
    assert mp.member_function_pairs(staticmethod(len), staticmethod(len)) is None
    assert mp.member_function_pairs(1, 1) is None


def test_functions_made_in_a_file_follow_decorators_members_and_nested_classes():
    C = build(1)
    found = sorted(f.__qualname__ for f in codes.functions_made_in(C, "/members.py"))
    assert found == [
        "C.<lambda>",
        "C.Inner.method",
        "C.both",  # getter
        "C.both",  # setter
        "C.decorated",  # the wrapper (functools.wraps copies the qualname)
        "C.decorated",  # the function it wraps
        "C.getter",
        "C.grows",
        "C.klass",
        "C.method",
        "C.static",
    ]
    assert codes.functions_made_in(C, "/elsewhere.py") == []
    made = codes.functions_made_in(C, "/members.py")
    assert len(made) == len({id(f) for f in made}), "each function once"


@pytest.mark.parametrize("bad", [functools.partial(len), object(), None, type])
def test_anything_else_holds_nothing(bad):
    assert codes.member_functions(bad) == []
