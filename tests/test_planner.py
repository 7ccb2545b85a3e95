"""The planner alone: which statements a saved file re-runs, redefines, relocates, deletes."""

from __future__ import annotations

import ast
import textwrap

import pytest

from mighty_patcher.planner import plan_module


def plan(old: str, new: str, **kwargs):
    return plan_module(textwrap.dedent(old), textwrap.dedent(new), "mod.py", **kwargs)


def actions(p) -> dict[str, str]:
    return {step.new.label: step.action for step in p.steps}


def test_an_unchanged_file_has_nothing_to_do():
    source = "X = 1\ndef f():\n    return X\n"
    p = plan(source, source)
    assert not p.changed
    assert set(actions(p).values()) == {"keep"}


def test_a_changed_function_is_redefined_and_nothing_else_runs():
    p = plan(
        """
        COUNT = []
        def f():
            return 1
        def g():
            return 2
        """,
        """
        COUNT = []
        def f():
            return 10
        def g():
            return 2
        """,
    )
    assert actions(p) == {"COUNT = []": "keep", "f": "redefine", "g": "keep"}


def test_comments_and_blank_lines_change_nothing_but_move_definitions():
    p = plan(
        "X = 1\ndef f():\n    return X\n",
        "# a comment\n\nX = 1  # one\n\n\ndef f():\n    # inside\n    return X\n",
    )
    assert actions(p) == {"X = 1  # one": "keep", "f": "relocate"}


def test_statements_reading_a_changed_name_rerun_transitively_in_file_order():
    p = plan(
        """
        X = 1
        Y = X * 2
        Z = Y + 1
        W = 5
        def f(a=Z):
            return a
        def g():
            return X
        """,
        """
        X = 2
        Y = X * 2
        Z = Y + 1
        W = 5
        def f(a=Z):
            return a
        def g():
            return X
        """,
    )
    assert actions(p) == {
        "X = 2": "run",
        "Y = X * 2": "follow",  # runs if X really is another object (the applier checks)
        "Z = Y + 1": "follow",
        "W = 5": "keep",
        "f": "follow",  # its default reads Z
        "g": "keep",  # its body reads X only when called
    }


def test_a_statement_before_the_change_does_not_follow_it():
    p = plan("A = B = 0\nB = 1\n", "A = B = 0\nB = 2\n")
    assert actions(p) == {"A = B = 0": "keep", "B = 2": "run"}


def test_statements_calling_currently_reloading_run_every_time():
    p = plan(
        """
        from mighty_patcher import currently_reloading
        if not currently_reloading():
            setup()
        def f():
            return 1
        """,
        """
        from mighty_patcher import currently_reloading
        if not currently_reloading():
            setup()
        def f():
            return 2
        """,
    )
    assert [step.action for step in p.steps] == ["keep", "run", "redefine"]


def test_deleted_definitions_and_assignments_leave_the_namespace():
    p = plan(
        "A = 1\nB = 2\ndef f():\n    pass\nclass C:\n    pass\n",
        "A = 1\n",
    )
    assert {s.label for s in p.deleted} == {"B = 2", "f", "C"}
    assert p.removed_names == {"B", "f", "C"}


def test_a_name_still_assigned_elsewhere_is_not_removed():
    p = plan("X = 1\nX = 2\n", "X = 2\n")
    assert p.removed_names == frozenset()


def test_new_statements_run_and_new_definitions_are_defined():
    p = plan("A = 1\n", "A = 1\nB = A + 1\ndef g():\n    pass\n")
    assert actions(p) == {"A = 1": "keep", "B = A + 1": "run", "g": "redefine"}


def test_a_changed_decorator_argument_or_base_class_name_triggers_redefinition():
    p = plan(
        "N = 1\n@deco(N)\ndef f():\n    pass\nclass C(Base):\n    pass\n",
        "N = 2\n@deco(N)\ndef f():\n    pass\nclass C(Base):\n    pass\n",
    )
    assert actions(p)["f"] == "follow"  # its decorator runs again if N really changed
    assert actions(p)["C"] == "keep"


def test_a_running_module_runs_no_statement_but_literal_constants():
    old = "X = 1\nLIMIT = 3\ncart = make()\nfor i in range(3):\n    log(X)\ndef f():\n    pass\n"
    new = old.replace("X = 1", "X = 2").replace("make()", "make(2)").replace("pass", "return 1")
    p = plan(old, new, running=True)
    assert actions(p) == {
        "X = 2": "run",  # a literal: runs nothing of the program's
        "LIMIT = 3": "keep",
        "cart = make(2)": "defer",  # takes effect at the next start
        "for i in range(3):": "keep",
        "f": "redefine",
    }
    assert [(s.label, sorted(n)) for s, n in p.not_rerun] == [("for i in range(3):", ["X"])]
    # the same edit in a module that is not running runs the changed call
    assert actions(plan(old, new))["cart = make(2)"] == "run"


def test_a_running_module_takes_a_chained_constant():
    p = plan("A = B = 1\n", "A = B = 2\n", running=True)
    assert actions(p) == {"A = B = 2": "run"}


def test_a_running_module_defers_a_changed_container_literal():
    # ``results = []`` is the program's state: a new initial value comes at the next start.
    old = "NAMES = ('a',)\nresults = []\nseen = {}\n"
    new = "NAMES = ('a', 'b')\nresults = [0]\nseen = {1: 2}\n"
    assert actions(plan(old, new, running=True)) == {
        "NAMES = ('a', 'b')": "run",
        "results = [0]": "defer",
        "seen = {1: 2}": "defer",
    }


@pytest.mark.parametrize("running", [False, True])
def test_an_annotation_added_to_an_assignment_does_not_make_its_value_again(running):
    old = "results = []\ncount: int = 0\nregistry = Registry()\n"
    new = "results: list = []\ncount: 'int' = 0\nregistry: Registry = Registry()\n"
    p = plan(old, new, running=running)
    assert set(actions(p).values()) == {"keep"}, actions(p)
    # a changed value is still a change
    p = plan(old, new.replace("Registry()\n", "Registry(2)\n"), running=running)
    assert actions(p)["registry: Registry = Registry(2)"] == ("defer" if running else "run")


def test_the_main_guard_and_a_changed_entry_point_are_deferred_in_a_running_script():
    old = 'def main():\n    pass\nif __name__ == "__main__":\n    main()\n'
    new = 'def main():\n    return 1\nif __name__ == "__main__":\n    main(1)\n'
    assert actions(plan(old, new, running=True))['if __name__ == "__main__":'] == "defer"
    assert actions(plan(old, new))['if __name__ == "__main__":'] == "run"


def test_seeds_are_names_changed_from_outside():
    source = "from a import X\nY = X * 2\nZ = 3\n"
    p = plan(source, source, seeds=["X"])
    assert actions(p) == {"from a import X": "keep", "Y = X * 2": "follow", "Z = 3": "keep"}


def test_duplicate_statements_are_paired_in_order():
    p = plan("log()\nlog()\n", "log()\nlog()\nlog()\n")
    assert [s.action for s in p.steps] == ["keep", "keep", "run"]


def test_an_unknown_baseline_redefines_every_definition_and_runs_nothing():
    p = plan_module(None, "X = 1\ndef f():\n    pass\nclass C:\n    pass\n", "mod.py")
    assert actions(p) == {"X = 1": "keep", "f": "redefine", "C": "redefine"}


def test_a_syntax_error_is_raised_to_the_caller():
    with pytest.raises(SyntaxError):
        plan("X = 1\n", "X = (\n")


def test_class_bodies_read_names_they_do_not_bind():
    p = plan(
        "K = 1\nclass C:\n    a = K\n    b = a\n",
        "K = 2\nclass C:\n    a = K\n    b = a\n",
    )
    assert actions(p)["C"] == "follow"


def test_statements_sharing_a_line_are_analysed_each_on_its_own():
    # Both statements of a line have the same lines of text: the analysis of the baseline's
    # statements that the planner reuses must not hand one of them the other's names.
    def steps(p):
        return [(s.new.node.col_offset, s.action, sorted(s.new.writes)) for s in p.steps]

    p = plan("N = 1\nA = N; B = 2\n", "N = 5\nA = N; B = 2\n")
    assert steps(p) == [(0, "run", ["N"]), (0, "follow", ["A"]), (7, "keep", ["B"])]
    p = plan("N = 1\nA = 1; B = N\n", "N = 5\nA = 1; B = N\n")
    assert steps(p) == [(0, "run", ["N"]), (0, "keep", ["A"]), (7, "follow", ["B"])]


# --- identity is not change; followers are bindings only --------------------------------------


def test_what_reads_an_edited_definition_is_left_to_the_applier_to_follow():
    # The planner cannot tell whether a definition keeps its identity (it nearly always does:
    # patched in place); the bindings that read it are "follow", which the applier runs only
    # for a name really bound to another object (tests/test_state.py watches that happen).
    old = """
    def f():
        return 1
    class C:
        def m(self):
            return 1
    HANDLERS.append(f)
    registry = [f]
    inst = C()
    for i in range(3):
        LOG.append(f())
    """
    p = plan(old, old.replace("return 1", "return 2"))
    assert actions(p) == {
        "f": "redefine",
        "C": "redefine",
        "HANDLERS.append(f)": "keep",
        "registry = [f]": "follow",
        "inst = C()": "follow",
        "for i in range(3):": "keep",
    }
    assert [s.header for s in p.steps if s.action == "redefine"] == [False, False]


def test_only_bindings_follow_a_rebound_name_and_the_others_are_listed():
    old = """
    X = 1
    Y = X * 2
    Y2: int = X
    from m import thing as T
    for i in range(X):
        LOG.append(i)
    if X > 0:
        FLAG = True
    HANDLERS.append(X)
    Z += X
    with lock(X):
        pass
    del W
    """
    p = plan(old, old.replace("X = 1", "X = 2"))
    assert actions(p)["Y = X * 2"] == "follow" and actions(p)["Y2: int = X"] == "follow"
    assert [(s.label, sorted(names)) for s, names in p.not_rerun] == [
        ("for i in range(X):", ["X"]),
        ("if X > 0:", ["X"]),
        ("HANDLERS.append(X)", ["X"]),
        ("Z += X", ["X"]),
        ("with lock(X):", ["X"]),
    ]
    assert p.rebinds == {"X", "Y", "Y2"}


def test_a_body_edit_keeps_the_decorators_and_a_decorator_edit_runs_them():
    old = "@app.route('/a')\ndef view():\n    return 1\n"
    (body,) = plan(old, old.replace("return 1", "return 2")).steps
    (deco,) = plan(old, old.replace("'/a'", "'/b'")).steps
    assert (body.action, body.header) == ("redefine", False)
    assert (deco.action, deco.header) == ("redefine", True)
    p = plan("P = '/a'\n" + old.replace("'/a'", "P"), "P = '/b'\n" + old.replace("'/a'", "P"))
    # (its decorator reads P: the applier runs it again if P really is another object)
    assert [(s.action, s.header) for s in p.steps] == [("run", False), ("follow", False)]


def test_a_class_body_edit_leaves_header_and_fields_alone():
    from mighty_patcher.planner import class_plan

    def cplan(old: str, new: str):
        old_node = ast.parse(textwrap.dedent(old)).body[0]
        new_node = ast.parse(textwrap.dedent(new)).body[0]
        return class_plan(
            old_node,
            new_node,
            textwrap.dedent(old).splitlines(True),
            textwrap.dedent(new).splitlines(True),
        )

    old = """
    @dataclass
    class P(Base):
        x: int = 0
        def total(self):
            return self.x
        @property
        def v(self):
            return 1
        @v.setter
        def v(self, value):
            pass
    """
    body = cplan(old, old.replace("return self.x", "return self.x * 2"))
    assert (body.header, body.fields, body.update) == (False, False, {"total"})
    getter = cplan(old, old.replace("return 1", "return 2"))
    assert getter.update == {"v"} and len(getter.body) == 2, "the setter follows the getter"
    field = cplan(old, old.replace("x: int = 0", "x: int = 1"))
    assert (field.header, field.fields) == (False, True)
    two = "class E(Enum):\n    RED = 1\n    BLUE = 2\n"
    moved = cplan(two, "class E(Enum):\n    BLUE = 2\n    RED = 1\n")
    assert moved.fields, "the order of fields counts (dataclass arguments, enum members)"
    assert cplan(old, old.replace("(Base)", "(Base, Mixin)")).header
    # In a class body an annotation is a field (a dataclass's, a ClassVar): a change of it
    # alone is a change, unlike at module level.
    annotated = cplan(old, old.replace("x: int = 0", "x: ClassVar[int] = 0"))
    assert annotated.fields and annotated.update == {"x"}


def test_a_rebound_name_reaches_importers_that_hold_its_old_value_level_by_level():
    from mighty_patcher.planner import ImportedName, Importer, plan_imports

    mid = Importer(
        "mid",
        "mid.py",
        "from base import X\nY = X * 10\nfor i in range(2):\n    print(X)\n",
        [ImportedName("X", "base", "X")],
        frozenset({"X"}),
    )
    top = Importer(
        "top",
        "top.py",
        "from base import X as again\nfrom mid import Y\nZ = Y + again\n",
        [ImportedName("again", "base", "X"), ImportedName("Y", "mid", "Y")],
        frozenset({"again", "Y"}),
    )
    stale = Importer(
        "stale",
        "stale.py",
        "from base import X\nW = X\n",
        [ImportedName("X", "base", "X")],
        frozenset(),  # its X no longer holds base's old X (it was reassigned): left alone
    )
    steps = plan_imports({"base": frozenset({"X"})}, [mid, top, stale])
    assert [(s.module, s.rebind) for s in steps] == [
        ("mid", [("X", "base", "X")]),
        ("top", [("again", "base", "X"), ("Y", "mid", "Y")]),
    ]
    assert actions(steps[0].plan)["Y = X * 10"] == "follow"
    assert [s.label for s, _ in steps[0].plan.not_rerun] == ["for i in range(2):"]
    assert actions(steps[1].plan)["Z = Y + again"] == "follow"
    assert steps[1].after == {"base", "mid"}
    assert plan_imports({"base": frozenset()}, [mid, top]) == []


def test_a_rebound_name_reaches_what_reads_it_through_its_module():
    from mighty_patcher.planner import ImportedName, Importer, import_table, plan_imports

    source = "import base\nimport base as b\nimport pkg.base\nY = base.X * 2\nW = b.X\n"
    table = import_table(ast.parse(source), "")
    assert table == [
        ImportedName("base", "base", ""),
        ImportedName("b", "base", ""),
        ImportedName("pkg.base", "pkg.base", ""),
    ]
    user = Importer("user", "user.py", source, table, frozenset({"base", "b"}))
    (step,) = plan_imports({"base": frozenset({"X"})}, [user])
    assert step.rebind == [] and step.attributes == {("base.X", "base", "X"), ("b.X", "base", "X")}
    assert step.after == {"base"}
    assert actions(step.plan) == {
        "import base": "keep",
        "import base as b": "keep",
        "import pkg.base": "keep",
        "Y = base.X * 2": "follow",
        "W = b.X": "follow",
    }
    # Nothing reads the name at import (a function reads it when called): no step.
    quiet = Importer(
        "q", "q.py", "import base\ndef f():\n    return base.X\n", table[:1], frozenset({"base"})
    )
    assert plan_imports({"base": frozenset({"X"})}, [quiet]) == []


# --- parsing only what changed -----------------------------------------------------------------


def test_parsing_only_the_changed_region_gives_what_a_whole_parse_gives():
    import itertools
    import random

    from fuzz.generator import Editor, initial

    from mighty_patcher.planner import _Parsed, statements

    checked = 0
    for seed in range(12):
        package, editor = initial(seed, "fz"), Editor(random.Random(seed))
        texts = [package.render()]
        for _ in range(12):
            package, _ops = editor.edit(package)
            texts.append(package.render())
        for module in ("base", "mid", "top"):
            parsed = _Parsed()
            for old, new in itertools.pairwise(texts):
                old_source, new_source = old[module], new[module]
                parsed.get(old_source, "m.py")
                _, _, got = parsed.update(old_source, new_source, "m.py")
                lines = new_source.splitlines(keepends=True)
                want = statements(ast.parse(new_source).body, lines)
                assert [(s.text, s.dump, s.lineno, s.end_lineno) for s in got] == [
                    (s.text, s.dump, s.lineno, s.end_lineno) for s in want
                ]
                for g, w in zip(got, want, strict=True):
                    assert ast.dump(g.node, include_attributes=True) == ast.dump(
                        w.node, include_attributes=True
                    )
                checked += 1
    assert checked == 12 * 3 * 12


def test_a_region_that_does_not_parse_alone_raises_the_whole_files_error():
    from mighty_patcher.planner import _Parsed

    parsed = _Parsed()
    old = "def f():\n    return 1\n\n\ndef g():\n    return 2\n"
    parsed.get(old, "m.py")
    with pytest.raises(SyntaxError) as caught:
        parsed.update(old, old.replace("return 1", 'return """1'), "m.py")
    assert caught.value.lineno == 2


def test_a_deleted_rebinding_restores_the_last_binding_left():
    p = plan("X = 1\ndef g():\n    return X\nX = 2\n", "X = 1\ndef g():\n    return X\n")
    assert actions(p) == {"X = 1": "restore", "g": "keep"}
    assert p.removed_names == frozenset()
    p = plan("def f():\n    return 1\ndef f():\n    return 2\n", "def f():\n    return 1\n")
    assert [s.action for s in p.steps] == ["restore"]


def test_a_definition_pasted_with_its_name_unchanged_makes_a_new_object():
    one = "@app.route('/a')\ndef view():\n    return 'A'\n"
    two = one + "@app.route('/b')\ndef view():\n    return 'B'\n"
    p = plan(one, two)
    assert [(s.action, s.shadows) for s in p.steps] == [("keep", False), ("redefine", True)]
