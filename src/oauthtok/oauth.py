"""The OAuth 2.0 protocol over an httpx.Client passed in.

Three steps, each testable alone (the shape MSAL's oauth2cli uses): `start_authorization`
builds the URL with state and PKCE as plain data; the loopback listener waits for the
redirect; `exchange_code` turns the code into tokens. `refresh` and the token-endpoint error
handling (RFC 6749 §5.2) live here too. httpx is imported lazily by the callers' clients.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from oauthtok import netio
from oauthtok.errors import ProviderError
from oauthtok.models import Endpoints, TokenAuth, TokenSet
from oauthtok.sanitize import check_token_response, parse_seconds, terminal_text

if TYPE_CHECKING:
    import httpx

    from oauthtok.client_cert import ClientCertificate

#: errors that mean the grant or the client itself was rejected: only a new consent (or new
#: client credentials) cures them. RFC 6749 §5.2, plus GitHub's names for the same things
#: (GitHub answers them with HTTP 200).
REJECTED = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "bad_refresh_token",
        "incorrect_client_credentials",
        "bad_verification_code",
    }
)


class OAuthError(Exception):
    """The provider answered with an error (RFC 6749 §5.2, §4.1.2.1; RFC 8628 §3.5).

    Neutral on purpose: it carries the provider's fields; the use cases word the message.
    """

    def __init__(
        self,
        error: str,
        description: str | None = None,
        uri: str | None = None,
        *,
        status: int | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.uri = uri
        self.status = status
        self.host = host

    @property
    def rejected(self) -> bool:
        """True when the grant or the client was rejected (as opposed to a passing failure)."""
        return self.error in REJECTED

    def __str__(self) -> str:
        """`error: the first line of the description`, safe for a terminal (provider text)."""
        first = (self.description or "").strip().splitlines()
        error = terminal_text(self.error, 80)
        return f"{error}: {terminal_text(first[0])}" if first else error


class DeviceCodeExpired(Exception):
    """Nobody approved the device code before it (or our own deadline) expired."""


@dataclass(frozen=True)
class ClientAuth:
    """Who asks the provider, and how it authenticates (RFC 6749 §2.3)."""

    client_id: str
    secret: str | None = None
    method: TokenAuth = TokenAuth.NONE
    #: the key and certificate that sign each request's client assertion (private_key_jwt)
    certificate: ClientCertificate | None = None

    def __repr__(self) -> str:  # never the secret
        return f"ClientAuth({self.client_id!r}, method={self.method!r})"


@dataclass(frozen=True)
class AuthorizationRequest:
    """Everything the redirect must match, as plain data."""

    url: str
    state: str
    code_verifier: str
    redirect_uri: str

    def __repr__(self) -> str:
        return f"AuthorizationRequest(redirect_uri={self.redirect_uri!r})"


@dataclass(frozen=True)
class Grant:
    """A successful token response: the secrets, the scopes the provider says it granted, and
    a note when its `expires_in` was not a sane number (clamped or unknown)."""

    tokens: TokenSet
    scopes: tuple[str, ...] | None
    expiry_note: str | None = None
    #: the response's other fields, never a token (e.g. `refresh_token_expires_in`)
    extra: dict[str, Any] = field(default_factory=dict)


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636: 43+ chars of unreserved characters."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def start_authorization(
    endpoints: Endpoints,
    client_id: str,
    scopes: tuple[str, ...],
    redirect_uri: str,
    extra_params: dict[str, str] | None = None,
) -> AuthorizationRequest:
    if not endpoints.authorize_url:
        raise ValueError("this service has no authorization endpoint")
    state = secrets.token_urlsafe(32)  # 256 bits
    verifier, challenge = pkce_pair()
    query = {
        **(extra_params or {}),
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if scopes:
        query["scope"] = " ".join(scopes)
    sep = "&" if urlsplit(endpoints.authorize_url).query else "?"
    url = endpoints.authorize_url + sep + urlencode(query, quote_via=quote)
    return AuthorizationRequest(url, state, verifier, redirect_uri)


def exchange_code(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    *,
    code: str,
    request: AuthorizationRequest,
) -> Grant:
    """Authorization code → tokens (RFC 6749 §4.1.3, with the PKCE verifier)."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.code_verifier,
    }
    return grant_from(_token_request(client, endpoints.token_url, data, auth), auth.secret)


def refresh(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    *,
    refresh_token: str,
    scopes: tuple[str, ...] = (),
) -> Grant:
    """Refresh-token grant (RFC 6749 §6). The returned set keeps no refresh token unless a new
    one came. `scopes` may only narrow what was granted; empty means "as granted"."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scopes:
        data["scope"] = " ".join(scopes)
    return grant_from(_token_request(client, endpoints.token_url, data, auth), auth.secret)


def client_credentials(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    *,
    scopes: tuple[str, ...],
) -> Grant:
    """An app-only token (RFC 6749 §4.4). No refresh token: ask again when due."""
    data = {"grant_type": "client_credentials"}
    if scopes:
        data["scope"] = " ".join(scopes)
    return grant_from(_token_request(client, endpoints.token_url, data, auth), auth.secret)


@dataclass(frozen=True)
class DeviceAuthorization:
    """RFC 8628 §3.2: what the user needs (URI and code) and what polling needs."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float

    def __repr__(self) -> str:
        return f"DeviceAuthorization(verification_uri={self.verification_uri!r})"


DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: bounds on what a provider may ask us to wait (RFC 8628 §3.2 suggests 5 s and minutes)
MAX_INTERVAL = 60.0
MAX_DEVICE_LIFETIME = 3600.0


def start_device_authorization(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    *,
    scopes: tuple[str, ...],
) -> DeviceAuthorization:
    if not endpoints.device_authorization_url:
        raise ValueError("this service has no device authorization endpoint")
    data = {"scope": " ".join(scopes)} if scopes else {}
    body = _post(client, endpoints.device_authorization_url, data, auth)
    if body.get("error"):
        raise _error_from(body, endpoints.device_authorization_url)
    # Google says verification_url, everyone else verification_uri
    uri = body.get("verification_uri") or body.get("verification_url")
    if not body.get("device_code") or not body.get("user_code") or not uri:
        raise ProviderError("the device authorization reply lacks device_code, user_code or URI")
    for link in (uri, body.get("verification_uri_complete")):
        if link and not str(link).startswith("https://") and not _loopback(str(link)):
            raise ProviderError("the device authorization reply names a verification URI that "
                                "is not https")  # fmt: skip
    complete = body.get("verification_uri_complete")
    return DeviceAuthorization(
        device_code=str(body["device_code"]),
        user_code=str(body["user_code"]),
        verification_uri=str(uri),
        verification_uri_complete=str(complete) if complete else None,
        expires_in=parse_seconds(
            body.get("expires_in"), default=900, low=1, high=MAX_DEVICE_LIFETIME
        ),
        interval=parse_seconds(body.get("interval"), default=5, low=1, high=MAX_INTERVAL),
    )


def poll_device_token(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    device: DeviceAuthorization,
    *,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Grant:
    """Poll at the given interval (+5 s on slow_down) until approved, denied or expired.

    Never sleeps past min(timeout, the code's lifetime): DeviceCodeExpired then.
    """
    budget = min(timeout, device.expires_in)
    start, waited = time.monotonic(), 0.0
    interval = device.interval
    data = {"grant_type": DEVICE_GRANT, "device_code": device.device_code}
    while True:
        spent = max(waited, time.monotonic() - start)
        if spent + interval > budget:
            raise DeviceCodeExpired()
        sleep(interval)
        waited += interval
        left = budget - max(waited, time.monotonic() - start)
        body = _token_request(
            client, endpoints.token_url, data, auth, allow_error=True,
            deadline_s=max(1.0, min(netio.DEFAULT_DEADLINE_S, left)),
        )  # fmt: skip
        error = body.get("error")
        if not error:
            return grant_from(body, auth.secret)
        if error == "slow_down":
            interval = min(interval + 5, MAX_INTERVAL)  # RFC 8628 §3.5: for all later requests
        elif error != "authorization_pending":
            raise _error_from(body, endpoints.token_url)


def revoke(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    *,
    token: str,
    hint: str,
) -> None:
    """RFC 7009 token revocation. OAuthError or ProviderError when not confirmed."""
    if not endpoints.revocation_url:
        raise ValueError("this service has no revocation endpoint")
    data = {"token": token, "token_type_hint": hint}
    reply = _send(client, endpoints.revocation_url, data, auth)
    if reply.status != 200:
        body = reply.fields()  # JSON, or form-encoded (GitHub without Accept)
        raise OAuthError(
            str(body.get("error") or f"http_{reply.status}"),
            _text(body.get("error_description")),
            status=reply.status,
            host=reply.host,
        )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _error_from(body: dict[str, Any], url: str, status: int | None = None) -> OAuthError:
    return OAuthError(
        str(body["error"]),
        _text(body.get("error_description")),
        _text(body.get("error_uri")),
        status=status,
        host=urlsplit(url).netloc,
    )


def _token_request(
    client: httpx.Client,
    url: str,
    data: dict[str, str],
    auth: ClientAuth,
    *,
    allow_error: bool = False,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """POST to a token endpoint; the parsed body. An error reply raises OAuthError (or is
    returned with `allow_error`, for device polling)."""
    body = _post(client, url, data, auth, deadline_s=deadline_s)
    if body.get("error"):
        if allow_error:
            return body
        raise _error_from(body, url)
    if not body.get("access_token"):
        raise ProviderError(f"{urlsplit(url).netloc} answered without an access token")
    return body


def _post(
    client: httpx.Client,
    url: str,
    data: dict[str, str],
    auth: ClientAuth,
    *,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """POST a form with client authentication; the parsed body. 5xx raises."""
    reply = _send(client, url, data, auth, deadline_s=deadline_s)
    body = reply.fields()  # JSON, or form-encoded (GitHub without Accept)
    if reply.status >= 500:
        detail = f" ({_error_from(body, url)})" if body.get("error") else ""
        raise ProviderError(f"{reply.host} answered HTTP {reply.status}{detail}")
    if reply.status >= 400 and not body.get("error"):
        body["error"] = f"http_{reply.status}"
    return body


def _loopback(url: str) -> bool:
    from oauthtok.catalog import is_loopback_host

    return url.startswith("http://") and is_loopback_host(urlsplit(url).hostname)


def _send(
    client: httpx.Client,
    url: str,
    data: dict[str, str],
    auth: ClientAuth,
    *,
    deadline_s: float | None = None,
) -> netio.Reply:
    """The request itself, authenticated as the service says (RFC 6749 §2.3), bounded in time
    and size (`netio`)."""
    headers = {"Accept": "application/json"}
    form = dict(data)
    if auth.method == TokenAuth.CLIENT_SECRET_BASIC and auth.secret is not None:
        # RFC 6749 §2.3.1: both parts form-urlencoded before base64
        pair = f"{quote(auth.client_id, safe='')}:{quote(auth.secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form["client_id"] = auth.client_id
        if auth.method == TokenAuth.CLIENT_SECRET_POST and auth.secret is not None:
            form["client_secret"] = auth.secret
        elif auth.method == TokenAuth.PRIVATE_KEY_JWT and auth.certificate is not None:
            # RFC 7523 §2.2: a fresh assertion per request (own jti), aud = this endpoint
            form.update(auth.certificate.form_fields(client_id=auth.client_id, token_url=url))
    return netio.send(
        client, "POST", url, data=form, headers=headers,
        deadline_s=deadline_s or netio.DEFAULT_DEADLINE_S,
    )  # fmt: skip


def grant_from(body: dict[str, Any], client_secret: str | None) -> Grant:
    """A successful token response, every field checked before anything is stored (tokens of
    visible ASCII, one token type, scope-tokens, a sane lifetime): ProviderError otherwise."""
    checked = check_token_response(body)
    seconds = checked.lifetime.seconds
    tokens = TokenSet(
        access_token=checked.access_token,
        token_type=checked.token_type,
        expires_at=None if seconds is None else time.time() + seconds,
        refresh_token=checked.refresh_token,
        client_secret=client_secret,
        id_token=checked.id_token,
    )
    # GitHub separates granted scopes with commas, everyone else with spaces
    extra = {k: v for k, v in body.items() if k not in _SECRET_FIELDS}
    return Grant(tokens, checked.scopes, checked.lifetime.note, extra)


#: the fields of a token response that are secrets (kept out of `Grant.extra`)
_SECRET_FIELDS = frozenset({"access_token", "refresh_token", "id_token"})


def import_httpx() -> None:
    """Import httpx without its optional command line (`httpx._main`), which it imports
    whenever rich and click are installed: ~100 ms of rich, pygments and click for nothing.
    A None entry in sys.modules makes that one import fail, which httpx expects."""
    import sys

    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
        import httpx  # noqa: F401


def new_http_client() -> httpx.Client:
    """netio's client (TLS per SSL_CERT_FILE, no redirects, the total deadline), without
    httpx's own command line."""
    import_httpx()
    return netio.new_http_client()
