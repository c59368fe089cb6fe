"""`services` and `show-help`: the catalog, for people and scripts."""

from __future__ import annotations

from typing import Annotated

import typer

from oauthtok.cli import views
from oauthtok.cli.app import commands
from oauthtok.cli.options import AsJson, complete_services


@commands.command("services")
def services_command(as_json: AsJson = False) -> None:
    """List the catalog's services."""
    views.services_view(as_json)


@commands.command("show-help")
def show_help_command(
    service: Annotated[
        str | None,
        typer.Argument(
            help="A service from `oauthtok services`.", metavar="SERVICE",
            autocompletion=complete_services, show_default=False,
        ),
    ] = None,
) -> None:  # fmt: skip
    """How to register an app with a service.

    Without SERVICE: how to choose one."""
    views.show_help_view(service)
