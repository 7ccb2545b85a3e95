"""FastAPI (and the Starlette routes inside a FastAPI application): every edit of an endpoint
takes effect at the next request, the route table never holds a route twice, and
``/openapi.json`` follows.

- A body edit patches the endpoint in place; the route keeps calling the same function.
- A changed signature (a new query parameter, a new ``Depends``, a new body or return type):
  the decorator did not change, so it is not run again, but the route's dependant, body
  field and response field were derived from the old signature; the route is built again in
  place from what it holds (its path, methods and options) and the function the module
  keeps. The same happens to every route whose dependencies include a dependency function
  whose signature changed, and to every route when a pydantic model changed (request and
  response validation is compiled from the models' schemas).
- A new endpoint is added by its own decorator, as at import (FastAPI allows that at any
  time; routers included in the app see it: inclusion is by reference).
- A changed decorator (path, method, ``response_model``...): the decorator registers a new
  route; it takes the place of the old one (which goes: its URL answers 404) and calls the
  function the module keeps. A removed endpoint's routes go.
- The OpenAPI schema is made again at the next request for it.

Everything done to the route tables is undone if the reload fails."""

from __future__ import annotations

import ast
import inspect
import logging
import types
from collections.abc import Iterator
from typing import Any

import fastapi
import pydantic
from fastapi.datastructures import Default
from fastapi.dependencies.utils import get_typed_return_annotation
from fastapi.routing import APIRoute, APIRouter
from starlette.routing import BaseRoute, Mount, Route, Router, get_name

from ..hooks import Adapter, DefinitionEvent, ReloadEvent, StatementEvent
from . import method_call, module_globals, named

__all__ = ["FastAPIAdapter"]

logger = logging.getLogger("mighty_patcher.frameworks.fastapi")

#: What in a function's code makes FastAPI treat it differently (and cache the verdict).
_KIND_FLAGS = (
    inspect.CO_VARARGS
    | inspect.CO_VARKEYWORDS
    | inspect.CO_COROUTINE
    | inspect.CO_GENERATOR
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)


def _signature(obj: Any) -> Any:
    """What FastAPI reads of a callable to build a route or dependency from it."""
    if isinstance(obj, type):
        init = obj.__dict__.get("__init__")
        return ("class", _signature(init) if init is not None else None)
    if not isinstance(obj, types.FunctionType):
        return None
    code = obj.__code__
    count = code.co_argcount + code.co_kwonlyargcount
    try:
        annotations = repr(obj.__annotations__)
    except Exception:  # an annotation that cannot be evaluated yet
        annotations = "?"
    return (
        code.co_varnames[:count],
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags & _KIND_FLAGS,
        repr(obj.__defaults__),
        repr(obj.__kwdefaults__),
        annotations,
    )


class _Built:
    """What a route derived from its endpoint when it was made (and keeps, resolved)."""

    def __init__(self, func: Any) -> None:
        try:
            self.returns = get_typed_return_annotation(func)
        except Exception:
            self.returns = None
        self.description = inspect.cleandoc(getattr(func, "__doc__", None) or "")
        self.description = self.description.split("\f")[0].strip()
        self.name = get_name(func)


def _calls(route: BaseRoute) -> Iterator[Any]:
    """The endpoint and every dependency a route calls."""
    yield getattr(route, "endpoint", None)
    stack = [getattr(route, "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        yield dependant.call
        stack.extend(dependant.dependencies)


def _remake(route: Any, endpoint: Any, built: _Built) -> str | None:
    """Builds ``route`` again in place, for ``endpoint``, from the options it holds; what
    it derived from its endpoint (response model, description, name) is derived again when
    it came from there. Returns why it could not be, or None."""
    cls = type(route)
    kwargs: dict[str, Any] = {}
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    for param in params:
        if param.name in ("path", "endpoint") or param.kind in (
            param.VAR_POSITIONAL,
            param.VAR_KEYWORD,
        ):
            continue
        if param.name in vars(route):
            kwargs[param.name] = vars(route)[param.name]
        elif param.default is param.empty:
            return f"the route {route.path} of {cls.__name__} does not keep its {param.name!r}"
    if isinstance(route, APIRoute):
        if "response_model" in kwargs and _same(route.response_model, built.returns):
            kwargs["response_model"] = Default(None)
        if kwargs.get("description") == built.description:
            kwargs["description"] = None
    if kwargs.get("name") == built.name:
        kwargs["name"] = None
    if isinstance(route, Route) and not isinstance(route, APIRoute) and "methods" in kwargs:
        kwargs["methods"] = sorted(kwargs["methods"] or ()) or None
    cls.__init__(route, route.path, endpoint, **kwargs)
    return None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a is b or a == b)
    except Exception:
        return False


def _clear_fastapi_caches() -> None:
    """FastAPI caches whether a callable is a coroutine or generator function, by identity;
    a function patched in place may have changed kind."""
    from fastapi.dependencies import models

    for name in dir(models):
        cached = getattr(models, name)
        if name.endswith("_cached") and hasattr(cached, "cache_clear"):
            cached.cache_clear()


class FastAPIAdapter(Adapter):
    module = "fastapi"

    def __init__(self) -> None:
        self._routers: list[Router] = []
        self._apps: list[fastapi.FastAPI] = []
        self._saved: list[tuple[Router, list[BaseRoute]]] | None = None
        self._report: Any = None
        #: Functions patched in this reload: what they were before (signature, derived).
        self._before: dict[int, tuple[Any, Any, _Built]] = {}
        #: What the routes of the functions patched in this reload derived from them.
        self._built_before: dict[int, _Built] = {}
        #: Callables whose signature changed in this reload.
        self._changed: dict[int, Any] = {}
        self._models_changed = False
        #: Routes of a definition being rebuilt: (router, route) as they were before.
        self._replacing: dict[int, list[tuple[Router, BaseRoute]]] = {}
        self._handlers: list[tuple[fastapi.FastAPI, dict[Any, Any]]] = []
        #: Definitions new in this reload: their routes go where the file puts them.
        self._added: list[Any] = []

    # --- the route tables ------------------------------------------------------------------

    def _find(self) -> None:
        apps = module_globals(fastapi.FastAPI)
        routers: list[Router] = [app.router for app in apps]
        routers += [r for r in module_globals(APIRouter) if r not in routers]
        for router in routers:  # grows while walked: included and mounted routers
            for route in list(router.routes):
                child = getattr(route, "original_router", None)  # an included router
                if isinstance(route, Mount):
                    child = route.app.router if isinstance(route.app, fastapi.FastAPI) else None
                    if isinstance(route.app, fastapi.FastAPI) and route.app not in apps:
                        apps.append(route.app)
                if isinstance(child, Router) and child not in routers:
                    routers.append(child)
        self._routers, self._apps = routers, apps

    @staticmethod
    def _changed_table(router: Router) -> None:
        mark = getattr(router, "_mark_routes_changed", None)
        if mark is not None:
            mark()  # included routers and the OpenAPI cache see a new version

    def _all_routes(self) -> Iterator[tuple[Router, BaseRoute]]:
        for router in self._routers:
            for route in list(router.routes):
                yield router, route

    # --- around the reload -----------------------------------------------------------------

    def before_reload(self, event: ReloadEvent) -> None:
        self._report = event.report
        if self._saved is not None:  # a second module backed by the same file
            return
        self._find()
        saved = self._saved = [(router, list(router.routes)) for router in self._routers]
        handlers = [(app, dict(app.exception_handlers)) for app in self._apps]

        def undo() -> None:
            for router, routes in saved:
                router.routes[:] = routes
                self._changed_table(router)
            for app, before in handlers:
                app.exception_handlers.clear()
                app.exception_handlers.update(before)
            self._reset()

        event.on_rollback(undo)
        self._handlers = handlers

    def _reset(self) -> None:
        self._saved = None
        self._before.clear()
        self._built_before.clear()
        self._changed.clear()
        self._replacing.clear()
        self._added.clear()
        self._models_changed = False

    def after_reload(self, event: ReloadEvent) -> None:
        if self._saved is None:
            return
        try:
            self._find()  # routers made by the reload too
            for new in self._added:
                self._place(new)
            self._drop_duplicates()
            self._remake_routes()
            for app, before in self._handlers:
                if app.exception_handlers != before:
                    # Starlette built its middleware stack with the handlers of then.
                    app.middleware_stack = None
            for app in self._apps:
                app.openapi_schema = None
        finally:
            self._reset()

    # --- definitions -----------------------------------------------------------------------

    def before_definition(self, event: DefinitionEvent) -> None:
        old = event.old
        if old is None:
            return
        if event.action in ("patched", "rebuilt"):
            self._before[id(old)] = (old, _signature(old), _Built(old))
            self._built_before.setdefault(id(old), self._before[id(old)][2])
        if event.action == "rebuilt":
            self._replacing[id(old)] = [
                (router, route)
                for router, route in self._all_routes()
                if getattr(route, "endpoint", None) is old
            ]
        elif event.action == "removed":
            for router in self._routers:
                kept = [r for r in router.routes if getattr(r, "endpoint", None) is not old]
                if len(kept) != len(router.routes):
                    router.routes[:] = kept
                    self._changed_table(router)

    def after_definition(self, event: DefinitionEvent) -> None:
        old, new = event.old, event.new
        if old is None:
            if event.action == "added" and new is not None:
                self._added.append(new)
            return
        if isinstance(old, type) and issubclass(old, pydantic.BaseModel):
            if event.action == "rebuilt":
                self._models_changed = True
            return
        before = self._before.pop(id(old), None)
        if before is not None and before[1] != _signature(old):
            self._changed[id(old)] = old
        if event.action == "rebuilt" and new is not None:
            event.unregistered = self._replace(old, new)

    def _replace(self, old: Any, new: Any) -> bool:
        """The decorators made new routes for ``new``: they take the places of the routes
        ``old`` had and call ``old`` (which now runs the new code). True if there were any."""
        previous = self._replacing.pop(id(old), [])
        replaced = False
        # By identity throughout: Starlette's routes compare equal by path, endpoint and
        # methods, and a remade route has the old endpoint, so it equals the route it replaces.
        for router in self._routers:
            made = [r for r in router.routes if getattr(r, "endpoint", None) is new]
            present = {id(r) for r in router.routes}
            gone = [r for rt, r in previous if rt is router and id(r) in present]
            if not made and not gone:
                continue
            replaced = True
            for route in made:
                problem = _remake(route, old, _Built(old))
                if problem is not None and self._report is not None:
                    self._report.needs_restart.append(problem)
            made_ids = {id(r) for r in made}
            routes = [r for r in router.routes if id(r) not in made_ids]
            if len(made) == len(gone):
                place = {id(g): m for g, m in zip(gone, made, strict=True)}
                routes = [place.get(id(r), r) for r in routes]
            else:
                gone_ids = {id(r) for r in gone}
                routes = [r for r in routes if id(r) not in gone_ids] + made
            router.routes[:] = routes
            self._changed_table(router)
        return replaced

    def removed_statement(self, event: StatementEvent) -> None:
        """An ``include_router(...)`` or ``add_api_route(...)`` statement gone from the file
        (or changed): the routes it added leave the table (the ones a changed version of it
        added in this reload stay)."""
        found = method_call(
            event.node, {"include_router": ("router",), "add_api_route": ("path", "endpoint")}
        )
        if found is None or self._saved is None:
            return
        owner, method, given = found
        namespace = vars(event.module)
        table = named(owner, namespace)
        router = table.router if isinstance(table, fastapi.FastAPI) else table
        if not isinstance(router, Router):
            return
        before = {id(r) for rt, routes in self._saved if rt is router for r in routes}
        try:
            if method == "include_router":
                included = named(given.get("router"), namespace)
                prefix = ast.literal_eval(given["prefix"]) if "prefix" in given else ""

                def made(route: BaseRoute) -> bool:
                    context = getattr(route, "include_context", None)
                    return (
                        getattr(route, "original_router", None) is included
                        and (getattr(context, "prefix", "") or "") == prefix
                    )

            else:
                path = ast.literal_eval(given["path"])
                endpoint = named(given.get("endpoint"), namespace)

                def made(route: BaseRoute) -> bool:
                    return getattr(route, "path", None) == path and (
                        getattr(route, "endpoint", None) is endpoint
                    )

        except (KeyError, ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return  # not literals: what it made cannot be told
        kept = [r for r in router.routes if id(r) not in before or not made(r)]
        if len(kept) != len(router.routes):
            router.routes[:] = kept
            self._changed_table(router)
            event.undone = True

    # --- after the reload ------------------------------------------------------------------

    def _place(self, new: Any) -> None:
        """The routes a new definition's decorator appended go before the routes of the
        definitions below it in the same file, as a restart would order them: Starlette
        matches in order, and ``/items/{item_id}`` must not take ``/items/count`` added
        above it. (After the reload: the code of every definition has its new lines.)"""
        code = getattr(new, "__code__", None)
        if code is None:
            return
        for router in self._routers:
            made = [r for r in router.routes if getattr(r, "endpoint", None) is new]
            if not made:
                continue
            rest = [r for r in router.routes if getattr(r, "endpoint", None) is not new]
            at = next((i for i, r in enumerate(rest) if _below(r, code)), None)
            if at is not None:
                router.routes[:] = rest[:at] + made + rest[at:]
                self._changed_table(router)

    def _drop_duplicates(self) -> None:
        """A statement run again (``app.include_router(...)``, ``app.add_api_route(...)``)
        adds what it added before once more: the copy goes; a changed one is reported."""
        assert self._saved is not None
        before = {id(router): routes for router, routes in self._saved}
        for router in self._routers:
            old_ids = {id(r) for r in before.get(id(router), [])}
            kept: list[BaseRoute] = []
            for route in router.routes:
                if id(route) in old_ids:
                    kept.append(route)
                    continue
                twin = next((r for r in kept if id(r) in old_ids and _twins(r, route)), None)
                if twin is None:
                    kept.append(route)
                    continue
                if _describe(twin) != _describe(route) and self._report is not None:
                    self._report.needs_restart.append(
                        f"{_describe(route)} was added beside {_describe(twin)}, which "
                        f"stays until a restart"
                    )
                    kept.append(route)
            if len(kept) != len(router.routes):
                router.routes[:] = kept
                self._changed_table(router)

    def _remake_routes(self) -> None:
        if not self._changed and not self._models_changed:
            return
        _clear_fastapi_caches()
        changed = set(self._changed)
        for router in self._routers:
            touched = False
            for route in router.routes:
                if not isinstance(route, (APIRoute, Route)):
                    continue
                if not (self._models_changed and isinstance(route, APIRoute)) and not any(
                    id(c) in changed for c in _calls(route)
                ):
                    continue
                endpoint = route.endpoint
                before = self._before_of(endpoint)
                problem = _remake(route, endpoint, before)
                touched = True
                if problem is not None and self._report is not None:
                    self._report.needs_restart.append(problem)
            if touched:
                self._changed_table(router)

    def _before_of(self, endpoint: Any) -> _Built:
        saved = self._built_before.get(id(endpoint))
        return saved if saved is not None else _Built(endpoint)


def _below(route: BaseRoute, code: types.CodeType) -> bool:
    """Whether ``route``'s endpoint is defined below ``code`` in the same file."""
    endpoint = getattr(route, "endpoint", None)
    try:
        other = getattr(inspect.unwrap(endpoint), "__code__", None) if endpoint else None
    except ValueError:  # a cycle of __wrapped__
        return False
    return (
        isinstance(other, types.CodeType)
        and other.co_filename == code.co_filename
        and other.co_firstlineno > code.co_firstlineno
    )


def _twins(a: BaseRoute, b: BaseRoute) -> bool:
    """Two routes the same statement made: same kind, same endpoint (or included router)."""
    if type(a) is not type(b):
        return False
    router = getattr(a, "original_router", None)
    if router is not None:
        return router is getattr(b, "original_router", None)
    endpoint = getattr(a, "endpoint", None)
    return endpoint is not None and endpoint is getattr(b, "endpoint", None)


def _describe(route: BaseRoute) -> str:
    router = getattr(route, "original_router", None)
    if router is not None:
        context = getattr(route, "include_context", None)
        prefix = getattr(context, "prefix", "") or "/"
        return f"an inclusion of router {getattr(router, 'prefix', '') or ''}at {prefix}"
    methods = ",".join(sorted(getattr(route, "methods", None) or ()))
    return f"the route {methods} {getattr(route, 'path', '?')}"
