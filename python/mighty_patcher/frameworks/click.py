"""Click: a command's body edit patches its callback; new options, arguments and help take
effect on the command object the program holds; a new command in a group is added by its
decorator, as at import. Every change is seen at the command's next invocation."""

from __future__ import annotations

import logging
from typing import Any

import click

from ..hooks import Adapter, DefinitionEvent

__all__ = ["ClickAdapter"]

logger = logging.getLogger("mighty_patcher.frameworks.click")

#: What a command keeps whatever its decorators say: the function (patched in place) and a
#: group's subcommands (registered by their own decorators).
_KEPT = frozenset({"callback", "commands"})


class ClickAdapter(Adapter):
    module = "click"

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

    def after_definition(self, event: DefinitionEvent) -> None:
        # A group's decorator registered the new command object made by the rebuild: the
        # group goes on with the one the program holds (merged above).
        if event.action != "rebuilt" or not isinstance(event.old, click.Command):
            return
        for value in list(vars(event.module).values()):
            if isinstance(value, click.Group):
                for name, command in list(value.commands.items()):
                    if command is event.new:
                        value.commands[name] = event.old
