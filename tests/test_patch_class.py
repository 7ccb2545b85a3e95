"""patch_class: a class keeps its identity while its members, dunders and bases change."""

from __future__ import annotations

import textwrap

import pytest


def build(source: str, ns: dict | None = None, name: str = "C"):
    """Run a class definition in `ns` (a module namespace) and return the class, leaving the
    name bound to whatever it was before (as the reloader builds a new version)."""
    ns = {} if ns is None else ns
    before = ns.get(name)
    exec(textwrap.dedent(source), ns)
    cls = ns[name]
    if before is not None:
        ns[name] = before
    return cls


def test_methods_are_patched_in_place_and_held_references_follow(mp):
    ns: dict = {}
    C = build("class C:\n    def m(self):\n        return 'old'\n", ns)
    obj = C()
    bound = obj.m
    function = C.m
    new = build("class C:\n    def m(self):\n        return 'new'\n", ns)

    mp.patch_class(C, new)

    assert obj.m() == "new"
    assert bound() == "new"
    assert function is C.__dict__["m"], "the function object kept its identity"
    assert type(obj) is C


def test_members_are_added_and_removed(mp):
    ns: dict = {}
    C = build(
        """
        class C:
            kept = 1
            def gone(self):
                return 0
        """,
        ns,
    )
    new = build(
        """
        class C:
            kept = 1
            added = 2
            def fresh(self):
                return 'fresh'
        """,
        ns,
    )
    obj = C()
    mp.patch_class(C, new)
    assert obj.fresh() == "fresh" and C.added == 2
    assert not hasattr(C, "gone")


def test_update_and_remove_limit_what_changes(mp):
    ns: dict = {}
    C = build("class C:\n    count = 0\n    registry = []\n    temp = 1\n", ns)
    C.count = 41  # state accumulated at run time
    C.registry.append("entry")
    new = build("class C:\n    count = 0\n    registry = []\n    label = 'x'\n", ns)

    mp.patch_class(C, new, update={"label"}, remove=())

    assert C.count == 41 and C.registry == ["entry"] and C.label == "x"
    assert C.temp == 1, "remove=() removes nothing"
    mp.patch_class(C, new, update=(), remove=["temp"])
    assert not hasattr(C, "temp")


@pytest.mark.parametrize(
    ("dunder", "source", "check"),
    [
        (
            "__repr__",
            "def __repr__(self):\n        return '<patched>'",
            lambda o: repr(o) == "<patched>",
        ),
        ("__add__", "def __add__(self, other):\n        return 42", lambda o: o + 1 == 42),
        ("__len__", "def __len__(self):\n        return 7", lambda o: len(o) == 7),
        ("__eq__", "def __eq__(self, other):\n        return True", lambda o: o == object()),
        ("__call__", "def __call__(self):\n        return 'called'", lambda o: o() == "called"),
        ("__getitem__", "def __getitem__(self, k):\n        return k * 2", lambda o: o[4] == 8),
    ],
)
def test_added_dunders_take_effect_on_existing_instances(mp, dunder, source, check):
    ns: dict = {}
    C = build("class C:\n    pass\n", ns)
    obj = C()
    new = build(f"class C:\n    {source}\n", ns)
    mp.patch_class(C, new)
    assert check(obj)


def test_changed_and_removed_dunders_take_effect(mp):
    ns: dict = {}
    C = build(
        """
        class C:
            def __len__(self):
                return 1
            def __repr__(self):
                return 'r'
        """,
        ns,
    )
    obj = C()
    assert len(obj) == 1
    new = build("class C:\n    def __len__(self):\n        return 2\n", ns)
    mp.patch_class(C, new)
    assert len(obj) == 2
    assert repr(obj).startswith("<") and "C object" in repr(obj)


def test_zero_argument_super_works_in_edited_and_new_methods(mp):
    ns: dict = {}
    build(
        """
        class Base:
            def hello(self):
                return 'base'
            def other(self):
                return 'base other'
        """,
        ns,
        "Base",
    )
    C = build(
        """
        class C(Base):
            def hello(self):
                return 'old ' + super().hello()
        """,
        ns,
    )
    obj = C()
    new = build(
        """
        class C(Base):
            def hello(self):
                return 'new ' + super().hello()
            def other(self):
                return 'new ' + super().other() + ' ' + __class__.__name__
        """,
        ns,
    )
    mp.patch_class(C, new)
    assert obj.hello() == "new base"
    assert obj.other() == "new base other C"
    assert C.__dict__["other"].__closure__[0].cell_contents is C


def test_static_class_methods_and_properties_are_patched_in_place(mp):
    ns: dict = {}
    C = build(
        """
        class C:
            @staticmethod
            def s():
                return 'old s'
            @classmethod
            def c(cls):
                return 'old c'
            @property
            def p(self):
                return 'old p'
        """,
        ns,
    )
    held_static = C.s
    held_getter = C.__dict__["p"].fget
    new = build(
        """
        class C:
            @staticmethod
            def s():
                return 'new s'
            @classmethod
            def c(cls):
                return 'new c ' + cls.__name__
            @property
            def p(self):
                "documented"
                return 'new p'
        """,
        ns,
    )
    obj = C()
    mp.patch_class(C, new)
    assert (C.s(), C.c(), obj.p) == ("new s", "new c C", "new p")
    assert held_static() == "new s"
    assert held_getter(obj) == "new p"
    assert C.__dict__["p"].__doc__ == "documented"


def test_a_property_gaining_a_setter_is_replaced(mp):
    ns: dict = {}
    C = build(
        "class C:\n    @property\n    def p(self):\n        return self.__dict__.get('v', 0)\n", ns
    )
    new = build(
        """
        class C:
            @property
            def p(self):
                return self.__dict__.get('v', 0)
            @p.setter
            def p(self, value):
                self.__dict__['v'] = value
        """,
        ns,
    )
    obj = C()
    mp.patch_class(C, new)
    obj.p = 5
    assert obj.p == 5


def test_nested_classes_keep_their_identity(mp):
    ns: dict = {}
    C = build("class C:\n    class Inner:\n        def f(self):\n            return 'old'\n", ns)
    inner = C.Inner
    obj = inner()
    new = build("class C:\n    class Inner:\n        def f(self):\n            return 'new'\n", ns)
    mp.patch_class(C, new)
    assert C.Inner is inner and obj.f() == "new"


def test_new_bases_are_assigned(mp):
    ns: dict = {}
    build("class Base:\n    pass\n", ns, "Base")
    build("class Mixin:\n    def extra(self):\n        return 'mixed in'\n", ns, "Mixin")
    C = build("class C(Base):\n    pass\n", ns)
    obj = C()
    new = build("class C(Base, Mixin):\n    pass\n", ns)
    mp.patch_class(C, new)
    assert C.__bases__ == (ns["Base"], ns["Mixin"])
    assert obj.extra() == "mixed in"
    assert isinstance(obj, ns["Mixin"])


def cpython_allows_bases_assignment(old_bases: tuple, new_bases: tuple) -> bool:
    probe = type("Probe", old_bases, {})
    try:
        probe.__bases__ = new_bases
    except TypeError:
        return False
    return True


def test_bases_follow_cpython_rules_and_a_refusal_changes_nothing(mp):
    """From `object` to a class defined in Python: CPython up to 3.14 refuses the `__bases__`
    assignment ('deallocator differs'), 3.15 allows it. Either way the outcome is clean."""
    ns: dict = {}
    build("class Mixin:\n    def extra(self):\n        return 'mixed in'\n", ns, "Mixin")
    C = build("class C:\n    def m(self):\n        return 'old'\n", ns)
    obj = C()
    new = build("class C(Mixin):\n    def m(self):\n        return 'new'\n", ns)
    if cpython_allows_bases_assignment((object,), (ns["Mixin"],)):
        mp.patch_class(C, new)
        assert (obj.m(), obj.extra()) == ("new", "mixed in")
    else:
        with pytest.raises(mp.NeedsRestart, match=r"the bases of C changed.*deallocator differs"):
            mp.patch_class(C, new)
        assert C.__bases__ == (object,) and obj.m() == "old"


def test_a_slots_change_needs_a_restart_and_changes_nothing(mp):
    ns: dict = {}
    C = build("class C:\n    __slots__ = ('a',)\n    def m(self):\n        return 'old'\n", ns)
    obj = C()
    obj.a = 1
    new = build(
        "class C:\n    __slots__ = ('a', 'b')\n    def m(self):\n        return 'new'\n", ns
    )
    with pytest.raises(
        mp.NeedsRestart, match=r"__slots__ of C changed from \('a',\) to \('a', 'b'\)"
    ):
        mp.patch_class(C, new)
    assert obj.m() == "old" and obj.a == 1
    assert issubclass(mp.NeedsRestart, mp.PatchError)


def test_unchanged_slots_keep_their_descriptors(mp):
    ns: dict = {}
    C = build("class C:\n    __slots__ = ('a',)\n    def m(self):\n        return self.a\n", ns)
    obj = C()
    obj.a = 3
    new = build(
        "class C:\n    __slots__ = ('a',)\n    def m(self):\n        return self.a * 2\n", ns
    )
    mp.patch_class(C, new)
    assert obj.m() == 6
    obj.a = 4
    assert obj.m() == 8


def test_a_base_with_another_layout_needs_a_restart(mp):
    ns: dict = {}
    C = build("class C:\n    pass\n", ns)
    new = build("class C(dict):\n    pass\n", ns)
    with pytest.raises(mp.NeedsRestart):
        mp.patch_class(C, new)
    assert C.__bases__ == (object,)


def test_a_dataclass_gaining_a_field(mp):
    import dataclasses

    ns: dict = {"dataclass": dataclasses.dataclass}
    C = build("@dataclass\nclass C:\n    x: int\n", ns)
    old_obj = C(1)
    new = build("@dataclass\nclass C:\n    x: int\n    y: int = 5\n", ns)
    mp.patch_class(C, new)
    made = C(1, 2)
    assert (made.x, made.y) == (1, 2)
    assert type(made) is C
    assert [f.name for f in dataclasses.fields(C)] == ["x", "y"]
    assert old_obj.x == 1


def test_subclasses_see_the_change(mp):
    ns: dict = {}
    C = build("class C:\n    def m(self):\n        return 'old'\n", ns)
    Sub = type("Sub", (C,), {})
    obj = Sub()
    new = build(
        """
        class C:
            def m(self):
                return 'new'
            def __len__(self):
                return 3
        """,
        ns,
    )
    mp.patch_class(C, new)
    assert obj.m() == "new" and len(obj) == 3


def test_arguments_are_checked(mp):
    ns: dict = {}
    C = build("class C:\n    pass\n", ns)
    with pytest.raises(TypeError, match="takes a class and its new version"):
        mp.patch_class(C, 1)
    with pytest.raises(TypeError, match="built-in or extension type"):
        mp.patch_class(int, C)
    with pytest.raises(TypeError, match="not a str"):
        mp.patch_class(C, C, update="name")
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        mp.patch_class(C, C, bogus=1)


def test_warm_attribute_and_init_sites_follow_a_class_patch(isolated):
    isolated(
        """
        import textwrap
        import mighty_patcher as mp

        class C:
            limit = 1
            def __init__(self, v):
                self.v = v
            def m(self):
                return self.v + self.limit
        o = C(1)
        def site():
            return C(2).m(), o.m(), C.limit
        for _ in range(3000):
            assert site() == (3, 2, 1)
        ns = {}
        exec(textwrap.dedent('''
        class C:
            limit = 10
            def __init__(self, v, w=100):
                self.v = v + w
            def m(self):
                return self.v * self.limit
        '''), globals(), ns)
        mp.patch_class(C, ns["C"])
        for _ in range(3000):
            assert site() == (1020, 10, 10), site()
        """
    )


def test_new_bases_that_would_take_the_instance_dict_away_need_a_restart(mp):
    """Dropping the base that gave instances their ``__dict__`` (CPython 3.15 allows the
    ``__bases__`` assignment; earlier versions refuse it): the class would be left with no
    ``__dict__`` descriptor, so ``vars(obj)`` would fail on every instance."""
    ns: dict = {}
    build("class Base:\n    def __init__(self):\n        self.n = 1\n", ns, "Base")
    C = build("class C(Base):\n    pass\n", ns)
    obj = C()
    new = build("class C:\n    def __init__(self):\n        self.n = 2\n", ns)
    with pytest.raises(mp.NeedsRestart, match="the bases of C changed"):
        mp.patch_class(C, new)
    assert C.__bases__ == (ns["Base"],)
    assert vars(obj) == {"n": 1} and vars(C()) == {"n": 1}


AUDITED_CLASS = """
import sys
import mighty_patcher as mp

REFUSED = {refused!r}

def hook(event, args):
    if event == "object.__setattr__" and args[1] == REFUSED[0]:
        target = getattr(args[0], "__qualname__", "")
        if target == REFUSED[1]:
            raise PermissionError(f"{{REFUSED}} may not change")
sys.addaudithook(hook)

def build(source):
    ns = {{}}
    exec(source, ns)
    return ns["C"]

C = build('class C:\\n    "old doc"\\n    def a(self):\\n        return "old a"\\n'
          '    def b(self):\\n        return "old b"\\n    X = "old X"\\n')
new = build('class C:\\n    "new doc"\\n    def a(self):\\n        return "new a"\\n'
            '    def b(self):\\n        return "new b"\\n    X = "new X"\\n    Y = "added"\\n')
before = dict(C.__dict__)
codes = (C.a.__code__, C.b.__code__)
obj = C()
try:
    mp.patch_class(C, new)
except PermissionError as exc:
    print("refused:", exc)
else:
    print("applied")
print(obj.a(), "|", obj.b(), "|", C.X, "|", C.__doc__, "|", hasattr(C, "Y"))
assert (C.a.__code__, C.b.__code__) == codes
assert dict(C.__dict__) == before
"""


@pytest.mark.parametrize(
    ("refused", "what"),
    [
        (("__code__", "C.b"), "the second method's new code"),
        (("__doc__", "C"), "the class's new docstring"),
    ],
)
def test_an_audit_hook_refusing_any_part_of_a_class_patch_changes_nothing(isolated, refused, what):
    """Everything that can refuse runs before anything changes: an audit hook vetoing one
    part of the patch leaves the whole class as it was."""
    proc = isolated(AUDITED_CLASS.format(refused=refused))
    lines = proc.stdout.splitlines()
    assert lines[0] == f"refused: {refused} may not change", what
    assert lines[1] == "old a | old b | old X | old doc | False", what
