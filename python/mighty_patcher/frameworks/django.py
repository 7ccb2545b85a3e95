"""Django: what Django built from the code when it started is kept in step with the edits
that can change it live, and the edits it cannot follow without a restart are refused and
said so, naming what changed.

- **URLs.** A reload of a module that has ``urlpatterns`` (the root urlconf or one included
  from it) clears Django's resolver caches, including the patterns each included resolver
  cached, so new URLs answer and removed ones 404 at the next request. The admin's URLs are
  made again when the models registered with an admin site changed.
- **Models.** Methods, properties and other non-field members are patched into the model
  class in place, without running ``ModelBase`` again (no "already registered" warning; the
  app registry keeps the class the program holds). A field added, removed or changed, a
  changed ``Meta`` or manager, is refused: the model stays exactly as it is (its plain method
  edits in the same save still apply) and the report says that a migration and a restart are
  needed, naming the model and the fields. A model removed from its file is refused too.
- **Admin.** A ``ModelAdmin`` rebuilt by its ``@admin.register`` decorator (options such as
  ``list_display`` changed) registers again without ``AlreadyRegistered``, and the site goes
  on with the instance it held, which takes the new options.
- **Forms.** A form whose fields changed is rebuilt by its metaclass; the form class the
  program holds takes the new ``base_fields`` (and a ``ModelForm`` its new ``_meta``).
- **Middleware.** Django made the middleware chain at startup: edits of a middleware's
  methods and of the function a middleware factory returned apply; a changed ``__init__``, a
  factory's own code, or a ``process_view``/``process_exception``/
  ``process_template_response`` added or removed are reported as needing a restart.
- **Settings.** Django copied its settings at startup: a changed setting is reported as
  needing a restart.
"""

from __future__ import annotations

import ast
import builtins
import logging
import sys
import types
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db.models.base import ModelBase
from django.db.models.fields import Field
from django.db.models.manager import BaseManager
from django.forms.forms import DeclarativeFieldsMetaclass
from django.forms.widgets import MediaDefiningClass, media_property

from .. import NeedsRestart
from ..hooks import Adapter, DefinitionEvent, ReloadEvent, StatementEvent
from . import method_call, named

__all__ = ["DjangoAdapter"]

logger = logging.getLogger("mighty_patcher.frameworks.django")

_UNKNOWN: Any = object()

#: What a model's migration follows and a restart applies.
_MIGRATE = (
    "Django built the model's fields when it started: run manage.py makemigrations and "
    "migrate, then restart (until then the running model keeps its old fields)"
)

#: The optional middleware methods ``BaseHandler.load_middleware`` looks for, once.
_MIDDLEWARE_HOOKS = ("process_view", "process_exception", "process_template_response")


class DjangoAdapter(Adapter):
    module = "django"

    def __init__(self) -> None:
        #: The report of the module being reloaded (adapters may add to it).
        self._report: Any = None
        #: ``urlpatterns`` of the module being reloaded, before.
        self._urlpatterns: Any = _UNKNOWN
        #: The admin sites' registries before the reload: {site: {model: ModelAdmin}}.
        self._registries: dict[Any, dict[Any, Any]] = {}
        #: The settings module's settings before its reload.
        self._settings: dict[str, Any] | None = None
        #: ModelAdmin registrations taken out while a decorated ModelAdmin is rebuilt:
        #: {id(old class): {(site, model): instance}}.
        self._held: dict[int, dict[tuple[Any, Any], Any]] = {}
        #: Middleware hooks a middleware class had before its change.
        self._middleware: dict[int, tuple[Any, ...]] = {}
        self._admin_changed = False
        #: By model label: the class-body statements (syntax dumps) of the fields, managers
        #: and Meta the running model was built from (every change to them is refused).
        self._built: dict[str, dict[str, str]] = {}

    def in_use(self) -> bool:
        # A program may import Django without being a Django project (a library that uses a
        # piece of it): without settings and loaded apps there is nothing to keep in step.
        from django.apps import apps

        return bool(settings.configured and apps.ready)

    # --- reloads ---------------------------------------------------------------------------

    def before_reload(self, event: ReloadEvent) -> None:
        self._report = event.report
        self._urlpatterns = vars(event.module).get("urlpatterns", _UNKNOWN)
        saved = self._registries = {site: dict(site._registry) for site in _admin_sites()}
        # A registration statement run again (changed: admin.site.register(Tag, TagAdmin))
        # replaces the registration it made before, as a restart would make it once.
        for site in saved:
            vars(site)["register"] = _replacing_register(site)

        def undo() -> None:
            for site, registry in saved.items():
                site._registry.clear()
                site._registry.update(registry)
            _plain_register(saved)

        event.on_rollback(undo)
        self._admin_changed = False
        self._held.clear()
        self._settings = None
        if _is_settings_module(event.module):
            self._settings = {k: v for k, v in list(vars(event.module).items()) if k.isupper()}

    def after_reload(self, event: ReloadEvent) -> None:
        _plain_register(self._registries)
        if not apps.ready:
            return
        if self._settings is not None:
            self._settings_changed(event)
        registries = {site: dict(site._registry) for site in _admin_sites()}
        admin = self._admin_changed or _registries_differ(self._registries, registries)
        patterns = vars(event.module).get("urlpatterns", _UNKNOWN)
        if patterns is not _UNKNOWN or admin:
            replaced = {}
            if self._urlpatterns is not _UNKNOWN and patterns is not self._urlpatterns:
                replaced[id(self._urlpatterns)] = patterns
            _refresh_urls(replaced, admin=admin)

    def _settings_changed(self, event: ReloadEvent) -> None:
        assert self._settings is not None
        now = {k: v for k, v in list(vars(event.module).items()) if k.isupper()}
        changed = sorted(
            name
            for name in set(now) | set(self._settings)
            if not _same(now.get(name, _UNKNOWN), self._settings.get(name, _UNKNOWN))
        )
        if changed:
            event.report.needs_restart.append(
                f"settings {', '.join(changed)} changed: Django read its settings when it "
                f"started; restart to apply"
            )

    # --- statements ------------------------------------------------------------------------

    def removed_statement(self, event: StatementEvent) -> None:
        """``admin.site.register(Model, ...)`` gone from the file (or changed): a changed one
        replaced its registration when it ran; a removed one's registration goes."""
        found = method_call(event.node, {"register": ("model_or_iterable", "admin_class")})
        if found is None:
            return
        receiver, _, given = found
        namespace = vars(event.module)
        site = named(receiver, namespace)
        registered = named(given.get("model_or_iterable"), namespace)
        before = self._registries.get(site)
        if before is None or not isinstance(registered, ModelBase) or registered not in before:
            return
        now = site._registry.get(registered)
        if now is before[registered]:  # still the registration the statement made: it goes
            site._registry.pop(registered, None)
        event.undone = True

    # --- definitions -----------------------------------------------------------------------

    def before_definition(self, event: DefinitionEvent) -> None:
        if not apps.ready:
            return
        old = event.old
        if isinstance(old, ModelBase):
            self._model_before(event, old)
        elif _is_model_admin(old):
            self._admin_before(event, old)
        if isinstance(old, (type, types.FunctionType)) and _in_middleware(event.module, old):
            if isinstance(old, type):
                self._middleware[id(old)] = tuple(hasattr(old, h) for h in _MIDDLEWARE_HOOKS)
            else:
                self._middleware[id(old)] = (_outer_code(old.__code__),)

    def after_definition(self, event: DefinitionEvent) -> None:
        if not apps.ready:
            return
        old, new = event.old, event.new
        if event.action == "rebuilt" and isinstance(old, type) and isinstance(new, type):
            if isinstance(old, DeclarativeFieldsMetaclass):
                self._form_rebuilt(event, old, new)
            if _is_model_admin(old):
                self._admin_rebuilt(event, old, new)
            if isinstance(old, MediaDefiningClass):
                _own_media(old)
        if event.action == "added" and isinstance(new, ModelBase) and not new._meta.abstract:
            self._note(
                f"{new._meta.label} is a new model: run manage.py makemigrations and "
                f"migrate to create its table"
            )
        if event.action == "removed" and _is_model_admin(old):
            self._admin_removed(event, old)
        before = self._middleware.pop(id(old), None)
        if before is not None and event.action in ("patched", "rebuilt"):
            self._middleware_changed(event, old, before)
        if event.action in ("rebuilt", "removed") and _is_receiver(event):
            what = "was removed" if event.action == "removed" else "had its decorators changed"
            self._note(
                f"signal receiver {event.name} {what}: it stays connected as it was when it "
                f"was defined; restart to connect it as the file says",
                restart=True,
            )

    def _note(self, text: str, *, restart: bool = False) -> None:
        if self._report is not None:
            (self._report.needs_restart if restart else self._report.notes).append(text)

    # --- models ----------------------------------------------------------------------------

    def _model_before(self, event: DefinitionEvent, model: Any) -> None:
        label = model._meta.label
        if event.action == "removed":
            raise NeedsRestart(
                f"{label} was removed from its module: Django keeps it registered; remove "
                f"it with a migration (manage.py makemigrations and migrate), then restart"
            )
        if event.action != "rebuilt":
            return  # patched: methods and properties, in place, ModelBase not run
        node = event.node
        if not isinstance(node, ast.ClassDef):
            return
        # What the model runs with is what its statement said before its first refused
        # change: the file is compared with that, not with the last save.
        built = self._built.get(label)
        if built is None and isinstance(event.old_node, ast.ClassDef):
            built = self._built[label] = _model_statements(model, event.old_node)
        if event.members is None:
            # Its header changed (bases, decorators, keywords), or there is no earlier
            # statement to compare with: the fields it adds or removes can still be named.
            reason = _model_changes(model, node, frozenset(), event.module, built)
            raise NeedsRestart(
                reason
                or f"{label}: its class statement changed (bases, decorators or keywords): "
                f"Django built the model when it started; restart to apply (and run "
                f"makemigrations if it changes the schema)"
            )
        reason = _model_changes(model, node, event.members, event.module, built)
        if reason is not None:
            raise NeedsRestart(reason)
        # Nothing ModelBase reads changed (a new property, @admin.display arguments, a
        # constant): patched into the model in place, as a method body edit is; what the
        # model has already (a refused change undone) is left as it is.
        event.in_place = True
        if built is not None and isinstance(event.old_node, ast.ClassDef):
            now = _statements(node)
            gone = set(_statements(event.old_node)) - set(now)
            event.unchanged = frozenset(
                name
                for name in set(event.members) | gone
                if (name in built and built[name] == now.get(name))
                or (name in gone and name not in built and name not in vars(model))
            )
            if event.unchanged:
                self._note(f"{label} is back to the fields it runs with")

    # --- admin -----------------------------------------------------------------------------

    def _admin_before(self, event: DefinitionEvent, admin_class: type) -> None:
        if event.action != "rebuilt":
            return
        node = event.node
        if not isinstance(node, ast.ClassDef) or not node.decorator_list:
            return  # registered by a statement of its own, which does not run again
        # Its decorators (``@admin.register(Question)``) run again: the registrations made
        # with this class are taken out first, or the site would raise AlreadyRegistered.
        held: dict[tuple[Any, Any], Any] = {}
        saved = {site: dict(site._registry) for site in _admin_sites()}
        for site in saved:
            for model, instance in list(site._registry.items()):
                if type(instance) is admin_class:
                    held[(site, model)] = site._registry.pop(model)
        self._held[id(admin_class)] = held

        def undo() -> None:
            for site, registry in saved.items():
                site._registry.clear()
                site._registry.update(registry)

        event.on_rollback(undo)

    def _admin_rebuilt(self, event: DefinitionEvent, old: type, new: type) -> None:
        held = self._held.pop(id(old), {})
        if not held:
            return
        registered = [
            (site, model)
            for site in _admin_sites()
            for model, i in site._registry.items()
            if type(i) is new
        ]
        if not registered:
            # Its decorators register nothing (it was registered by a statement of its own,
            # which does not run again): its registrations stay as they were.
            for (site, model), instance in held.items():
                site._registry[model] = instance
            return
        # The class the site registered is the new build, merged into ``old`` by now: the
        # site goes on with the instance it held (a model new to the decorator gets one).
        for site, model in registered:
            kept = held.get((site, model))
            site._registry[model] = kept if kept is not None else old(model, site)
        self._admin_changed = True

    def _admin_removed(self, event: DefinitionEvent, admin_class: type) -> None:
        saved = {site: dict(site._registry) for site in _admin_sites()}
        for site in saved:
            for model, instance in list(site._registry.items()):
                if type(instance) is admin_class:
                    del site._registry[model]
                    self._admin_changed = True

        def undo() -> None:
            for site, registry in saved.items():
                site._registry.clear()
                site._registry.update(registry)

        event.on_rollback(undo)

    # --- forms -----------------------------------------------------------------------------

    def _form_rebuilt(self, event: DefinitionEvent, old: type, new: type) -> None:
        # The metaclass took the fields out of the class body into base_fields: the class
        # the program holds takes those, not the (absent) attributes of the same names.
        for name in ("base_fields", "declared_fields", "_meta"):
            if name in new.__dict__:
                type.__setattr__(old, name, new.__dict__[name])
        # Those a module defines: the admin makes subclasses of a form at each request
        # (modelform_factory), which follow by themselves.
        derived = sorted(c.__qualname__ for c in _subclasses(old) if _defined_in_module(c))
        if derived:
            self._note(
                f"the forms derived from {old.__qualname__} ({', '.join(derived)}) keep the "
                f"fields they were made with: restart to apply its new fields to them",
                restart=True,
            )

    # --- middleware ------------------------------------------------------------------------

    def _middleware_changed(
        self, event: DefinitionEvent, old: Any, before: tuple[Any, ...]
    ) -> None:
        name = f"{event.module.__name__}.{event.name}"
        if isinstance(old, type):
            now = tuple(hasattr(old, h) for h in _MIDDLEWARE_HOOKS)
            moved = [h for h, b, n in zip(_MIDDLEWARE_HOOKS, before, now, strict=True) if b != n]
            if moved:
                self._note(
                    f"middleware {name}: {', '.join(moved)} added or removed; Django looks "
                    f"for these methods once, when it loads its middleware: restart to apply",
                    restart=True,
                )
            if event.members is None or "__init__" in event.members:
                self._note(
                    f"middleware {name}: __init__ changed; Django made the middleware "
                    f"instance when it started, so the new __init__ runs at a restart (the "
                    f"live instance gets only the attributes it sets from constants, filled "
                    f"as for any live object)",
                    restart=True,
                )
        elif isinstance(old, types.FunctionType) and before[0] != _outer_code(old.__code__):
            self._note(
                f"middleware {name}: the factory's own code changed; Django called it when "
                f"it started (the function it returned follows the edits): restart to run "
                f"the new factory code",
                restart=True,
            )


# --- models ----------------------------------------------------------------------------------


def _statements(node: ast.ClassDef) -> dict[str, str]:
    """The statements of a class body that bind one name, by that name (syntax dumps)."""
    found = {}
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target: ast.expr = stmt.targets[0]
        elif isinstance(stmt, ast.AnnAssign):
            target = stmt.target
        elif isinstance(stmt, ast.ClassDef):
            target = ast.Name(stmt.name)
        else:
            continue
        if isinstance(target, ast.Name):
            found[target.id] = ast.dump(stmt, include_attributes=False)
    return found


def _model_statements(model: Any, node: ast.ClassDef) -> dict[str, str]:
    """Of ``_statements(node)``: those of the fields, managers and Meta of ``model``."""
    own, _ = _own_fields(model)
    managers = {m.name for m in model._meta.local_managers}
    return {n: s for n, s in _statements(node).items() if n in own | managers | {"Meta"}}


def _model_changes(
    model: Any,
    node: ast.ClassDef,
    members: frozenset[str],
    module: Any,
    built: dict[str, str] | None = None,
) -> str | None:
    """Why the edit of ``model``'s class body needs a migration or a restart (fields, Meta,
    managers, or what may be one of them), or None when ModelBase reads none of it.
    ``built``: the statements the running model was made from (:func:`_model_statements`);
    a field, manager or Meta is changed when it differs from those, else when in
    ``members`` (changed since the last save)."""
    now = _statements(node)

    def differs(name: str) -> bool:
        if built is None or (name not in built and name not in now):
            return name in members
        return now.get(name) != built.get(name)

    opts = model._meta
    own, inherited = _own_fields(model)
    managers = {m.name for m in opts.local_managers if not getattr(m, "auto_created", False)}
    assigned: dict[str, ast.expr | None] = {}
    defined: set[str] = set()
    other: set[str] = set()
    for stmt in node.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    assigned[target.id] = stmt.value
                else:
                    other |= _names_in(target)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if stmt.value is not None or stmt.target.id not in assigned:
                assigned[stmt.target.id] = stmt.value
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(stmt.name)
        else:
            other |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
    scope = {**vars(module), **{k: v for k, v in vars(model).items() if k not in own}}
    added, removed, changed, parts = [], [], [], []
    for name in sorted(own):
        if name not in assigned and name not in inherited:
            removed.append(name)
        elif name in assigned and differs(name):
            changed.append(name)
    for name in sorted(managers):
        if name not in assigned:
            parts.append(f"manager {name} removed")
        elif differs(name):
            parts.append(f"manager {name} changed")
    if differs("Meta"):
        parts.append("Meta changed")
    unknown = []
    # Every field of the class body that the model lacks, changed now or in an earlier save
    # refused then: what the file says is what a migration will be made from.
    for name in sorted((set(members) | set(assigned)) - own - managers - {"Meta"}):
        if name in assigned:
            kind = _kind(assigned[name], scope)
            if kind == "field":
                added.append(name)
            elif kind == "manager":
                parts.append(f"manager {name} added")
            elif kind == "contributed" and name in members:
                parts.append(f"{name} changed (ModelBase hands it the model class)")
            elif kind is None and name in members:
                unknown.append(name)
        elif name not in defined or name in other:
            unknown.append(name)
    fields = [
        *(f"field {n} added" for n in added),
        *(f"field {n} removed" for n in removed),
        *(f"field {n} changed" for n in changed),
    ]
    if unknown:
        parts.append(
            f"{', '.join(unknown)} changed and may be a field (made by code the reloader "
            f"does not look into)"
        )
    if fields:
        return f"{opts.label}: {', '.join(fields + parts)}; {_MIGRATE}"
    if parts:
        return (
            f"{opts.label}: {', '.join(parts)}; Django read it when it built the model at "
            f"startup: restart to apply (run manage.py makemigrations first if it changes "
            f"the schema)"
        )
    return None


def _own_fields(model: Any) -> tuple[set[str], set[str]]:
    """The names of the fields ``model``'s class body made (not the auto-created ``id`` or
    parent link), and those a field of an abstract base may stand for."""
    opts = model._meta
    own = {
        f.name
        for f in (*opts.local_fields, *opts.local_many_to_many, *opts.private_fields)
        if not f.auto_created
    }
    inherited: set[str] = set()
    for base in model.__mro__[1:]:
        base_opts = base.__dict__.get("_meta")
        if base_opts is not None and getattr(base_opts, "abstract", False):
            inherited |= {
                f.name
                for f in (
                    *base_opts.local_fields,
                    *base_opts.local_many_to_many,
                    *base_opts.private_fields,
                )
            }
    return own, inherited


def _kind(expr: ast.expr | None, scope: dict[str, Any]) -> str | None:
    """What a class-body assignment makes for ModelBase: a ``field``, a ``manager``, another
    object ``contributed`` to the class (it has ``contribute_to_class``), a ``plain`` class
    attribute, or None: cannot tell without running it."""
    if expr is None:
        return "plain"  # an annotation alone
    try:
        ast.literal_eval(expr)
        return "plain"
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(expr, ast.Call):
        made = _resolve(expr.func, scope)
        if not isinstance(made, type):
            return None  # a function may make anything
        return _kind_of(made)
    if isinstance(expr, (ast.Name, ast.Attribute)):
        value = _resolve(expr, scope)
        if value is _UNKNOWN:
            return None
        return "plain" if isinstance(value, type) else _kind_of(type(value))
    if isinstance(expr, ast.Lambda):
        return "plain"
    return None


def _kind_of(cls: type) -> str:
    """What ModelBase makes of an instance of ``cls`` in a class body."""
    if issubclass(cls, Field):
        return "field"
    if issubclass(cls, BaseManager):
        return "manager"
    return "contributed" if hasattr(cls, "contribute_to_class") else "plain"


def _resolve(expr: ast.expr, scope: dict[str, Any]) -> Any:
    """``models.CharField`` looked up without calling anything; _UNKNOWN if it cannot be."""
    if isinstance(expr, ast.Name):
        if expr.id in scope:
            return scope[expr.id]
        return getattr(builtins, expr.id, _UNKNOWN)
    if isinstance(expr, ast.Attribute):
        base = _resolve(expr.value, scope)
        if base is _UNKNOWN or not isinstance(base, (types.ModuleType, type)):
            return _UNKNOWN
        try:
            return getattr(base, expr.attr)
        except Exception:
            return _UNKNOWN
    return _UNKNOWN


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


# --- admin -----------------------------------------------------------------------------------


def _replacing_register(site: Any) -> Any:
    """``site.register`` for the time of a reload: a model registered already is registered
    anew (AdminSite refuses it: AlreadyRegistered)."""
    register = type(site).register.__get__(site)

    def replacing(model_or_iterable: Any, admin_class: Any = None, **options: Any) -> Any:
        models = (
            [model_or_iterable]
            if isinstance(model_or_iterable, ModelBase)
            else list(model_or_iterable)
        )
        for model in models:
            site._registry.pop(model, None)
        return register(models, admin_class, **options)

    return replacing


def _plain_register(sites: dict[Any, Any]) -> None:
    for site in sites:
        vars(site).pop("register", None)


def _admin_sites() -> list[Any]:
    admin = sys.modules.get("django.contrib.admin.sites")
    if admin is None:
        return []
    return list(admin.all_sites)


def _is_model_admin(obj: Any) -> bool:
    options = sys.modules.get("django.contrib.admin.options")
    return options is not None and isinstance(obj, type) and issubclass(obj, options.ModelAdmin)


def _registries_differ(before: dict[Any, dict[Any, Any]], now: dict[Any, dict[Any, Any]]) -> bool:
    if set(before) != set(now):
        return True
    for site, registry in now.items():
        old = before[site]
        if set(old) != set(registry) or any(old[m] is not registry[m] for m in registry):
            return True
    return False


def _own_media(cls: type) -> None:
    """After a rebuild of a class made by ``MediaDefiningClass``: its ``media`` property was
    made for the new build (``super(new_class, self)``), and is made again for ``cls``."""
    media = cls.__dict__.get("media")
    if isinstance(media, property) and getattr(media.fget, "__qualname__", "").startswith(
        "media_property."
    ):
        type.__setattr__(cls, "media", media_property(cls))


# --- forms -----------------------------------------------------------------------------------


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    queue: list[type] = list(type.__subclasses__(cls))
    while queue:
        sub = queue.pop()
        if sub not in found:
            found.append(sub)
            queue += type.__subclasses__(sub)
    return found


def _defined_in_module(cls: type) -> bool:
    """Whether ``cls`` is what its module's top-level name for it holds."""
    module = sys.modules.get(getattr(cls, "__module__", None) or "")
    return module is not None and vars(module).get(cls.__qualname__) is cls


# --- urls ------------------------------------------------------------------------------------


def _refresh_urls(replaced: dict[int, Any], *, admin: bool) -> None:
    """Clears Django's URL caches, and the patterns every resolver reachable from the root
    urlconf cached: the next request resolves against the urlpatterns the modules hold now.
    ``replaced``: a ``urlpatterns`` list rebound by the reload, by the id of the old one (a
    resolver made with ``include(module.urlpatterns)`` holds the list itself). ``admin``:
    the admin sites' URLs are made again (the models registered with them changed)."""
    from django.urls import clear_url_caches, get_resolver
    from django.urls.resolvers import URLResolver

    clear_url_caches()
    try:
        root = get_resolver()
    except Exception:
        logger.debug("no root urlconf to refresh", exc_info=True)
        return
    sites = {site.name: site for site in _admin_sites()} if admin else {}
    seen: set[int] = set()
    stack = [root]
    while stack:
        resolver = stack.pop()
        if id(resolver) in seen:
            continue
        seen.add(id(resolver))
        urlconf = resolver.urlconf_name
        if not isinstance(urlconf, str) and id(urlconf) in replaced:
            resolver.urlconf_name = replaced[id(urlconf)]
            resolver.__dict__.pop("urlconf_module", None)
        site = sites.get(resolver.namespace) if resolver.app_name == "admin" else None
        if site is not None and isinstance(urlconf, list):
            resolver.urlconf_name = site.get_urls()
            resolver.__dict__.pop("urlconf_module", None)
        resolver.__dict__.pop("url_patterns", None)
        resolver._reverse_dict = {}
        resolver._namespace_dict = {}
        resolver._app_dict = {}
        resolver._callback_strs = set()
        resolver._populated = False
        try:
            patterns = list(resolver.url_patterns)
        except Exception:
            continue  # a broken urlconf: Django says so at the next request
        stack += [p for p in patterns if isinstance(p, URLResolver)]


# --- signals ---------------------------------------------------------------------------------


def _is_receiver(event: DefinitionEvent) -> bool:
    """Whether the function ``event`` is about has a ``@receiver(...)`` decorator: its
    connection was made with the function object the decorator got (a weak reference to a
    new build goes away with it; a removed one stays)."""
    node = event.node
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    from django.dispatch import receiver

    scope = vars(event.module)
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if _resolve(target, scope) is receiver:
            return True
    return False


# --- settings and middleware -----------------------------------------------------------------


def _is_settings_module(module: types.ModuleType) -> bool:
    return settings.configured and getattr(settings, "SETTINGS_MODULE", None) == module.__name__


def _in_middleware(module: types.ModuleType, obj: Any) -> bool:
    if not settings.configured:
        return False
    name = getattr(obj, "__name__", None)
    return f"{module.__name__}.{name}" in getattr(settings, "MIDDLEWARE", ())


def _outer_code(code: types.CodeType) -> tuple[Any, ...]:
    """A function's own code, without the functions it defines (nor line numbers)."""
    consts = tuple(c.co_name if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return (code.co_code, code.co_names, code.co_varnames, consts)


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:
        return False
