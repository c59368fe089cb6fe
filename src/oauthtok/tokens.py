"""The use cases: create, reauthorize, hand out a valid token, refresh, rename, delete, list.

No typer or rich here: the CLI calls these and renders; a library user can too. Refreshing is
single-flight across processes: take the token's lock, read the secrets again, refresh only
if still due, save the new secrets (the rotated refresh token first of all), then hand out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from oauthtok import oauth
from oauthtok.errors import AuthorizationFailed, ReauthorizationRequired, UsageError
from oauthtok.loopback import LoopbackListener
from oauthtok.models import Endpoints, Service, TokenRecord, TokenSet
from oauthtok.services import resolve_endpoints, resolve_params
from oauthtok.store import TokenStore, new_token_id, validate_name

DEFAULT_MIN_VALID = 60.0
DEFAULT_AUTH_TIMEOUT = 300.0

#: called with the authorization URL once the listener is ready; the CLI prints and opens it
UrlHandler = Callable[[str], None]


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

    def __repr__(self) -> str:
        return f"NewToken(name={self.name!r}, service={self.service.name!r})"


@dataclass(frozen=True)
class RefreshOutcome:
    record: TokenRecord
    tokens: TokenSet
    refreshed: bool


class Oauthtok:
    """The application: a store, and a way to make HTTP clients."""

    def __init__(
        self,
        store: TokenStore | None = None,
        http_client: Callable[[], object] = oauth.new_http_client,
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
                f"`oauthtok reauthorize {existing.name}`"
            )

    def create(
        self, new: NewToken, on_url: UrlHandler, timeout: float = DEFAULT_AUTH_TIMEOUT
    ) -> TokenRecord:
        self.check_new_name(new.name)
        if not new.client_id.strip():
            raise UsageError("the client id may not be empty")
        params = resolve_params(new.service, new.params)
        endpoints = resolve_endpoints(new.service, params)
        token_auth = "none" if new.public else new.service.token_auth
        if token_auth != "none" and not new.client_secret:
            raise UsageError("a client secret is needed (or use --public for a public client)")
        grant = self._authorize(
            endpoints=endpoints,
            client_id=new.client_id,
            client_secret=None if new.public else new.client_secret,
            token_auth=token_auth,
            scopes=new.scopes,
            redirect_uri=new.service.redirect_uri,
            authorize_params=new.service.authorize_params,
            on_url=on_url,
            timeout=timeout,
        )
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
        )
        return self.store.add(record, grant.tokens)

    def reauthorize(
        self,
        name: str,
        on_url: UrlHandler,
        timeout: float = DEFAULT_AUTH_TIMEOUT,
        client_secret: str | None = None,
    ) -> TokenRecord:
        """Consent again with the stored service, client and scopes; replace only on success."""
        record = self.store.get(name)
        old_secret = client_secret
        if old_secret is None and record.token_auth != "none":
            try:
                old_secret = self.store.read_tokens(record).client_secret
            except ReauthorizationRequired:
                old_secret = None
            if not old_secret:
                raise UsageError(
                    f"the client secret of {record.name!r} is not in the keyring; give it with "
                    "--client-secret-stdin or OAUTHTOK_CLIENT_SECRET"
                )
        grant = self._authorize(
            endpoints=record.endpoints,
            client_id=record.client_id,
            client_secret=old_secret if record.token_auth != "none" else None,
            token_auth=record.token_auth,
            scopes=record.scopes,
            redirect_uri=record.redirect_uri,
            authorize_params=record.authorize_params,
            on_url=on_url,
            timeout=timeout,
        )
        now = time.time()
        return self.store.save_tokens(
            record,
            grant.tokens,
            granted_scopes=grant.scopes,
            refreshed_at=now,
            expires_at=grant.tokens.expires_at,
            has_refresh_token=grant.tokens.refresh_token is not None,
            needs_reauth=False,
        )

    def _authorize(
        self,
        *,
        endpoints: Endpoints,
        client_id: str,
        client_secret: str | None,
        token_auth: str,
        scopes: tuple[str, ...],
        redirect_uri: str,
        authorize_params: dict[str, str],
        on_url: UrlHandler,
        timeout: float,
    ) -> oauth.Grant:
        with LoopbackListener(redirect_uri) as listener:
            request = oauth.start_authorization(
                endpoints, client_id, scopes, listener.redirect_uri, authorize_params
            )
            listener.state = request.state
            on_url(request.url)
            callback = listener.wait(timeout)
        if callback.error:
            detail = oauth.describe_error(
                {"error": callback.error, "error_description": callback.error_description}
            )
            raise AuthorizationFailed(f"authorization failed: {detail}", oauth_error=callback.error)
        assert callback.code is not None
        with self._http_client() as client:  # type: ignore[attr-defined]
            return oauth.exchange_code(
                client,
                endpoints,
                client_id=client_id,
                client_secret=client_secret,
                token_auth=token_auth,
                code=callback.code,
                request=request,
            )

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
            if not tokens.refresh_token:
                raise ReauthorizationRequired(
                    f"token {record.name!r} is due for refresh but has no refresh token (for "
                    "Microsoft ask for offline_access); run "
                    f"`oauthtok reauthorize {record.name}`"
                )
            try:
                with self._http_client() as client:  # type: ignore[attr-defined]
                    grant = oauth.refresh(
                        client,
                        record.endpoints,
                        client_id=record.client_id,
                        client_secret=tokens.client_secret,
                        token_auth=record.token_auth,
                        refresh_token=tokens.refresh_token,
                        scopes=record.scopes,
                        name=record.name,
                    )
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
                has_refresh_token=True,
                needs_reauth=False,
                granted_scopes=grant.scopes or record.granted_scopes,
            )
            return RefreshOutcome(record, new, refreshed=True)
