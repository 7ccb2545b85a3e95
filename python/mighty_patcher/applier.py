"""The applier: carries out a plan in a module's real namespace.

Statements run in file order in the module's own ``__dict__``, so that each sees what the
ones before it made, exactly as an import would. Definitions are built by executing their
``def``/``class`` statement with the module as globals but a scratch dict as locals (so the
new object does not replace the binding), and then patched into the existing object: every
reference held elsewhere runs the new code. Everything is recorded in a
:class:`~mighty_patcher.transaction.Transaction` first; the caller rolls it back if any step
raises.
"""

from __future__ import annotations

import ast
import copy
import enum
import functools
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import mighty_patcher as native
from .codes import find_inner, member_functions, nested_codes, nested_pairs, wrapper_chain
from .planner import Plan, Step, Stmt, class_plan, dump_nodes, first_line
from .report import ReloadReport
from .transaction import Transaction

__all__ = ["Applier", "Transform"]

#: ``transform(tree, path, source) -> tree``: a hook every piece of new code goes through
#: before it is compiled. ``tree`` is a one-statement ``ast.Module`` (a copy the hook may change
#: in place), ``path`` the file being reloaded and ``source`` its whole new text (the
#: statement's line numbers point into it). The pytest plugin passes the statements of test
#: modules through pytest's assertion rewriter, as pytest did when it imported them.
Transform = Callable[[ast.Module, str, str], ast.Module]

_MISSING: Any = object()
_ENUM_INTERNALS = frozenset(
    {
        "_member_map_",
        "_member_names_",
        "_value2member_map_",
        "_unhashable_values_",
        "_member_type_",
        "_value_repr_",
        "_new_member_",
        "_use_args_",
        "_hashable_values_",
        "_singles_mask_",
        "_all_bits_",
        "_flag_mask_",
        "_inverted_",
        "_boundary_",
    }
)


@dataclass
class Applier:
    """Applies one plan to one module."""

    module: types.ModuleType
    path: str
    plan: Plan
    old_lines: list[str]
    new_lines: list[str]
    txn: Transaction
    report: ReloadReport
    #: Definitions deleted by earlier reloads, kept to be patched when they come back: by
    #: name at module level (with the statement that made them, whose decorators tell
    #: whether they changed meanwhile), by ``Class.member`` (qualified name) for class
    #: members.
    graveyard: dict[str, Any]
    #: (old code, new code) of nested functions, for closures made before the edit.
    code_pairs: list[tuple[types.CodeType, types.CodeType]] = field(default_factory=list)
    transform: Transform | None = None

    @property
    def ns(self) -> dict[str, Any]:
        return self.module.__dict__

    @functools.cached_property
    def new_source(self) -> str:
        return "".join(self.new_lines)

    def compile(self, node: ast.stmt, *, transform: bool = True) -> types.CodeType:
        """``node`` compiled as a module of its own; through the transform unless told not."""
        tree = ast.Module(body=[node], type_ignores=[])
        if transform and self.transform is not None:
            # A copy: the plan keeps comparing the statements it holds.
            tree = self.transform(copy.deepcopy(tree), self.path, self.new_source)
        code: types.CodeType = compile(
            tree, self.path, "exec", flags=self.plan.future_flags, dont_inherit=True
        )
        return code

    # --- the plan, in order ----------------------------------------------------------------

    def apply(self) -> None:
        self.txn.keep_namespace(self.ns)
        handlers: dict[str, Callable[[Step], None]] = {
            "run": self.run,
            "redefine": self.redefine,
            "relocate": self.relocate,
        }
        for step in self.plan.steps:
            if step.action != "keep":
                handlers[step.action](step)
        self.delete()
        docstring = ast.get_docstring(self.plan.new_tree, clean=False)
        if self.ns.get("__doc__") != docstring:
            self.ns["__doc__"] = docstring

    def run(self, step: Step) -> None:
        stmt = step.new
        before = {name: self.ns.get(name, _MISSING) for name in stmt.writes}
        code = self.compile(stmt.node)
        exec(code, self.ns)
        self.report.rerun.append(stmt.label)
        # A function the statement itself defines (a lambda, a def inside an `if`) keeps the
        # identity of the one its previous version defined (its partner, a statement of the
        # old source that is gone, or one an earlier reload deleted). Not any function it
        # assigns: `handler = f` becoming `handler = g` must not turn f into g.
        made_here = {id(c) for c in nested_codes(code)}
        previous = ([step.old] if step.old is not None else []) + self.plan.deleted
        for name, old in before.items():
            new = self.ns.get(name, _MISSING)
            nodes = [s.node for s in previous if name in s.writes]
            revived = old is _MISSING and name in self.graveyard
            if revived:
                old, node = self.graveyard[name]
                nodes = [node] if node is not None else []
            if (
                isinstance(old, types.FunctionType)
                and isinstance(new, types.FunctionType)
                and old is not new
                and id(new.__code__) in made_here
                and old.__code__.co_filename == self.path
                and any(_defined_in(old, n) for n in nodes)
            ):
                self.patch_function(old, new)
                self.ns[name] = old
                if revived:
                    del self.graveyard[name]

    def build(self, stmt: Stmt, name: str) -> Any:
        """Executes a ``def``/``class`` statement without rebinding its name: the new object."""
        scratch: dict[str, Any] = {}
        exec(self.compile(stmt.node), self.ns, scratch)
        return scratch[name]

    def redefine(self, step: Step) -> None:
        stmt = step.new
        name = stmt.name
        assert name is not None
        current = self.ns.get(name, _MISSING)
        revived = False
        old_node = step.old.node if step.old is not None else None
        if current is _MISSING and name in self.graveyard:
            (current, old_node), revived = self.graveyard[name], True
        new = self.build(stmt, name)
        if current is _MISSING:
            self.ns[name] = new
            self.report.added.append(name)
            return
        if isinstance(current, type) and isinstance(new, type):
            # A class back from the graveyard was built before the changes made since: take
            # all of the new one (no old statement to diff with).
            kept = self.patch_class(
                name, current, new, None if revived else old_node, stmt.node, step.dirty
            )
        else:
            kept = self.patch_callable(name, current, new, old_node, stmt.node)
        self.ns[name] = current if kept else new
        if revived:
            del self.graveyard[name]

    # --- functions -------------------------------------------------------------------------

    def patch_function(self, old: types.FunctionType, new: types.FunctionType) -> None:
        self.code_pairs.extend(nested_pairs(old.__code__, new.__code__))
        self.txn.keep_function(old)
        native.patch_function(old, new)

    def patch_callable(
        self, name: str, current: Any, new: Any, old_node: ast.stmt | None, new_node: ast.stmt
    ) -> bool:
        """Patches a (possibly decorated) function definition into ``current``; returns
        whether ``current`` stays (False: the name is rebound to ``new``)."""
        decorators_same = old_node is not None and dump_nodes(_decorators(old_node)) == dump_nodes(
            _decorators(new_node)
        )
        if decorators_same:
            old_inner = find_inner(current, name, self.path)
            new_inner = find_inner(new, name, self.path)
            if old_inner is not None and new_inner is not None:
                self.patch_function(old_inner, new_inner)
                if current is not old_inner:
                    _refresh_wrapper(current, new)
                    _clear_caches(current)
                self.report.patched.append(name)
                return True
        if isinstance(current, types.FunctionType) and isinstance(new, types.FunctionType):
            # The decorators changed (or there is no inner function to find): the old outer
            # object becomes the new outer object.
            self.patch_function(current, new)
            self.report.patched.append(name)
            return True
        self.report.patched.append(name)
        self.report.notes.append(
            f"{name} became a {type(new).__name__} (was a {type(current).__name__}); references "
            f"taken before keep the old object"
        )
        return False

    # --- classes ---------------------------------------------------------------------------

    def patch_class(
        self,
        name: str,
        old: type,
        new: type,
        old_node: ast.stmt | None,
        new_node: ast.stmt,
        seeds: frozenset[str] = frozenset(),
    ) -> bool:
        """Patches a class definition into ``old``. ``seeds``: module-level names that
        changed before it, whose readers in the class body are taken from ``new``."""
        update: set[str] | None
        remove: set[str] | None
        relocated: frozenset[str] = frozenset()
        if isinstance(old_node, ast.ClassDef) and isinstance(new_node, ast.ClassDef):
            header_changed, upd, rem, relocated = class_plan(
                old_node, new_node, self.old_lines, self.new_lines, seeds=seeds
            )
            decorated = bool(old_node.decorator_list or new_node.decorator_list)
            if header_changed or decorated:
                update, remove = None, None
            else:
                update, remove = set(upd), set(rem)
        else:
            update, remove = None, None
        if isinstance(old, enum.EnumMeta):
            update, remove = self._enum_filter(name, old, new, update, remove)
        names = set(new.__dict__) if update is None else update
        self.txn.keep_class(old)
        revived = self._revive_members(old, new, names)
        for member in sorted(names):
            if self._patch_wrapped_member(member, old, new):
                if update is None:
                    update = set(new.__dict__)
                update.discard(member)
            else:
                self._pair_member_codes(old.__dict__.get(member), new.__dict__.get(member))
        changed = sorted(update if update is not None else _differing(old, new))
        gone = {
            member: old.__dict__[member]
            for member in (remove if remove is not None else set(old.__dict__) - set(new.__dict__))
            if isinstance(old.__dict__.get(member), _MEMBERS) and member not in _BOOKKEEPING
        }
        try:
            native.patch_class(old, new, update=update, remove=remove)
        except native.NeedsRestart as exc:
            for member in revived:
                type.__delattr__(old, member)
            self.report.needs_restart.append(str(exc))
            return True
        for member in revived:
            del self.graveyard[f"{old.__qualname__}.{member}"]
        for member, value in gone.items():
            if member not in old.__dict__:
                self.graveyard[f"{old.__qualname__}.{member}"] = value
        for member in relocated:
            self._relocate_member(old, new, member)
        if "__firstlineno__" in old.__dict__:
            type.__setattr__(old, "__firstlineno__", first_line(new_node))
        self.report.patched.append(", ".join(f"{name}.{m}" for m in changed) if changed else name)
        return True

    def _revive_members(self, old: type, new: type, names: set[str]) -> list[str]:
        """Members deleted by an earlier reload that come back now return to the class as the
        objects they were, so that ``patch_class`` patches them in place and the references
        held elsewhere (bound methods, registries) follow them again."""
        revived = []
        for member in sorted(names):
            buried = self.graveyard.get(f"{old.__qualname__}.{member}")
            value = new.__dict__.get(member)
            if buried is None or member in old.__dict__ or type(buried) is not type(value):
                continue
            type.__setattr__(old, member, buried)
            revived.append(member)
        return revived

    def _enum_filter(
        self, name: str, old: type, new: type, update: set[str] | None, remove: set[str] | None
    ) -> tuple[set[str], set[str]]:
        old_members = {k: v.value for k, v in old.__members__.items()}  # type: ignore[attr-defined]
        new_members = {k: v.value for k, v in new.__members__.items()}  # type: ignore[attr-defined]
        if list(old_members.items()) != list(new_members.items()):  # the order counts too
            added = sorted(set(new_members) - set(old_members))
            gone = sorted(set(old_members) - set(new_members))
            what = []
            if added:
                what.append(f"added {', '.join(added)}")
            if gone:
                what.append(f"removed {', '.join(gone)}")
            if not what:
                what.append(
                    "member order changed"
                    if old_members == new_members
                    else "member values changed"
                )
            self.report.needs_restart.append(
                f"the members of enum {name} changed ({'; '.join(what)}): existing members "
                f"cannot be re-created in place; restart to apply this part"
            )
        skip = set(old_members) | set(new_members) | _ENUM_INTERNALS
        candidates = set(new.__dict__) if update is None else update
        kept_update = {n for n in candidates if n not in skip}
        kept_remove = {n for n in (remove or set()) if n not in skip}
        return kept_update, kept_remove

    def _patch_wrapped_member(self, member: str, old: type, new: type) -> bool:
        """A member that a decorator turned into an object other than a function (an
        ``lru_cache`` wrapper, say): patch the function inside, keep the wrapper."""
        o, n = old.__dict__.get(member), new.__dict__.get(member)
        plain = (types.FunctionType, staticmethod, classmethod, property, type)
        if o is None or n is None or isinstance(o, plain) or isinstance(n, plain):
            return False
        if not hasattr(o, "__wrapped__") or type(o) is not type(n):
            return False
        old_inner = find_inner(o, member, self.path)
        new_inner = find_inner(n, member, self.path)
        if old_inner is None or new_inner is None:
            return False
        self.patch_function(old_inner, new_inner)
        _clear_caches(o)
        return True

    def _pair_member_codes(self, old_value: Any, new_value: Any) -> None:
        """Records the nested code pairs of a method about to be patched by ``patch_class``."""
        for o, n in _member_function_pairs(old_value, new_value):
            self.code_pairs.extend(nested_pairs(o.__code__, n.__code__))

    def _relocate_member(self, old: type, new: type, member: str) -> None:
        for o, n in _member_function_pairs(old.__dict__.get(member), new.__dict__.get(member)):
            if o.__code__ is not n.__code__:
                self.swap_code(o, n.__code__)

    # --- line numbers ----------------------------------------------------------------------

    def swap_code(self, func: types.FunctionType, code: types.CodeType) -> None:
        self.code_pairs.extend(nested_pairs(func.__code__, code))
        self.txn.keep_function(func)
        try:
            native.swap_code(func, code)
        except native.PatchError as exc:
            self.report.notes.append(str(exc))

    def relocate(self, step: Step) -> None:
        """An unchanged statement moved: the functions it made (a definition, its methods,
        the ``def`` inside an ``if``, a lambda) get code objects with the new line numbers.

        Each function's code is found among the code objects of the statement compiled at its
        old place by name and first line, and paired with the one at the same place in the
        statement compiled where it is now: a property's getter and setter share a name, and
        each must get its own code back."""
        stmt = step.new
        if step.old is None:
            return
        old_module = self.compile(step.old.node, transform=False)
        codes: dict[tuple[str, int], types.CodeType | None] = {}
        for o, n in nested_pairs(old_module, self.compile(stmt.node)):
            key = (o.co_name, o.co_firstlineno)
            codes[key] = n if key not in codes else None  # two on one line: leave both
        moved = False
        for name in sorted(stmt.writes):
            value = self.ns.get(name, _MISSING)
            for func in _functions_made_in(value, self.path):
                code = codes.get((func.__code__.co_name, func.__code__.co_firstlineno))
                if code is not None and func.__code__ is not code:
                    self.swap_code(func, code)
                    moved = True
            if isinstance(value, type) and "__firstlineno__" in value.__dict__:
                for node in ast.walk(stmt.node):
                    if isinstance(node, ast.ClassDef) and node.name == value.__name__:
                        type.__setattr__(value, "__firstlineno__", first_line(node))
                        break
        if moved or stmt.name is not None:
            self.report.moved.append(stmt.label)

    # --- deletions and closures ------------------------------------------------------------

    def delete(self) -> None:
        for name in sorted(self.plan.removed_names):
            if name not in self.ns:
                continue
            value = self.ns.pop(name)
            if isinstance(value, (types.FunctionType, type)) or find_inner(value, name, self.path):
                # with the statement that made it: what it comes back from is that version
                node = next((s.node for s in self.plan.deleted if name in s.writes), None)
                self.graveyard[name] = (value, node)
            self.report.deleted.append(name)

    def move_closures(self) -> None:
        """Closures made before the edit from a code object that now has a new version move
        to it, keeping their cells (one pass over the heap for the whole reload).

        This is the last step of a reload, after everything that can fail: the closures are
        not recorded in the transaction (there may be very many of them)."""
        mapping = {}
        for old, new in self.code_pairs:
            if old is not new:
                mapping[old] = new
        if not mapping:
            return
        for func in native.functions_using(list(mapping)):
            target = mapping.get(func.__code__)
            if target is None:
                continue
            try:
                native.swap_code(func, target)
            except native.PatchError as exc:
                self.report.notes.append(str(exc))


#: Class members that a later reload may bring back into the same object.
_MEMBERS = (types.FunctionType, staticmethod, classmethod, property)


def _decorators(node: ast.stmt) -> list[ast.expr]:
    return list(getattr(node, "decorator_list", []))


def _defined_in(func: types.FunctionType, node: ast.stmt) -> bool:
    """Whether ``func`` was made by a ``def`` or ``lambda`` inside the statement ``node`` (of
    the source its code was compiled from)."""
    return first_line(node) <= func.__code__.co_firstlineno <= (node.end_lineno or 0)


def _functions_made_in(value: Any, path: str, depth: int = 0) -> list[types.FunctionType]:
    """The functions of file ``path`` that ``value`` is or holds: itself, what its decorators
    wrap, a property's accessors, and for a class its members (nested classes included)."""
    found = []
    for candidate in wrapper_chain(value):
        if isinstance(candidate, property):
            for accessor in (candidate.fset, candidate.fdel):
                found += _functions_made_in(accessor, path, depth + 1)
        if isinstance(candidate, types.FunctionType) and candidate.__code__.co_filename == path:
            found.append(candidate)
    if isinstance(value, type) and depth < 8:
        for member in list(value.__dict__.values()):
            if not isinstance(member, type) or member.__qualname__.startswith(
                value.__qualname__ + "."
            ):
                found += _functions_made_in(member, path, depth + 1)
    return found


def _member_function_pairs(
    old: Any, new: Any
) -> list[tuple[types.FunctionType, types.FunctionType]]:
    """The functions of two versions of a class member, paired by role (the function, a
    static/class method's function, each property accessor)."""
    if isinstance(old, property) and isinstance(new, property):
        pairs = [(old.fget, new.fget), (old.fset, new.fset), (old.fdel, new.fdel)]
    else:
        olds, news = member_functions(old), member_functions(new)
        pairs = [(olds[0], news[0])] if len(olds) == 1 and len(news) == 1 else []
    return [
        (o, n)
        for o, n in pairs
        if isinstance(o, types.FunctionType) and isinstance(n, types.FunctionType)
    ]


def _refresh_wrapper(old: Any, new: Any) -> None:
    """Copies a new decorator wrapper's descriptive attributes onto the old wrapper, whose
    inner function was patched in place (``__wrapped__`` stays the old inner function)."""
    for attr in ("__doc__", "__name__", "__qualname__", "__annotations__"):
        try:
            setattr(old, attr, getattr(new, attr))
        except (AttributeError, TypeError):
            pass
    old_dict = getattr(old, "__dict__", None)
    new_dict = getattr(new, "__dict__", None)
    if isinstance(old_dict, dict) and isinstance(new_dict, dict):
        for key, value in new_dict.items():
            if key != "__wrapped__":
                old_dict[key] = value


def _clear_caches(obj: Any) -> None:
    """``cache_clear()`` on every ``functools.lru_cache`` (or alike) along a wrapper chain."""
    for wrapper in wrapper_chain(obj):
        clear = getattr(wrapper, "cache_clear", None)
        if callable(clear):
            try:
                clear()
            except Exception:  # a cache that cannot be cleared keeps its entries
                pass


_BOOKKEEPING = frozenset(
    {
        "__module__",
        "__qualname__",
        "__doc__",
        "__dict__",
        "__weakref__",
        "__firstlineno__",
        "__static_attributes__",
        "__annotations__",
        "__annotate_func__",
        "__annotations_cache__",
        "__orig_bases__",
        "__parameters__",
        "__classcell__",
    }
)


def _differing(old: type, new: type) -> list[str]:
    """Members of ``new`` that are not the very objects ``old`` holds (before a patch)."""
    return [
        n
        for n, v in new.__dict__.items()
        if n not in _BOOKKEEPING and old.__dict__.get(n, _MISSING) is not v
    ]
