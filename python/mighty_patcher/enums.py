"""Enum members follow an edit: added, removed, reordered, given a new value.

An enum class rebuilt by its metaclass (its members changed) has new member objects. The old
class keeps its identity and takes the new one's members, with these rules:

- a member that stays (same name, same value) keeps its identity: references held anywhere,
  ``is`` comparisons and dict keys stay valid;
- a new member is the new class's member object, moved into the old class (its
  ``__class__`` reassigned): ``Color.BLUE``, ``Color(3)``, ``Color['BLUE']``, ``list()``
  and ``len()`` see it, in the new order;
- a removed member leaves the lookups; references held elsewhere keep the old object;
- a member whose value changed keeps its identity and takes the new value, when the value is
  an attribute of the member (plain ``Enum`` and ``Flag``); a member that *is* its value
  (``IntEnum``, ``StrEnum``, any data-type mixin) cannot change in place: that member keeps
  its old value and the report says a restart is needed.

The enum's lookup tables (``_member_map_``, ``_value2member_map_``, ``_member_names_``, the
flag masks...) are taken from the new class with the old class's members in them. They are
set through ``type.__setattr__`` (EnumType's own ``__setattr__`` refuses to touch members).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MemberPlan", "apply", "internals", "plan"]

#: The enum's own bookkeeping in the class dict, across CPython 3.10-3.15.
_INTERNALS = frozenset(
    {
        "_member_map_",
        "_member_names_",
        "_value2member_map_",
        "_unhashable_values_",
        "_unhashable_values_map_",
        "_hashable_values_",
        "_member_type_",
        "_value_repr_",
        "_new_member_",
        "_use_args_",
        "_singles_mask_",
        "_all_bits_",
        "_flag_mask_",
        "_inverted_",
        "_boundary_",
    }
)


@dataclass
class MemberPlan:
    #: id of each new member -> the member the old class uses instead (itself when new).
    use: dict[int, Any] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: (old member, new member): the old one takes the new one's value.
    revalued: list[tuple[Any, Any]] = field(default_factory=list)
    reordered: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.revalued or self.reordered)

    def describe(self) -> str:
        parts = []
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        if self.revalued:
            parts.append(f"new value for {', '.join(o._name_ for o, _ in self.revalued)}")
        if self.reordered and not parts:
            parts.append("reordered")
        return "; ".join(parts)


def internals(old: type, new: type) -> set[str]:
    """The names ``patch_class`` must leave to :func:`apply`: members and bookkeeping."""
    names = set(_INTERNALS)
    for cls in (old, new):
        names |= set(getattr(cls, "_member_map_", {}))
    return names


def plan(old: Any, new: Any, needs_restart: list[str]) -> MemberPlan:
    """How ``old``'s members become ``new``'s; what cannot is said in ``needs_restart``."""
    result = MemberPlan()
    old_map: dict[str, Any] = dict(old._member_map_)
    in_place = old._member_type_ is object and new._member_type_ is object
    for name in new._member_names_:
        fresh = new._member_map_[name]
        current = old_map.get(name)
        if current is None or current._name_ != name:
            result.use[id(fresh)] = fresh
            result.added.append(name)
        elif _same_value(current._value_, fresh._value_):
            result.use[id(fresh)] = current
        elif in_place:
            result.use[id(fresh)] = current
            result.revalued.append((current, fresh))
        else:
            kind = old._member_type_.__name__
            needs_restart.append(
                f"the value of {old.__qualname__}.{name} changed from {current._value_!r} to "
                f"{fresh._value_!r}: {'an' if kind[0] in 'aeiou' else 'a'} {kind} member is "
                f"its value and cannot change in place; it keeps the old value until a restart"
            )
            result.use[id(fresh)] = current
    result.removed = [n for n in old._member_names_ if n not in new._member_map_]
    kept_order = [n for n in new._member_names_ if n in old_map]
    result.reordered = kept_order != [n for n in old._member_names_ if n in new._member_map_]
    return result


def _same_value(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def apply(old: Any, new: Any, members: MemberPlan, undo: list[Any]) -> None:
    """Gives ``old`` the members and lookup tables of ``new`` (after :func:`plan`). The class
    dict is restored by the transaction on rollback; ``undo`` gets what else changed (the
    value of a revalued member, the class of a new one)."""
    gone = [n for n in old._member_map_ if n not in new._member_map_]  # aliases too
    for fresh in members.use.values():
        if type(fresh) is new:
            fresh.__class__ = old
            undo.append(lambda fresh=fresh: setattr(fresh, "__class__", new))
    for current, fresh in members.revalued:
        saved = dict(current.__dict__)
        current.__dict__.update(
            {k: v for k, v in fresh.__dict__.items() if k not in ("__objclass__", "_name_")}
        )
        undo.append(lambda current=current, saved=saved: _restore(current, saved))

    def mapped(value: Any) -> Any:
        return members.use.get(id(value), value) if isinstance(value, enum.Enum) else value

    for name in _INTERNALS & set(new.__dict__):
        value = new.__dict__[name]
        if isinstance(value, dict):
            value = {k: mapped(v) for k, v in value.items()}
        elif isinstance(value, list):
            value = [mapped(v) for v in value]
        type.__setattr__(old, name, value)
    for name, value in new._member_map_.items():
        if name in new.__dict__:
            type.__setattr__(old, name, mapped(value))
    for name in gone:
        if name in old.__dict__:
            type.__delattr__(old, name)


def _restore(member: Any, saved: dict[str, Any]) -> None:
    member.__dict__.clear()
    member.__dict__.update(saved)
