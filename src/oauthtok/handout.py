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
    from oauthtok.models import TokenRecord


def token_text(name: str, fmt: contract.Format, min_valid: float, user: str | None = None) -> str:
    """The rendered token, refreshed first when it expires within `min_valid` seconds. The
    SASL formats name `user`, else the token's account (`contract.sasl_user`)."""
    from oauthtok.manager import TokenManager

    contract.check_user_option(fmt, user)
    outcome = TokenManager().valid_token(name, min_valid=min_valid)
    record, tokens = outcome.record, outcome.tokens
    from oauthtok.errors import command, say

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
        user = contract.sasl_user(user, account_of(record), tokens.access_token, tokens.id_token)
    return contract.render_token(
        tokens.access_token, tokens.token_type, tokens.expires_at, scopes, fmt, user
    )


def account_of(record: TokenRecord) -> str | None:
    """The account a token belongs to, as its metadata records it. Issue 11 adds
    `TokenRecord.account`: until it lands this is None and the token's own claims decide;
    then `getattr` becomes `record.account` (the fast path already reads the same key)."""
    account: str | None = getattr(record, "account", None)
    return account


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
