"""Option declarations shared between commands, and the completions they offer.

Closed sets are enums (Typer lists the choices in `--help` and matches them without regard to
case); open values get readable placeholders instead of Python types.
"""

from __future__ import annotations

from typing import Annotated

import typer

from oauthtok import contract
from oauthtok.kinds import DEFAULT_AUTH_TIMEOUT, Flow


def complete_names(incomplete: str) -> list[str]:
    """Token names from the name index alone: no secret store, no network."""
    from oauthtok import layout, paths

    try:
        names = layout.read_names(paths.data_dir())
    except (OSError, ValueError):
        return []
    key = layout.name_key(incomplete)
    return sorted(n for n in names if layout.name_key(n).startswith(key))


def complete_services(incomplete: str) -> list[str]:
    from oauthtok.catalog import load_catalog
    from oauthtok.errors import OauthtokError

    try:
        return [n for n in load_catalog() if n.startswith(incomplete)]
    except OauthtokError:
        return []


def min_valid(text: str) -> float:
    try:
        return contract.parse_min_valid(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number of seconds >= 0") from None


Name = Annotated[
    str,
    typer.Argument(
        help="The token's name.", metavar="NAME", autocompletion=complete_names,
        show_default=False,
    ),
]  # fmt: skip
ServiceName = Annotated[
    str | None,
    typer.Option(
        "--service", "-s", help="Catalog service (`oauthtok services`).",
        metavar="SERVICE", autocompletion=complete_services,
    ),
]  # fmt: skip
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SecretStdin = Annotated[
    bool,
    typer.Option(
        "--client-secret-stdin",
        help="Read the client secret from one line of stdin (at a terminal: hidden, asked "
        "twice); else OAUTHTOK_CLIENT_SECRET, else a hidden prompt.",
    ),
]
NewSecretStdin = Annotated[
    bool,
    typer.Option(
        "--client-secret-stdin",
        help="A new client secret, from one line of stdin (at a terminal: hidden, asked "
        "twice); it also moves a token that used a certificate to a secret. Without it: "
        "OAUTHTOK_CLIENT_SECRET, else the stored secret.",
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout", min=1, metavar="SECONDS",
        help=f"Seconds to wait for the sign-in (default {DEFAULT_AUTH_TIMEOUT:g}).",
        show_default=False,
    ),
]  # fmt: skip
NoBrowser = Annotated[
    bool, typer.Option("--no-browser", help="Only print the URL; do not open a browser.")
]
FlowOption = Annotated[
    Flow | None,
    typer.Option(
        "--flow", case_sensitive=False, show_default=False,
        help="How to sign in (default: browser, or a fallback that works here).",
    ),
]  # fmt: skip
FormatOption = Annotated[
    contract.Format,
    typer.Option(
        "--format", "-f", case_sensitive=False,
        help="What to print: the token, an Authorization header, JSON, or a SASL initial "
        "response for IMAP/SMTP (xoauth2, oauthbearer).",
    ),
]  # fmt: skip
SaslUser = Annotated[
    str | None,
    typer.Option(
        "--user", metavar="ADDRESS", show_default=False,
        help="The mailbox address to log in as (default: the account the token belongs to).",
    ),
]  # fmt: skip
MinValid = Annotated[
    float,
    typer.Option(
        "--min-valid", metavar="SECONDS", parser=min_valid, show_default="60",
        help="Refresh first if the token expires within SECONDS.",
    ),
]  # fmt: skip
Scopes = Annotated[
    str | None,
    typer.Option(
        "--scopes", metavar='"SCOPE …"',
        help="Scopes to ask for, separated by spaces or commas (asked for when missing).",
    ),
]  # fmt: skip
Params = Annotated[
    list[str] | None,
    typer.Option("--param", metavar="KEY=VALUE", help="A service parameter; repeatable."),
]
ClientCertificate = Annotated[
    str | None,
    typer.Option(
        "--client-certificate", metavar="FILE", show_default=False,
        help="Authenticate the client with this private key and certificate (one PEM file, "
        "mode 0600) instead of a secret (private_key_jwt); the key is kept in the keyring.",
    ),
]  # fmt: skip
SecretExpires = Annotated[
    str | None,
    typer.Option(
        "--secret-expires", metavar="YYYY-MM-DD", show_default=False,
        help="When the client secret expires (shown by list and show); a certificate's own "
        "date is read from it.",
    ),
]  # fmt: skip
