"""The Typer application: every command, and the one error boundary.

Data goes to stdout, messages to stderr. One error boundary (`Boundary.invoke`) turns every
failure of a command into one line and its exit code (`errors.report`); usage errors are
Typer's (exit 2). Each command module imports what it needs when it runs, so that `--help` and
`list` do not pay for the sign-in machinery.

The command modules register on `commands`, not on `app`: Typer would turn every command into a
Click command (reading each signature and its annotations) before running any, which costs more
than the run of most commands. `LazyCommands` builds the one a run needs, when asked; `--help`
lists the summaries without building any (`Boundary.format_commands`, the same text as Typer's).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, MutableMapping
from gettext import gettext as _
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandInfo, TyperInfo

from oauthtok import __version__
from oauthtok.errors import Cancelled, report

#: where the command modules register their commands (`@commands.command(...)`) and groups
commands = typer.Typer(rich_markup_mode=None)


class LazyCommands(MutableMapping[str, Any]):
    """The registered commands by name, in registration order; each becomes a Click command
    (Typer's `get_command_from_info` / `get_group_from_info`) the first time it is looked up."""

    def __init__(self, registry: typer.Typer) -> None:
        self._built: dict[str, Any] = {}
        self._pending: dict[str, CommandInfo | TyperInfo] = {}
        for info in registry.registered_commands:
            assert info.callback is not None
            self._pending[info.name or typer.main.get_command_name(info.callback.__name__)] = info
        for group in registry.registered_groups:
            name = typer.main.solve_typer_info_defaults(group).name
            assert name, "a command group needs a name"
            self._pending[name] = group

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            info = self._pending[name]  # KeyError: no such command
            if isinstance(info, CommandInfo):
                built = typer.main.get_command_from_info(
                    info, pretty_exceptions_short=False, rich_markup_mode=None
                )
            else:
                built = typer.main.get_group_from_info(
                    info, pretty_exceptions_short=False, rich_markup_mode=None,
                    suggest_commands=True,
                )  # fmt: skip
            self._built[name] = built
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._pending.pop(name, None)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._pending and name not in self._built:
            raise KeyError(name)
        self._pending.pop(name, None)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter([*self._pending, *(n for n in self._built if n not in self._pending)])

    def __len__(self) -> int:
        return len(set(self._pending) | set(self._built))

    def summary(self, name: str) -> Any:
        """What `--help` lists for `name` (hidden, short help), without building a command: a
        command without parameters, with the help fields Typer would give it."""
        if name in self._built:
            return self._built[name]
        info = self._pending[name]
        if isinstance(info, CommandInfo):
            assert info.callback is not None
            doc = (
                inspect.getdoc(info.callback) if info.help is None else inspect.cleandoc(info.help)
            )
            short, hidden, deprecated = info.short_help, info.hidden, info.deprecated
        else:  # a group: the help Typer resolves from add_typer() and the group's Typer()
            solved = typer.main.solve_typer_info_defaults(info)
            doc, short, hidden = solved.help, solved.short_help, solved.hidden
            deprecated = solved.deprecated
        return TyperCommand(name, help=doc, short_help=short, hidden=hidden, deprecated=deprecated)


class Boundary(TyperGroup):
    """The one place where a command's failures become one line and an exit code, over the
    commands registered on `commands`, each built when first used."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        lazy = LazyCommands(commands)
        for name, command in self.commands.items():  # any given to the group directly
            lazy[name] = command
        self.commands = lazy

    def list_commands(self, ctx: Any) -> list[str]:
        """The names in registration order (Typer's reads the values, which builds them)."""
        return list(self.commands)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Typer's `format_commands`, reading the summaries instead of building commands."""
        lazy = self.commands
        assert isinstance(lazy, LazyCommands)
        shown = [(n, lazy.summary(n)) for n in self.list_commands(ctx)]
        shown = [(n, c) for n, c in shown if not c.hidden]
        if shown:
            limit = formatter.width - 6 - max(len(n) for n, c in shown)
            rows = [(n, c.get_short_help_str(limit)) for n, c in shown]
            with formatter.section(_("Commands")):
                formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.BadParameter) as exc:
            raise exc from None
        except typer.Abort:  # end of input or Ctrl-C at a prompt
            raise typer.Exit(report(Cancelled())) from None
        except Exception as exc:
            if type(exc).__module__.startswith("typer."):  # usage errors: Typer reports them
                raise
            raise typer.Exit(report(exc)) from None
        except KeyboardInterrupt as exc:
            raise typer.Exit(report(exc)) from None

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except (KeyboardInterrupt, BrokenPipeError) as exc:  # Ctrl-C, or `--help | head -0`
            raise typer.Exit(report(exc)) from None


app = typer.Typer(
    name="oauthtok",
    cls=Boundary,
    help="Create, store, refresh and hand out OAuth2 access tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def version_callback(value: bool) -> None:
    if value:
        print(f"oauthtok {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """Create, store, refresh and hand out OAuth2 access tokens."""


# the commands register themselves on `app`
from oauthtok.cli import signin, handout_cmds, manage, catalog_cmds  # noqa: E402, I001
from oauthtok.cli import kit_cmds, status_cmds, schedule_cmds, transfer_cmds, background_cmds  # noqa: E402

__all__ = [
    "app", "background_cmds", "catalog_cmds", "handout_cmds", "kit_cmds", "manage",
    "schedule_cmds", "signin", "status_cmds", "transfer_cmds",
]  # fmt: skip
