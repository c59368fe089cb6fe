"""What the `token` fast path and the full program must agree on, in one place.

Both `fastpath` (no Typer, rich, httpx or keyring) and the full CLI import this module, so it is
stdlib only and cheap to import. A differential test holds the two parsers of `oauthtok token`
equal; everything else they share (formats, the default `--min-valid`, rendering, the "is due"
rule, the scope fallback, the SASL user, the Secret Service item schema and the collection
searched) is defined here once. The SASL formats import `sasl` and `claims` when used; errors
come from `errors`: all three are stdlib only.
"""

from __future__ import annotations

import math
from enum import StrEnum

TYPE_CHECKING = False  # collections.abc costs ~2 ms to import, on the `token` fast path
if TYPE_CHECKING:
    from collections.abc import Sequence


class Format(StrEnum):
    """`oauthtok token --format`."""

    RAW = "raw"
    HEADER = "header"
    JSON = "json"
    #: SASL initial responses (base64, one line) for IMAP/SMTP clients: `oauthtok.sasl`
    XOAUTH2 = "xoauth2"
    OAUTHBEARER = "oauthbearer"


#: the formats that carry a user (`--user ADDRESS`, default: the token's account)
SASL_FORMATS = frozenset({Format.XOAUTH2, Format.OAUTHBEARER})


DEFAULT_FORMAT = Format.RAW
#: seconds a handed-out token must stay valid; sooner than that it is refreshed first
DEFAULT_MIN_VALID = 60.0

# -- the Secret Service item schema ----------------------------------------------------------
# Items are exactly what keyring's own Secret Service backend writes, so `keyring get oauthtok
# ID` and `secret-tool lookup service oauthtok username ID` find them.

#: keyring calls this the "service" of an entry; it is the namespace of all oauthtok secrets
SECRET_NAMESPACE = "oauthtok"
#: the `application` attribute keyring writes
ITEM_APPLICATION = "Python keyring library"
#: the Secret Service collection both readers search (and the writer writes to)
COLLECTION_ALIAS = "default"
#: an entry too large for a capped backend holds this header plus the number of chunks
CHUNK_HEADER = "oauthtok-chunks:"

# -- the secret store's choice (config.toml's [store] backend, or this variable) -------------
STORE_BACKENDS = ("keyring", "file")
DEFAULT_STORE_BACKEND = "keyring"
STORE_ENV = "OAUTHTOK_STORE"


def item_attributes(key: str) -> dict[str, str]:
    """The attributes an entry is searched by (the writer adds `application`)."""
    return {"service": SECRET_NAMESPACE, "username": key}


def item_label(key: str) -> str:
    return f"Password for '{key}' on '{SECRET_NAMESPACE}'"


def chunk_key(key: str, index: int) -> str:
    return f"{key}/{index}"


def chunk_count(value: str) -> int | None:
    """The number of chunks an entry's value announces, or None for an ordinary value."""
    if not value.startswith(CHUNK_HEADER):
        return None
    return int(value[len(CHUNK_HEADER) :])


# -- the rules ----------------------------------------------------------------------------------


def parse_min_valid(text: str) -> float:
    """`--min-valid SECONDS`: a finite number >= 0. ValueError otherwise."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def is_due(expires_at: float | None, min_valid: float, now: float) -> bool:
    """True when a token expiring at `expires_at` must be renewed before it is handed out."""
    return expires_at is not None and expires_at - now <= min_valid


#: how long a process waits for a lock another oauthtok process holds (a refresh of the same
#: token, a change of the index), on both paths
LOCK_TIMEOUT = 120.0


def lock_held_too_long(what: str, timeout: float) -> str:
    return (
        f"another oauthtok process held the lock on {what} for {timeout:g} s; retry, or look "
        "for a stuck oauthtok process"
    )


def shown_scopes(granted: Sequence[str] | None, asked: Sequence[str]) -> list[str]:
    """The scopes to report: what the provider granted, or what was asked when it did not say."""
    return list(granted if granted else asked)


def bearer_kind(token_type: str | None) -> str:
    kind = token_type or "Bearer"
    return "Bearer" if kind.lower() == "bearer" else kind


def check_user_option(fmt: Format, user: str | None) -> None:
    """`--user` belongs to the SASL formats only (checked before anything is read)."""
    if user is not None and fmt not in SASL_FORMATS:
        from oauthtok.errors import UsageError

        raise UsageError("--user goes with --format xoauth2 or --format oauthbearer")


def sasl_user(
    given: str | None, account: str | None, access_token: str, id_token: str | None
) -> str:
    """The SASL user: `--user`, else the account the token belongs to (`account`, which the
    caller takes from the token's metadata), else the address its own claims name (ID token
    first). UsageError (exit 2) when none is known: the same words on both paths."""
    if given is not None:
        return given
    from oauthtok.claims import account_hint

    found = account or account_hint(access_token, id_token)
    if not found:
        from oauthtok.errors import UsageError

        raise UsageError(
            "oauthtok does not know the account of this token: give the mailbox address "
            "with --user ADDRESS"
        )
    return found


def render_token(
    access_token: str,
    token_type: str | None,
    expires_at: float | None,
    scopes: Sequence[str],
    fmt: Format,
    user: str | None = None,
    account: str | None = None,
) -> str:
    """The text `oauthtok token` prints (without the newline); `account` is the stored account
    (README, "JSON output"). The SASL formats need `user` (`sasl_user`); UsageError when it
    cannot be framed."""
    if fmt in SASL_FORMATS:
        from oauthtok import sasl
        from oauthtok.errors import UsageError

        if user is None:
            raise UsageError(f"--format {fmt} needs the mailbox address: give --user ADDRESS")
        return sasl.initial_response(fmt.value, user, access_token)
    kind = bearer_kind(token_type)
    if fmt is Format.HEADER:
        return f"Authorization: {kind} {access_token}"
    if fmt is Format.JSON:
        import json

        return json.dumps(
            {
                "access_token": access_token,
                "token_type": kind,
                "expires_at": None if expires_at is None else int(expires_at),
                "scopes": list(scopes),
                "account": account,
            }
        )
    return access_token
