"""The use cases: create, reauthorize, hand out a valid token, refresh, delete.

No typer or rich here: the CLI calls these and renders; a library user can too. Refreshing is
single-flight across processes: take the token's lock, read the secrets again, refresh only
if still due, save the new secrets (the rotated refresh token first of all), then hand out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from oauthtok import oauth
from oauthtok.errors import (
    AuthorizationFailed,
    OauthtokError,
    ReauthorizationRequired,
    UsageError,
    command,
)
from oauthtok.fastpath import DEFAULT_MIN_VALID
from oauthtok.loopback import LoopbackListener
from oauthtok.models import Endpoints, Service, TokenRecord, TokenSet
from oauthtok.services import resolve_endpoints, resolve_params
from oauthtok.store import TokenStore, new_token_id, validate_name

if TYPE_CHECKING:
    import httpx

DEFAULT_AUTH_TIMEOUT = 300.0
FLOWS = ("browser", "paste", "device", "client-credentials")


class SignInUI(Protocol):
    """What a sign-in shows the person; the CLI implements it."""

    def authorization_url(self, url: str, paste: Callable[[str], bool] | None) -> None:
        """Show (and, without `paste`, open) the URL. With `paste`, the person may paste the
        redirect URL: `paste(text)` is True when it was accepted."""

    def device_code(self, device: oauth.DeviceAuthorization) -> None:
        """Show the verification URI and the user code."""

    def notice(self, message: str) -> None:
        """A message, e.g. which flow is used instead of the browser."""


@dataclass(frozen=True)
class NewToken:
    """What `create` needs; `client_secret` is None for a public client."""

    name: str
    service: Service
    client_id: str
    client_secret: str | None
    scopes: tuple[str, ...]
    params: dict[str, str]
    public: bool = False
    flow: str = "browser"

    def __repr__(self) -> str:
        return f"NewToken(name={self.name!r}, service={self.service.name!r})"


@dataclass(frozen=True)
class RefreshOutcome:
    record: TokenRecord
    tokens: TokenSet
    refreshed: bool


@dataclass(frozen=True)
class DeleteOutcome:
    record: TokenRecord
    revoked: bool
    warning: str | None = None


def redirect_query(text: str) -> str:
    """The query string of a pasted redirect URL (or of a pasted query string)."""
    text = text.strip()
    if "?" in text:
        return urlsplit(text).query
    return text.split("#", 1)[0]


def choose_flow(requested: str, endpoints: Endpoints, browser_available: bool, ui: SignInUI) -> str:
    """The flow to use: the requested one, or a fallback that can work here (said so)."""
    if requested not in FLOWS:
        raise UsageError(f"--flow must be one of {', '.join(FLOWS)}")
    has_device = bool(endpoints.device_authorization_url)
    if requested in ("browser", "paste") and not endpoints.authorize_url:
        if not has_device:
            raise UsageError("this service has no authorization endpoint; use --flow device")
        ui.notice("This service has no browser sign-in: using the device code flow.")
        return "device"
    if requested == "device" and not has_device:
        raise UsageError("this service has no device authorization endpoint; use --flow paste")
    if requested == "browser" and not browser_available:
        fallback = "device" if has_device else "paste"
        how = (
            "enter a code on any device's browser"
            if fallback == "device"
            else "open the URL in any browser, then paste the address it was sent to"
        )
        ui.notice(f"No browser can be opened here (SSH session or no display): {how}.")
        return fallback
    return requested


class Oauthtok:
    """The application: a store, and a way to make HTTP clients."""

    def __init__(
        self,
        store: TokenStore | None = None,
        http_client: Callable[[], httpx.Client] = oauth.new_http_client,
    ) -> None:
        self.store = store or TokenStore()
        self._http_client = http_client

    # -- signing in -------------------------------------------------------------------------
    def check_new_name(self, name: str) -> None:
        """Refuse a bad or taken name before any browser opens."""
        validate_name(name)
        existing = self.store.find(name)
        if existing is not None:
            raise UsageError(
                f"a token named {existing.name!r} exists already; choose another name, or "
                f"`{command('reauthorize', existing.name)}`"
            )

    def create(
        self,
        new: NewToken,
        ui: SignInUI,
        timeout: float = DEFAULT_AUTH_TIMEOUT,
        browser_available: bool = True,
    ) -> TokenRecord:
        self.check_new_name(new.name)
        if not new.client_id.strip():
            raise UsageError("the client id may not be empty")
        params = resolve_params(new.service, new.params)
        token_auth = "none" if new.public else new.service.token_auth
        if token_auth != "none" and not new.client_secret:
            raise UsageError("a client secret is needed (or use --public for a public client)")
        if new.flow == "client-credentials" and new.public:
            raise UsageError("the client credentials flow needs a client secret, not --public")
        auth = oauth.ClientAuth(
            new.client_id, None if new.public else new.client_secret, token_auth
        )
        with self._http_client() as client:
            endpoints = resolve_endpoints(new.service, params, client)
            flow = choose_flow(new.flow, endpoints, browser_available, ui)
            grant = self._sign_in(
                client, flow, endpoints, auth, new.scopes, new.service.redirect_uri,
                new.service.authorize_params, ui, timeout,
            )  # fmt: skip
        now = time.time()
        record = TokenRecord(
            id=new_token_id(),
            name=new.name,
            service=new.service.name,
            client_id=new.client_id,
            endpoints=endpoints,
            token_auth=token_auth,
            redirect_uri=new.service.redirect_uri,
            scopes=new.scopes,
            granted_scopes=grant.scopes,
            params=params,
            authorize_params=dict(new.service.authorize_params),
            created_at=now,
            refreshed_at=now,
            expires_at=grant.tokens.expires_at,
            has_refresh_token=grant.tokens.refresh_token is not None,
            flow=flow,
        )
        return self.store.add(record, grant.tokens)

    def reauthorize(
        self,
        name: str,
        ui: SignInUI,
        timeout: float = DEFAULT_AUTH_TIMEOUT,
        client_secret: str | None = None,
        flow: str | None = None,
        browser_available: bool = True,
    ) -> TokenRecord:
        """Consent again with the stored service, client and scopes; replace only on success."""
        record = self.store.get(name)
        secret = client_secret
        if secret is None and record.token_auth != "none":
            try:
                secret = self.store.read_tokens(record).client_secret
            except ReauthorizationRequired:
                secret = None
            if not secret:
                raise UsageError(
                    f"the client secret of {record.name!r} is not in the keyring; give it with "
                    "--client-secret-stdin or OAUTHTOK_CLIENT_SECRET"
                )
        auth = oauth.ClientAuth(record.client_id, secret, record.token_auth)
        chosen = choose_flow(flow or record.flow, record.endpoints, browser_available, ui)
        with self._http_client() as client:
            grant = self._sign_in(
                client, chosen, record.endpoints, auth, record.scopes, record.redirect_uri,
                record.authorize_params, ui, timeout,
            )  # fmt: skip
        tokens = grant.tokens
        if tokens.client_secret is None and secret is not None:
            tokens = tokens.evolve(client_secret=secret)
        return self.store.save_tokens(
            record,
            tokens,
            granted_scopes=grant.scopes,
            refreshed_at=time.time(),
            expires_at=tokens.expires_at,
            has_refresh_token=tokens.refresh_token is not None,
            needs_reauth=False,
            flow=chosen,
        )

    def _sign_in(
        self,
        client: httpx.Client,
        flow: str,
        endpoints: Endpoints,
        auth: oauth.ClientAuth,
        scopes: tuple[str, ...],
        redirect_uri: str,
        authorize_params: dict[str, str],
        ui: SignInUI,
        timeout: float,
    ) -> oauth.Grant:
        if flow == "client-credentials":
            return oauth.client_credentials(client, endpoints, auth, scopes=scopes)
        if flow == "device":
            device = oauth.start_device_authorization(client, endpoints, auth, scopes=scopes)
            ui.device_code(device)
            return oauth.poll_device_token(client, endpoints, auth, device, timeout=timeout)
        with LoopbackListener(redirect_uri) as listener:
            request = oauth.start_authorization(
                endpoints, auth.client_id, scopes, listener.redirect_uri, authorize_params
            )
            listener.state = request.state

            def paste(text: str) -> bool:
                return listener.offer(redirect_query(text)) is not None

            ui.authorization_url(request.url, paste if flow == "paste" else None)
            callback = listener.wait(timeout)
        if callback.error:
            detail = oauth.describe_error(
                {"error": callback.error, "error_description": callback.error_description}
            )
            raise AuthorizationFailed(f"authorization failed: {detail}", oauth_error=callback.error)
        assert callback.code is not None
        return oauth.exchange_code(client, endpoints, auth, code=callback.code, request=request)

    # -- handing out and refreshing ---------------------------------------------------------
    def valid_token(self, name: str, min_valid: float = DEFAULT_MIN_VALID) -> RefreshOutcome:
        """A token valid for at least `min_valid` seconds, refreshed first when needed."""
        record = self.store.get(name)
        tokens = self.store.read_tokens(record)
        if not tokens.expires_within(min_valid):
            return RefreshOutcome(record, tokens, refreshed=False)
        return self.refresh(record, min_valid=min_valid)

    def refresh(
        self, record: TokenRecord, *, force: bool = False, min_valid: float = DEFAULT_MIN_VALID
    ) -> RefreshOutcome:
        with self.store.token_lock(record):
            # another process may have refreshed while we waited for the lock
            record = self.store.get_by_id(record.id, record.name)
            tokens = self.store.read_tokens(record)
            if not force and not tokens.expires_within(min_valid):
                return RefreshOutcome(record, tokens, refreshed=False)
            app_only = record.flow == "client-credentials"
            if not tokens.refresh_token and not app_only:
                raise ReauthorizationRequired(
                    f"token {record.name!r} is due for refresh but has no refresh token (for "
                    "Microsoft ask for offline_access); run "
                    f"`{command('reauthorize', record.name)}`"
                )
            auth = oauth.ClientAuth(record.client_id, tokens.client_secret, record.token_auth)
            try:
                with self._http_client() as client:
                    if app_only:
                        grant = oauth.client_credentials(
                            client, record.endpoints, auth, scopes=record.scopes,
                            name=record.name, during="refresh",
                        )  # fmt: skip
                    else:
                        assert tokens.refresh_token is not None
                        grant = oauth.refresh(
                            client, record.endpoints, auth, refresh_token=tokens.refresh_token,
                            scopes=record.scopes, name=record.name,
                        )  # fmt: skip
            except ReauthorizationRequired:
                self.store.update(record, needs_reauth=True)
                raise
            new = grant.tokens.evolve(
                # a reply without a refresh token keeps the old one (RFC 6749 §6)
                refresh_token=grant.tokens.refresh_token or tokens.refresh_token,
                client_secret=tokens.client_secret,
                id_token=grant.tokens.id_token or tokens.id_token,
            )
            record = self.store.save_tokens(
                record,
                new,
                expires_at=new.expires_at,
                refreshed_at=time.time(),
                has_refresh_token=new.refresh_token is not None,
                needs_reauth=False,
                granted_scopes=grant.scopes or record.granted_scopes,
            )
            return RefreshOutcome(record, new, refreshed=True)

    # -- deleting ---------------------------------------------------------------------------
    def delete(self, name: str, *, revoke: bool = True) -> DeleteOutcome:
        """Revoke the grant at the provider when it can (RFC 7009), then delete locally.

        A failed revocation never blocks the local delete; it comes back as a warning.
        """
        record = self.store.get(name)
        revoked, warning = False, None
        if revoke and record.endpoints.revocation_url:
            try:
                tokens = self.store.read_tokens(record)
                auth = oauth.ClientAuth(record.client_id, tokens.client_secret, record.token_auth)
                with self._http_client() as client:
                    # the refresh token first: revoking it ends the whole grant
                    if tokens.refresh_token:
                        oauth.revoke(
                            client, record.endpoints, auth, token=tokens.refresh_token,
                            hint="refresh_token",
                        )  # fmt: skip
                    oauth.revoke(
                        client, record.endpoints, auth, token=tokens.access_token,
                        hint="access_token",
                    )  # fmt: skip
                revoked = True
            except OauthtokError as exc:
                warning = (
                    f"could not revoke {record.name!r} at the provider ({exc}); the grant may "
                    "still be live: revoke the app's access in your account settings"
                )
        self.store.delete(record.name)
        return DeleteOutcome(record, revoked, warning)
