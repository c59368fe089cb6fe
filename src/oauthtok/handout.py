"""Handing out a token: the `oauthtok token` use case, shared by the fast path (for a token
that is due) and by Typer's `token` command, so that both print the same thing.

No Typer or rich: a refresh pays only for what it needs (the store, the protocol, httpx).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from oauthtok import contract
from oauthtok.errors import report

if TYPE_CHECKING:
    pass


def token_text(name: str, fmt: contract.Format, min_valid: float, user: str | None = None) -> str:
    """The rendered token, refreshed first when it expires within `min_valid` seconds. The
    SASL formats name `user`, else the token's account (`contract.sasl_user`).

    A renewal that fails raises its notification (`[notify]`) before the error is reported.
    """
    from oauthtok import alerts
    from oauthtok.errors import OauthtokError, command, say
    from oauthtok.manager import TokenManager

    contract.check_user_option(fmt, user)
    manager = TokenManager()
    try:
        outcome = manager.valid_token(name, min_valid=min_valid)
    except OauthtokError as exc:
        try:
            record = manager.store.find(name)
        except OauthtokError:
            record = None
        warning = alerts.after_failure(record, exc)
        if warning:
            say(f"oauthtok: warning: {warning}")
        raise
    record, tokens = outcome.record, outcome.tokens
    if outcome.refreshed:
        alerts.after_success(record)
    if outcome.warning:
        say(f"oauthtok: warning: {outcome.warning}")
    if record.needs_reauth:
        # the grant is dead; this access token may still work until it expires: say so
        say(
            f"oauthtok: warning: the provider rejected the last renewal of {record.name!r}: "
            f"this token works at most until it expires; run "
            f"`{command('reauthorize', record.name)}`"
        )
    scopes = contract.shown_scopes(record.granted_scopes, record.scopes)
    if fmt in contract.SASL_FORMATS:
        user = contract.sasl_user(user, record.account, tokens.access_token, tokens.id_token)
    return contract.render_token(
        tokens.access_token,
        tokens.token_type,
        tokens.expires_at,
        scopes,
        fmt,
        user,
        record.account,
    )


def main(name: str, fmt: contract.Format, min_valid: float, user: str | None = None) -> int:
    """Print the token; the exit code (errors reported as the CLI reports them)."""
    try:
        text = token_text(name, fmt, min_valid, user)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        return report(exc)
    return 0
