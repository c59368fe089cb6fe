"""`list`, `show`, `rename`, `delete`: stored tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from oauthtok.cli import output, views
from oauthtok.cli.app import commands
from oauthtok.cli.options import AsJson, Name, complete_names
from oauthtok.cli.output import say


@commands.command("list")
def list_command(as_json: AsJson = False) -> None:
    """List the stored tokens.

    Reads the metadata only, never the secret store."""
    views.list_view(as_json)


@commands.command("show")
def show_command(name: Name, as_json: AsJson = False) -> None:
    """Show one token, except its secrets."""
    views.show_view(name, as_json)


@commands.command("rename")
def rename_command(
    old: Annotated[
        str, typer.Argument(help="The current name.", metavar="OLD", autocompletion=complete_names)
    ],
    new: Annotated[str, typer.Argument(help="The new name.", metavar="NEW")],
) -> None:
    """Rename a token.

    Only the name index changes; the secret store is not touched."""
    from oauthtok.store import TokenStore

    store = TokenStore()
    before = store.get(old).name
    record = store.rename(old, new)
    say(f"Renamed {before!r} to {record.name!r}.")


@commands.command("delete")
def delete_command(
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    no_revoke: Annotated[
        bool, typer.Option("--no-revoke", help="Do not revoke the grant at the provider.")
    ] = False,
) -> None:
    """Revoke and delete a token.

    The grant is revoked at the provider (when it can be), then the token is deleted here."""
    from oauthtok.manager import TokenManager

    manager = TokenManager()
    record = manager.store.get(name)
    question = f"Delete token {record.name!r} ({record.service})?"
    if not no_revoke and not record.endpoints.revocation_url:
        question += " The grant stays live at the provider (it has no revocation endpoint)."
    if not yes and output.can_prompt() and not typer.confirm(question, default=False, err=True):
        say(f"Not deleted: {record.name!r} is unchanged.")
        return
    outcome = manager.delete(record.name, revoke=not no_revoke)
    if outcome.warning:
        say(f"warning: {outcome.warning}")
    revoked = " and revoked it at the provider" if outcome.revoked else ""
    say(f"Deleted {record.name!r}{revoked}.")
