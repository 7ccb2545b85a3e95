"""pydantic v2: a model whose fields, validators, serializers or ``model_config`` changed keeps
its identity, and its validation, serialisation, ``model_fields`` and JSON schema follow.

The engine rebuilds such a class through its real metaclass (the fields changed) and merges
the new members into the old class object; pydantic's own state (``__pydantic_fields__``,
``__pydantic_decorators__``, the core schema, the validator and the serializer) describes the
new class, whose validator would make instances of the *new* class. This adapter takes that
state into the old class, binds the validators and serializers to it, and builds its schema,
validator and serializer again (``model_rebuild(force=True)``), so that validating makes
instances of the class the program holds. The models whose schema embeds the changed one
(a field ``item: Item``, ``list[Item]``, ...) are rebuilt after it, in dependency order.

A body edit of a validator or serializer needs none of this: the function is patched in
place, and pydantic-core calls it. Instances made before keep their data (a new field is
not filled on them).

Needs a restart (said in the report): a subclass of a model whose fields changed keeps the
fields it inherited (pydantic copies them into the subclass when it is created)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pydantic
from pydantic._internal import _decorators

from .. import mighty_patcher as native
from ..codes import member_functions
from ..hooks import Adapter, DefinitionEvent, ReloadEvent

__all__ = ["PydanticAdapter", "rebuild_dependents", "take_state"]

logger = logging.getLogger("mighty_patcher.frameworks.pydantic")

#: What pydantic's metaclass derives from the class body, besides the ``__pydantic_*__``
#: attributes.
_STATE = frozenset(
    {
        "model_config",
        "__class_vars__",
        "__private_attributes__",
        "__signature__",
        "__annotations__",
        "__annotate_func__",
        "__annotations_cache__",
        "__abstractmethods__",
    }
)
#: Built again by ``model_rebuild``: never taken from the new class (they name it).
_REBUILT = frozenset(
    {"__pydantic_core_schema__", "__pydantic_validator__", "__pydantic_serializer__"}
)


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, pydantic.BaseModel)


def _state_keys(cls: type) -> set[str]:
    # Over a copy of the names (made in one step): another thread completing a model built
    # lazily (its first validation, a request) adds __signature__ to the class dict meanwhile.
    return {k for k in list(cls.__dict__) if k.startswith("__pydantic_") or k in _STATE}


def _snapshot(cls: type) -> dict[str, Any]:
    return {k: cls.__dict__[k] for k in _state_keys(cls)}


def _restore(cls: type, saved: dict[str, Any]) -> None:
    for key in _state_keys(cls) - set(saved):
        type.__delattr__(cls, key)
    for key, value in saved.items():
        type.__setattr__(cls, key, value)


def _type_ref(cls: type) -> str:
    refs: Any = getattr(_decorators, "_type_refs", None)
    if refs is not None and hasattr(refs, "any_class_type_ref"):
        return str(refs.any_class_type_ref(cls))
    from pydantic._internal import _core_utils

    get_type_ref: Any = getattr(_core_utils, "get_type_ref")  # noqa: B009 (older pydantic)
    return str(get_type_ref(cls))


def _rebind(infos: Any, new: type, old: type) -> Any:
    """``new``'s decorator infos with its own validators and serializers bound to ``old``
    (they call the methods of ``old``, patched in place, with ``cls`` being ``old``)."""
    own, ref = _type_ref(new), _type_ref(old)
    rebound = _decorators.DecoratorInfos()
    for kind in (
        "validators",
        "field_validators",
        "root_validators",
        "field_serializers",
        "model_serializers",
        "model_validators",
        "computed_fields",
    ):
        decorators: dict[str, Any] = getattr(infos, kind, None) or {}
        setattr(
            rebound,
            kind,
            {
                name: d.bind_to_cls(old, ref) if d.cls_ref == own else d
                for name, d in decorators.items()
            },
        )
    return rebound


def take_state(old: type[pydantic.BaseModel], new: type[pydantic.BaseModel]) -> None:
    """Makes ``old`` describe what ``new`` describes (fields, config, validators and
    serializers), then builds its schema, validator and serializer for ``old`` itself. The
    members (methods, validator functions) were merged by the engine already."""
    for key in _state_keys(old) - _state_keys(new) - _REBUILT:
        type.__delattr__(old, key)
    for key, value in new.__dict__.items():
        if (key.startswith("__pydantic_") or key in _STATE) and key not in _REBUILT:
            type.__setattr__(old, key, value)
    type.__setattr__(old, "__pydantic_decorators__", _rebind(new.__pydantic_decorators__, new, old))
    # The generic-type cache and the setattr handlers name the new class or old fields.
    type.__setattr__(old, "__pydantic_setattr_handlers__", {})
    old.model_rebuild(force=True, _parent_namespace_depth=0)


def _all_models() -> Iterator[type[pydantic.BaseModel]]:
    seen: set[int] = set()
    stack: list[type] = [pydantic.BaseModel]
    while stack:
        cls = stack.pop()
        subclasses: list[type] = type.__subclasses__(cls)
        for sub in subclasses:
            if id(sub) not in seen:
                seen.add(id(sub))
                stack.append(sub)
                yield sub


def _references(schema: Any, targets: set[int], depth: int = 0) -> set[int]:
    """The classes among ``targets`` (by id) that a core schema names (``cls`` entries)."""
    found: set[int] = set()
    stack: list[tuple[Any, int]] = [(schema, depth)]
    while stack:
        node, level = stack.pop()
        if level > 200:
            continue
        if isinstance(node, dict):
            cls = node.get("cls")
            if cls is not None and id(cls) in targets:
                found.add(id(cls))
            stack.extend((v, level + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node if isinstance(v, (dict, list)))
    return found


def rebuild_dependents(
    changed: list[type[pydantic.BaseModel]], skip: set[int]
) -> tuple[list[type[pydantic.BaseModel]], dict[type, dict[str, Any]]]:
    """Rebuilds the models whose schema embeds one of ``changed`` (and those embedding them),
    each after the ones it embeds; returns them and what they held before (for an undo)."""
    targets = {id(c) for c in changed}
    embeds: dict[type[pydantic.BaseModel], set[int]] = {}
    grew = True
    while grew:
        grew = False
        for model in _all_models():
            if id(model) in skip or id(model) in targets or model in embeds:
                continue
            schema = model.__dict__.get("__pydantic_core_schema__")
            if not model.__dict__.get("__pydantic_complete__") or schema is None:
                continue
            refs = _references(schema, targets)
            if refs:
                embeds[model] = refs
                targets.add(id(model))
                grew = True
    # Each after the models it embeds (those were found before it, or rebuilt first here).
    order: list[type[pydantic.BaseModel]] = []
    placed: set[int] = {id(c) for c in changed}
    pending = list(embeds)
    while pending:
        ready = [m for m in pending if embeds[m] <= placed | {id(m)}] or pending[:1]
        for model in ready:
            pending.remove(model)
            order.append(model)
            placed.add(id(model))
        # a model also embeds the dependents it names: recompute against the full schema
        for model in pending:
            schema = model.__dict__.get("__pydantic_core_schema__")
            embeds[model] = _references(schema, targets - {id(model)})
    saved = {model: _snapshot(model) for model in order}
    for model in order:
        model.model_rebuild(force=True, _parent_namespace_depth=0)
    return order, saved


class PydanticAdapter(Adapter):
    module = "pydantic"

    def __init__(self) -> None:
        self._report: Any = None
        #: The members of a model whose class body is patched, as they were.
        self._members: dict[str, Any] = {}

    def before_reload(self, event: ReloadEvent) -> None:
        self._report = event.report

    def before_definition(self, event: DefinitionEvent) -> None:
        if event.action == "patched" and _is_model(event.old):
            self._members = {
                name: event.old.__dict__[name]
                for name in event.members or ()
                if name in event.old.__dict__
            }

    def after_definition(self, event: DefinitionEvent) -> None:
        if event.action == "patched" and _is_model(event.old):
            self._unwrap_members(event.old)
            return
        self._rebuilt(event)

    def _unwrap_members(self, model: type) -> None:
        """A validator or serializer whose body changed (its decorator did not) ran as a
        statement of the class body: what it made is pydantic's marker around the new
        function, which only the metaclass reads. The function pydantic calls (the old one)
        is patched with the new code instead, and the class holds it as before."""
        members, self._members = self._members, {}
        for name, previous in members.items():
            marker = model.__dict__.get(name)
            if not isinstance(marker, _decorators.PydanticDescriptorProxy):
                continue
            olds, news = member_functions(previous), member_functions(marker.wrapped)
            if len(olds) != len(news) or not olds:
                continue
            for old_function, new_function in zip(olds, news, strict=True):
                native.patch_function(old_function, new_function)
            type.__setattr__(model, name, previous)

    def _rebuilt(self, event: DefinitionEvent) -> None:
        old, new = event.old, event.new
        if event.action != "rebuilt" or not _is_model(old) or not _is_model(new) or old is new:
            return
        take_state(old, new)
        order, saved = rebuild_dependents([old], skip={id(new)})

        def undo() -> None:
            for model, state in saved.items():
                _restore(model, state)

        event.on_rollback(undo)
        subclasses = [
            c.__qualname__
            for c in _all_models()
            if c is not old and c is not new and issubclass(c, old)
        ]
        if subclasses and self._report is not None:
            self._report.needs_restart.append(
                f"{', '.join(sorted(subclasses))} inherit{'s' if len(subclasses) == 1 else ''}"
                f" the fields of {old.__qualname__} as they were when "
                f"{'it was' if len(subclasses) == 1 else 'they were'} created: restart to give "
                f"{'it' if len(subclasses) == 1 else 'them'} the new ones"
            )
        if order:
            logger.debug("rebuilt the models embedding %s: %s", old.__qualname__, order)
