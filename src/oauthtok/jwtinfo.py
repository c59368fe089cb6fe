"""What an access token says about itself: decode a JWT's header and claims locally (no
network, no signature check, never the token or its signature in the result) and explain the
classic mismatches; or ask the authorization server (RFC 7662 introspection) about an opaque
token.

A decoded JWT is not verified: it tells what the token claims, which is what the resource
server will read too. The problems explain why a login would fail:
- an access token for Microsoft Graph used for IMAP/SMTP (the audience must be Outlook's),
- IMAP.AccessAsUser.All / SMTP.Send missing (or their app-only twins),
- an app-only token without `roles` (no application permission granted),
- a token for another tenant, an expired one, an ID token in place of an access token.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from oauthtok import m365
from oauthtok.claims import account_hint as account_hint  # the SASL user; light, for the fast path
from oauthtok.errors import ProviderError, UsageError

if TYPE_CHECKING:
    import httpx

    from oauthtok.oauth import ClientAuth

MAX_TOKEN = 64 * 1024
MAX_ANSWER = 64 * 1024
USES = ("imap", "smtp", "pop")

#: per use: (delegated permission, application permission) in Exchange Online
MAIL_PERMISSIONS = {
    "imap": ("IMAP.AccessAsUser.All", "IMAP.AccessAsApp"),
    "pop": ("POP.AccessAsUser.All", "POP.AccessAsApp"),
    "smtp": ("SMTP.Send", "SMTP.SendAsApp"),
}
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token; None where unknown."""

    format: str  # jwt | opaque
    issuer: str | None = None
    audience: tuple[str, ...] | None = None
    scopes: tuple[str, ...] | None = None
    roles: tuple[str, ...] | None = None
    tenant: str | None = None
    account: str | None = None
    issued_at: int | None = None
    expires_at: int | None = None
    app_only: bool | None = None
    problems: tuple[str, ...] = ()
    #: the JOSE header's alg/typ/kid (never the signature)
    header: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Exactly the keys `inspect --json` promises."""

        def listed(values: tuple[str, ...] | None) -> list[str] | None:
            return None if values is None else list(values)

        return {
            "format": self.format,
            "issuer": self.issuer,
            "audience": listed(self.audience),
            "scopes": listed(self.scopes),
            "roles": listed(self.roles),
            "tenant": self.tenant,
            "account": self.account,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "problems": list(self.problems),
        }


def _b64url_json(segment: str) -> Any:
    if not _B64URL.match(segment):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return json.loads(raw.decode("utf-8"))


def _strings(value: Any, split: bool = False) -> tuple[str, ...] | None:
    """A claim that is a string (space-separated when `split`) or a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(value.split()) if split else (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str | int | float))
    return None


def _time(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def decode(
    token: str,
    *,
    use: str | None = None,
    expected_tenant: str | None = None,
    client_id: str | None = None,
    now: float | None = None,
) -> TokenInfo:
    """Decode `token` without verifying it. Not a JWT → `format="opaque"`.

    use: imap | smtp | pop | None (what the token is for, to check audience and scopes);
    expected_tenant: the tenant the token should belong to (compared when it is an id);
    client_id: the token's own client (an access token whose audience is it is an ID token
    or a token for the app's own API). Raises UsageError for a token over 64 KiB."""
    if use is not None and use not in USES:
        raise UsageError(f"unknown use {use!r}; use one of: {', '.join(USES)}")
    if len(token) > MAX_TOKEN:
        raise UsageError("this token is over 64 KiB: not an access token oauthtok can inspect")
    parts = token.strip().split(".")
    if len(parts) != 3:  # JWS compact form only; JWE (5 parts) and opaque tokens are opaque
        return TokenInfo(format="opaque", problems=_opaque_problems(len(parts)))
    try:
        header = _b64url_json(parts[0])
        claims = _b64url_json(parts[1])
    except (ValueError, UnicodeDecodeError, binascii.Error, RecursionError):
        return TokenInfo(format="opaque")
    if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
        return TokenInfo(format="opaque")
    head = {k: str(header[k]) for k in ("alg", "typ", "kid", "cty") if k in header}
    if str(header.get("cty", "")).upper() == "JWT":
        return TokenInfo(
            format="jwt",
            header=head,
            problems=("a nested JWT (its claims are another token): not decoded further",),
        )
    return _from_claims(claims, head, use, expected_tenant, client_id, now)


def _opaque_problems(parts: int) -> tuple[str, ...]:
    if parts == 5:
        return ("an encrypted JWT (JWE): only the service can read it",)
    return ()


def _from_claims(
    claims: dict[str, Any],
    header: dict[str, str],
    use: str | None,
    expected_tenant: str | None,
    client_id: str | None,
    now: float | None,
) -> TokenInfo:
    scp = _strings(claims.get("scp"), split=True)
    scope = _strings(claims.get("scope"), split=True)
    scopes = scp if scp is not None else scope
    roles = _strings(claims.get("roles"))
    idtyp = claims.get("idtyp")
    app_only: bool | None
    if idtyp in ("app", "user"):  # Microsoft's optional claim says it outright
        app_only = idtyp == "app"
    elif scopes is not None:
        app_only = False  # delegated tokens carry scp (or scope)
    elif roles is not None:
        app_only = True
    elif "tid" in claims and ("appid" in claims or "azp" in claims):
        app_only = True  # Microsoft: an app's token without scp, and without roles
    else:
        app_only = None
    account = next(
        (
            _text(claims.get(key))
            for key in ("preferred_username", "upn", "email", "unique_name", "sub")
            if _text(claims.get(key))
        ),
        None,
    )
    info = TokenInfo(
        format="jwt",
        issuer=_text(claims.get("iss")),
        audience=_strings(claims.get("aud")),
        scopes=scopes,
        roles=roles,
        tenant=_text(claims.get("tid")),
        account=account,
        issued_at=_time(claims.get("iat")),
        expires_at=_time(claims.get("exp")),
        app_only=app_only,
        header=header,
    )
    problems = explain(info, use=use, expected_tenant=expected_tenant, client_id=client_id, now=now)
    return replace(info, problems=tuple(problems))


def _norm(resource: str) -> str:
    return resource.strip().rstrip("/").lower()


def _has(values: tuple[str, ...] | None, name: str) -> bool:
    """Scope or role `name`, bare or as RESOURCE/name, case-insensitively."""
    wanted = name.lower()
    return any(v.lower() == wanted or v.lower().endswith("/" + wanted) for v in values or ())


def is_microsoft(info: TokenInfo) -> bool:
    if info.tenant:
        return True
    host = (urlsplit(info.issuer or "").hostname or "").lower()
    return host == "sts.windows.net" or any(host == c.authority for c in m365.CLOUDS.values())


def explain(
    info: TokenInfo,
    *,
    use: str | None = None,
    expected_tenant: str | None = None,
    client_id: str | None = None,
    now: float | None = None,
) -> list[str]:
    """The classic mismatches, each one line saying what is wrong and what to do."""
    now = time.time() if now is None else now
    problems: list[str] = []
    if info.expires_at is not None and info.expires_at <= now:
        problems.append(
            f"the token expired at {when(info.expires_at)}; `oauthtok token` hands out a "
            "renewed one"
        )
    audiences = {_norm(a) for a in info.audience or ()}
    graph = {_norm(a) for a in m365.graph_audiences()}
    outlook = {_norm(a) for a in m365.outlook_audiences()}
    if client_id and _norm(client_id) in audiences:
        problems.append(
            "the audience is this app's own client id: this is an ID token or a token for your "
            "own API, not one for a mail server or Graph"
        )
    microsoft = is_microsoft(info)
    if use in MAIL_PERMISSIONS and microsoft:
        delegated, application = MAIL_PERMISSIONS[use]
        if audiences & graph:
            problems.append(
                f"the audience is Microsoft Graph, but {use.upper()} needs an access token for "
                "Outlook (https://outlook.office.com): create a separate token with "
                f"https://outlook.office.com/{delegated} (one API per token)"
            )
        elif audiences and not audiences & outlook:
            shown = ", ".join(sorted(info.audience or ()))
            problems.append(
                f"the audience is {shown}, but {use.upper()} needs Outlook's "
                "(https://outlook.office.com or https://outlook.office365.com)"
            )
        elif info.app_only:
            if info.roles and not _has(info.roles, application):
                problems.append(
                    f"the app-only token lacks the {application} role: add the application "
                    "permission under Office 365 Exchange Online, grant admin consent, then get "
                    "a new token"
                )
        elif info.scopes is not None and not _has(info.scopes, delegated):
            problems.append(
                f"the token lacks {delegated}: add https://outlook.office.com/{delegated} to "
                "the scopes (and consent), then `oauthtok reauthorize`"
            )
    if info.app_only and not info.roles:
        problems.append(
            "this app-only token carries no roles: an admin must add application permissions "
            "to the app registration and grant admin consent, then get a new token"
        )
    if (
        expected_tenant
        and info.tenant
        and _GUID.match(expected_tenant)
        and expected_tenant.lower() != info.tenant.lower()
    ):
        problems.append(
            f"the token is for tenant {info.tenant}, not {expected_tenant}: sign in with an "
            "account of that tenant, or fix --param tenant"
        )
    return problems


# -- RFC 7662 introspection ---------------------------------------------------------------------


def introspect(
    client: httpx.Client,
    url: str,
    token: str,
    auth: ClientAuth,
    deadline: float,
    assertion: Mapping[str, str] | None = None,
) -> TokenInfo:
    """Ask the authorization server about `token` (RFC 7662 §2.1), authenticated as the client
    (basic or post, as the service's token_auth says; `assertion` adds RFC 7523 form fields
    from `client_cert.ClientCertificate.form_fields`). Raises ProviderError when it cannot
    answer; an inactive token comes back with that as a problem. `deadline` is a
    `time.monotonic()` value; the answer is capped at 64 KiB."""
    import httpx

    from oauthtok.oauth import OAuthError

    host = urlsplit(url).netloc
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProviderError(f"no time left to ask {host}; raise --timeout")
    headers = {"Accept": "application/json"}
    form = {"token": token, "token_type_hint": "access_token"}
    if auth.method == "client_secret_basic" and auth.secret is not None:
        pair = f"{_form_quote(auth.client_id)}:{_form_quote(auth.secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form["client_id"] = auth.client_id
        if auth.method == "client_secret_post" and auth.secret is not None:
            form["client_secret"] = auth.secret
        form.update(assertion or {})
    body = b""
    try:
        with client.stream(
            "POST", url, data=form, headers=headers, timeout=httpx.Timeout(left)
        ) as response:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER:
                    raise ProviderError(f"{host} answered more than 64 KiB; not an introspection")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("deadline")
    except httpx.TimeoutException:
        raise ProviderError(f"{host} did not answer in time; retry later") from None
    except httpx.TransportError as exc:
        raise ProviderError(f"cannot reach {host} ({type(exc).__name__}); retry later") from None
    try:
        data = json.loads(body.decode("utf-8")) if body else {}
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ProviderError(f"{host} answered HTTP {response.status_code} without a JSON object")
    if response.status_code != 200 or data.get("error"):
        detail = (
            str(OAuthError(str(data["error"]), str(data.get("error_description") or "")))
            if data.get("error")
            else f"HTTP {response.status_code}"
        )
        raise ProviderError(f"{host} refused the introspection ({detail})")
    if data.get("active") is not True:
        return TokenInfo(
            format="opaque",
            problems=(
                "the authorization server says the token is not active (expired, revoked, or "
                "not its own)",
            ),
        )
    info = TokenInfo(
        format="opaque",
        issuer=_text(data.get("iss")),
        audience=_strings(data.get("aud")),
        scopes=_strings(data.get("scope"), split=True),
        account=_text(data.get("username")) or _text(data.get("sub")),
        issued_at=_time(data.get("iat")),
        expires_at=_time(data.get("exp")),
    )
    return replace(info, problems=tuple(explain(info)))


def _form_quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
