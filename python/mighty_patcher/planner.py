"""The reload planner: what a save changes, as a plan; pure (it parses and compares, and never
runs the program's code).

The rule it keeps is the product's: **a save changes what the edit changed, and nothing the
program did is done again.** In its terms:

- *Identity is not change.* A definition patched in place keeps its identity, so it is not a
  change for anything that reads it: ``inst = C()``, ``HANDLERS.append(f)`` or
  ``registry = Registry()`` never run again because ``C``, ``f`` or ``Registry`` was edited.
  Only a name *rebound to a different object* is a change: one a changed statement assigns
  (``X = 2`` instead of ``X = 1``), a definition new in the file, an imported copy rebound.
- *Changed statements run; followers are bindings only.* A new or changed statement runs, in
  file order. An unchanged statement runs again only when it is a binding (assignment,
  annotated assignment, import, ``type`` alias, or a definition whose decorators, defaults or
  bases read the name) and reads a rebound name: ``Y = X * 2`` follows ``X``. Loops, ``with``,
  ``try``, ``match``, ``if`` blocks, calls, ``del`` and augmented assignments run only when
  their own text changed; those that read a rebound name are listed as not re-run, so the
  report can say what still holds an old value. A statement that calls
  ``currently_reloading()`` runs on every reload of its module.
- *The running program is never re-entered.* In a module whose body is still executing (the
  ``__main__`` script, a module mid-import) no top-level statement runs: definitions are
  patched, a changed constant ``NAME = <literal>`` takes its new value, and every other
  changed statement is *deferred* (it takes effect at the next start, and the report says so).

Matching. Top-level statements of the old and the new source are paired: definitions
(``def``, ``async def``, ``class``) by kind and name (the *n*-th definition of a name with the
*n*-th), other statements by their syntax tree (a statement whose syntax did not change is the
same statement wherever it moved; comments and blank lines never count as a change), and
last an assignment to one name by its value alone (an annotation added or changed is not a new
value: ``results = []`` and ``results: list = []`` are the same statement).

Plan. In new-file order, each statement is one of:

- ``keep``: nothing to do;
- ``relocate``: unchanged, but its lines moved (or it makes functions, a ``def`` inside an
  ``if`` or a lambda, and moved): its code objects get the new line numbers, nothing runs;
- ``redefine``: a definition that is new, changed, or whose decorators, defaults or bases read
  a rebound name: built anew and patched into the existing object;
- ``run``: a new or changed statement, or a binding that follows a rebound name;
- ``defer``: a new or changed statement of a running module, not run.

Old statements with no partner are deleted; the names only they assigned leave the module.

Across modules (:func:`plan_imports`): a name rebound in a reloaded module reaches every module
that did ``from m import name [as alias]`` and still holds the old value; there it is a rebound
name, whose binding followers run; what they rebind goes on to that module's importers.
"""

from __future__ import annotations

import ast
import bisect
import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Action",
    "ClassPlan",
    "FollowStep",
    "ImportedName",
    "Importer",
    "Plan",
    "Step",
    "Stmt",
    "analyse",
    "class_plan",
    "names_read",
    "plan_imports",
    "plan_module",
    "reload_branch",
    "same_value",
]

Action = Literal["keep", "relocate", "redefine", "run", "follow", "restore", "defer"]
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
#: Statements that only bind names: the ones that follow a rebound name they read.
BINDINGS = (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom) + (
    (ast.TypeAlias,) if hasattr(ast, "TypeAlias") else ()
)


@dataclass
class Stmt:
    """One top-level statement (of a module, or of a class body).

    Its syntax tree may be positioned ``offset`` lines above where the statement is now: a
    statement below an edit that added or removed lines keeps the tree of the parse before
    (see :meth:`_Parsed.update`), and :attr:`node` positions a copy only when asked (to be
    compiled). Its analysis (names, text, dump) does not depend on where it is."""

    raw: ast.stmt
    text: str  # its source lines, exactly
    kind: Literal["def", "class", "other"]
    name: str | None  # for definitions
    writes: frozenset[str]
    reads: frozenset[str]
    calls_reloading: bool
    #: Names read by what a definition's statement evaluates at once: its decorators, defaults
    #: and annotations (a def), its bases, keywords and decorators (a class). Empty otherwise.
    header_reads: frozenset[str] = frozenset()
    #: It makes functions (a ``def`` inside an ``if``, a lambda, a class), whose code objects
    #: carry line numbers.
    makes_code: bool = False
    #: How many lines below its ``raw`` tree's positions the statement now is.
    offset: int = 0
    _dump: str | None = None
    _lines: tuple[int, int, ast.stmt] | None = None

    @property
    def node(self) -> ast.stmt:
        """Its syntax tree, positioned where the statement is (a copy is made once when the
        statement moved)."""
        if self.offset:
            moved = copy.deepcopy(self.raw)
            ast.increment_lineno(moved, self.offset)
            self.raw, self.offset = moved, 0
        return self.raw

    @property
    def dump(self) -> str:
        """The syntax tree without positions: equal for statements that differ only in
        comments, blank lines and where they sit."""
        if self._dump is None:
            self._dump = ast.dump(self.raw, include_attributes=False)
        return self._dump

    @property
    def lineno(self) -> int:
        return self.raw_lines[0] + self.offset

    @property
    def end_lineno(self) -> int:
        return self.raw_lines[1] + self.offset

    @property
    def raw_lines(self) -> tuple[int, int]:
        """The first and last lines of ``raw`` (decorators included)."""
        raw = self.raw
        if self._lines is None or self._lines[2] is not raw:
            self._lines = (first_line(raw), raw.end_lineno or raw.lineno, raw)
        return self._lines[0], self._lines[1]

    @property
    def binding(self) -> bool:
        """A statement that only binds names (see :data:`BINDINGS`; definitions too)."""
        return self.kind != "other" or isinstance(self.raw, BINDINGS)

    @property
    def label(self) -> str:
        """How the statement is named in reports."""
        if self.name is not None:
            return self.name
        line = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return line if len(line) <= 40 else line[:37] + "..."


@dataclass
class Step:
    action: Action
    new: Stmt
    old: Stmt | None  # its partner in the old source, if any
    #: Rebound names it reads (a class body re-plans its members with them).
    dirty: frozenset[str] = frozenset()
    #: For a ``redefine``: its decorators (a def) or its header (a class: bases, keywords,
    #: decorators, type parameters) changed, and must run again (as they must when they read
    #: a name really rebound: the applier adds that). Otherwise only the body is rebuilt and
    #: patched, and decorators, metaclasses and ``__init_subclass__`` hooks do not run.
    header: bool = False
    #: For a new definition: another statement that stays binds the same name (a def pasted
    #: with its name unchanged): it makes a new object, as a restart would, rather than being
    #: patched into the one the other statement made.
    shadows: bool = False


@dataclass
class Plan:
    steps: list[Step]
    deleted: list[Stmt]
    #: Names assigned only by deleted statements: they leave the namespace.
    removed_names: frozenset[str]
    new_tree: ast.Module
    future_flags: int = 0
    changed: bool = field(default=True)
    #: Unchanged statements that read a rebound name and are not run (they are not bindings,
    #: or the module is running), with the rebound names they read.
    not_rerun: list[tuple[Stmt, frozenset[str]]] = field(default_factory=list)
    #: The module is running (its body is executing): see :func:`plan_module`.
    running: bool = False

    @property
    def rebinds(self) -> frozenset[str]:
        """The names this plan may rebind, as far as the source tells (a superset: a
        definition patched in place keeps its identity, which the applier checks)."""
        found: set[str] = set()
        for step in self.steps:
            if step.action in ("run", "follow", "restore") or (
                step.action == "redefine" and step.old is None
            ):
                found |= step.new.writes
        return frozenset(found)


def first_line(node: ast.stmt) -> int:
    """The first line of a statement, decorators included (as code objects count it)."""
    decorators: list[ast.expr] = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def segment(lines: list[str], node: ast.stmt) -> str:
    start = first_line(node) - 1
    end = node.end_lineno if node.end_lineno is not None else node.lineno
    return "".join(lines[start:end])


def dump_nodes(nodes: Iterable[ast.AST]) -> str:
    """The syntax trees of ``nodes`` without positions, joined: equal for nodes that differ
    only in comments, blank lines and where they sit."""
    return "|".join(ast.dump(n, include_attributes=False) for n in nodes)


def decorators(node: ast.stmt) -> list[ast.expr]:
    return list(getattr(node, "decorator_list", []))


def header_nodes(node: ast.stmt) -> list[ast.AST]:
    """What a definition statement evaluates before its body exists and hands to code of the
    program's: a def's decorators; a class's bases, keywords, decorators and type
    parameters (what its metaclass and ``__init_subclass__`` hooks receive)."""
    if isinstance(node, ast.ClassDef):
        parts: list[ast.AST] = [*node.bases, *node.keywords, *node.decorator_list]
        return parts + list(getattr(node, "type_params", []))
    return list(decorators(node))


# --- names read and written ------------------------------------------------------------------


def _bound_by_import(alias: ast.alias) -> str:
    if alias.asname:
        return alias.asname
    return alias.name.split(".")[0]


def _calls_reloading(node: ast.expr) -> bool:
    """``currently_reloading()`` (or ``mighty_patcher.currently_reloading()``)."""
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(func, ast.Name) and func.id == "currently_reloading") or (
        isinstance(func, ast.Attribute) and func.attr == "currently_reloading"
    )


def reload_branch(node: ast.stmt) -> list[ast.stmt] | None:
    """Of a reload guard, ``if currently_reloading():`` or ``if not currently_reloading():``,
    the statements a reload runs (``currently_reloading()`` is then true): the body of the
    first, the ``else`` of the second (none without one). None for any other statement."""
    if not isinstance(node, ast.If):
        return None
    test = node.test
    if _calls_reloading(test):
        return node.body
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return node.orelse if _calls_reloading(test.operand) else None
    return None


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for an attribute chain on a name; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _dotted(node.value)
        return None if owner is None else f"{owner}.{node.attr}"
    return None


class _Names(ast.NodeVisitor):
    """Names a statement reads and assigns when it *executes* at this level: the bodies of
    functions and lambdas run later and are skipped (their decorators, defaults and
    annotations are not); a class body runs at once, but assigns into the class."""

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.writes: set[str] = set()
        self.calls_reloading = False

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.reads.add(node.id)
        else:
            self.writes.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # ``config.RATE`` reads ``config`` and, for a follower, the dotted name: a module's
        # attribute that a reload of that module rebinds (see :func:`plan_imports`); so does
        # ``pkg.config.RATE`` (and ``pkg.config``).
        if isinstance(node.ctx, ast.Load):
            dotted = _dotted(node)
            if dotted is not None:
                self.reads.add(dotted)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if _calls_reloading(node):
            self.calls_reloading = True
        self.generic_visit(node)

    def _signature(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        args = node.args
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)
        if not isinstance(node, ast.Lambda):
            all_args = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            all_args += [a for a in (args.vararg, args.kwarg) if a is not None]
            for arg in all_args:
                if arg.annotation is not None:
                    self.visit(arg.annotation)
            if node.returns is not None:
                self.visit(node.returns)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._signature(node)
        self.writes.add(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._signature(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        inner = _Names()
        for stmt in node.body:
            inner.visit(stmt)
        # The class body reads names from the enclosing scope that it does not bind itself.
        self.reads |= inner.reads - inner.writes
        self.calls_reloading |= inner.calls_reloading
        self.writes.add(node.name)

    def visit_Import(self, node: ast.Import) -> None:
        self.writes.update(_bound_by_import(a) for a in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.writes.update(_bound_by_import(a) for a in node.names if a.name != "*")

    def visit_Global(self, node: ast.Global) -> None:
        self.writes.update(node.names)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.writes.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.writes.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.writes.add(node.rest)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.writes.add(node.name)
        self.generic_visit(node)


def _writes(node: ast.stmt) -> frozenset[str]:
    names = _Names()
    names.visit(node)
    return frozenset(names.writes)


def names_read(node: ast.AST) -> frozenset[str]:
    """The names ``node`` reads when it runs (not those of the functions and lambdas it makes,
    which read theirs when called)."""
    names = _Names()
    names.visit(node)
    return frozenset(names.reads)


def _header_reads(node: ast.stmt) -> frozenset[str]:
    names = _Names()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for decorator in node.decorator_list:
            names.visit(decorator)
        names._signature(node)
    elif isinstance(node, ast.ClassDef):
        for part in header_nodes(node):
            names.visit(part)
    return frozenset(names.reads)


def analyse(node: ast.stmt, lines: list[str]) -> Stmt:
    names = _Names()
    names.visit(node)
    if isinstance(node, ast.ClassDef):
        kind: Literal["def", "class", "other"] = "class"
        name: str | None = node.name
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        kind, name = "def", node.name
    else:
        kind, name = "other", None
    return Stmt(
        raw=node,
        text=segment(lines, node),
        kind=kind,
        name=name,
        writes=frozenset(names.writes),
        reads=frozenset(names.reads),
        calls_reloading=names.calls_reloading,
        header_reads=_header_reads(node) if name is not None else frozenset(),
        makes_code=kind == "other" and any(isinstance(n, SCOPES) for n in ast.walk(node)),
    )


def _known_key(text: str, node: ast.stmt) -> tuple[str, int]:
    """What identifies a statement among those analysed before: its lines, and the column it
    starts at (``A = N; B = 2`` is two statements with the same lines)."""
    return text, node.col_offset


def statements(
    body: Iterable[ast.stmt],
    lines: list[str],
    known: dict[tuple[str, int], Stmt] | None = None,
) -> list[Stmt]:
    """The statements of a body. ``known``: statements analysed before, by lines and starting
    column (:func:`_known_key`); one with the same lines starting at the same column is the
    same statement, which reads and writes the same names, so only its node and position are
    new."""
    result = []
    for node in body:
        text = segment(lines, node)
        seen = known.get(_known_key(text, node)) if known else None
        if seen is None or type(seen.raw) is not type(node):
            result.append(analyse(node, lines))
        else:
            again = copy.copy(seen)  # the rest, its dump too, carries over
            again.raw, again.offset = node, 0
            result.append(again)
    return result


class _Parsed:
    """The last source parsed for each file, with its statements: the next reload plans from
    that source (its baseline), so it is not parsed again; of the new source, only the lines
    the save changed are parsed (:meth:`update`), and the statements that kept their text
    are not analysed again."""

    def __init__(self) -> None:
        self._by_file: dict[str, tuple[str, ast.Module, list[Stmt]]] = {}

    def get(self, source: str, filename: str) -> tuple[ast.Module, list[Stmt]]:
        cached = self._by_file.get(filename)
        if cached is not None and cached[0] == source:
            return cached[1], cached[2]
        tree = ast.parse(source, filename)
        known = _known(cached[2]) if cached is not None else None
        stmts = statements(tree.body, source.splitlines(keepends=True), known)
        self._by_file[filename] = (source, tree, stmts)
        return tree, stmts

    def update(
        self, old_source: str, new_source: str, filename: str
    ) -> tuple[list[Stmt], ast.Module, list[Stmt]]:
        """The statements of ``old_source``, and the tree and statements of ``new_source``.

        When ``old_source`` is the one parsed last, only the new source's changed region is
        parsed: the lines between the unchanged beginning and end of the file, widened to the
        top-level statements they touch. The statements before it are the old ones; those
        after it are the old ones too, ``offset`` by the lines the save added or removed (the
        lines of a top-level statement parse the same wherever they are). The tree returned
        holds the statements' ``raw`` trees: use it for what they are, not where (compile
        ``Stmt.node``). Anything unusual (a region that does not parse alone) parses the
        whole file, which raises the SyntaxError with the right position."""
        _, old_stmts = self.get(old_source, filename)
        old_lines = old_source.splitlines(keepends=True)
        new_lines = new_source.splitlines(keepends=True)
        limit = min(len(old_lines), len(new_lines))
        head = 0
        while head < limit and old_lines[head] == new_lines[head]:
            head += 1
        tail = 0
        while tail < limit - head and old_lines[-1 - tail] == new_lines[-1 - tail]:
            tail += 1
        first, last = head + 1, len(old_lines) - tail  # the changed old lines, 1-based
        # (statements are in order and do not overlap: found by bisection)
        before = old_stmts[: bisect.bisect_left(old_stmts, first, key=_end_line)]
        after = old_stmts[bisect.bisect_right(old_stmts, last, key=_first_line) :]
        if len(before) + len(after) < len(old_stmts) // 2 or not new_source.endswith("\n"):
            return old_stmts, *self.get(new_source, filename)
        start = before[-1].end_lineno + 1 if before else 1
        delta = len(new_lines) - len(old_lines)
        end = (after[0].lineno - 1 if after else len(old_lines)) + delta
        try:
            region = ast.parse("".join(new_lines[start - 1 : end]), filename)
        except SyntaxError:
            return old_stmts, *self.get(new_source, filename)
        ast.increment_lineno(region, start - 1)
        middle = statements(region.body, new_lines, _known(old_stmts))
        moved = after
        if delta:
            moved = []
            for s in after:
                again = copy.copy(s)
                again.offset += delta
                moved.append(again)
        stmts = [*before, *middle, *moved]
        tree = ast.Module(body=[s.raw for s in stmts], type_ignores=[])
        self._by_file[filename] = (new_source, tree, stmts)
        return old_stmts, tree, stmts

    def tree(self, source: str, filename: str) -> ast.Module | None:
        """The syntax tree of ``source`` if it is the source last parsed for ``filename``
        (not to be changed, nor compiled: see :meth:`update`); None otherwise."""
        cached = self._by_file.get(filename)
        return cached[1] if cached is not None and cached[0] == source else None


def _end_line(s: Stmt) -> int:
    return s.end_lineno


def _first_line(s: Stmt) -> int:
    return s.lineno


def _known(stmts: list[Stmt]) -> dict[tuple[str, int], Stmt]:
    return {_known_key(s.text, s.raw): s for s in stmts}


_parsed = _Parsed()


def parsed_tree(source: str, filename: str) -> ast.Module:
    """The syntax tree of ``source`` of ``filename``: the one the planner holds when it is the
    source it planned to last, else parsed now (an empty module if it does not parse). Not
    to be changed."""
    tree = _parsed.tree(source, filename)
    if tree is not None:
        return tree
    try:
        return ast.parse(source, filename)
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])


# --- matching --------------------------------------------------------------------------------


def _definition_keys(stmts: list[Stmt]) -> dict[tuple[str, str, int], Stmt]:
    seen: dict[tuple[str, str], int] = {}
    keyed: dict[tuple[str, str, int], Stmt] = {}
    for s in stmts:
        if s.name is None:
            continue
        base = (s.kind, s.name)
        n = seen.get(base, 0)
        seen[base] = n + 1
        keyed[(s.kind, s.name, n)] = s
    return keyed


def match(old: list[Stmt], new: list[Stmt], *, by_value: bool = False) -> dict[int, Stmt]:
    """For each new statement (by position), its old partner. ``by_value`` (a module's body,
    or a class's that no machinery reads, where an annotation is no field): an assignment
    whose annotation alone changed is its old self."""
    partners: dict[int, Stmt] = {}
    old_defs = _definition_keys(old)
    new_defs = _definition_keys(new)
    by_identity = {id(s): i for i, s in enumerate(new)}
    for key, stmt in new_defs.items():
        if key in old_defs:
            partners[by_identity[id(stmt)]] = old_defs[key]
    # A statement the incremental parse carried over has its old tree: its own partner.
    by_tree = {id(s.raw): s for s in old if s.name is None}
    used: set[int] = set()
    for i, s in enumerate(new):
        if s.name is None and id(s.raw) in by_tree:
            partners[i] = by_tree[id(s.raw)]
            used.add(id(partners[i]))
    # Other statements: the same text first (cheap), then the same syntax tree.
    by_text: dict[str, list[Stmt]] = {}
    by_dump: dict[str, list[Stmt]] = {}
    for s in old:
        if s.name is None and id(s) not in used:
            by_text.setdefault(s.text.strip(), []).append(s)
    pending = []
    for i, s in enumerate(new):
        if s.name is not None or i in partners:
            continue
        candidates = by_text.get(s.text.strip(), [])
        while candidates and id(candidates[0]) in used:
            candidates.pop(0)
        if candidates:
            partner = candidates.pop(0)
            used.add(id(partner))
            partners[i] = partner
        else:
            pending.append(i)
    if pending:
        for s in old:
            if s.name is None and id(s) not in used:
                by_dump.setdefault(s.dump, []).append(s)
        unmatched = []
        for i in pending:
            candidates = by_dump.get(new[i].dump, [])
            if candidates:
                partner = candidates.pop(0)
                used.add(id(partner))
                partners[i] = partner
            else:
                unmatched.append(i)
        # Last, an assignment whose annotation alone changed (``results = []`` became
        # ``results: list = []``): its value is not made again.
        if unmatched and by_value:
            values: dict[tuple[str, str], list[Stmt]] = {}
            for s in old:
                value_key = _value_key(s)
                if value_key is not None and id(s) not in used:
                    values.setdefault(value_key, []).append(s)
            for i in unmatched:
                value_key = _value_key(new[i])
                candidates = values.get(value_key, []) if value_key is not None else []
                if candidates:
                    partner = candidates.pop(0)
                    used.add(id(partner))
                    partners[i] = partner
    return partners


def _value_key(stmt: Stmt) -> tuple[str, str] | None:
    if stmt.name is not None:
        return None
    found = _single_assignment(stmt.raw)
    return None if found is None else (found[0], ast.dump(found[1]))


def same_definition(old: Stmt, new: Stmt) -> bool:
    return old.text == new.text or old.dump == new.dump


def same_header(old: ast.stmt, new: ast.stmt) -> bool:
    return dump_nodes(header_nodes(old)) == dump_nodes(header_nodes(new))


def _constant_assignment(node: ast.stmt) -> bool:
    """``NAME = <literal>`` (or annotated, or ``A = B = <literal>``) of an immutable value:
    evaluating it runs nothing of the program's and makes nothing the program could have
    added to (``results = []`` is the program's state, not a constant)."""
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        expr: ast.expr = node.value
    else:
        target_value = _single_assignment(node)
        if target_value is None:
            return False
        expr = target_value[1]
    try:
        value = ast.literal_eval(expr)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return _immutable(value)


def same_value(a: object, b: object) -> bool:
    """Whether a name bound to ``b`` instead of ``a`` is no rebinding: the same object, or an
    equal immutable value of the same type (``X * 0 + 1000`` computed again makes a new int,
    and what reads it has nothing new to read)."""
    if a is b:
        return True
    if type(a) is not type(b) or not _immutable(a) or not _immutable(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # (an immutable value cannot fail to compare, but say no if it does)
        return False


def _immutable(value: object) -> bool:
    if isinstance(value, (tuple, frozenset)):
        return all(_immutable(v) for v in value)
    return isinstance(value, (int, float, complex, str, bytes, bool, type(None)))


def _single_assignment(node: ast.stmt) -> tuple[str, ast.expr] | None:
    """``NAME = value`` or ``NAME: annotation = value``: the name and the value."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target, value = node.targets[0], node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None and node.simple:
        target, value = node.target, node.value
    else:
        return None
    return (target.id, value) if isinstance(target, ast.Name) else None


def future_flags(tree: ast.Module) -> int:
    import __future__

    flags = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                feature = getattr(__future__, alias.name, None)
                if feature is not None:
                    flags |= feature.compiler_flag
    return flags


def _decide(stmt: Stmt, partner: Stmt | None, dirty: frozenset[str], *, running: bool) -> Step:
    """The rule for one statement, given the names a statement before it may have rebound
    (``dirty``). ``follow``: the statement did not change but reads such a name; the applier
    runs it (a binding) or rebuilds it (a definition) only if one of them was really bound to
    a different object, since a definition patched in place keeps its identity."""
    reads_dirty = stmt.reads & dirty
    if partner is None:
        if stmt.name is not None:
            return Step("redefine", stmt, None, reads_dirty, header=True)
        if running and not _constant_assignment(stmt.raw):
            return Step("defer", stmt, None)
        return Step("run", stmt, None, reads_dirty)
    moved = partner.text != stmt.text or partner.lineno != stmt.lineno
    if stmt.name is not None:
        # A def reads only its header at once; a class also reads what its body reads (a
        # class attribute ``rate = RATE`` follows RATE). Whether the header runs again for
        # a rebound name is the applier's to say (it knows what was really rebound).
        if partner.raw is not stmt.raw and not same_definition(partner, stmt):
            header = not same_header(partner.raw, stmt.raw)
            return Step("redefine", stmt, partner, reads_dirty, header=header)
        if reads_dirty:
            return Step("follow", stmt, partner, reads_dirty)
        return Step("relocate" if moved else "keep", stmt, partner, reads_dirty)
    if stmt.calls_reloading and not running:
        return Step("run", stmt, partner, reads_dirty)
    if reads_dirty and stmt.binding and not running:
        return Step("follow", stmt, partner, reads_dirty)
    if stmt.makes_code and moved:
        return Step("relocate", stmt, partner, reads_dirty)
    return Step("keep", stmt, partner, reads_dirty)


def plan_body(
    old: list[Stmt],
    new: list[Stmt],
    *,
    seeds: Iterable[str] = (),
    running: bool = False,
    by_value: bool = False,
) -> tuple[list[Step], list[Stmt], frozenset[str], list[tuple[Stmt, frozenset[str]]]]:
    """The steps for one body (a module's or a class's): steps, deleted statements, names
    removed, and the unchanged statements that read a name that may have been rebound but are
    not run (not bindings, or the module is running; the applier reports those whose name
    really was rebound).

    A name that a deleted statement bound and a statement that stays binds too gets that
    statement's value back, as a restart would give: its last binding statement is
    ``restore`` (``X = 2`` deleted after ``X = 1``; a def pasted twice, the copy deleted)."""
    partners = match(old, new, by_value=by_value)
    matched = {id(p) for p in partners.values()}
    deleted = [s for s in old if id(s) not in matched]
    deleted_writes: set[str] = set().union(*(s.writes for s in deleted)) if deleted else set()
    last_writer: dict[str, int] = {}
    writers: dict[str, int] = {}
    for i, stmt in enumerate(new):
        for name in stmt.writes:
            last_writer[name] = i
            writers[name] = writers.get(name, 0) + 1
    restore_at = {last_writer[n] for n in deleted_writes if n in last_writer}
    dirty = set(seeds)
    steps = []
    not_rerun = []
    for i, stmt in enumerate(new):
        partner = partners.get(i)
        step = _decide(stmt, partner, frozenset(dirty), running=running)
        if stmt.name is not None and partner is None and writers.get(stmt.name, 0) > 1:
            step.shadows = True
        if i in restore_at and step.action in ("keep", "relocate", "follow") and not running:
            if stmt.binding:
                step = Step("restore", stmt, partner, step.dirty, header=True)
        if step.action in ("run", "follow", "restore", "redefine"):
            dirty |= stmt.writes
        elif step.action in ("keep", "relocate") and step.dirty and stmt.kind == "other":
            not_rerun.append((stmt, step.dirty))
        steps.append(step)
    still_written = set(last_writer)
    removed = frozenset(deleted_writes - still_written)
    return steps, deleted, removed, not_rerun


def plan_module(
    old_source: str | None,
    new_source: str,
    filename: str,
    *,
    seeds: Iterable[str] = (),
    running: bool = False,
) -> Plan:
    """The plan to go from ``old_source`` (last applied) to ``new_source``.

    ``seeds``: names rebound from outside (an imported copy), whose binding followers run.
    ``running``: the module's body is still executing (the ``__main__`` script, a module
    mid-import): no statement of it runs but a constant ``NAME = <literal>``; the other new or
    changed statements are deferred, and followers are listed as not re-run.

    ``old_source`` None: the source the module was imported from is unknown (it was imported
    before anything recorded it); every definition is then redefined and nothing else runs.

    Raises ``SyntaxError`` if ``new_source`` does not parse; nothing else.
    """
    if old_source is None:
        new_tree, new_stmts = _parsed.get(new_source, filename)
        steps = [Step("redefine" if s.name is not None else "keep", s, None) for s in new_stmts]
        return Plan(steps, [], frozenset(), new_tree, future_flags(new_tree), running=running)
    # The baseline is usually the source the last reload parsed, found in the cache; of the
    # new source only what changed is parsed.
    old_stmts, new_tree, new_stmts = _parsed.update(old_source, new_source, filename)
    steps, deleted, removed, not_rerun = plan_body(
        old_stmts, new_stmts, seeds=seeds, running=running, by_value=True
    )
    changed = bool(deleted) or any(s.action not in ("keep", "defer", "follow") for s in steps)
    return Plan(
        steps=steps,
        deleted=deleted,
        removed_names=removed,
        new_tree=new_tree,
        future_flags=future_flags(new_tree),
        changed=changed,
        not_rerun=not_rerun,
        running=running,
    )


# --- classes ---------------------------------------------------------------------------------


@dataclass
class ClassPlan:
    """The member-level plan of a class whose definition changed."""

    #: Bases, keywords, decorators or type parameters changed (or read a rebound name): the
    #: class is rebuilt through its real machinery and every member is taken.
    header: bool
    #: Members to take from the new body (what its new, changed and following statements
    #: assign), and members to remove (assigned only by deleted statements).
    update: frozenset[str]
    remove: frozenset[str]
    #: Of ``update``: the members only new statements make (for the report: "added").
    added: frozenset[str]
    #: Unchanged members that only moved: (name, old statement, new statement).
    relocated: list[tuple[str, ast.stmt, ast.stmt]]
    #: The statements of the new body to run for ``update``, in order.
    body: list[ast.stmt]
    #: A statement that a class's machinery may read changed, was added or went away: an
    #: assignment or annotation (fields, enum members), or a definition whose decorators
    #: changed (a validator). Only edits of plain method bodies leave this False.
    fields: bool
    #: The statements of ``body`` that are definitions whose decorators stayed as they were
    #: (or new undecorated ones): method bodies, which no machinery reads.
    methods: list[ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=list)

    def methods_only(self) -> ClassPlan:
        """This plan without its field changes: the method bodies alone."""
        return ClassPlan(
            header=False,
            update=frozenset(node.name for node in self.methods),
            added=self.added,
            remove=frozenset(),
            relocated=self.relocated,
            body=list(self.methods),
            fields=False,
            methods=list(self.methods),
        )

    def without(self, names: frozenset[str]) -> ClassPlan:
        """This plan without the members ``names`` (and the statements that only make them)."""
        if not names:
            return self
        return ClassPlan(
            header=self.header,
            update=self.update - names,
            added=self.added - names,
            remove=self.remove - names,
            relocated=self.relocated,
            body=[n for n in self.body if not _writes(n) or not _writes(n) <= names],
            fields=self.fields,
            methods=self.methods,
        )


def class_plan(
    old: ast.ClassDef,
    new: ast.ClassDef,
    old_lines: list[str],
    new_lines: list[str],
    *,
    seeds: Iterable[str] = (),
    plain: bool = False,
) -> ClassPlan:
    """The member-level plan of a class whose definition changed. ``seeds``: module-level
    names rebound before the class statement; the members that read them (``a = X * 2``, a
    default ``b=X``, a decorator) are taken too, even when their text is the same. ``plain``:
    no machinery reads the class's fields (no decorator, metaclass or ``__init_subclass__``),
    so an annotation alone is no change of a member (``items = []`` -> ``items: list = []``
    keeps the list)."""
    seeds = frozenset(seeds)
    header = not same_header(old, new) or bool(_header_reads(new) & seeds)
    old_stmts, new_stmts = statements(old.body, old_lines), statements(new.body, new_lines)
    steps, _, removed, _ = plan_body(old_stmts, new_stmts, seeds=seeds, by_value=plain)
    update: set[str] = set()
    relocated: list[tuple[str, ast.stmt, ast.stmt]] = []
    body: list[ast.stmt] = []
    # Fields, in order (the order counts: dataclass arguments, enum members).
    fields = _fields(old_stmts) != _fields(new_stmts)
    methods: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    # (an assignment whose text changed has no partner: a name is new if no old statement
    # bound it)
    added = set().union(*(s.new.writes for s in steps if s.old is None)) if steps else set()
    added -= set().union(*(s.writes for s in old_stmts)) if old_stmts else set()
    for step in steps:
        # (a class body runs its followers: its new members are taken whatever they are)
        if step.action in ("run", "redefine", "follow", "restore"):
            update |= step.new.writes
            body.append(step.new.node)
            if step.dirty and step.new.kind != "def":
                fields = True  # a field that follows a rebound name gets a new value
            node = step.new.node
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and dump_nodes(
                node.decorator_list
            ) == dump_nodes(decorators(step.old.node) if step.old is not None else []):
                methods.append(node)
        elif step.action == "relocate" and step.new.name is not None and step.old is not None:
            relocated.append((step.new.name, step.old.node, step.new.node))
    if ast.get_docstring(old, clean=False) != ast.get_docstring(new, clean=False) and body:
        if body[0] is (new.body[0] if new.body else None):
            update.add("__doc__")  # the docstring statement runs first in the bare body
    return ClassPlan(
        header=header,
        update=frozenset(update),
        added=frozenset(added),
        remove=removed,
        relocated=relocated,
        body=body,
        fields=fields,
        methods=methods,
    )


def _fields(stmts: list[Stmt]) -> list[str]:
    """What a class's machinery may read of its body, in order: every statement but the
    undecorated ``def`` s (a decorated one by its name and decorators: a validator)."""
    found = []
    for s in stmts:
        if s.kind != "def":
            found.append(s.dump)
        elif decorators(s.raw):
            found.append(f"{s.name}@{dump_nodes(decorators(s.raw))}")
    return found


# --- across modules --------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedName:
    """``from module import name as alias`` (``name`` is ``*`` for a star import), or
    ``import module [as alias]`` (``name`` is empty: the alias is the module itself)."""

    alias: str
    module: str
    name: str


def import_table(tree: ast.Module, package: str) -> list[ImportedName]:
    """The top-level ``from ... import`` statements of a module, resolved against its package
    (relative imports; the ones that do not resolve are left out), and its ``import m``,
    ``import a.b as m`` and ``import a.b`` statements (the last one's alias is ``a.b``: the
    module is read as ``a.b.name``)."""
    import importlib.util

    table = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            try:
                absolute = importlib.util.resolve_name(
                    "." * node.level + (node.module or ""), package
                )
            except (ImportError, ValueError):
                continue
            for alias in node.names:
                table.append(ImportedName(alias.asname or alias.name, absolute, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                # (``import a.b`` binds ``a``; the module is read as ``a.b``: its alias)
                table.append(ImportedName(alias.asname or alias.name, alias.name, ""))
    return table


@dataclass
class Importer:
    """What :func:`plan_imports` needs to know of a watched module that may hold copies."""

    name: str
    path: str
    source: str  # the source it runs (its baseline)
    imports: Sequence[ImportedName]
    #: Its names that hold, before the reload, the very object the exporter's name held (for
    #: a star import, the public names it shares with the exporter): the copies to rebind;
    #: and the aliases of its ``import m`` statements that hold the module ``m``.
    copies: frozenset[str]
    running: bool = False


@dataclass
class FollowStep:
    """A module that holds copies of rebound names: the copies to rebind (``(alias, exporter,
    name)``), and the plan of its followers (the source against itself, seeded with the
    aliases)."""

    module: str
    path: str
    rebind: list[tuple[str, str, str]]
    plan: Plan
    #: The modules whose rebinding this step takes: if one of them failed, skip this step.
    after: frozenset[str]
    #: ``(alias.name, module, name)`` for each name rebound in a module it holds as ``alias``
    #: (``import module as alias``): its binding statements that read ``alias.name`` follow it
    #: (those of the names the modules before it in the plan really rebound, as for copies).
    attributes: frozenset[tuple[str, str, str]] = frozenset()


def plan_imports(
    rebound: Mapping[str, frozenset[str]], importers: Sequence[Importer]
) -> list[FollowStep]:
    """One plan for every module a reload reaches through ``from m import name`` copies.

    ``rebound``: for each module reloaded, the names it rebound to a different object (names
    patched in place are not in it). ``importers``: the watched modules, in import order.
    A module holding a copy of a rebound name gets it rebound, and its binding followers run;
    what they rebind, and the rebound copies themselves, reach its own importers in turn.
    Passes in import order (exporters usually come first, so one pass usually does it) until
    nothing new is reached; a copy is rebound once, so import cycles end."""
    reached: dict[str, set[str]] = {module: set(names) for module, names in rebound.items()}
    taken: dict[str, set[str]] = {}
    result: list[FollowStep] = []
    progress = True
    while progress:
        progress = False
        for importer in importers:
            if importer.name in rebound:
                continue  # reloaded itself: it runs its own source
            done = taken.setdefault(importer.name, set())
            rebind: list[tuple[str, str, str]] = []
            attributes: set[tuple[str, str, str]] = set()
            for imported in importer.imports:
                submodule = f"{imported.module}.{imported.name}"
                if imported.name not in ("", "*") and reached.get(submodule):
                    # from pkg import config: config.name reads the module pkg.config
                    if imported.alias in importer.copies:
                        attributes |= {
                            (f"{imported.alias}.{n}", submodule, n)
                            for n in reached[submodule]
                            if f"{imported.alias}.{n}" not in done
                        }
                names = reached.get(imported.module)
                if not names:
                    continue
                if not imported.name:  # import m: what reads m.name follows it
                    if imported.alias in importer.copies:
                        attributes |= {
                            (f"{imported.alias}.{n}", imported.module, n)
                            for n in names
                            if f"{imported.alias}.{n}" not in done
                        }
                    continue
                if imported.name == "*":
                    pairs = [(n, n) for n in sorted(names) if not n.startswith("_")]
                else:
                    pairs = [(imported.alias, imported.name)] if imported.name in names else []
                rebind += [
                    (alias, imported.module, name)
                    for alias, name in pairs
                    if alias in importer.copies and alias not in done
                ]
            if not rebind and not attributes:
                continue
            aliases = frozenset(alias for alias, _, _ in rebind)
            dotted = frozenset(d for d, _, _ in attributes)
            done |= aliases | dotted
            plan = plan_module(
                importer.source,
                importer.source,
                importer.path,
                seeds=aliases | dotted,
                running=importer.running,
            )
            if not rebind and not plan.not_rerun and all(s.action != "follow" for s in plan.steps):
                continue  # nothing there reads the attributes at import
            after = frozenset(module for _, module, _ in [*rebind, *attributes])
            result.append(
                FollowStep(importer.name, importer.path, rebind, plan, after, frozenset(attributes))
            )
            reached.setdefault(importer.name, set()).update(aliases | plan.rebinds)
            progress = True
    return result
