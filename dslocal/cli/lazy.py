"""A click group that imports a command's module only when that command runs.

``dslocal --help`` lists every command from the registry's short help without
importing any of them, which keeps the CLI's cold start fast. A mistyped command gets
click's "Did you mean" from the whole registry, and an empty positional argument or path
(``dslocal plan ''``, ``-o ''``) is a usage error for every command.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class LazyCommand:
    target: str  # "package.module:attribute"
    short_help: str

    def load(self) -> click.Command:
        module_name, attr = self.target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):  # pragma: no cover - programming error
            raise TypeError(f"{self.target} is not a click command")
        return refuse_empty_arguments(command)


class NotEmpty(click.ParamType):
    """``inner``, refusing an empty or blank value before ``inner`` sees it (click.Path turns '' into '.')."""

    def __init__(self, inner: click.ParamType) -> None:
        self.inner = inner
        self.name = inner.name
        self.is_composite = inner.is_composite
        self.arity = inner.arity
        self.envvar_list_splitter = inner.envvar_list_splitter

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str | None:  # ctx from click 8.2
        return self.inner.get_metavar(param, *args, **kwargs)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        return self.inner.shell_complete(ctx, param, incomplete)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("it is empty; give a value", param, ctx)
        return self.inner.convert(value, param, ctx)


def _needs_a_value(param: click.Parameter) -> bool:
    """Positional arguments, and options naming a path (click.Path reads '' as '.')."""
    if isinstance(param.type, NotEmpty):
        return False
    return isinstance(param, click.Argument) or isinstance(param.type, click.Path)


def refuse_empty_arguments(command: click.Command) -> click.Command:
    """Every positional argument and path option of ``command`` (and of its subcommands) refuses ''."""
    for param in command.params:
        if _needs_a_value(param):
            param.type = NotEmpty(param.type)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            refuse_empty_arguments(sub)
    return command


def _no_such_command(name: str, names: list[str], ctx: click.Context) -> click.UsageError:
    """click's NoSuchCommand (8.4+, with its did-you-mean), or the same message built with difflib."""
    no_such = getattr(click.exceptions, "NoSuchCommand", None)
    if no_such is not None:
        return no_such(name, possibilities=names, ctx=ctx)
    import difflib

    close = difflib.get_close_matches(name, names)
    guess = f" Did you mean {close[0]!r}?" if len(close) == 1 else (
        f" (Did you mean one of: {', '.join(map(repr, close))}?)" if close else "")
    return click.UsageError(f"No such command {name!r}.{guess}", ctx)


class LazyGroup(click.Group):
    def __init__(self, *args: object, lazy_commands: dict[str, LazyCommand] | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = self.lazy_commands.get(cmd_name)
        if lazy is not None:
            return lazy.load()
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name = click.utils.make_str(args[0])
        if (
            self.get_command(ctx, name) is None and not ctx.resilient_parsing and not name.startswith("-")
            and ctx.token_normalize_func is None
        ):
            raise _no_such_command(name, self.list_commands(ctx), ctx)
        return super().resolve_command(ctx, args)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """Subcommand names (with the registry's short help) and options; imports no command module."""
        from click.shell_completion import CompletionItem

        items = [CompletionItem(name, help=lazy.short_help)
                 for name, lazy in sorted(self.lazy_commands.items()) if name.startswith(incomplete)]
        items += [CompletionItem(name, help=command.get_short_help_str())
                  for name, command in sorted(self.commands.items())
                  if name.startswith(incomplete) and not command.hidden and name not in self.lazy_commands]
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            lazy = self.lazy_commands.get(name)
            if lazy is not None:
                rows.append((name, lazy.short_help))
                continue
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
