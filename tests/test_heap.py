"""functions_using: one pass over the heap finds the closures a factory made."""

from __future__ import annotations

import sys

import pytest

from conftest import define


def test_finds_every_closure_made_from_a_code_object_and_nothing_else(mp):
    ns: dict = {}
    make = define(
        "def make(n):\n    def inner():\n        return n\n    return inner\n", ns, "make"
    )
    inner_code = make(0).__code__
    made = [make(i) for i in range(50)]
    holder = {"deep": [[made[7]]]}
    unrelated = [define("def other():\n    return 0\n", ns, "other") for _ in range(5)]

    found = mp.functions_using([inner_code])

    assert len(found) == 50
    assert {id(f) for f in found} == {id(f) for f in made}
    assert holder["deep"][0][0] in found
    assert not any(f in found for f in unrelated)


def test_several_codes_at_once_and_any_iterable(mp):
    ns: dict = {}
    a = define("def a():\n    return 1\n", ns, "a")
    b = define("def b():\n    return 2\n", ns, "b")
    found = mp.functions_using(c for c in (a.__code__, b.__code__))
    assert {id(f) for f in found} >= {id(a), id(b)}
    assert mp.functions_using(set()) == []


def test_found_functions_are_not_leaked(mp):
    ns: dict = {}
    f = define("def f():\n    return 1\n", ns, "f")
    before = sys.getrefcount(f)
    for _ in range(100):
        found = mp.functions_using([f.__code__])
        del found
    assert sys.getrefcount(f) == before


def test_only_code_objects_are_accepted(mp):
    with pytest.raises(TypeError, match="iterable of code objects"):
        mp.functions_using([len])
    with pytest.raises(TypeError):
        mp.functions_using(3)


def test_finds_closures_among_many_objects(mp):
    ns: dict = {}
    make = define("def make(n):\n    return lambda: n\n", ns, "make")
    ballast = [{"i": i} for i in range(200_000)]
    made = [make(i) for i in range(10)]
    assert len(mp.functions_using([made[0].__code__])) == 10
    assert len(ballast) == 200_000


def test_instances_of_compares_types_exactly(mp):
    class Base:
        pass

    class Sub(Base):
        pass

    class Liar:
        @property
        def __class__(self):  # never read: types are compared by pointer
            raise AssertionError("user code ran")

    bases, subs, liars = [Base() for _ in range(3)], [Sub() for _ in range(2)], [Liar()]
    found = mp.instances_of([Base])
    assert {id(o) for o in found} == {id(o) for o in bases}
    found = mp.instances_of({Base, Sub, Liar})
    assert {id(o) for o in found} == {id(o) for o in bases + subs + liars}
    assert mp.instances_of([]) == []


def test_instances_of_takes_types_only(mp):
    with pytest.raises(TypeError, match="iterable of types"):
        mp.instances_of([object()])
    with pytest.raises(TypeError):
        mp.instances_of(3)


def test_live_instances_finds_subclasses_through_type_subclasses(mp):
    from mighty_patcher.instances import live_instances

    class Meta(type):
        def __subclasses__(cls):  # a metaclass cannot hide subclasses
            return []

    class Base(metaclass=Meta):
        pass

    class Sub(Base):
        pass

    made = [Base(), Sub(), Sub()]
    assert {id(o) for o in live_instances([Base])} == {id(o) for o in made}
