"""`list`, `show`, `rename`, `delete`: stored tokens."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from oauthtok.cli import app, output
from oauthtok.cli.options import AsJson, Name, complete_names
from oauthtok.cli.output import (
    emit_json,
    expires_in,
    print_table,
    say,
    when,
)


@app.command("list")
def list_command(as_json: AsJson = False) -> None:
    """List stored tokens (reads the metadata only, never the secret store)."""
    from oauthtok.contract import shown_scopes
    from oauthtok.models import record_json
    from oauthtok.store import TokenStore

    records = TokenStore().records()
    now = time.time()
    if as_json:
        emit_json([record_json(r, now) for r in records])
        return
    if not records:
        say("No tokens yet. Create one with `oauthtok create NAME --service SERVICE`.")
        return
    rows = [
        [
            r.name,
            r.service,
            " ".join(shown_scopes(r.granted_scopes, r.scopes)),
            r.client_id,
            expires_in(r, now),
            str(r.status(now)),
        ]
        for r in records
    ]
    columns = ["NAME", "SERVICE", "SCOPES", "CLIENT ID", "EXPIRES IN", "STATUS"]
    print_table(columns, rows, keep=["NAME"])


@app.command("show")
def show_command(name: Name, as_json: AsJson = False) -> None:
    """Everything about one token except its secrets."""
    from oauthtok.models import TokenAuth, record_json
    from oauthtok.store import TokenStore

    record = TokenStore().get(name)
    now = time.time()
    data = record_json(record, now)
    if as_json:
        emit_json(data)
        return
    rows = [
        ("name", record.name),
        ("service", record.service),
        ("status", data["status"]),
        ("client id", record.client_id),
        ("client type", "public" if record.token_auth == TokenAuth.NONE else record.token_auth),
        ("signed in with", record.flow),
        ("scopes asked", " ".join(record.scopes)),
        ("scopes granted", " ".join(record.granted_scopes or ()) or "(not reported)"),
        ("scopes missing", " ".join(record.missing_scopes) or "-"),
        ("params", " ".join(f"{k}={v}" for k, v in record.params.items()) or "-"),
        ("token endpoint", record.endpoints.token_url),
        ("authorize endpoint", record.endpoints.authorize_url or "-"),
        ("redirect uri", record.redirect_uri),
        ("refresh token", "yes" if record.has_refresh_token else "no"),
        ("created", when(record.created_at)),
        ("refreshed", when(record.refreshed_at)),
        ("expires", f"{when(record.expires_at)} ({expires_in(record, now)})"),
        ("id", record.id),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))


@app.command("rename")
def rename_command(
    old: Annotated[str, typer.Argument(help="The current name.", autocompletion=complete_names)],
    new: Annotated[str, typer.Argument(help="The new name.")],
) -> None:
    """Rename a token (the secret store is not touched)."""
    from oauthtok.store import TokenStore

    record = TokenStore().rename(old, new)
    say(f"Renamed {old!r} to {record.name!r}.")


@app.command("delete")
def delete_command(
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    no_revoke: Annotated[
        bool, typer.Option("--no-revoke", help="Do not revoke the grant at the provider.")
    ] = False,
) -> None:
    """Delete a token: revoke it at the provider (when it can), then delete it here."""
    from oauthtok.manager import TokenManager

    manager = TokenManager()
    record = manager.store.get(name)
    question = f"Delete token {record.name!r} ({record.service})?"
    if not yes and output.can_prompt() and not typer.confirm(question, default=False, err=True):
        say(f"Not deleted: {record.name!r} is unchanged.")
        return
    outcome = manager.delete(record.name, revoke=not no_revoke)
    if outcome.warning:
        say(f"warning: {outcome.warning}")
    revoked = " and revoked it at the provider" if outcome.revoked else ""
    say(f"Deleted {record.name!r}{revoked}.")
