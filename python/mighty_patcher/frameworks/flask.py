"""Flask (applications and blueprints): every edit of a view, an error handler or a
``before_request``/``after_request`` function takes effect at the next request, also after
the first request was served.

- A body edit patches the function in place: the URL map and the handler lists keep the
  same function object, no decorator runs.
- A new ``@app.route``/``@bp.route`` view, a new ``app.add_url_rule(...)`` statement, a new
  error handler or request hook is registered by its own decorator or call, as at import:
  Flask refuses setup methods once an application served a request (and a blueprint once it
  was registered); for the duration of a reload the adapter lets them through. What a
  blueprint records after its registration (a new route, ``before_app_request``...) is
  applied to every application it is registered on, with the URL prefix and subdomain of
  each registration (read from the rules that registration made), and its request hooks
  and error handlers are merged into the application as ``register_blueprint`` does.
- A changed ``@app.route(...)`` (rule, methods, options): the old rules of the view are
  removed from the URL map (the old URL answers 404) before the decorator registers the new
  ones; the URL map then calls the function the module holds (the engine keeps it, running
  the new code). A changed ``@app.errorhandler(...)``/``@app.before_request`` likewise.
- A view, error handler or hook removed from the file leaves the URL map and the handler
  lists. So does the rule of an ``app.add_url_rule(...)``/``bp.add_url_rule(...)`` statement
  removed from a module (not the running script) or changed (its new rule answers, the old
  one 404), when its rule and endpoint are literals and its view a name.

Everything is undone if the reload fails."""

from __future__ import annotations

import ast
import logging
import types
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import flask
from flask.sansio.blueprints import Blueprint
from flask.sansio.scaffold import Scaffold
from werkzeug.routing.matcher import StateMachineMatcher

from ..hooks import Adapter, DefinitionEvent, ReloadEvent, StatementEvent
from . import method_call, module_globals, named

__all__ = ["FlaskAdapter"]

logger = logging.getLogger("mighty_patcher.frameworks.flask")

#: A scaffold's registries of functions: ``{key: [function, ...]}`` (key None: the app).
_LISTS = (
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "template_context_processors",
    "url_value_preprocessors",
    "url_default_functions",
)
#: An application's own lists of functions.
_APP_LISTS = ("teardown_appcontext_funcs", "shell_context_processors")


def _no_check(f_name: str) -> None:
    """Stands for ``_check_setup_finished`` during a reload: setup methods are allowed."""


def _holds(obj: Any, target: Any, depth: int = 0) -> bool:
    """Whether ``obj`` is ``target`` or wraps it (``__wrapped__``, closure cells): a
    registered view, or a blueprint's deferred setup function that registers it."""
    if obj is target:
        return True
    if depth > 3:
        return False
    wrapped = getattr(obj, "__wrapped__", None)
    if wrapped is not None and _holds(wrapped, target, depth + 1):
        return True
    closure = getattr(obj, "__closure__", None) if isinstance(obj, types.FunctionType) else None
    for cell in closure or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if value is target or (
            isinstance(value, types.FunctionType) and _holds(value, target, depth + 1)
        ):
            return True
    return False


def _swap_cells(obj: Any, new: Any, old: Any, depth: int = 0) -> None:
    """Points the closure cells of ``obj`` (and of the functions it closes over) that hold
    ``new`` at ``old``."""
    if depth > 3 or not isinstance(obj, types.FunctionType):
        return
    for cell in obj.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if value is new:
            cell.cell_contents = old
        elif isinstance(value, types.FunctionType):
            _swap_cells(value, new, old, depth + 1)
    wrapped = getattr(obj, "__wrapped__", None)
    if wrapped is not None and wrapped is not obj:
        _swap_cells(wrapped, new, old, depth + 1)


def _url_rule_call(deferred: Any) -> dict[str, Any] | None:
    """The arguments of ``Blueprint.add_url_rule`` that a deferred setup function carries
    (rule, endpoint, view_func, options), or None for other deferred functions."""
    if not isinstance(deferred, types.FunctionType) or not deferred.__qualname__.endswith(
        "add_url_rule.<locals>.<lambda>"
    ):
        return None
    names = deferred.__code__.co_freevars
    cells = deferred.__closure__ or ()
    try:
        values = dict(zip(names, (c.cell_contents for c in cells), strict=True))
    except ValueError:
        return None
    return values if "rule" in values else None


def _removed_rule(node: ast.stmt, namespace: dict[str, Any]) -> tuple[Any, str, str] | None:
    """``X.add_url_rule(rule, endpoint, view_func, ...)`` as a statement: (what ``X`` names
    now, the rule, the endpoint), when the rule and endpoint are literals (or the endpoint
    comes from a view function named by a name); None for any other statement."""
    found = method_call(node, {"add_url_rule": ("rule", "endpoint", "view_func")})
    if found is None:
        return None
    owner, _, given = found
    try:
        rule = ast.literal_eval(given["rule"])
        endpoint = ast.literal_eval(given["endpoint"]) if "endpoint" in given else None
    except (KeyError, ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    view = given.get("view_func")
    if endpoint is None and isinstance(view, ast.Name):
        endpoint = getattr(namespace.get(view.id), "__name__", None)
    if not isinstance(rule, str) or not isinstance(endpoint, str):
        return None
    return named(owner, namespace), rule, endpoint


# A request's first match after the URL map changed sorts each endpoint's list of rules in
# place (Map.update), with a key function in Python: while a list is being sorted, another
# thread reads it as empty, and a change to it is undone when the sort ends; the loop over
# the endpoints fails if one is added or removed meanwhile. Map.update sorts under
# url_map._remap_lock: every read or change of the rules here holds it too (a plain Lock:
# never taken twice by one thread, and nothing here asks werkzeug to match while holding it).
def _rebuild_matcher(url_map: Any) -> None:
    """werkzeug's matcher cannot remove a rule: a new one with the rules left. The caller
    holds ``url_map._remap_lock``."""
    matcher = StateMachineMatcher(url_map.merge_slashes)
    for rules in list(url_map._rules_by_endpoint.values()):
        for rule in rules:
            if not rule.build_only:
                matcher.add(rule)
    url_map._matcher = matcher
    url_map._remap = True


class _Registration:
    """One registration of a blueprint on an application, as ``register_blueprint`` made it:
    the options derived from the rules it added."""

    def __init__(self, app: flask.Flask, name: str, blueprint: Blueprint, first: bool) -> None:
        self.app, self.name, self.blueprint, self.first = app, name, blueprint, first
        prefix, _, self_name = name.rpartition(".")
        url_prefix, subdomain = blueprint.url_prefix, blueprint.subdomain
        #: Whether a rule in the application told the options (else: the blueprint's own).
        self.inferred = False
        for deferred in blueprint.deferred_functions:
            call = _url_rule_call(deferred)
            if call is None:
                continue
            endpoint = call.get("endpoint") or getattr(call.get("view_func"), "__name__", None)
            with app.url_map._remap_lock:
                rules = list(app.url_map._rules_by_endpoint.get(f"{name}.{endpoint}", []))
            if not rules:
                continue
            made, own = rules[0].rule, str(call["rule"])
            if own and made.endswith(own.lstrip("/")):
                url_prefix = made[: len(made) - len(own.lstrip("/"))] or None
            elif not own:
                url_prefix = made
            subdomain = rules[0].subdomain or None
            self.inferred = True
            break
        self.options: dict[str, Any] = {
            "name": self_name,
            "name_prefix": prefix,
            "url_prefix": url_prefix,
            "subdomain": subdomain,
        }

    def key(self, key: str | None) -> str:
        return self.name if key is None else f"{self.name}.{key}"

    def apply(self, deferred: Callable[[Any], None]) -> None:
        state = self.blueprint.make_setup_state(self.app, dict(self.options), self.first)
        deferred(state)


class _Snapshot:
    """What a reload may change of the applications and blueprints, to undo it."""

    def __init__(self, scaffolds: list[Scaffold]) -> None:
        self.state: list[tuple[Scaffold, dict[str, Any]]] = []
        for s in scaffolds:
            saved: dict[str, Any] = {
                "view_functions": dict(s.view_functions),
                "error_handler_spec": {
                    k: {code: dict(h) for code, h in list(v.items())}
                    for k, v in list(s.error_handler_spec.items())
                },
            }
            for attr in _LISTS:
                saved[attr] = {k: list(v) for k, v in getattr(s, attr).items()}
            if isinstance(s, flask.Flask):
                with s.url_map._remap_lock:
                    rules = s.url_map._rules_by_endpoint
                    saved["rules"] = {k: list(v) for k, v in rules.items()}
                saved["blueprints"] = dict(s.blueprints)
                for attr in _APP_LISTS:
                    saved[attr] = list(getattr(s, attr))
            if isinstance(s, Blueprint):
                saved["deferred_functions"] = list(s.deferred_functions)
                saved["_blueprints"] = list(s._blueprints)
            self.state.append((s, saved))

    def deferred(self, blueprint: Blueprint) -> list[Any]:
        for s, saved in self.state:
            if s is blueprint:
                return list(saved["deferred_functions"])
        return []

    def lists(self, scaffold: Scaffold, attr: str) -> dict[Any, list[Any]]:
        for s, saved in self.state:
            if s is scaffold:
                return dict(saved[attr])
        return {}

    def restore(self) -> None:
        for s, saved in self.state:
            s.view_functions.clear()
            s.view_functions.update(saved["view_functions"])
            s.error_handler_spec.clear()
            for key, codes in saved["error_handler_spec"].items():
                s.error_handler_spec[key] = defaultdict(dict, codes)
            for attr in _LISTS:
                lists = getattr(s, attr)
                lists.clear()
                lists.update(saved[attr])
            if isinstance(s, flask.Flask):
                with s.url_map._remap_lock:
                    s.url_map._rules_by_endpoint.clear()
                    s.url_map._rules_by_endpoint.update(saved["rules"])
                    _rebuild_matcher(s.url_map)
                s.blueprints.clear()
                s.blueprints.update(saved["blueprints"])
                for attr in _APP_LISTS:
                    getattr(s, attr)[:] = saved[attr]
            if isinstance(s, Blueprint):
                s.deferred_functions[:] = saved["deferred_functions"]
                s._blueprints[:] = saved["_blueprints"]


class FlaskAdapter(Adapter):
    module = "flask"

    def __init__(self) -> None:
        self._apps: list[flask.Flask] = []
        self._blueprints: list[Blueprint] = []
        self._registrations: list[_Registration] = []
        self._snapshot: _Snapshot | None = None
        self._unchecked: list[Scaffold] = []
        #: The options each registration was found with, by (application, name): a
        #: blueprint whose every rule a reload took out (its one view removed, to come back)
        #: no longer tells them.
        self._options: dict[tuple[int, str], dict[str, Any]] = {}

    # --- around the reload -----------------------------------------------------------------

    def before_reload(self, event: ReloadEvent) -> None:
        if self._snapshot is not None:  # a second module backed by the same file
            return
        self._apps = module_globals(flask.Flask)
        blueprints = module_globals(Blueprint)
        for app in self._apps:
            blueprints += [bp for bp in list(app.blueprints.values()) if bp not in blueprints]
        self._blueprints = blueprints
        self._registrations = []
        for app in self._apps:
            seen: set[int] = set()
            for name, bp in list(app.blueprints.items()):
                reg = _Registration(app, name, bp, id(bp) not in seen)
                if reg.inferred:
                    self._options[(id(app), name)] = dict(reg.options)
                elif (id(app), name) in self._options:
                    reg.options = dict(self._options[(id(app), name)])
                self._registrations.append(reg)
                seen.add(id(bp))
        scaffolds: list[Scaffold] = [*self._apps, *self._blueprints]
        snapshot = self._snapshot = _Snapshot(scaffolds)
        for scaffold in scaffolds:
            # Setup methods raise once an app served a request (a blueprint: once registered).
            if "_check_setup_finished" not in vars(scaffold):
                scaffold._check_setup_finished = _no_check  # type: ignore[method-assign]
                self._unchecked.append(scaffold)

        def undo() -> None:
            snapshot.restore()
            self._finish()

        event.on_rollback(undo)

    def _finish(self) -> None:
        for scaffold in self._unchecked:
            vars(scaffold).pop("_check_setup_finished", None)
        self._unchecked = []
        self._snapshot = None

    def after_reload(self, event: ReloadEvent) -> None:
        snapshot = self._snapshot
        if snapshot is None:
            return
        try:
            self._apply_blueprints(snapshot)
            for app in self._apps:
                self._drop_duplicate_rules(app, snapshot)
        finally:
            self._finish()

    # --- definitions -----------------------------------------------------------------------

    def before_definition(self, event: DefinitionEvent) -> None:
        if event.action in ("rebuilt", "removed") and callable(event.old):
            # Its registrations go: a changed decorator registers it again (new rule,
            # code, methods), a removed definition not at all (until it comes back).
            event.unregistered = self._unregister(event.old)

    def after_definition(self, event: DefinitionEvent) -> None:
        if event.action == "rebuilt" and event.new is not None and callable(event.old):
            # The decorators registered the new function; Flask is to call the one the
            # module keeps (patched to run the new code), as before the edit.
            self._replace(event.new, event.old)

    # Request threads add keys while a reload runs (Flask looks error handlers up as
    # error_handler_spec[name][code] in defaultdicts): every walk here goes over a copy.
    def _unregister(self, func: Any) -> bool:
        """Takes ``func``'s registrations out of every app and blueprint; True if it had any."""
        found = False
        for app in self._apps:
            endpoints = [e for e, f in list(app.view_functions.items()) if _holds(f, func)]
            found |= bool(endpoints)
            self._drop_endpoints(app, endpoints)
        for bp in self._blueprints:
            gone = [d for d in bp.deferred_functions if _holds(d, func)]
            if not gone:
                continue
            found = True
            bp.deferred_functions[:] = [d for d in bp.deferred_functions if d not in gone]
            for call in filter(None, map(_url_rule_call, gone)):
                endpoint = call.get("endpoint") or getattr(call.get("view_func"), "__name__", "")
                for reg in self._registrations:
                    if reg.blueprint is bp:
                        self._drop_endpoints(reg.app, [f"{reg.name}.{endpoint}"])
        for scaffold in [*self._apps, *self._blueprints]:
            for attr in _LISTS:
                for funcs in list(getattr(scaffold, attr).values()):
                    kept = [f for f in funcs if not _holds(f, func)]
                    found |= len(kept) != len(funcs)
                    funcs[:] = kept
            for codes in list(scaffold.error_handler_spec.values()):
                for handlers in list(codes.values()):
                    for exc in [e for e, h in list(handlers.items()) if _holds(h, func)]:
                        del handlers[exc]
                        found = True
            if isinstance(scaffold, flask.Flask):
                for attr in _APP_LISTS:
                    funcs = getattr(scaffold, attr)
                    kept = [f for f in funcs if not _holds(f, func)]
                    found |= len(kept) != len(funcs)
                    funcs[:] = kept
        return found

    @staticmethod
    def _drop_endpoints(app: flask.Flask, endpoints: list[str]) -> None:
        changed = False
        with app.url_map._remap_lock:
            for endpoint in endpoints:
                app.view_functions.pop(endpoint, None)
                if app.url_map._rules_by_endpoint.pop(endpoint, None) is not None:
                    changed = True
            if changed:
                _rebuild_matcher(app.url_map)

    def _replace(self, new: Any, old: Any) -> None:
        for scaffold in [*self._apps, *self._blueprints]:
            for endpoint, view in list(scaffold.view_functions.items()):
                if view is new:
                    scaffold.view_functions[endpoint] = old
            for attr in _LISTS:
                for funcs in list(getattr(scaffold, attr).values()):
                    funcs[:] = [old if f is new else f for f in funcs]
            for codes in list(scaffold.error_handler_spec.values()):
                for handlers in list(codes.values()):
                    for exc, handler in list(handlers.items()):
                        if handler is new:
                            handlers[exc] = old
            if isinstance(scaffold, flask.Flask):
                for attr in _APP_LISTS:
                    funcs = getattr(scaffold, attr)
                    funcs[:] = [old if f is new else f for f in funcs]
            if isinstance(scaffold, Blueprint):
                for deferred in scaffold.deferred_functions:
                    _swap_cells(deferred, new, old)

    # --- statements ------------------------------------------------------------------------

    def removed_statement(self, event: StatementEvent) -> None:
        """An ``add_url_rule(...)`` statement gone from the file: the rule it added leaves
        the URL map (the rules a changed version of it added in this reload stay)."""
        snapshot = self._snapshot
        found = _removed_rule(event.node, vars(event.module))
        if snapshot is None or found is None:
            return
        scaffold, rule, endpoint = found
        if isinstance(scaffold, flask.Flask) and scaffold in self._apps:
            event.undone = self._drop_rule(scaffold, endpoint, rule, snapshot)
        elif isinstance(scaffold, Blueprint) and scaffold in self._blueprints:
            before = {id(d) for d in snapshot.deferred(scaffold)}
            gone = [
                d
                for d in scaffold.deferred_functions
                if id(d) in before
                and (call := _url_rule_call(d)) is not None
                and call["rule"] == rule
                and (call.get("endpoint") or getattr(call.get("view_func"), "__name__", None))
                == endpoint
            ]
            if not gone:
                return
            scaffold.deferred_functions[:] = [
                d for d in scaffold.deferred_functions if d not in gone
            ]
            for reg in self._registrations:
                if reg.blueprint is scaffold:
                    prefix = reg.options["url_prefix"]
                    made = rule
                    if prefix is not None:
                        made = "/".join((prefix.rstrip("/"), rule.lstrip("/"))) if rule else prefix
                    self._drop_rule(reg.app, f"{reg.name}.{endpoint}", made, snapshot)
            event.undone = True

    @staticmethod
    def _drop_rule(app: flask.Flask, endpoint: str, rule: str, snapshot: _Snapshot) -> bool:
        """Removes the rules ``rule`` of ``endpoint`` that the map held before the reload;
        the endpoint goes with its last rule. True if there was one."""
        before = {id(r) for r in snapshot.lists(app, "rules").get(endpoint, [])}
        with app.url_map._remap_lock:
            rules = app.url_map._rules_by_endpoint.get(endpoint, [])
            kept = [r for r in rules if id(r) not in before or r.rule != rule]
            if len(kept) == len(rules):
                return False
            if kept:
                rules[:] = kept
            else:
                del app.url_map._rules_by_endpoint[endpoint]
                app.view_functions.pop(endpoint, None)
            _rebuild_matcher(app.url_map)
        return True

    # --- blueprints ------------------------------------------------------------------------

    def _apply_blueprints(self, snapshot: _Snapshot) -> None:
        """What blueprints recorded during the reload reaches the applications they are
        registered on, as ``register_blueprint`` would have carried it."""
        for bp in self._blueprints:
            before = {id(d) for d in snapshot.deferred(bp)}
            new = [d for d in bp.deferred_functions if id(d) not in before]
            registrations = [r for r in self._registrations if r.blueprint is bp]
            for reg in registrations:
                for deferred in new:
                    reg.apply(deferred)
                self._merge_lists(bp, reg, snapshot)

    @staticmethod
    def _merge_lists(bp: Blueprint, reg: _Registration, snapshot: _Snapshot) -> None:
        for attr in _LISTS:
            before = snapshot.lists(bp, attr)
            target = getattr(reg.app, attr)
            for key, funcs in list(getattr(bp, attr).items()):
                old_ids = {id(f) for f in before.get(key, [])}
                for func in funcs:
                    mine = target.setdefault(reg.key(key), [])
                    if id(func) not in old_ids and func not in mine:
                        mine.append(func)
        for key, codes in list(bp.error_handler_spec.items()):
            target_codes = reg.app.error_handler_spec[reg.key(key)]
            for code, handlers in list(codes.items()):
                target_codes.setdefault(code, {}).update(handlers)

    @staticmethod
    def _drop_duplicate_rules(app: flask.Flask, snapshot: _Snapshot) -> None:
        """A statement run again (``app.add_url_rule(...)``) adds its rule again: the copy
        goes, so that the map holds each rule once."""
        changed = False
        with app.url_map._remap_lock:
            for rules in list(app.url_map._rules_by_endpoint.values()):
                seen: set[tuple[Any, ...]] = set()
                kept = []
                for rule in rules:
                    key = (rule.rule, frozenset(rule.methods or ()), rule.subdomain, rule.host)
                    if key in seen:
                        changed = True
                        continue
                    seen.add(key)
                    kept.append(rule)
                rules[:] = kept
            if changed:
                _rebuild_matcher(app.url_map)
