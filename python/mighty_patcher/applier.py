"""The applier: carries out a plan in a module's real namespace.

Statements run in file order in the module's own ``__dict__``, so that each sees what the
ones before it made, exactly as an import would. A changed function is built without its
decorators, with the module as globals and a scratch dict as locals (the new object does not
replace the binding), and patched into the function the decorators wrapped; its decorators run
again only when they changed or read a rebound name. A changed class body runs on its own, as
the body of a bare class statement in a namespace holding the class's members, and what it
makes is patched into the class; the class is rebuilt through its metaclass and decorators only
when what they read changed. Every reference held elsewhere runs the new code. Everything is
recorded in a :class:`~mighty_patcher.transaction.Transaction` first; the caller rolls it back
if any step raises. Framework adapters hear of each definition (:mod:`mighty_patcher.hooks`).
"""

from __future__ import annotations

import ast
import builtins
import copy
import enum
import functools
import inspect
import sys
import threading
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from . import enums, hooks, instances
from . import mighty_patcher as native
from .codes import (
    find_inner,
    functions_made_in,
    member_function_pairs,
    member_functions,
    nested_codes,
    nested_pairs,
    same_place,
    shifted,
    wrapper_chain,
)
from .planner import (
    ClassPlan,
    Plan,
    Step,
    Stmt,
    class_plan,
    decorators,
    dump_nodes,
    first_line,
    names_read,
    reload_branch,
    same_header,
    same_value,
)
from .report import ReloadReport, relative
from .sources import in_library, library_dirs, resolve
from .transaction import Transaction

__all__ = ["Applier", "Transform"]

#: ``transform(tree, path, source) -> tree``: a hook every piece of new code goes through
#: before it is compiled. ``tree`` is a one-statement ``ast.Module`` (a copy the hook may change
#: in place), ``path`` the file being reloaded and ``source`` its whole new text (the
#: statement's line numbers point into it). The pytest plugin passes the statements of test
#: modules through pytest's assertion rewriter, as pytest did when it imported them.
Transform = Callable[[ast.Module, str, str], ast.Module]

_MISSING: Any = object()


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
    #: Classes patched, with what they gave their instances before: see fill_instances.
    _fills: list[tuple[type, instances.State, ast.ClassDef]] = field(default_factory=list)
    #: The code objects of the functions patched, with the functions' names: a call running
    #: one now goes on with it (see note_running_calls).
    replaced: dict[types.CodeType, str] = field(default_factory=dict)
    #: The names now bound to another object than before the reload (a definition patched
    #: in place is not one): what followers follow. Starts with imported copies rebound.
    rebound: set[str] = field(default_factory=set)
    transform: Transform | None = None
    #: New or changed reload guards (``if [not] currently_reloading():`` blocks) run: what
    #: they say covers the versions of them the edit replaced.
    guards_changed: int = 0

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
        # Before it runs: the closures its functions make are followed by the function index
        # (3.12+) from the start, so that the next edit finds them without a heap walk.
        native.track_new_code(code)
        return code

    # --- the plan, in order ----------------------------------------------------------------

    def apply(self) -> None:
        self.txn.keep_namespace(self.ns)
        for step in self.plan.steps:
            if step.action == "run":
                self.run(step)
            elif step.action == "redefine":
                self.redefine(step)
            elif step.action == "follow":
                self.follow(step)
            elif step.action == "restore":
                self.restore(step)
            elif step.action == "relocate":
                self.relocate(step)
            elif step.action == "defer":
                self.report.deferred.append(self._where(step.new))
        for stmt, names in self.plan.not_rerun:
            if names & self.rebound:
                read = ", ".join(sorted(names & self.rebound))
                self.report.not_rerun.append(f"{self._where(stmt)} reads {read}")
        self.delete()
        docstring = ast.get_docstring(self.plan.new_tree, clean=False)
        if self.ns.get("__doc__") != docstring:
            self.ns["__doc__"] = docstring

    def follow(self, step: Step) -> None:
        """An unchanged statement that reads a name a statement before it may have rebound:
        run again (a binding) or rebuilt (a definition) only if one of those names now holds
        another object. A definition patched in place keeps its identity: nothing that reads
        it is made again."""
        if not step.dirty & self.rebound:
            # Not run: a definition, or a binding that makes code (a lambda), that moved
            # still gets its new lines.
            if (step.new.name is not None or step.new.makes_code) and step.old is not None:
                if step.old.text != step.new.text or step.old.lineno != step.new.lineno:
                    self.relocate(step)
            return
        if step.new.name is None:
            self.run(step)
        else:
            self.redefine(step)

    def restore(self, step: Step) -> None:
        """A name a deleted statement bound gets back the value this statement, the last one
        left to bind it, gave it: what a restart would give. A definition gets back the very
        object it made, when the one that shadowed it was made by a reload."""
        stmt, name = step.new, step.new.name
        if name is None:
            self.run(step)
            return
        current = self.ns.get(name, _MISSING)
        shadowed = self.graveyard.pop(_shadow_key(name), None)
        target = _MISSING
        if shadowed is not None and shadowed[1] is not None:
            if dump_nodes([shadowed[1]]) == stmt.dump:
                target = shadowed[0]
        if current is not _MISSING:
            # what shadowed it leaves, as a deleted definition does (a route it registered)
            node = next((s.node for s in self.plan.deleted if name in s.writes), None)
            event = self._event("removed", name, current, node)
            if self._refused(event):
                return
            self.graveyard[name] = (current, node)
            hooks.call("after_definition", event)
        if target is _MISSING:
            target = self.build(stmt, name)
            self.report.added.append(name)
        else:
            self.report.rebound.append(name)
        self.ns[name] = target
        if target is not current:
            self.rebound.add(name)

    def _event(
        self,
        action: Literal["patched", "rebuilt", "added", "removed"],
        name: str,
        old: Any,
        node: ast.stmt | None,
        members: Iterable[str] | None = None,
    ) -> hooks.DefinitionEvent:
        return hooks.DefinitionEvent(
            module=self.module,
            name=name,
            action=action,
            old=old,
            node=node,
            members=frozenset(members) if members is not None else None,
            _undo=self.txn.undo,
        )

    def _refused(self, event: hooks.DefinitionEvent) -> bool:
        """Tells the adapters a definition is about to change; True if one refused (the
        report says why, as needing a restart)."""
        try:
            hooks.call("before_definition", event)
        except native.NeedsRestart as exc:
            self.report.needs_restart.append(str(exc))
            return True
        return False

    def _where(self, stmt: Stmt) -> str:
        """``app.py:12 "cart = Cart()"``: a statement as reports show it."""
        return f'{relative(self.path)}:{stmt.lineno} "{stmt.label}"'

    def run(self, step: Step) -> None:
        stmt = step.new
        before = {name: self.ns.get(name, _MISSING) for name in stmt.writes}
        code = self.compile(stmt.node)
        exec(code, self.ns)
        branch = reload_branch(stmt.node)
        if branch is not None and step.old is None:
            self.guards_changed += 1  # (its old version is no news: see delete)
        if branch is None:
            self.report.rerun.append(stmt.label)
        elif branch:
            self.report.rerun.append(f"the reload block at {relative(self.path)}:{stmt.lineno}")
        elif step.old is None:  # a new or changed `if not currently_reloading():` block
            self.report.notes.append(
                f"{self._where(stmt)} runs at the first import only: this version of it "
                f"takes effect at the next start"
            )
        self._keep_identity(step, before, code)
        self.rebound |= {
            n for n, v in before.items() if not same_value(self.ns.get(n, _MISSING), v)
        }

    def _keep_identity(self, step: Step, before: dict[str, Any], code: types.CodeType) -> None:
        """A function the statement itself defines (a lambda, a def inside an `if`) keeps the
        identity of the one its previous version defined (its partner, a statement of the old
        source that is gone, or one an earlier reload deleted), patched in place: it is then
        not a rebinding. Not any function it assigns: `handler = f` becoming `handler = g`
        must not turn f into g."""
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

    def build(self, stmt: Stmt, name: str, *, undecorated: bool = False) -> Any:
        """Executes a ``def``/``class`` statement without rebinding its name: the new object.
        ``undecorated``: a def's decorators are left out (they do not run); its code keeps
        the first line the decorated version has."""
        node = stmt.node
        scratch: dict[str, Any] = {}
        if undecorated and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node = copy.copy(node)
            # Same positions, no effect: the compiler counts a function's first line from its
            # first decorator, and tracebacks and inspect.getsource count from there too.
            node.decorator_list = [
                ast.copy_location(ast.Name(id=_KEEP, ctx=ast.Load()), d)
                for d in decorators(stmt.node)
            ]
            scratch[_KEEP] = _keep
        exec(self.compile(node), self.ns, scratch)
        return scratch[name]

    def redefine(self, step: Step) -> None:
        stmt = step.new
        name = stmt.name
        assert name is not None
        current = self.ns.get(name, _MISSING)
        revived = False
        old_node = step.old.node if step.old is not None else None
        if current is not _MISSING and step.shadows:
            # Pasted with its name unchanged beside the one that made `current`: a new object,
            # as a restart makes (a route registered for the other stays the other's).
            self.graveyard[_shadow_key(name)] = (current, _maker(self.plan, name, stmt))
            current = _MISSING
        elif current is _MISSING and name in self.graveyard:
            (current, old_node), revived = self.graveyard[name], True
        if current is _MISSING:
            self.rebound.add(name)
            event = self._event("added", name, None, stmt.node)
            if self._refused(event):
                return
            event.new = self.ns[name] = self.build(stmt, name)
            self.report.added.append(name)
            hooks.call("after_definition", event)
            return
        # What to run again: the decorators (or a class's header) only when they changed or
        # read a rebound name; a definition back from the graveyard compares with the
        # statement that made it.
        if revived:
            # (a definition whose registrations an adapter took out when it was removed,
            # a route, is registered anew by its decorators)
            unregistered = self.graveyard.pop(_unregistered_key(name), False)
            header = old_node is None or not same_header(old_node, stmt.node) or unregistered
        else:
            header = step.header or bool(stmt.header_reads & self.rebound)
        if isinstance(current, type) and isinstance(stmt.node, ast.ClassDef):
            # A class back from the graveyard was built before the changes made since: take
            # all of the new one (no old statement to diff with).
            seeds = step.dirty & self.rebound
            kept = self.patch_class(
                name, current, stmt, None if revived else old_node, seeds, header=header
            )
        else:
            kept = self.patch_callable(name, current, stmt, header=header)
        if kept:
            self.ns[name] = current
        else:
            self.rebound.add(name)
        if revived:
            del self.graveyard[name]

    # --- functions -------------------------------------------------------------------------

    def patch_function(self, old: types.FunctionType, new: types.FunctionType) -> None:
        self.replaced[old.__code__] = old.__qualname__
        self.code_pairs.extend(nested_pairs(old.__code__, new.__code__))
        self.txn.keep_function(old)
        native.patch_function(old, new)

    def patch_callable(self, name: str, current: Any, stmt: Stmt, *, header: bool) -> bool:
        """Patches a (possibly decorated) function definition into ``current``; returns
        whether ``current`` stays (False: the name was rebound to a new object)."""
        old_inner = find_inner(current, name, self.path)
        if not header and old_inner is not None:
            # The body changed, the decorators did not: they are not run again (a route, a
            # registration, a command stays as it is); the function they wrapped is patched
            # wherever they keep it.
            event = self._event("patched", name, current, stmt.node)
            if self._refused(event):
                return True
            event.new = new_inner = self.build(stmt, name, undecorated=True)
            self._patch_inner(current, old_inner, new_inner)
            self.report.patched.append(name)
            hooks.call("after_definition", event)
            return True
        event = self._event("rebuilt", name, current, stmt.node)
        if self._refused(event):
            return True
        event.new = new = self.build(stmt, name)
        new_inner = find_inner(new, name, self.path)
        if old_inner is not None and new_inner is not None and old_inner is not current:
            self._patch_inner(current, old_inner, new_inner)
        if isinstance(current, types.FunctionType) and isinstance(new, types.FunctionType):
            # The decorators ran again: the old outer function becomes the new one.
            self.patch_function(current, new)
            self.report.patched.append(name)
            hooks.call("after_definition", event)
            self._note_registrations_left(name, stmt.node, event)
            return True
        if type(current) is type(new) and old_inner is not None and new_inner is not None:
            # The same kind of wrapper (an lru_cache, a command): the function inside was
            # patched; an adapter of its framework makes the wrapper take what the new
            # decorators gave the new one, or it keeps what it was made with.
            self.report.patched.append(name)
            if not hooks.merge(current, new):
                self.report.notes.append(
                    f"{name}: its decorators changed; the {type(current).__name__} made "
                    f"before keeps the decorator arguments it was made with"
                )
            hooks.call("after_definition", event)
            return True
        hooks.call("after_definition", event)
        self.ns[name] = new
        self.report.rebound.append(name)
        self.report.notes.append(
            f"{name} became a {type(new).__name__} (was a {type(current).__name__}); references "
            f"taken before keep the old object"
        )
        return False

    def _patch_inner(self, wrapper: Any, old: types.FunctionType, new: types.FunctionType) -> None:
        """Patches ``old`` (what decorators wrapped) with ``new``; the wrappers around it that
        copied its name or docstring (``functools.wraps``) copy the new ones; caches along the
        way (``lru_cache``) are cleared."""
        before = {attr: getattr(old, attr, None) for attr in _COPIED}
        self.patch_function(old, new)
        if wrapper is old:
            return
        for outer in wrapper_chain(wrapper):
            if outer is old:
                continue
            for attr, value in before.items():
                try:
                    if getattr(outer, attr, _MISSING) == value:
                        setattr(outer, attr, getattr(old, attr))
                except (AttributeError, TypeError):
                    pass
        _clear_caches(wrapper)

    # --- classes ---------------------------------------------------------------------------

    def patch_class(
        self,
        name: str,
        old: type,
        stmt: Stmt,
        old_node: ast.stmt | None,
        seeds: frozenset[str] = frozenset(),
        *,
        header: bool = True,
    ) -> bool:
        """Patches a class definition into ``old``; returns True (the class keeps its
        identity, also when a part needs a restart). ``seeds``: module-level names rebound
        before it, whose readers in the class body are taken anew.

        A body edit runs the changed statements of the body on their own, in a namespace
        holding the class's members, and patches what they make into the class: no
        metaclass, class decorator or ``__init_subclass__`` runs, so registrations made when
        the class was created are not made again. The class is rebuilt through its real
        machinery (and merged into ``old``) only when what that machinery reads changed: the
        bases, keywords, decorators, or, for a class that has such machinery, its fields."""
        new_node = stmt.node
        assert isinstance(new_node, ast.ClassDef)
        plan = None
        if isinstance(old_node, ast.ClassDef):
            plain = not _has_machinery(old, new_node) and not _has_machinery(old, old_node)
            plan = class_plan(
                old_node, new_node, self.old_lines, self.new_lines, seeds=seeds, plain=plain
            )
        in_place = plan is not None and not header and not plan.header
        if plan is not None and in_place and not (plan.fields and _has_machinery(old, new_node)):
            if self._patch_class_body(name, old, new_node, plan, old_node):
                return True
        update: set[str] | None = None
        remove: set[str] | None = None
        # What the class's machinery makes from the body (a dataclass's __init__, a pydantic
        # model's validator, an enum's tables) is taken too: every member, when it ran.
        if plan is not None and not plan.header and not _has_machinery(old, new_node):
            update, remove = set(plan.update), set(plan.remove)
        # The adapters hear which members the edit changed, even where every member is taken.
        changed = update
        if changed is None and plan is not None and not plan.header:
            changed = None if new_node.decorator_list else set(plan.update)
        event = self._event("rebuilt", name, old, new_node, changed)
        event.old_node = old_node
        try:
            hooks.call("before_definition", event)
        except native.NeedsRestart as exc:
            # Refused (a model's fields, say): what is not a field still applies in place.
            self.report.needs_restart.append(str(exc))
            if plan is not None and in_place:
                self._patch_class_body(name, old, new_node, plan.methods_only(), old_node)
            return True
        if event.in_place and plan is not None and in_place:
            # An adapter knows the machinery reads none of what changed: a body edit (of
            # what the running class does not have already).
            plan = plan.without(event.unchanged)
            if self._patch_class_body(name, old, new_node, plan, old_node):
                return True
        try:
            event.new = new = self.build(stmt, name)
        except Exception as exc:
            if plan is None or not in_place or not _raised_by_the_program(exc, new_node, self.path):
                # The body's own error, a changed header's, or one a library's machinery
                # (a dataclass field without a default after one with) found in the edit:
                # the reload fails, as for any error of the edit.
                raise
            # Its machinery refused to make the class again for the changed fields (a
            # registry that refuses a second class of a name): the class keeps what it was
            # made with; the method bodies of the edit still apply.
            self.report.needs_restart.append(_machinery_refused(name, old, new_node, plan, exc))
            self._patch_class_body(name, old, new_node, plan.methods_only(), old_node)
            return True
        problem = _tuple_fields_changed(name, old, new)
        if problem is not None:
            # A NamedTuple's instances are tuples of its old fields: none can gain one. (Its
            # methods take the edit, also when the fields came from its bases.)
            self.report.needs_restart.append(problem)
            if plan is not None:
                self._patch_class_body(name, old, new_node, plan.methods_only(), old_node)
            return True
        kept = self._merge_class(
            name, old, new, dict(new.__dict__), update, remove, plan, new_node, old_node
        )
        hooks.call("after_definition", event)
        return kept

    def _note_registrations_left(
        self, name: str, node: ast.stmt, event: hooks.DefinitionEvent
    ) -> None:
        """Decorators run again register the function again (``@discount("SUMMER24")``);
        what the old ones registered stays unless an adapter of the framework took it out:
        the report says so, for decorators not known to register nothing."""
        found = [d for d in decorators(node) if _decorator_name(d) not in _PLAIN_DECORATORS]
        if found and not event.unregistered:
            self.report.notes.append(
                f"{name}: its decorators ran again "
                f"({' '.join('@' + ast.unparse(d) for d in found)}): what the old ones "
                f"registered (a registry entry, a handler) stays until a restart, unless "
                f"they replace it"
            )

    def _patch_class_body(
        self, name: str, old: type, node: ast.ClassDef, plan: ClassPlan, old_node: ast.stmt | None
    ) -> bool:
        """The changed statements of the class body, run on their own and patched into
        ``old`` (no metaclass, decorator or hook runs); False if that cannot be done."""
        if not plan.update and not plan.remove and not plan.relocated:
            return True
        event = self._event("patched", name, old, node, plan.update)
        if self._refused(event):
            return True
        members = self._run_class_body(old, node, plan)
        if members is None:
            return False
        event.new = members
        self._merge_class(
            name, old, members, members, set(plan.update), set(plan.remove), plan, node, old_node
        )
        hooks.call("after_definition", event)
        return True

    def _run_class_body(
        self, old: type, node: ast.ClassDef, plan: ClassPlan
    ) -> dict[str, Any] | None:
        """Runs the statements ``plan`` takes from the class body ``node``, as the body of a
        bare ``class`` statement of the same name (so that names mangle and ``super()``
        compiles as in the class), in a namespace that holds ``old``'s members; returns the
        members they made. None: this cannot be done on its own (a ``__slots__`` change, type
        parameters): the class is to be rebuilt."""
        if {"__slots__", "__dict__", "__weakref__"} & (plan.update | plan.remove):
            return None
        if getattr(node, "type_params", None):
            return None
        bare = _bare_class(node.name, plan.body or [ast.Pass()], node)
        module_code = self.compile(bare)
        bodies = [
            c
            for c in module_code.co_consts
            if isinstance(c, types.CodeType) and c.co_name == node.name
        ]
        if len(bodies) != 1 or bodies[0].co_freevars:
            return None
        namespace: dict[str, Any] = dict(old.__dict__)
        if isinstance(old, enum.EnumMeta):
            # In an enum's body a member's name means the value it was given (the members
            # are made after the body ran).
            members: dict[str, Any] = dict(old.__members__)
            namespace.update((n, m._value_) for n, m in members.items())
        exec(bodies[0], self.ns, namespace)
        cell = namespace.get("__classcell__")
        if isinstance(cell, types.CellType):
            cell.cell_contents = old  # zero-argument super() and __class__ name the old class
        dict_cell = namespace.get("__classdictcell__")
        if isinstance(dict_cell, types.CellType):
            dict_cell.cell_contents = old.__dict__  # what annotation scopes read (3.14+)
        return {n: namespace[n] for n in plan.update if n in namespace}

    def _merge_class(
        self,
        name: str,
        old: type,
        new: type | dict[str, Any],
        new_members: dict[str, Any],
        update: set[str] | None,
        remove: set[str] | None,
        plan: ClassPlan | None,
        new_node: ast.ClassDef,
        old_node: ast.stmt | None,
    ) -> bool:
        """Patches ``new`` (a rebuilt class, or a dict of members) into ``old``; ``update``
        and ``remove`` None: every member. Then the live instances follow what the class
        gives them (:mod:`mighty_patcher.instances`)."""
        follows = update is None or "__init__" in update or getattr(old, instances.HOOK, None)
        before = instances.state_of(old, instances.init_of(old_node), self.module, self.path)
        members = None
        skip: set[str] = set()
        if isinstance(old, enum.EnumMeta) and isinstance(new, enum.EnumMeta):
            # the members go their own way (mighty_patcher.enums), after the rest
            members = enums.plan(old, new, self.report.needs_restart)
            skip = enums.internals(old, new)
            update = {n for n in (set(new.__dict__) if update is None else update) if n not in skip}
            remove = {n for n in (remove or set()) if n not in skip}
        names = set(new_members) if update is None else update
        self.txn.keep_class(old)
        bases = old.__bases__
        revived = self._revive_members(old, new_members, names)
        for member in sorted(names):
            if self._patch_wrapped_member(member, old, new_members):
                if update is None:
                    update = set(new_members)
                update.discard(member)
            else:
                self._pair_member_codes(old.__dict__.get(member), new_members.get(member))
        # What the report names: what the edit changed (the members its statements make), not
        # all that the class's machinery made from them.
        shown = plan.update if plan is not None else _differing(old, new_members)
        changed = sorted(set(shown) - (skip if members is not None else set()))
        existed = set(old.__dict__) - set(revived)  # (before the patch)
        gone = {
            member: old.__dict__[member]
            for member in (remove if remove is not None else set(old.__dict__) - set(new_members))
            if isinstance(old.__dict__.get(member), _MEMBERS) and member not in _BOOKKEEPING
        }
        try:
            native.patch_class(old, new, update=update, remove=remove)
        except native.NeedsRestart as exc:
            for member in revived:
                type.__delattr__(old, member)
            self.report.needs_restart.append(str(exc))
            return True
        if members is not None and members.changed:
            enums.apply(old, new, members, self.txn.undo)
        for member in revived:
            del self.graveyard[f"{old.__qualname__}.{member}"]
        for member, value in gone.items():
            if member not in old.__dict__:
                self.graveyard[f"{old.__qualname__}.{member}"] = value
        relocated = plan is not None and any(
            [self._relocate_member(old, name, *moved) for moved in plan.relocated]
        )
        if "__firstlineno__" in old.__dict__:
            type.__setattr__(old, "__firstlineno__", first_line(new_node))
        new_here = plan.added if plan is not None else set(new_members) - existed
        patched = [m for m in changed if m not in new_here]
        added = [m for m in changed if m in new_here]
        deleted = sorted(plan.remove if plan is not None else set())
        if patched:
            self.report.patched.append(", ".join(f"{name}.{m}" for m in patched))
        self.report.added += [f"{name}.{m}" for m in added]
        self.report.deleted += [f"{name}.{m}" for m in deleted]
        if not changed and relocated and not deleted and (members is None or not members.changed):
            self.report.moved.append(name)  # only members that moved: their line numbers
        if members is not None and members.changed:
            self.report.patched.append(f"{name} members ({members.describe()})")
        if old.__bases__ != bases:
            now = ", ".join(base.__qualname__ for base in old.__bases__)
            self.report.patched.append(f"{name} bases now ({now})")
        if isinstance(old_node, ast.ClassDef):
            # What the class was made again for, when no member of the body changed
            # (@dataclass -> @dataclass(order=True) gave it __lt__ and the rest)
            if dump_nodes(old_node.decorator_list) != dump_nodes(new_node.decorator_list):
                now = " ".join(f"@{ast.unparse(d)}" for d in new_node.decorator_list)
                self.report.patched.append(f"{name} decorators now {now or '(none)'}")
            if dump_nodes(old_node.keywords) != dump_nodes(new_node.keywords):
                now = ", ".join(ast.unparse(k) for k in new_node.keywords)
                self.report.patched.append(f"{name} class keywords now ({now})")
        if follows or before.fields:
            self._fills.append((old, before, new_node))
        return True

    def note_running_calls(self) -> None:
        """Says which patched functions have a call running in another thread (a main loop
        in ``def main()``): that call goes on with the code it started with, so the edit
        shows from the next call, not before."""
        if not self.replaced:
            return
        me = threading.get_ident()
        names = {t.ident: t.name for t in threading.enumerate()}
        said: set[str] = set()
        qualnames = set(self.replaced.values())
        for ident, frame in sys._current_frames().items():
            current: types.FrameType | None = frame
            while current is not None and ident != me:
                code = current.f_code
                name = self.replaced.get(code) or _older_version(code, self.path, qualnames)
                if name is not None and name not in said:
                    said.add(name)
                    self.report.notes.append(
                        f"{name} is running ({names.get(ident, 'a thread')}, "
                        f"{relative(current.f_code.co_filename)}:{current.f_lineno}): that call "
                        f"goes on with the code it started with; the new code runs from the "
                        f"next call"
                    )
                current = current.f_back
        self._note_suspended()

    def _note_suspended(self) -> None:
        """Says which patched generator and coroutine functions have generators or
        coroutines made before the edit and not finished (a ``while True`` task of an event
        loop): those go on with the code they were made with. One pass over the heap,
        only when such a function was patched."""
        codes = {id(c): n for c, n in self.replaced.items() if c.co_flags & _SUSPENDABLE}
        for old, new in self.code_pairs:  # (nested functions' code: an inner generator)
            if old is not new and old.co_flags & _SUSPENDABLE and id(old) not in codes:
                codes[id(old)] = getattr(old, "co_qualname", old.co_name)
        if not codes:
            return
        fresh = {id(new) for _, new in self.code_pairs}  # (nothing ran the code just made)
        qualnames = set(codes.values())
        counts: dict[tuple[str, str], int] = {}
        for obj in native.instances_of(_SUSPENDED):
            kind, prefix = _SUSPENDED[type(obj)]
            code = getattr(obj, f"{prefix}_code")
            name = codes.get(id(code))
            if name is None and id(code) not in fresh:
                name = _older_version(code, self.path, qualnames)
            if name is not None and getattr(obj, f"{prefix}_frame") is not None:
                counts[(name, kind)] = counts.get((name, kind), 0) + 1
        for (name, kind), count in counts.items():
            self.report.notes.append(
                f"{name}: {count} {kind}{'s' if count > 1 else ''} made before the edit and "
                f"not finished {'go' if count > 1 else 'goes'} on with the old code; new calls "
                f"run the new code"
            )

    def fill_instances(self) -> None:
        """The live instances of the classes patched follow what their class now gives them
        (:mod:`mighty_patcher.instances`): the last step of a reload, once everything that
        can fail succeeded and the framework adapters have finished with the classes."""
        for cls, before, node in self._fills:
            after = instances.state_of(cls, instances.init_of(node), self.module, self.path)
            instances.fill(cls, instances.diff_states(before, after), self.report)
        self._fills.clear()

    def _revive_members(self, old: type, new: dict[str, Any], names: set[str]) -> list[str]:
        """Members deleted by an earlier reload that come back now return to the class as the
        objects they were, so that ``patch_class`` patches them in place and the references
        held elsewhere (bound methods, registries) follow them again."""
        revived = []
        for member in sorted(names):
            buried = self.graveyard.get(f"{old.__qualname__}.{member}")
            value = new.get(member)
            if buried is None or member in old.__dict__ or type(buried) is not type(value):
                continue
            type.__setattr__(old, member, buried)
            revived.append(member)
        return revived

    def _patch_wrapped_member(self, member: str, old: type, new: dict[str, Any]) -> bool:
        """A member that a decorator turned into an object other than a function (an
        ``lru_cache`` wrapper, say): patch the function inside, keep the wrapper."""
        o, n = old.__dict__.get(member), new.get(member)
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
        for o, n in member_function_pairs(old_value, new_value):
            self.replaced[o.__code__] = o.__qualname__
            self.code_pairs.extend(nested_pairs(o.__code__, n.__code__))

    def _relocate_member(
        self, old: type, name: str, member: str, old_node: ast.stmt, new_node: ast.stmt
    ) -> bool:
        """An unchanged member that moved: its functions get code objects with the new line
        numbers, compiled from the member's statement in a bare class body of the same name
        (nothing runs). False if none of them moved (an edit inside a line: ``def m( self):``)."""
        codes = self._moved_codes(
            _bare_class(name, [old_node], old_node),
            _bare_class(name, [new_node], new_node),
            transform_old=False,
        )
        moved = False
        for func in member_functions(old.__dict__.get(member)):
            code = codes.get((func.__code__.co_name, func.__code__.co_firstlineno))
            if code is not None and not same_place(func.__code__, code):
                self.swap_code(func, code)
                moved = True
        return moved

    # --- line numbers ----------------------------------------------------------------------

    def swap_code(self, func: types.FunctionType, code: types.CodeType) -> None:
        native.track_new_code(code)  # a shifted copy, not run yet (see compile)
        self.code_pairs.extend(nested_pairs(func.__code__, code))
        self.txn.keep_function(func)
        try:
            native.swap_code(func, code)
        except native.PatchError as exc:
            self.report.notes.append(str(exc))

    def relocate(self, step: Step) -> None:
        """An unchanged statement moved: the functions it made (a definition, its methods,
        the ``def`` inside an ``if``, a lambda) get code objects with the new line numbers.

        Its text the same, it only moved by whole lines: each function's code is shifted by
        as many lines (nothing is compiled). Its text different (a comment inside changed),
        each function's code is found among the code objects of the statement compiled at
        its old place by name and first line, and paired with the one at the same place in
        the statement compiled where it is now: a property's getter and setter share a name,
        and each must get its own code back."""
        stmt, old = step.new, step.old
        if old is None:
            return
        first, last, lines = old.lineno, old.end_lineno, stmt.lineno - old.lineno
        codes = None
        if old.text != stmt.text:
            codes = self._moved_codes(old.node, stmt.node, transform_old=False)
        moved = False
        for name in sorted(stmt.writes):
            value = self.ns.get(name, _MISSING)
            for func in functions_made_in(value, self.path):
                current = func.__code__
                if codes is not None:
                    code = codes.get((current.co_name, current.co_firstlineno))
                elif lines and first <= current.co_firstlineno <= last:
                    code = shifted(current, lines)
                else:
                    code = None
                if code is not None and not same_place(current, code):
                    self.swap_code(func, code)
                    moved = True
            if isinstance(value, type):
                line = value.__dict__.get("__firstlineno__")
                if isinstance(line, int) and first <= line <= last:
                    type.__setattr__(value, "__firstlineno__", line + lines)
        # (a definition that moved by whole lines is said even if no function of it is found)
        if moved or (stmt.name is not None and lines):
            self.report.moved.append(stmt.label)

    def _moved_codes(
        self, old_node: ast.stmt, new_node: ast.stmt, *, transform_old: bool
    ) -> dict[tuple[str, int], types.CodeType]:
        """The code objects of ``new_node`` by the (name, first line) their partners have in
        ``old_node``, both compiled (never run): where each function a statement made gets its
        code with the new line numbers. Two functions of one name on one line are left out."""
        codes: dict[tuple[str, int], types.CodeType | None] = {}
        old_code = self.compile(old_node, transform=transform_old)
        for o, n in nested_pairs(old_code, self.compile(new_node)):
            key = (o.co_name, o.co_firstlineno)
            codes[key] = n if key not in codes else None
        return {k: v for k, v in codes.items() if v is not None}

    # --- deletions and closures ------------------------------------------------------------

    def delete(self) -> None:
        declared: set[str] = set()
        star = False
        if self.plan.removed_names:  # (a walk of the whole file: only when it is needed)
            declared, star = _globals_declared(self.plan.new_tree)
        for name in sorted(self.plan.removed_names):
            if name not in self.ns:
                continue
            if name in declared and not isinstance(self.ns[name], (types.FunctionType, type)):
                # A function of the module sets it at run time (``global CONFIG``): its value
                # is the program's, not the deleted line's.
                self.report.notes.append(
                    f"{name} kept: no line of the file binds it at import any more, but a "
                    f"function sets it at run time (global {name})"
                )
                continue
            node = next((s.node for s in self.plan.deleted if name in s.writes), None)
            event = self._event("removed", name, self.ns[name], node)
            if self._refused(event):
                continue
            if self.plan.running:
                # The running script's own code may still call it (its loop): the name stays
                # until the next start; what adapters registered for it goes.
                hooks.call("after_definition", event)
                self.report.deleted.append(name)
                self.report.notes.append(
                    f"{name} stays bound in the running script (its code may still use it) "
                    f"until the next start"
                )
                continue
            value = self.ns.pop(name)
            hooks.call("after_definition", event)
            if event.unregistered:  # (an adapter took its registrations out: see redefine)
                self.graveyard[_unregistered_key(name)] = True
            if isinstance(value, (types.FunctionType, type)) or find_inner(value, name, self.path):
                # with the statement that made it: what it comes back from is that version
                node = next((s.node for s in self.plan.deleted if name in s.writes), None)
                self.graveyard[name] = (value, node)
            self.report.deleted.append(name)
        for stmt in self.plan.deleted:
            if stmt.binding or not _had_effect(stmt.raw, self.module):
                continue
            if self.guards_changed and reload_branch(stmt.raw) is not None:
                continue  # (an edit of a reload guard: said once, where it ran)
            if self.plan.running:
                # (a changed statement is deferred as its new version; its old one is no news)
                if not any(
                    d.new.label == stmt.label for d in self.plan.steps if d.action == "defer"
                ):
                    self.report.deferred.append(f"{self._where(stmt)} removed")
                continue
            # A call, a loop...: what it did when it ran cannot be taken back by the engine
            # (a rule it registered); an adapter that knows it may.
            gone = hooks.StatementEvent(self.module, stmt.node)
            hooks.call("removed_statement", gone)
            if gone.undone:
                self.report.deleted.append(stmt.label)
            else:
                self.report.needs_restart.append(
                    f"{self._where(stmt)} is no longer in the file: what it did when it ran "
                    f"stays until a restart"
                )
        if not star:  # (a star import may bind a deleted name at the next start)
            self._note_unbound_reads(self.plan.removed_names - declared)

    def _note_unbound_reads(self, removed_names: Iterable[str]) -> None:
        """A statement left in the file that reads, whenever it runs at import, a name the
        edit deleted (a function renamed, a loop still calling it by its old name) fails at
        the next start: the report says where, so that a restart does not come as a
        surprise. Definitions (their annotations may never be evaluated), guarded statements
        (``if``, ``try``) and names a function declares ``global`` (set at run time) are left
        out: the note is said only where it is sure."""
        removed = {n for n in removed_names if not hasattr(builtins, n)}
        if not removed:
            return
        for step in self.plan.steps:
            stmt = step.new.raw
            if isinstance(stmt, ast.AnnAssign):  # (the annotation may never be evaluated)
                read = names_read(stmt.value) if stmt.value is not None else frozenset()
            elif isinstance(stmt, (ast.Expr, ast.Assign, ast.AugAssign, ast.For)):
                read = step.new.reads
            else:
                continue
            gone = removed & read
            if gone:
                self.report.notes.append(
                    f"{self._where(step.new)} reads {', '.join(sorted(gone))}, which the file "
                    f"no longer defines: at the next start it raises NameError there"
                )

    def move_closures(self) -> None:
        """Closures made before the edit from a code object that now has a new version move
        to it, keeping their cells (one pass over the heap for the whole reload).

        A closure that cannot (the new code captures a name it has no cell for) keeps its
        old code, and the report says it needs a restart: making it again (running the
        binding that holds it, ``c = counter()``) would lose what it captured, the program's
        state. Moving the closures is the last step of a reload, after everything that can
        fail: they are not recorded in the transaction (there may be very many of them)."""
        mapping = {}
        for old, new in self.code_pairs:
            if old is not new:
                mapping[old] = new
        if not mapping:
            return
        functions = native.functions_using(list(mapping))
        left: dict[str, tuple[int, set[str]]] = {}
        for func in functions:
            target = mapping.get(func.__code__)
            if target is None:
                continue
            missing = set(target.co_freevars) - set(func.__code__.co_freevars)
            if missing:
                count, names = left.get(func.__qualname__, (0, set()))
                left[func.__qualname__] = (count + 1, names | missing)
                continue
            try:
                native.swap_code(func, target)
            except native.PatchError as exc:
                self.report.needs_restart.append(str(exc))
        for qualname, (count, names) in left.items():
            self.report.needs_restart.append(
                f"{qualname}: {count} closure{'s' if count > 1 else ''} made before the edit "
                f"{'have' if count > 1 else 'has'} no value for {', '.join(sorted(names))}, "
                f"which the new code captures, and {'keep' if count > 1 else 'keeps'} the old "
                f"code until a restart (closures made from now on run the new code)"
            )


#: Generators and coroutines: what each is called in a report, and its attributes' prefix.
_SUSPENDED: dict[type, tuple[str, str]] = {
    types.GeneratorType: ("generator", "gi"),
    types.CoroutineType: ("coroutine", "cr"),
    types.AsyncGeneratorType: ("async generator", "ag"),
}
#: The code flags of functions that make them.
_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR

#: The name of the no-op decorator an undecorated build puts where each decorator was.
_KEEP = "__mighty_patcher_keep__"


def _keep(func: Any) -> Any:
    return func


#: What ``functools.wraps`` copies from a function to its wrapper, and a patch renews.
_COPIED = ("__name__", "__qualname__", "__doc__", "__module__")


def _bare_class(name: str, body: list[ast.stmt], like: ast.stmt) -> ast.ClassDef:
    """``class <name>: <body>`` with no bases, keywords or decorators, positioned as ``like``:
    compiles the body as it is compiled in its class (mangled names, ``__class__``)."""
    bare = ast.ClassDef(name=name, bases=[], keywords=[], body=body, decorator_list=[])
    if sys.version_info >= (3, 12):
        bare.type_params = []
    ast.copy_location(bare, like)
    bare.end_lineno, bare.end_col_offset = like.end_lineno, like.end_col_offset
    return ast.fix_missing_locations(bare)  # a `pass` standing for an empty body


#: Decorators that register nothing anywhere: no word when they run again.
_PLAIN_DECORATORS = frozenset(
    {
        "abstractmethod",
        "asynccontextmanager",
        "cache",
        "cached_property",
        "classmethod",
        "contextmanager",
        "final",
        "lru_cache",
        "overload",
        "override",
        "property",
        "singledispatch",
        "staticmethod",
        "total_ordering",
        "wraps",
    }
)


def _decorator_name(node: ast.expr) -> str:
    """``lru_cache`` for ``@lru_cache``, ``@functools.lru_cache(maxsize=2)`` and alike."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _unregistered_key(name: str) -> str:
    """Where the graveyard marks a deleted definition whose registrations an adapter took out."""
    return f"{name} (unregistered)"


def _shadow_key(name: str) -> str:
    """Where the graveyard keeps the object a pasted definition of ``name`` shadowed."""
    return f"{name} (shadowed)"


def _maker(plan: Plan, name: str, shadowing: Stmt) -> ast.stmt | None:
    """The statement that stays, other than ``shadowing``, whose definition bound ``name``."""
    for step in plan.steps:
        if step.new is not shadowing and step.new.name == name:
            return step.new.node
    return None


def _has_machinery(cls: type, node: ast.ClassDef) -> bool:
    """Whether code of the program's reads the class's fields when the class is made: a
    class decorator (dataclass, attrs), a metaclass (Enum, pydantic, Django, SQLAlchemy,
    TypedDict), an ``__init_subclass__`` of a base, or a typing construct (NamedTuple)."""
    if node.decorator_list or type(cls) is not type or "__orig_bases__" in cls.__dict__:
        return True
    return any("__init_subclass__" in base.__dict__ for base in cls.__mro__[1:-1])


def _globals_declared(tree: ast.Module) -> tuple[set[str], bool]:
    """The names functions of the module declare ``global`` (set at run time), and whether
    it has a star import."""
    declared: set[str] = set()
    star = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            declared.update(node.names)
        elif isinstance(node, ast.ImportFrom) and node.names[0].name == "*":
            star = True
    return declared, star


def _older_version(code: types.CodeType, path: str, qualnames: set[str]) -> str | None:
    """Which of the functions patched (``qualnames``, of the file ``path``) ``code`` is an
    older version of: a call or a generator begun before an earlier reload of it runs a code
    object that reload replaced, known by its file and name only."""
    if code.co_filename != path:
        return None
    qualname = getattr(code, "co_qualname", None)  # (3.11+; on 3.10, the last part)
    if qualname is None:
        qualname = next((q for q in qualnames if q.rpartition(".")[2] == code.co_name), None)
    return qualname if qualname in qualnames else None


def _raised_by_the_program(exc: BaseException, node: ast.ClassDef, path: str) -> bool:
    """Whether ``exc`` was raised by the program's own machinery that made the class (its
    decorator, metaclass or ``__init_subclass__``: a registry refusing a second class of a
    name), not by the class body of ``node`` (a frame of it on the traceback) nor inside the
    standard library or an installed package (``dataclasses`` finding an error in the
    edit)."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == node.name and code.co_filename == path:
            return False
        last = code.co_filename
        tb = tb.tb_next
    return last is not None and not in_library(resolve(last), library_dirs())


def _machinery_refused(
    name: str, old: type, node: ast.ClassDef, plan: ClassPlan, exc: Exception
) -> str:
    makers = [f"@{ast.unparse(d)}" for d in node.decorator_list]
    if type(old) is not type:
        makers.append(f"its metaclass {type(old).__name__}")
    what = ", ".join(makers) or "__init_subclass__"
    methods = {m.name for m in plan.methods}
    fields = ", ".join(sorted(plan.update - methods)) or "its fields"
    # (Raised by the program's own code: most likely a registry refusing a second class of
    # the name, but an error the program's decorator found in the edit is possible too.)
    return (
        f"{name}: made again for the changed {fields}, {what} raised "
        f"{type(exc).__name__}: {exc}; the class keeps what it was made with, and its "
        f"methods take the edit (an error of the edit: fix it and save; one that refuses "
        f"to make the class twice: a restart, or have it skip registering while "
        f"mighty_patcher.currently_reloading() is true)"
    )


def _tuple_fields_changed(name: str, old: type, new: type) -> str | None:
    """What needs a restart when a named tuple (``typing.NamedTuple``, a
    ``collections.namedtuple`` base) has other fields: its instances are tuples of the old
    length, which no reload can change."""
    if not issubclass(old, tuple):
        return None
    before, after = getattr(old, "_fields", None), getattr(new, "_fields", None)
    if not isinstance(before, tuple) or before == after:
        return None
    shown = ", ".join(after) if isinstance(after, tuple) else "?"
    return (
        f"{name}: its fields changed ({', '.join(before)} -> {shown}); its instances are "
        f"tuples of the old fields, which a restart makes again"
    )


#: Class members that a later reload may bring back into the same object.
_MEMBERS = (types.FunctionType, staticmethod, classmethod, property)


def _had_effect(node: ast.stmt, module: types.ModuleType) -> bool:
    """Whether a top-level statement may have done something when it ran: not a docstring,
    ``pass`` or ``...``, nor the ``if __name__ == "__main__":`` block of an imported module."""
    if isinstance(node, ast.Pass) or (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    ):
        return False
    main = ast.Compare(ast.Name("__name__", ast.Load()), [ast.Eq()], [ast.Constant("__main__")])
    if isinstance(node, ast.If) and dump_nodes([node.test]) == dump_nodes([main]):
        return module.__name__ == "__main__"
    return True


def _defined_in(func: types.FunctionType, node: ast.stmt) -> bool:
    """Whether ``func`` was made by a ``def`` or ``lambda`` inside the statement ``node`` (of
    the source its code was compiled from)."""
    return first_line(node) <= func.__code__.co_firstlineno <= (node.end_lineno or 0)


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


def _differing(old: type, new: dict[str, Any]) -> list[str]:
    """Members in ``new`` that are not the very objects ``old`` holds (before a patch)."""
    return [
        n
        for n, v in new.items()
        if n not in _BOOKKEEPING and old.__dict__.get(n, _MISSING) is not v
    ]
