"""`services` and `show-help`: the catalog, for people and scripts."""

from __future__ import annotations

from typing import Annotated

import typer

from oauthtok.cli import app
from oauthtok.cli.options import AsJson, complete_services
from oauthtok.cli.output import console, emit_json, is_tty, print_table


@app.command("services")
def services_command(as_json: AsJson = False) -> None:
    """List the authorization services of the catalog."""
    from oauthtok.catalog import load_catalog
    from oauthtok.models import service_json

    catalog = load_catalog()
    if as_json:
        emit_json([service_json(s) for s in catalog.values()])
        return
    rows = [[s.name, s.title, s.origin] for s in catalog.values()]
    print_table(["NAME", "TITLE", "FROM"], rows, keep=["NAME"])


@app.command("show-help")
def show_help_command(
    service: Annotated[
        str | None,
        typer.Argument(
            help="A service from `oauthtok services`.", autocompletion=complete_services,
            show_default=False,
        ),
    ] = None,
) -> None:  # fmt: skip
    """How to register an app with a service (without SERVICE: how to choose one)."""
    from oauthtok.catalog import get_service, help_markdown, load_catalog, overview_text

    catalog = load_catalog()
    if service is None:
        print(overview_text(catalog), end="")
        return
    text = help_markdown(get_service(service, catalog))
    if is_tty():
        from rich.markdown import Markdown

        console().print(Markdown(text))  # Markdown text, never rich markup: `<tenant>` stays
    else:
        print(text, end="")
