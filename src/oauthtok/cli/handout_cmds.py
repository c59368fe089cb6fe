"""`token` and `refresh`: handing out valid tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from oauthtok import contract
from oauthtok.cli.app import app
from oauthtok.cli.options import FormatOption, MinValid, Name, SaslUser, complete_names
from oauthtok.cli.output import describe_validity, say


@app.command("token")
def token_command(
    name: Name,
    fmt: FormatOption = contract.DEFAULT_FORMAT,
    min_valid: MinValid = contract.DEFAULT_MIN_VALID,
    user: SaslUser = None,
) -> None:
    """Print a valid access token.

    It is refreshed first when it expires within --min-valid seconds. --format
    xoauth2|oauthbearer prints the base64 SASL initial response for IMAP/SMTP, logging in as
    --user (default: the account the token belongs to).
    """
    from oauthtok.handout import token_text

    print(token_text(name, fmt, min_valid, user))


@app.command("refresh")
def refresh_command(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Token names.",
            metavar="NAME...",
            autocompletion=complete_names,
            show_default=False,
        ),
    ] = None,
    all_tokens: Annotated[bool, typer.Option("--all", help="Every stored token.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Refresh even if still valid.")] = False,
    min_valid: MinValid = contract.DEFAULT_MIN_VALID,
) -> None:
    """Refresh tokens now.

    A line for each token refreshed or failed, one summary line for the rest."""
    from oauthtok.errors import UsageError
    from oauthtok.manager import TokenManager

    if all_tokens and names:
        raise UsageError("name the tokens to refresh, or give --all, not both")
    if not all_tokens and not names:
        raise UsageError("name the tokens to refresh, or give --all")
    first_error = None
    still_valid: list[str] = []
    for report in TokenManager().refresh_many(names or [], force=force, min_valid=min_valid):
        name = report.record.name
        if report.skipped:
            print(f"{name}: does not expire and has no refresh token; nothing to do")
        elif report.error is not None:
            say(f"{name}: error: {report.error}")
            first_error = first_error or report.error
        elif report.outcome is not None and report.outcome.refreshed:
            print(f"{name}: refreshed, {describe_validity(report.outcome.record)}")
        else:
            still_valid.append(name)
    if still_valid:
        who = still_valid[0] if len(still_valid) == 1 else f"{len(still_valid)} tokens"
        print(f"{who}: still valid for more than {min_valid:g} s (use --force to refresh)")
    if first_error is not None:
        raise typer.Exit(first_error.exit_code)
