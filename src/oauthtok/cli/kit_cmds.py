"""`exec`, `test`, `inspect`, `consent-url`: from a token to a working login (the use cases
are in `oauthtok.kit` and `oauthtok.runwith`; this module parses and prints)."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from oauthtok import contract
from oauthtok.cli.app import commands
from oauthtok.cli.options import AsJson, MinValid, Name, Params, SaslUser, ServiceName
from oauthtok.cli.output import emit_json, humanize_seconds
from oauthtok.errors import UsageError
from oauthtok.kit import DEFAULT_TEST_TIMEOUT
from oauthtok.sanitize import terminal_block, terminal_text

if TYPE_CHECKING:
    from oauthtok.jwtinfo import TokenInfo


class Use(StrEnum):
    """`inspect --for`."""

    IMAP = "imap"
    SMTP = "smtp"
    POP = "pop"


class Mechanism(StrEnum):
    """`test --mechanism`."""

    OAUTHBEARER = "oauthbearer"
    XOAUTH2 = "xoauth2"


@commands.command("exec")
def exec_command(
    name: Name,
    command: Annotated[
        list[str],
        typer.Argument(
            metavar="-- COMMAND [ARGS]...", show_default=False,
            help="The program to run and its arguments, after `--`.",
        ),
    ],
    variable: Annotated[
        str,
        typer.Option(
            "--env", metavar="VAR", help="The environment variable that holds the token.",
        ),
    ] = "OAUTHTOK_TOKEN",
    min_valid: MinValid = contract.DEFAULT_MIN_VALID,
) -> None:  # fmt: skip
    """Run COMMAND with a fresh access token in its environment (never in its arguments).

    oauthtok then replaces itself with COMMAND: signals, the terminal and the exit status are
    COMMAND's. oauthtok's own failures exit with their codes before COMMAND starts; 127 when
    COMMAND is not found, 126 when it cannot be run. OAUTHTOK_CLIENT_SECRET is never passed on.
    """
    from oauthtok.runwith import run_with_token

    raise typer.Exit(run_with_token(name, command, variable=variable, min_valid=min_valid))


@commands.command("test")
def test_command(
    name: Name,
    imap: Annotated[
        str | None,
        typer.Option("--imap", metavar="HOST[:PORT]", show_default=False,
                     help="Log in to this IMAP server (port 993 by default)."),
    ] = None,
    smtp: Annotated[
        str | None,
        typer.Option("--smtp", metavar="HOST[:PORT]", show_default=False,
                     help="Log in to this SMTP submission server (port 587 by default)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", metavar="URL", show_default=False,
                     help="GET this URL with the token as a bearer token."),
    ] = None,
    user: SaslUser = None,
    tls: Annotated[
        bool, typer.Option("--tls", help="Implicit TLS (the default on 993 and 465).")
    ] = False,
    starttls: Annotated[
        bool, typer.Option("--starttls", help="STARTTLS (the default on 143, 587 and 25).")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="No TLS: only to a loopback host.")
    ] = False,
    mechanism: Annotated[
        Mechanism | None,
        typer.Option("--mechanism", case_sensitive=False, show_default=False,
                     help="The SASL mechanism (default: OAUTHBEARER when offered, else XOAUTH2)."),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, metavar="SECONDS",
                     help="Seconds the whole test may take."),
    ] = DEFAULT_TEST_TIMEOUT,
) -> None:  # fmt: skip
    """Prove the token works where it is used: a real IMAP or SMTP login, or an HTTP GET.

    Prints one line per step. Exit 0 when the login works, 5 when the server refuses the
    token (the message ends with the server's own answer), 6 when the server cannot be
    reached or TLS fails. Certificates are always verified (SSL_CERT_FILE names a private CA).
    """
    from oauthtok.kit import login_test
    from oauthtok.manager import TokenManager

    modes = [mode for mode, on in (("implicit", tls), ("starttls", starttls), ("plain", plain))
             if on]  # fmt: skip
    if len(modes) > 1:
        raise UsageError("choose one of --tls, --starttls, --plain")

    def report(line: str) -> None:
        print(terminal_text(line, None), flush=True)

    login_test(
        TokenManager(), name, imap=imap, smtp=smtp, url=url, user=user,
        tls_mode=modes[0] if modes else None,
        mechanism=mechanism.value if mechanism else None, timeout=timeout, report=report,
    )  # fmt: skip
    print("OK: the server accepted the token")


@commands.command("inspect")
def inspect_command(
    name: Name,
    use: Annotated[
        Use | None,
        typer.Option("--for", case_sensitive=False, show_default=False,
                     help="Check the audience and scopes for this use (Microsoft 365)."),
    ] = None,
    as_json: AsJson = False,
    remote: Annotated[
        bool,
        typer.Option("--remote", help="Also ask the service (RFC 7662 introspection; "
                     "catalog key introspection_url), authenticated as the client."),
    ] = False,
) -> None:  # fmt: skip
    """What the access token says about itself: audience, scopes, roles, tenant, account,
    issuer, times, and the classic mismatches (Graph vs Outlook, missing mail scopes, an
    app-only token without roles, another tenant).

    A JWT is decoded locally without verifying it; the token and its signature are never
    printed. The stored token is shown as it is, never refreshed.
    """
    from oauthtok.kit import inspect_token
    from oauthtok.manager import TokenManager

    info = inspect_token(TokenManager(), name, use=use.value if use else None, remote=remote)
    if as_json:
        emit_json(info.to_json())
        return
    print("\n".join(describe(info, remote)))


def describe(info: TokenInfo, remote: bool) -> list[str]:
    """`inspect` for a person: one `key  value` line each, then the problems."""
    from oauthtok.jwtinfo import is_microsoft, when

    def listed(values: tuple[str, ...] | None) -> str:
        return " ".join(values) if values else "-"

    def moment(value: int | None, now: float) -> str:
        if value is None:
            return "-"
        delta = value - now
        relative = (
            f"in {humanize_seconds(delta)}" if delta > 0 else f"{humanize_seconds(-delta)} ago"
        )
        return f"{when(value)} ({relative})"

    now = time.time()
    kind = "JWT (claims as written; signature not checked)" if info.format == "jwt" else "opaque"
    if info.format == "opaque" and remote:
        kind = "opaque (as the service's introspection endpoint describes it)"
    app_only = {True: "yes (no user: the application's own permissions)", False: "no",
                None: "-"}[info.app_only]  # fmt: skip
    rows = [
        ("format", kind),
        ("issuer", info.issuer or "-"),
        ("audience", listed(info.audience)),
        ("scopes", listed(info.scopes)),
        ("roles", listed(info.roles)),
        ("tenant", info.tenant or "-"),
        ("account", info.account or "-"),
        ("app-only", app_only if is_microsoft(info) else "-"),  # Microsoft's claims only
        ("issued", moment(info.issued_at, now)),
        ("expires", moment(info.expires_at, now)),
    ]
    if info.format == "opaque" and not remote:
        lines = [
            f"format  {kind}",
            "The token is not a JWT: only the service can say what it holds (--remote asks "
            "its introspection endpoint, when the catalog names one).",
        ]
    else:
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {terminal_text(v, None)}" for k, v in rows]
    if info.problems:
        lines += ["", "problems:"] + [f"  - {terminal_text(p, None)}" for p in info.problems]
    elif info.format == "jwt" or remote:
        lines += ["", "problems: none found"]
    return lines


@commands.command("consent-url")
def consent_url_command(
    name: Annotated[
        str | None,
        typer.Argument(help="A stored Microsoft token (its client, tenant, cloud and scopes).",
                       metavar="[NAME]", show_default=False),
    ] = None,
    service: ServiceName = None,
    client_id: Annotated[
        str | None,
        typer.Option("--client-id", metavar="ID", help="The app's client id (without NAME)."),
    ] = None,
    param: Params = None,
    scopes: Annotated[
        str | None,
        typer.Option("--scopes", metavar='"SCOPE …"', show_default=False,
                     help="The permissions to grant (default: the token's scopes, or the "
                     "service's default scopes)."),
    ] = None,
) -> None:  # fmt: skip
    """Print the Microsoft 365 admin-consent link and, below it, what each permission allows:
    text an admin can forward.

    For a stored token: `consent-url NAME`. Otherwise: `--service microsoft --client-id ID
    --param tenant=T [--param cloud=global|usgov|china] [--scopes "…"]`.
    """
    from oauthtok.catalog import get_service, parse_params
    from oauthtok.kit import consent_for_client, consent_for_token
    from oauthtok.scopes import split_scopes

    if name is not None:
        if service or client_id or param or scopes:
            raise UsageError("give NAME, or --service with --client-id (not both)")
        from oauthtok.store import TokenStore

        text = consent_for_token(TokenStore().get(name))
    else:
        if not service or not client_id:
            raise UsageError("give a token NAME, or --service microsoft --client-id ID "
                             "--param tenant=T")  # fmt: skip
        asked = split_scopes(scopes) if scopes is not None else None
        text = consent_for_client(get_service(service), client_id, parse_params(param or []),
                                  asked)  # fmt: skip
    print(terminal_block(text, None))
