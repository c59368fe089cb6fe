"""Whose token is it: the account the provider names in the id_token or at its userinfo endpoint.

The first of `preferred_username`, `upn`, `email`, `sub` (the first two are what people type
to sign in at Microsoft and Keycloak; `sub` is opaque but stable). Nothing here raises: an
account is shown to people and never decides anything, so a provider that says nothing, or
says it badly, leaves the account unknown (None).

Why the id_token is read without verifying its signature: it came in the token endpoint's own
reply, over TLS, to a request oauthtok made with its client credentials (OpenID Connect Core
§3.1.3.7: "the TLS server validation MAY be used to validate the issuer in place of checking
the token signature"). It is read only to name the account, never to authorize anything.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from oauthtok.oauth import Grant

#: the claims that name an account, best first
CLAIMS = ("preferred_username", "upn", "email", "sub")
MAX_ACCOUNT = 256
#: an id_token is a few KiB; a discovery document or a userinfo reply some KiB
MAX_ID_TOKEN = 64 * 1024
MAX_DOCUMENT = 256 * 1024
#: seconds for the whole userinfo look-up (discovery + userinfo): a sign-in never waits longer
USERINFO_DEADLINE = 10.0


def from_claims(claims: Mapping[str, Any]) -> str | None:
    """The first non-empty string of CLAIMS, as one line of printable text."""
    for claim in CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str):
            text = " ".join("".join(c if c.isprintable() else " " for c in value).split())
            if text:
                return text[:MAX_ACCOUNT]
    return None


def id_token_claims(id_token: str | None) -> dict[str, Any]:
    """The payload of a JWT id_token, unverified (see the module's docstring); {} if it is not
    one."""
    if not id_token or len(id_token) > MAX_ID_TOKEN or id_token.count(".") != 2:
        return {}
    payload = id_token.split(".")[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def from_id_token(id_token: str | None) -> str | None:
    return from_claims(id_token_claims(id_token))


def openid_granted(granted: Sequence[str] | None, asked: Sequence[str]) -> bool:
    """`openid` was granted (or asked, when the provider did not report what it granted)."""
    return "openid" in (granted if granted is not None else asked)


def _get_json(
    client: httpx.Client, url: str, headers: dict[str, str], deadline: float
) -> dict[str, Any] | None:
    """GET a JSON object of at most MAX_DOCUMENT bytes before `deadline`; None otherwise."""
    import httpx

    from oauthtok.catalog import url_problem

    if url_problem(url):
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    body = bytearray()
    with client.stream(
        "GET", url, headers={"Accept": "application/json", **headers}, timeout=httpx.Timeout(left)
    ) as response:
        if response.status_code != 200:
            return None
        for chunk in response.iter_bytes():
            body.extend(chunk)
            if len(body) > MAX_DOCUMENT or time.monotonic() > deadline:
                return None
    data = json.loads(bytes(body))
    return data if isinstance(data, dict) else None


def userinfo_endpoint(client: httpx.Client, issuer: str, deadline: float) -> str | None:
    """The `userinfo_endpoint` of the issuer's discovery document (which must name the same
    issuer); None when there is none."""
    from oauthtok.catalog import well_known_urls

    for url in well_known_urls(issuer):
        document = _get_json(client, url, {}, deadline)
        if document is None:
            continue
        if document.get("issuer") != issuer:
            return None
        endpoint = document.get("userinfo_endpoint")
        return endpoint if isinstance(endpoint, str) else None
    return None


def from_userinfo(
    client: httpx.Client, url: str, access_token: str, token_type: str, deadline: float
) -> str | None:
    kind = "Bearer" if token_type.lower() == "bearer" else token_type
    claims = _get_json(client, url, {"Authorization": f"{kind} {access_token}"}, deadline)
    return None if claims is None else from_claims(claims)


def account_of(
    client: httpx.Client,
    grant: Grant,
    asked: Sequence[str],
    issuer: str | None,
) -> str | None:
    """The account of a new grant: from its id_token, else (when `openid` was granted and the
    service has an issuer to discover the endpoint from) from the userinfo endpoint. Never
    raises; None when the provider does not say."""
    found = from_id_token(grant.tokens.id_token)
    if found or not issuer or not openid_granted(grant.scopes, asked):
        return found
    try:
        deadline = time.monotonic() + USERINFO_DEADLINE
        endpoint = userinfo_endpoint(client, issuer, deadline)
        if endpoint is None:
            return None
        return from_userinfo(
            client, endpoint, grant.tokens.access_token, grant.tokens.token_type, deadline
        )
    except Exception:  # a name for people: never worth failing a sign-in for
        return None
