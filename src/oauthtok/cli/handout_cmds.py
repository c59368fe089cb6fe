"""`token` and `refresh`: handing out valid tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from oauthtok import contract
from oauthtok.cli.app import commands
from oauthtok.cli.options import FormatOption, MinValid, Name, SaslUser, complete_names
from oauthtok.cli.output import describe_validity, say


@commands.command("token")
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


@commands.command("refresh")
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
    idle_for: Annotated[
        str | None,
        typer.Option(
            "--idle-for", metavar="DURATION",
            help="Keep-alive: refresh only grants whose refresh token has not been used for "
            "DURATION (e.g. 12h, 30d, 1w), and those even when still valid.",
        ),
    ] = None,
) -> None:  # fmt: skip
    """Refresh tokens now.

    A line for each token refreshed or failed, one summary line for the rest. With --idle-for,
    only grants idle for longer than DURATION (a keep-alive)."""
    import time

    from oauthtok import alerts
    from oauthtok.durations import format_duration, parse_duration
    from oauthtok.errors import UsageError
    from oauthtok.manager import TokenManager

    if all_tokens and names:
        raise UsageError("name the tokens to refresh, or give --all, not both")
    if not all_tokens and not names:
        raise UsageError("name the tokens to refresh, or give --all")
    manager = TokenManager()
    chosen = list(names or [])
    if idle_for is not None:
        from oauthtok.keepalive import plan

        idle = parse_duration(idle_for, what="--idle-for")
        records = [manager.store.get(n) for n in chosen] if chosen else manager.store.records()
        todo = plan(records, idle, time.time())
        for record, why in todo.skipped:
            print(f"{record.name}: {why}; not refreshed")
        if todo.recent:
            who = todo.recent[0].name if len(todo.recent) == 1 else f"{len(todo.recent)} tokens"
            print(f"{who}: used within {format_duration(idle)}; nothing to do")
        chosen = [r.name for r in todo.idle]
        force = True  # an idle grant is refreshed to use it, however long its token is valid
        if not chosen:
            return
    first_error = None
    still_valid: list[str] = []
    for report in manager.refresh_many(chosen, force=force, min_valid=min_valid):
        name = report.record.name
        if report.skipped:
            print(f"{name}: does not expire and has no refresh token; nothing to do")
        elif report.error is not None:
            say(f"{name}: error: {report.error}")
            warning = alerts.after_failure(report.record, report.error)
            if warning:
                say(f"warning: {warning}")
            first_error = first_error or report.error
        elif report.outcome is not None and report.outcome.refreshed:
            print(f"{name}: refreshed, {describe_validity(report.outcome.record)}")
            alerts.after_success(report.outcome.record)
        else:
            still_valid.append(name)
    if still_valid:
        who = still_valid[0] if len(still_valid) == 1 else f"{len(still_valid)} tokens"
        print(f"{who}: still valid for more than {min_valid:g} s (use --force to refresh)")
    if first_error is not None:
        raise typer.Exit(first_error.exit_code)
