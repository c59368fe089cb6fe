"""The account a token belongs to, read from its own (unverified) JWT claims.

Light on purpose: `oauthtok token NAME --format xoauth2|oauthbearer` needs the SASL user on
the fast path, so this module imports only what that path already pays for (no dataclasses,
no datetime). `jwtinfo` decodes everything else about a token and re-exports `account_hint`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

#: the largest token worth decoding (jwtinfo's limit too)
MAX_TOKEN = 64 * 1024
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: the claims that name the account, most specific first (Microsoft: preferred_username/upn;
#: Google and OpenID Connect: email)
ACCOUNT_CLAIMS = ("preferred_username", "email", "upn", "unique_name")


def unverified_claims(token: str | None) -> dict[str, Any] | None:
    """The claims of a JWS compact token, without checking its signature; None for anything
    else (opaque, encrypted, too large, not JSON)."""
    if not token or len(token) > MAX_TOKEN:
        return None
    parts = token.split(".")
    if len(parts) != 3 or not _B64URL.match(parts[1]):
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, binascii.Error, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


def account_hint(access_token: str | None, id_token: str | None = None) -> str | None:
    """The mailbox address a token belongs to, for the SASL user when --user is absent: the
    ID token's preferred_username/email/upn, else the access token's, when it looks like an
    address (a `sub` is not one). None when unknown."""
    for token in (id_token, access_token):
        claims = unverified_claims(token)
        if claims is None:
            continue
        for key in ACCOUNT_CLAIMS:
            value = claims.get(key)
            if isinstance(value, str) and "@" in value and not _CONTROL.search(value):
                return value
    return None
