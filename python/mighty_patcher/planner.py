"""The reload planner: a statement-level diff of a module's source against the source last
applied, turned into a plan of what to run, redefine, relocate and delete.

Pure: it parses and compares, and never executes the module's code.

Matching. Top-level statements of the old and the new source are paired: definitions
(``def``, ``async def``, ``class``) by kind and name (the *n*-th definition of a name with the
*n*-th), other statements by their syntax tree (so a statement that did not change in syntax
is the same statement wherever it moved, and comments or blank lines never count as a
change).

Plan. In new-file order, each statement is one of:

- ``keep``: unchanged, and none of the names it reads changed: not executed, so the state it
  made survives;
- ``relocate``: an unchanged definition whose lines moved (or an unchanged statement that
  makes functions: a ``def`` inside an ``if``, a lambda): its code objects are swapped for
  ones with the new line numbers, nothing is executed;
- ``redefine``: a definition that changed, or whose decorators, defaults or base classes read
  a changed name: built anew and patched into the existing object;
- ``run``: a new or changed statement, or an unchanged one reading a name that a statement
  run or redefined before it assigns (dataflow, transitively, in file order), or one that
  calls ``currently_reloading()``.

Old statements with no partner are deleted; the names only they assigned leave the module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = ["Action", "Plan", "Step", "Stmt", "analyse", "plan_module"]

Action = Literal["keep", "relocate", "redefine", "run"]
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


@dataclass
class Stmt:
    """One top-level statement (of a module, or of a class body)."""

    node: ast.stmt
    text: str  # its source lines, exactly
    kind: Literal["def", "class", "other"]
    name: str | None  # for definitions
    writes: frozenset[str]
    reads: frozenset[str]
    calls_reloading: bool
    #: It makes functions (a ``def`` inside an ``if``, a lambda, a class), whose code objects
    #: carry line numbers.
    makes_code: bool = False
    _dump: str | None = None

    @property
    def dump(self) -> str:
        """The syntax tree without positions: equal for statements that differ only in
        comments, blank lines and where they sit."""
        if self._dump is None:
            self._dump = ast.dump(self.node, include_attributes=False)
        return self._dump

    @property
    def lineno(self) -> int:
        return first_line(self.node)

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
    #: Names it reads that a statement run or redefined before it assigns (or that changed
    #: from outside): a class body re-plans its members with them.
    dirty: frozenset[str] = frozenset()


@dataclass
class Plan:
    steps: list[Step]
    deleted: list[Stmt]
    #: Names assigned only by deleted statements: they leave the namespace.
    removed_names: frozenset[str]
    new_tree: ast.Module
    future_flags: int = 0
    changed: bool = field(default=True)


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


# --- names read and written ------------------------------------------------------------------


def _bound_by_import(alias: ast.alias) -> str:
    if alias.asname:
        return alias.asname
    return alias.name.split(".")[0]


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

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (isinstance(func, ast.Name) and func.id == "currently_reloading") or (
            isinstance(func, ast.Attribute) and func.attr == "currently_reloading"
        ):
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
        node=node,
        text=segment(lines, node),
        kind=kind,
        name=name,
        writes=frozenset(names.writes),
        reads=frozenset(names.reads),
        calls_reloading=names.calls_reloading,
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
        if seen is None or type(seen.node) is not type(node):
            result.append(analyse(node, lines))
        else:
            result.append(replace(seen, node=node))  # the rest, its dump too, carries over
    return result


class _Parsed:
    """The last source parsed for each file, with its statements: the next reload plans from
    that source (its baseline), so it is not parsed again, and the statements of the new
    source that kept their text are not analysed again."""

    def __init__(self) -> None:
        self._by_file: dict[str, tuple[str, ast.Module, list[Stmt]]] = {}

    def get(self, source: str, filename: str) -> tuple[ast.Module, list[Stmt]]:
        cached = self._by_file.get(filename)
        if cached is not None and cached[0] == source:
            return cached[1], cached[2]
        tree = ast.parse(source, filename)
        known = {_known_key(s.text, s.node): s for s in cached[2]} if cached is not None else None
        stmts = statements(tree.body, source.splitlines(keepends=True), known)
        self._by_file[filename] = (source, tree, stmts)
        return tree, stmts

    def tree(self, source: str, filename: str) -> ast.Module | None:
        """The syntax tree of ``source`` if it is the source last parsed for ``filename``
        (not to be changed); None otherwise (nothing is parsed)."""
        cached = self._by_file.get(filename)
        return cached[1] if cached is not None and cached[0] == source else None


_parsed = _Parsed()


def parsed_tree(source: str, filename: str) -> ast.Module | None:
    """The syntax tree the planner holds for ``source`` of ``filename`` (the source it planned
    to last), or None; not to be changed."""
    return _parsed.tree(source, filename)


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


def match(old: list[Stmt], new: list[Stmt]) -> dict[int, Stmt]:
    """For each new statement (by position), its old partner."""
    partners: dict[int, Stmt] = {}
    old_defs = _definition_keys(old)
    new_defs = _definition_keys(new)
    by_identity = {id(s): i for i, s in enumerate(new)}
    for key, stmt in new_defs.items():
        if key in old_defs:
            partners[by_identity[id(stmt)]] = old_defs[key]
    # Other statements: the same text first (cheap), then the same syntax tree.
    by_text: dict[str, list[Stmt]] = {}
    by_dump: dict[str, list[Stmt]] = {}
    for s in old:
        if s.name is None:
            by_text.setdefault(s.text.strip(), []).append(s)
    used: set[int] = set()
    pending = []
    for i, s in enumerate(new):
        if s.name is not None:
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
        for i in pending:
            candidates = by_dump.get(new[i].dump, [])
            if candidates:
                partner = candidates.pop(0)
                used.add(id(partner))
                partners[i] = partner
    return partners


def same_definition(old: Stmt, new: Stmt) -> bool:
    return old.text == new.text or old.dump == new.dump


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":``"""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    parts = [test.left, *test.comparators]
    names = [p for p in parts if isinstance(p, ast.Name) and p.id == "__name__"]
    consts = [p for p in parts if isinstance(p, ast.Constant) and p.value == "__main__"]
    return bool(names and consts and isinstance(test.ops[0], ast.Eq))


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


def plan_body(
    old: list[Stmt],
    new: list[Stmt],
    *,
    seeds: Iterable[str] = (),
    skip_main_guard: bool = False,
) -> tuple[list[Step], list[Stmt], frozenset[str]]:
    """The steps for one body (a module's or a class's)."""
    partners = match(old, new)
    dirty = set(seeds)
    steps = []
    for i, stmt in enumerate(new):
        partner = partners.get(i)
        reads_dirty = bool(stmt.reads & dirty)
        if skip_main_guard and _is_main_guard(stmt.node):
            action: Action = "keep"
        elif partner is None:
            action = "redefine" if stmt.name is not None else "run"
        elif stmt.name is not None:
            if not same_definition(partner, stmt) or reads_dirty:
                action = "redefine"
            elif partner.text != stmt.text or partner.lineno != stmt.lineno:
                action = "relocate"
            else:
                action = "keep"
        elif reads_dirty or stmt.calls_reloading:
            action = "run"
        elif stmt.makes_code and (partner.text != stmt.text or partner.lineno != stmt.lineno):
            action = "relocate"
        else:
            action = "keep"
        step = Step(action, stmt, partner, frozenset(stmt.reads & dirty))
        if action in ("run", "redefine"):
            dirty |= stmt.writes
        steps.append(step)
    matched = {id(p) for p in partners.values()}
    deleted = [s for s in old if id(s) not in matched]
    still_written = set().union(*(s.writes for s in new)) if new else set()
    removed = (
        frozenset(set().union(*(s.writes for s in deleted)) - still_written)
        if deleted
        else frozenset()
    )
    return steps, deleted, removed


def plan_module(
    old_source: str | None,
    new_source: str,
    filename: str,
    *,
    seeds: Iterable[str] = (),
    is_main: bool = False,
) -> Plan:
    """The plan to go from ``old_source`` (last applied) to ``new_source``.

    ``seeds``: names that changed from outside (an imported copy rebound), whose readers must
    re-run. ``is_main``: the module is ``__main__``; its ``if __name__ == "__main__":`` block
    (the program's entry point) is never re-run.

    ``old_source`` None: the source the module was imported from is unknown (it was imported
    before anything recorded it); every definition is then redefined and nothing else runs.

    Raises ``SyntaxError`` if ``new_source`` does not parse; nothing else.
    """
    if old_source is None:
        new_tree, new_stmts = _parsed.get(new_source, filename)
        steps = [Step("redefine" if s.name is not None else "keep", s, None) for s in new_stmts]
        return Plan(steps, [], frozenset(), new_tree, future_flags(new_tree))
    # The baseline first: usually the source the last reload parsed, found in the cache.
    _, old_stmts = _parsed.get(old_source, filename)
    new_tree, new_stmts = _parsed.get(new_source, filename)
    steps, deleted, removed = plan_body(old_stmts, new_stmts, seeds=seeds, skip_main_guard=is_main)
    changed = bool(deleted) or any(s.action != "keep" for s in steps)
    return Plan(
        steps=steps,
        deleted=deleted,
        removed_names=removed,
        new_tree=new_tree,
        future_flags=future_flags(new_tree),
        changed=changed,
    )


def class_plan(
    old: ast.ClassDef,
    new: ast.ClassDef,
    old_lines: list[str],
    new_lines: list[str],
    *,
    seeds: Iterable[str] = (),
) -> tuple[bool, frozenset[str], frozenset[str], frozenset[str]]:
    """The member-level plan of a class whose definition changed: which names to take from
    the new class, which to remove, and whether the header (bases, keywords, decorators,
    type parameters) changed, in which case the whole class is taken.

    ``seeds``: module-level names that changed before the class statement; the members that
    read them (``a = X * 2``, a default ``b=X``, a decorator) are taken too, even when their
    text is the same."""
    header_changed = _header(old) != _header(new)
    steps, _, removed = plan_body(
        statements(old.body, old_lines), statements(new.body, new_lines), seeds=seeds
    )
    update: set[str] = set()
    relocated: set[str] = set()
    for step in steps:
        if step.action in ("run", "redefine"):
            update |= step.new.writes
        elif step.action == "relocate" and step.new.name is not None:
            relocated.add(step.new.name)
    return header_changed, frozenset(update), removed, frozenset(relocated)


def _header(node: ast.ClassDef) -> str:
    parts: list[ast.AST] = [*node.bases, *node.keywords, *node.decorator_list]
    parts += getattr(node, "type_params", [])
    return dump_nodes(parts)
