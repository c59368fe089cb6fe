"""What the read-only commands show: `list`, `show`, `services`, `show-help`.

No Typer here: the launcher answers these commands before Typer loads (`fastpath.quick`), and
the Typer commands call the same functions, so both give the same output.
"""

from __future__ import annotations

import time

from oauthtok.cli.output import (
    console,
    emit_json,
    expires_in,
    is_tty,
    lapses_in,
    print_table,
    say,
    when,
)

TYPE_CHECKING = False  # typing costs ~4 ms to import: `list` and `show` answer without it
if TYPE_CHECKING:
    from oauthtok.store import MetadataReader


def metadata() -> MetadataReader:
    """The stored tokens' metadata, read without opening the secret store; an invalid store
    choice is refused first (exit 7), as by every command that opens the store."""
    from oauthtok.store import MetadataReader, check_store_choice

    check_store_choice()
    return MetadataReader()


def list_view(as_json: bool) -> None:
    """Every token's metadata (never the secret store)."""
    from oauthtok.contract import shown_scopes
    from oauthtok.grants import catalog_or_none, lapses_at, needs_catalog
    from oauthtok.models import record_json

    records = metadata().records()
    now = time.time()
    catalog = catalog_or_none() if needs_catalog(records) else None
    if as_json:
        emit_json([record_json(r, now, lapses_at(r, catalog)) for r in records])
        return
    if not records:
        say("No tokens yet. Create one with `oauthtok create NAME --service SERVICE`.")
        return
    rows = [
        [
            r.name,
            r.service,
            r.account or "-",
            " ".join(shown_scopes(r.granted_scopes, r.scopes)),
            r.client_id,
            expires_in(r, now),
            lapses_in(lapses_at(r, catalog), now),
            str(r.status(now)),
            day(r.secret_expires_at),
        ]
        for r in records
    ]
    columns = [
        "NAME", "SERVICE", "ACCOUNT", "SCOPES", "CLIENT ID", "EXPIRES IN", "LAPSES IN", "STATUS",
        "SECRET EXPIRES",
    ]  # fmt: skip
    print_table(columns, rows, keep=["NAME"])


def day(ts: float | None) -> str:
    """A credential's expiry: the day (UTC), `-` when unknown."""
    return "-" if ts is None else time.strftime("%Y-%m-%d", time.gmtime(ts))


def show_view(name: str, as_json: bool) -> None:
    """Everything about one token except its secrets."""
    from oauthtok.grants import catalog_or_none, lapse_of
    from oauthtok.models import TokenAuth, record_json
    from oauthtok.sanitize import terminal_text

    record = metadata().get(name)
    now = time.time()
    lapse = lapse_of(record, catalog_or_none() if record.lapse_rules is None else None)
    data = record_json(record, now, lapse.at)
    if as_json:
        emit_json(data)
        return
    if lapse.at is None:
        lapses = f"- ({lapse.reason})"
    else:
        lapses = f"{when(lapse.at)} ({lapses_in(lapse.at, now)}: {lapse.reason})"
    last_error = f"{when(record.last_error_at)}: {record.last_error}" if record.last_error else "-"
    rows = [
        ("name", record.name),
        ("service", record.service),
        ("account", record.account or "(not reported)"),
        ("status", data["status"]),
        ("client id", record.client_id),
        (
            "client",
            "public (PKCE only)"
            if record.token_auth == TokenAuth.NONE
            else f"confidential ({record.token_auth})",
        ),
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
        ("consented", when(record.obtained_at)),
        ("refreshed", when(record.refreshed_at)),
        ("refresh token used", when(record.refresh_used_at)),
        ("refresh token rotated", when(record.refresh_rotated_at)),
        ("expires", f"{when(record.expires_at)} ({expires_in(record, now)})"),
        ("expiry note", terminal_text(record.expiry_note) if record.expiry_note else "-"),
        (
            "certificate expires"
            if record.token_auth == TokenAuth.PRIVATE_KEY_JWT
            else "secret expires",
            day(record.secret_expires_at),
        ),
        ("lapses", lapses),
        ("last error", last_error),
        ("id", record.id),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))


def services_view(as_json: bool) -> None:
    from oauthtok.catalog import load_catalog
    from oauthtok.models import service_json
    from oauthtok.sanitize import terminal_text

    catalog = load_catalog()
    if as_json:
        emit_json([service_json(s) for s in catalog.values()])
        return
    rows = [[s.name, terminal_text(s.title), terminal_text(s.origin)] for s in catalog.values()]
    print_table(["NAME", "TITLE", "FROM"], rows, keep=["NAME"])


def show_help_view(service: str | None) -> None:
    from oauthtok.catalog import get_service, help_markdown, load_catalog, overview_text
    from oauthtok.sanitize import terminal_block

    catalog = load_catalog()
    if service is None:
        print(overview_text(catalog), end="")
        return
    text = terminal_block(help_markdown(get_service(service, catalog)), cap=None)  # local text
    if is_tty():
        from rich.markdown import Markdown

        console().print(Markdown(literal_angles(text)))
    else:
        print(text, end="")


def literal_angles(markdown: str) -> str:
    """`<tenant>` is inline HTML to a Markdown parser, which rich then drops: escape `<` outside
    code spans so that placeholders in help texts stay visible."""
    parts = markdown.split("`")
    return "`".join(p if i % 2 else p.replace("<", "\\<") for i, p in enumerate(parts))
