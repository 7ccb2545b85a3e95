"""Click: a command's body edit patches its callback; new options, arguments and help take
effect on the command object the program holds; a new command in a group is added by its
decorator, as at import. A command removed from the file leaves every group that holds it;
a command whose decorator gives it a new name leaves its old name in the group its decorator
registers it with. Every change is seen at the command's next invocation."""

from __future__ import annotations

import logging
from typing import Any

import click

from ..hooks import Adapter, DefinitionEvent
from . import module_globals

__all__ = ["ClickAdapter"]

logger = logging.getLogger("mighty_patcher.frameworks.click")

#: What a command keeps whatever its decorators say: the function (patched in place) and a
#: group's subcommands (registered by their own decorators).
_KEPT = frozenset({"callback", "commands"})


def _groups() -> list[click.Group]:
    """The groups that modules hold, and the groups inside them."""
    groups = module_globals(click.Group)
    for group in groups:  # grows while walked
        for command in list(group.commands.values()):
            if isinstance(command, click.Group) and command not in groups:
                groups.append(command)
    return groups


def _saved(event: DefinitionEvent, groups: list[click.Group]) -> None:
    """The groups' commands are put back as they are now if the reload is rolled back."""
    saved = [(group, dict(group.commands)) for group in groups]

    def undo() -> None:
        for group, commands in saved:
            group.commands.clear()
            group.commands.update(commands)

    event.on_rollback(undo)


class ClickAdapter(Adapter):
    module = "click"

    def __init__(self) -> None:
        #: The name each command being rebuilt had: {id(command): name}.
        self._names: dict[int, str | None] = {}

    def inner_function(self, obj: Any) -> Any:
        if isinstance(obj, click.Command):
            return obj.callback
        return None

    def merge(self, old: Any, new: Any) -> bool:
        if not isinstance(old, click.Command) or type(old) is not type(new):
            return False
        for key, value in vars(new).items():
            if key not in _KEPT:
                setattr(old, key, value)
        return True

    def before_definition(self, event: DefinitionEvent) -> None:
        if not isinstance(event.old, click.Command):
            return
        if event.action == "rebuilt":
            self._names[id(event.old)] = event.old.name
        elif event.action == "removed":
            # Gone from the file: gone from the groups (``No such command`` next time).
            groups = _groups()
            _saved(event, groups)
            for group in groups:
                for name, command in list(group.commands.items()):
                    if command is event.old:
                        del group.commands[name]

    def after_definition(self, event: DefinitionEvent) -> None:
        # A group's decorator registered the new command object made by the rebuild: the
        # group goes on with the one the program holds (merged above), under the name the
        # decorator gave it, not under the name it had before as well.
        old = event.old
        if event.action != "rebuilt" or not isinstance(old, click.Command):
            return
        before = self._names.pop(id(old), None)
        groups = _groups()
        _saved(event, groups)
        for group in groups:
            names = [name for name, command in group.commands.items() if command is event.new]
            for name in names:
                group.commands[name] = old
            if names and before is not None and before not in names:
                if group.commands.get(before) is old:
                    del group.commands[before]
