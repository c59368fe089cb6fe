"""The OAuth 2.0 protocol over an httpx.Client passed in.

Three steps, each testable alone (the shape MSAL's oauth2cli uses): `start_authorization`
builds the URL with state and PKCE as plain data; the loopback listener waits for the
redirect; `exchange_code` turns the code into tokens. `refresh` and the token-endpoint error
handling (RFC 6749 §5.2) live here too. httpx is imported lazily by the callers' clients.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from oauthtok import __version__
from oauthtok.errors import AuthorizationFailed, ProviderError, ReauthorizationRequired, command
from oauthtok.models import Endpoints, TokenSet

if TYPE_CHECKING:
    import httpx

#: refresh errors that only a new consent can cure (RFC 6749 §5.2)
_REAUTH_ERRORS = {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope"}

#: Microsoft puts an AADSTS code into error_description; what to change for the common ones
AADSTS_HINTS = {
    "50011": "the redirect URI is not registered: add http://localhost to the app's platform",
    "50020": "this account is not in the app's tenant: use --param tenant=common or the "
    "account's tenant, or make the app multi-tenant",
    "50076": "multi-factor authentication is required: finish it in the browser",
    "50079": "multi-factor authentication must be set up: finish it in the browser",
    "65001": "consent is missing: an admin must grant consent in API permissions",
    "90094": "admin consent is required: an admin must grant consent in API permissions",
    "700016": "the app was not found in this tenant: check --client-id and --param tenant",
    "7000215": "invalid client secret: paste the secret's Value, not its Secret ID",
    "7000218": "a client secret is required: create with a secret, or enable 'Allow public "
    "client flows' and use --public",
    "7000222": "the client secret expired: make a new one, then `oauthtok reauthorize NAME`",
    "70000": "the grant was revoked or expired: run `oauthtok reauthorize NAME`",
    "70008": "the refresh token expired: run `oauthtok reauthorize NAME`",
    "9002313": "the request was malformed: check the scopes and the tenant",
    "28003": "scopes of two APIs were mixed: create one token per API (Graph or Outlook)",
    "70011": "a scope is not valid for this app: check --scopes (one API per token)",
    "1002012": "a scope is not valid for this app: check --scopes (one API per token)",
}


@dataclass(frozen=True)
class ClientAuth:
    """Who asks the provider, and how it authenticates (RFC 6749 §2.3)."""

    client_id: str
    secret: str | None = None
    method: str = "none"  # client_secret_basic | client_secret_post | none

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
    """A successful token response: the secrets, and the scopes the provider says it granted."""

    tokens: TokenSet
    scopes: tuple[str, ...] | None


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
        raise AuthorizationFailed("this service has no authorization endpoint")
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
    """Authorization code → tokens. Errors are authorization failures (exit 5)."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.code_verifier,
    }
    body = _token_request(client, endpoints.token_url, data, auth)
    _check_sign_in(body, "the authorization code")
    return grant_from(body, client_secret=auth.secret)


def refresh(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    *,
    refresh_token: str,
    scopes: tuple[str, ...] = (),
    name: str = "NAME",
) -> Grant:
    """Refresh-token grant. The returned set keeps no refresh token unless a new one came."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scopes:
        data["scope"] = " ".join(scopes)
    body = _token_request(client, endpoints.token_url, data, auth)
    _check_renewal(body, name)
    return grant_from(body, client_secret=auth.secret)


def _check_sign_in(body: dict[str, Any], what: str) -> None:
    """An error while signing in: the authorization failed (exit 5)."""
    error = body.get("error")
    if error:
        raise AuthorizationFailed(
            f"the provider refused {what}: {describe_error(body)}", oauth_error=str(error)
        )


def _check_renewal(body: dict[str, Any], name: str) -> None:
    """An error while renewing a stored token: a rejected grant needs a new consent (exit 4),
    anything else is the provider's trouble (exit 6) and changes nothing."""
    error = body.get("error")
    if error in _REAUTH_ERRORS:
        raise ReauthorizationRequired(
            f"the provider rejected the renewal of {name!r} ({describe_error(body)}); run "
            f"`{command('reauthorize', name)}` (with --client-secret-stdin if the secret changed)",
            oauth_error=str(error),
        )
    if error:
        raise ProviderError(
            f"the provider failed to renew {name!r} ({describe_error(body)}); retry later, "
            "the stored tokens are unchanged",
            oauth_error=str(error),
        )


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


def start_device_authorization(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    *,
    scopes: tuple[str, ...],
) -> DeviceAuthorization:
    if not endpoints.device_authorization_url:
        raise AuthorizationFailed(
            "this service has no device authorization endpoint; use --flow browser or paste"
        )
    data = {"scope": " ".join(scopes)} if scopes else {}
    body = _post(client, endpoints.device_authorization_url, data, auth)
    _check_sign_in(body, "the device authorization")
    # Google says verification_url, everyone else verification_uri
    uri = body.get("verification_uri") or body.get("verification_url")
    if not body.get("device_code") or not body.get("user_code") or not uri:
        raise ProviderError("the device authorization reply lacks device_code, user_code or URI")
    try:
        expires_in = float(body.get("expires_in") or 900)
        interval = float(body.get("interval") or 5)
    except (TypeError, ValueError):
        raise ProviderError(
            "the device authorization reply has a bad expires_in or interval"
        ) from None
    return DeviceAuthorization(
        device_code=str(body["device_code"]),
        user_code=str(body["user_code"]),
        verification_uri=str(uri),
        verification_uri_complete=body.get("verification_uri_complete") or None,
        expires_in=expires_in,
        interval=max(interval, 1.0),
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
    """Poll at the given interval (+5 s on slow_down) until approved, denied or expired."""
    deadline = time.monotonic() + min(timeout, device.expires_in)
    interval = device.interval
    data = {"grant_type": DEVICE_GRANT, "device_code": device.device_code}
    while True:
        sleep(interval)
        body = _token_request(client, endpoints.token_url, data, auth)
        error = body.get("error")
        if not error:
            return grant_from(body, client_secret=auth.secret)
        if error == "slow_down":
            interval += 5  # RFC 8628 §3.5: for this and all later requests
        elif error != "authorization_pending":
            what = {
                "access_denied": "the sign-in was denied",
                "expired_token": "the code expired before it was approved; run the command again",
            }.get(str(error), "the provider refused the device sign-in")
            raise AuthorizationFailed(f"{what} ({describe_error(body)})", oauth_error=str(error))
        if time.monotonic() + interval > deadline:
            raise AuthorizationFailed(
                "the code was not approved in time; run the command again (or raise --timeout)"
            )


def client_credentials(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    *,
    scopes: tuple[str, ...],
    name: str = "NAME",
    during: str = "create",
) -> Grant:
    """An app-only token (RFC 6749 §4.4). No refresh token: ask again when due."""
    data = {"grant_type": "client_credentials"}
    if scopes:
        data["scope"] = " ".join(scopes)
    body = _token_request(client, endpoints.token_url, data, auth)
    if during == "create":
        _check_sign_in(body, "the client credentials")
    else:
        _check_renewal(body, name)
    return grant_from(body, client_secret=auth.secret)


def revoke(
    client: httpx.Client,
    endpoints: Endpoints,
    auth: ClientAuth,
    *,
    token: str,
    hint: str,
) -> None:
    """RFC 7009 token revocation. Raises ProviderError when the provider did not confirm."""
    if not endpoints.revocation_url:
        raise ProviderError("this service has no revocation endpoint")
    data = {"token": token, "token_type_hint": hint}
    response = _send(client, endpoints.revocation_url, data, auth)
    if response.status_code != 200:
        body = _parse_body(response)
        detail = describe_error(body) if body.get("error") else f"HTTP {response.status_code}"
        raise ProviderError(f"the provider did not revoke the {hint.replace('_', ' ')} ({detail})")


def _token_request(
    client: httpx.Client,
    url: str,
    data: dict[str, str],
    auth: ClientAuth,
) -> dict[str, Any]:
    """POST to a token endpoint; the parsed body, with `error` set for error replies."""
    body = _post(client, url, data, auth)
    if not body.get("error") and not body.get("access_token"):
        host = urlsplit(url).netloc
        raise ProviderError(f"{host} answered without an access token; nothing was changed")
    return body


def _post(
    client: httpx.Client,
    url: str,
    data: dict[str, str],
    auth: ClientAuth,
) -> dict[str, Any]:
    """POST a form with client authentication; the parsed JSON body. 5xx raises."""
    response = _send(client, url, data, auth)
    body = _parse_body(response)
    if response.status_code >= 500:
        raise ProviderError(
            f"{urlsplit(url).netloc} answered HTTP {response.status_code}"
            + (f" ({describe_error(body)})" if body.get("error") else "")
            + "; retry later (nothing was changed)"
        )
    if response.status_code >= 400 and not body.get("error"):
        body["error"] = f"http_{response.status_code}"
    return body


def _send(
    client: httpx.Client,
    url: str,
    data: dict[str, str],
    auth: ClientAuth,
) -> httpx.Response:
    """The request itself, authenticated as the service says (RFC 6749 §2.3)."""
    import httpx

    headers = {"Accept": "application/json"}
    form = dict(data)
    if auth.method == "client_secret_basic" and auth.secret is not None:
        # RFC 6749 §2.3.1: both parts form-urlencoded before base64
        pair = f"{quote(auth.client_id, safe='')}:{quote(auth.secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form["client_id"] = auth.client_id
        if auth.method == "client_secret_post" and auth.secret is not None:
            form["client_secret"] = auth.secret
    host = urlsplit(url).netloc
    try:
        return client.post(url, data=form, headers=headers)
    except httpx.TimeoutException:
        raise ProviderError(
            f"{host} did not answer in time; check the network and retry (nothing was changed)"
        ) from None
    except httpx.TransportError as exc:
        raise ProviderError(
            f"cannot reach {host} ({type(exc).__name__}); check the network and retry "
            "(nothing was changed)"
        ) from None


def _parse_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        # some providers (GitHub without Accept) answer form-encoded
        body = dict(parse_qsl(response.text))
    return body if isinstance(body, dict) else {}


def describe_error(body: dict[str, Any]) -> str:
    """`error: description`, plus what to change for a known Microsoft AADSTS code."""
    error = str(body.get("error", "error"))
    description = str(body.get("error_description") or "").strip()
    first_line = description.splitlines()[0] if description else ""
    text = f"{error}: {first_line}" if first_line else error
    match = re.search(r"AADSTS(\d+)", description)
    if match and match.group(1) in AADSTS_HINTS:
        text += f" — {AADSTS_HINTS[match.group(1)]}"
    return text


def grant_from(body: dict[str, Any], *, client_secret: str | None) -> Grant:
    expires_at = None
    expires_in = body.get("expires_in")
    if expires_in not in (None, ""):
        try:
            expires_at = time.time() + float(expires_in)
        except (TypeError, ValueError):
            expires_at = None
    tokens = TokenSet(
        access_token=str(body["access_token"]),
        token_type=str(body.get("token_type") or "Bearer"),
        expires_at=expires_at,
        refresh_token=body.get("refresh_token") or None,
        client_secret=client_secret,
        id_token=body.get("id_token") or None,
    )
    scope = body.get("scope")
    # GitHub separates granted scopes with commas, everyone else with spaces
    scopes = None if scope is None else tuple(s for s in re.split(r"[\s,]+", str(scope)) if s)
    return Grant(tokens, scopes)


def new_http_client(timeout: float = 30.0) -> httpx.Client:
    import httpx

    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": f"oauthtok/{__version__}"},
    )
