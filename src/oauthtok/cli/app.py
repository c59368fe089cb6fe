"""The Typer application: every command, and the one error boundary.

Data goes to stdout, messages to stderr. One error boundary (`Boundary.invoke`) turns every
failure of a command into one line and its exit code (`errors.report`); usage errors are
Typer's (exit 2). Each command module imports what it needs when it runs, so that `--help` and
`list` do not pay for the sign-in machinery.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from oauthtok import __version__
from oauthtok.errors import Cancelled, report


class Boundary(TyperGroup):
    """The one place where a command's failures become one line and an exit code."""

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
