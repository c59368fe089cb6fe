"""The use cases: create, reauthorize, hand out a valid token, refresh, delete.

`TokenManager` ties the store, the catalog and the protocol together and words every outcome
for the person: the protocol (`oauth`) raises neutral errors carrying the provider's fields,
and this module decides what they mean (a rejected grant needs a new consent, exit 4; a passing
failure changes nothing, exit 6; a refused sign-in, exit 5) and what to do next.

Refreshing is single-flight across processes: take the token's lock, read the secrets again,
refresh only if still due, save the new secrets (the rotated refresh token first of all), then
hand out. No typer or rich here: a library user can call these too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from oauthtok import collector, contract, grants, oauth, scopes
from oauthtok.account import account_of, from_id_token
from oauthtok.errors import (
    AuthorizationFailed,
    MetadataNotSaved,
    OauthtokError,
    ProviderError,
    ReauthorizationRequired,
    StoreError,
    UsageError,
    command,
)
from oauthtok.models import (
    DEFAULT_AUTH_TIMEOUT,
    Endpoints,
    Flow,
    TokenAuth,
    TokenRecord,
    TokenSet,
)
from oauthtok.sanitize import terminal_text
from oauthtok.store import TokenStore, new_token_id, validate_name

if TYPE_CHECKING:
    import httpx

    from oauthtok.catalog import Service
    from oauthtok.client_cert import ClientCertificate


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
    flow: Flow = Flow.BROWSER
    #: authenticate with this key and certificate (private_key_jwt) instead of a secret
    certificate: ClientCertificate | None = None
    #: when the client secret expires (Unix time), as the person says (`--secret-expires`)
    secret_expires_at: int | None = None

    def __repr__(self) -> str:
        return f"NewToken(name={self.name!r}, service={self.service.name!r})"


@dataclass(frozen=True)
class RefreshOutcome:
    record: TokenRecord
    tokens: TokenSet
    refreshed: bool
    #: something the person should know (said once per token and --min-valid)
    warning: str | None = None


@dataclass(frozen=True)
class RefreshReport:
    """One token's line in `refresh NAME… | --all`."""

    record: TokenRecord
    outcome: RefreshOutcome | None = None
    error: OauthtokError | None = None
    #: nothing to do: the token does not expire and has no refresh token
    skipped: bool = False


@dataclass(frozen=True)
class DeleteOutcome:
    record: TokenRecord
    revoked: bool
    warning: str | None = None


def browser_available() -> bool:
    """False where a browser cannot be opened: an SSH session, or no display on Linux."""
    if os.environ.get("BROWSER"):
        return True
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def redirect_query(text: str) -> str:
    """The query string of a pasted redirect URL (or of a pasted query string)."""
    text = text.strip()
    if "?" in text:
        return urlsplit(text).query
    return text.split("#", 1)[0]


def choose_flow(
    requested: Flow,
    endpoints: Endpoints,
    browser_ok: bool,
    ui: SignInUI,
    headless: Flow | None = None,
) -> Flow:
    """The flow to use: the requested one, or a fallback that can work here (said so).

    Without a browser, the catalog's `headless_flow` wins; otherwise device where the service
    has a device endpoint, else paste.
    """
    has_device = bool(endpoints.device_authorization_url)
    if requested in (Flow.BROWSER, Flow.PASTE) and not endpoints.authorize_url:
        if not has_device:
            raise UsageError("this service has no authorization endpoint; use --flow device")
        ui.notice("This service has no browser sign-in: using the device code flow.")
        return Flow.DEVICE
    if requested == Flow.DEVICE and not has_device:
        raise UsageError("this service has no device authorization endpoint; use --flow paste")
    if requested == Flow.BROWSER and not browser_ok:
        fallback = headless or (Flow.DEVICE if has_device else Flow.PASTE)
        if fallback == Flow.DEVICE and not has_device:
            fallback = Flow.PASTE
        how = (
            "enter a code on any device's browser"
            if fallback == Flow.DEVICE
            else "open the URL in any browser, then paste the address it was sent to"
        )
        ui.notice(f"No browser can be opened here (SSH session or no display): {how}.")
        return fallback
    return requested


def issuer_check(endpoints: Endpoints) -> Callable[[Mapping[str, str]], None]:
    """The mix-up defence (RFC 9207, RFC 9700 §4.4): an authorization response that says it
    comes from another issuer than the one this sign-in talks to is refused before its code
    is sent anywhere; so is one without `iss` when the server promised to always send it."""

    def check(params: Mapping[str, str]) -> None:
        iss = params.get("iss")
        expected = endpoints.issuer or "(not known)"
        if iss is None:
            if endpoints.iss_required:
                raise AuthorizationFailed(
                    f"the sign-in answer names no issuer, though {expected} always sends one "
                    "(RFC 9207): refusing it; nothing was saved"
                )
            return
        if iss == endpoints.issuer:
            return
        if endpoints.issuer_pattern and re.fullmatch(endpoints.issuer_pattern, iss):
            return
        if endpoints.issuer is None and not endpoints.issuer_pattern:
            return  # nothing to compare with: the catalog names no issuer for this service
        raise AuthorizationFailed(
            f"the sign-in answer comes from issuer {terminal_text(iss)!r}, not from "
            f"{expected!r} (a mix-up attack? RFC 9207): refusing it; nothing was saved"
        )

    return check


# -- wording what the provider said -------------------------------------------------------------


def _hint(service: Service | None, exc: oauth.OAuthError, auth: TokenAuth, name: str) -> str:
    """The catalog's advice for this error (`error_hints`), if any. A key matches the error
    code or a whole word of the description (`AADSTS50011`); a `KEY/public` variant replaces
    the advice for public clients (never suggest --public to someone who used it)."""
    if service is None:
        return ""
    text = f"{exc.error} {exc.description or ''}"
    for key, hint in service.error_hints.items():
        if "/" in key:
            continue
        if exc.error == key or re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![0-9])", text):
            if auth == TokenAuth.NONE:
                hint = service.error_hints.get(f"{key}/public", hint)
            return " — " + hint.replace("{name}", shlex.quote(name))
    return ""


def _issuer(service: Service, params: dict[str, str]) -> str | None:
    """The service's issuer, for finding its userinfo endpoint (None: it has none)."""
    try:
        from oauthtok.catalog import resolve_issuer

        return resolve_issuer(service, params)
    except OauthtokError:
        return None


def catalog_service(name: str) -> Service | None:
    """The catalog entry a stored token came from, for wording and advice (never required)."""
    try:
        from oauthtok.catalog import load_catalog

        return load_catalog().get(name)
    except OauthtokError:
        return None


def sign_in_failure(
    exc: oauth.OAuthError, what: str, service: Service | None, auth: TokenAuth, name: str
) -> AuthorizationFailed:
    detail = f"{exc}{_hint(service, exc, auth, name)}"
    hint = ""
    if exc.error in ("invalid_client", "incorrect_client_credentials", "unauthorized_client"):
        hint = (
            "; check the client id and secret"
            f" (`{command('reauthorize', name)} --client-secret-stdin` for a stored token)"
            if auth != TokenAuth.NONE
            else "; check the client id"
        )
        if auth == TokenAuth.PRIVATE_KEY_JWT:
            hint = "; check the client id and that the certificate is uploaded to the app"
    elif exc.error == "http_404" and what == "the device authorization":
        hint = "; the service has no device flow here: use --flow paste"
    return AuthorizationFailed(f"the provider refused {what}: {detail}{hint}")


def renewal_failure(
    exc: oauth.OAuthError, record: TokenRecord, service: Service | None
) -> OauthtokError:
    detail = f"{exc}{_hint(service, exc, record.token_auth, record.name)}"
    fix = f"`{command('reauthorize', record.name)}`"
    if exc.rejected:
        secret = exc.error in ("invalid_client", "incorrect_client_credentials")
        extra = " --client-secret-stdin" if secret and record.token_auth != TokenAuth.NONE else ""
        if extra:
            fix = f"`{command('reauthorize', record.name)}{extra}` (the client secret changed?)"
        if secret and record.token_auth == TokenAuth.PRIVATE_KEY_JWT:
            fix = (f"`{command('reauthorize', record.name)} --client-certificate FILE` (the "
                   "certificate expired or was removed from the app?)")  # fmt: skip
        return ReauthorizationRequired(
            f"the provider rejected the renewal of {record.name!r} ({detail}); run {fix}"
        )
    return ProviderError(
        f"the provider failed to renew {record.name!r} ({detail}); retry later, "
        "the stored tokens are unchanged"
    )


def client_auth(record: TokenRecord, tokens: TokenSet) -> oauth.ClientAuth:
    """How a stored token's client authenticates: its secret, or (private_key_jwt) the key and
    certificate kept with its secrets."""
    certificate = None
    if record.token_auth == TokenAuth.PRIVATE_KEY_JWT:
        certificate = stored_certificate(record, tokens)
    return oauth.ClientAuth(record.client_id, tokens.client_secret, record.token_auth, certificate)


class ConsentSuperseded(OauthtokError):
    """The token was renewed (or given another credential) while a background consent was
    pending: that consent is not stored (and its grant was revoked)."""


def _secret_method(record: TokenRecord, service: Service | None) -> TokenAuth:
    """How a client that used a certificate sends a secret instead: as its catalog entry says,
    else HTTP Basic (which RFC 6749 §2.3.1 has every server support)."""
    if service is None or service.token_auth == TokenAuth.NONE:
        return TokenAuth.CLIENT_SECRET_BASIC
    if service.token_auth == TokenAuth.PRIVATE_KEY_JWT:
        raise UsageError(f"service {record.service!r} takes a certificate, not a secret: give "
                         "--client-certificate FILE")  # fmt: skip
    return service.token_auth


def stored_certificate(record: TokenRecord, tokens: TokenSet) -> ClientCertificate | None:
    """The key and certificate kept with a token's secrets, if any."""
    if not tokens.client_certificate:
        return None
    from oauthtok import client_cert

    where = f"the keyring entry of {record.name!r}"
    return client_cert.parse(tokens.client_certificate, where=where, stored=True)


def credential_expiry(certificate: ClientCertificate | None, given: int | None) -> int | None:
    """When the client's credential expires: the date given, else the certificate's notAfter."""
    if given is not None:
        return given
    return certificate.not_after if certificate is not None else None


class TokenManager:
    """The application: a store, and a way to make HTTP clients."""

    def __init__(
        self,
        store: TokenStore | None = None,
        http_client: Callable[[], httpx.Client] = oauth.new_http_client,
    ) -> None:
        self.store = store or TokenStore()
        self._http_client = http_client

    def http_client(self) -> httpx.Client:
        """A new HTTP client (close it), as this manager makes them."""
        return self._http_client()

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
        browser_ok: bool = True,
    ) -> TokenRecord:
        self.check_new_name(new.name)
        if not new.client_id.strip():
            raise UsageError("the client id may not be empty")
        from oauthtok.catalog import endpoint_notice, resolve_endpoints, resolve_params

        params = resolve_params(new.service, new.params)
        token_auth = TokenAuth.NONE if new.public else new.service.token_auth
        if new.certificate is not None and not new.public:
            token_auth = TokenAuth.PRIVATE_KEY_JWT
        if token_auth == TokenAuth.PRIVATE_KEY_JWT and new.certificate is None:
            raise UsageError(f"service {new.service.name!r} needs --client-certificate FILE")
        if token_auth not in (TokenAuth.NONE, TokenAuth.PRIVATE_KEY_JWT) and not new.client_secret:
            raise UsageError("a client secret is needed (or use --public for a public client)")
        if new.flow == Flow.CLIENT_CREDENTIALS and new.public:
            raise UsageError("the client credentials flow needs a client secret, not --public")
        self.store.check_available()  # before any consent whose tokens could not be kept
        auth = oauth.ClientAuth(new.client_id, new.client_secret if not new.public else None,
                                token_auth, new.certificate)  # fmt: skip
        notice = endpoint_notice(new.service, params)
        if notice:
            ui.notice(notice)
        with self._http_client() as client:
            endpoints = resolve_endpoints(new.service, params, client)
            flow = choose_flow(new.flow, endpoints, browser_ok, ui, new.service.headless_flow)
            grant = self._sign_in(
                client, flow, endpoints, auth, new.scopes, new.service.redirect_uri,
                new.service.authorize_params, ui, timeout, new.service, new.name,
            )  # fmt: skip
            now = time.time()
            issuer = _issuer(new.service, params)
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
                missing_scopes=self._missing(new.service, new.scopes, grant),
                params=params,
                authorize_params=dict(new.service.authorize_params),
                created_at=now,
                refreshed_at=now,
                expires_at=grant.tokens.expires_at,
                has_refresh_token=grant.tokens.refresh_token is not None,
                flow=flow,
                expiry_note=grant.expiry_note,
                secret_expires_at=credential_expiry(new.certificate, new.secret_expires_at),
                account=account_of(client, grant, new.scopes, issuer),
                lapse_rules=grants.rules_snapshot(new.service, params),
                **grants.after_grant(grant, now),
            )
            tokens = grant.tokens
            if new.certificate is not None:
                tokens = tokens.evolve(client_certificate=new.certificate.to_secret())
            try:
                return self.store.add(record, tokens)
            except BaseException:
                # the tokens cannot be kept (a name taken meanwhile, the store failed, Ctrl-C):
                # do not leave a live grant behind at the provider
                self._revoke_quietly(client, endpoints, auth, grant.tokens)
                raise

    @staticmethod
    def _missing(
        service: Service | None, asked: Sequence[str], grant: oauth.Grant
    ) -> tuple[str, ...]:
        return scopes.missing_scopes(
            service,
            asked,
            grant.scopes,
            got_refresh_token=grant.tokens.refresh_token is not None,
            got_id_token=grant.tokens.id_token is not None,
        )

    def reauthorize(
        self,
        name: str,
        ui: SignInUI,
        timeout: float = DEFAULT_AUTH_TIMEOUT,
        client_secret: str | None = None,
        flow: Flow | None = None,
        browser_ok: bool = True,
        new_scopes: tuple[str, ...] | None = None,
        certificate: ClientCertificate | None = None,
        secret_expires_at: int | None = None,
    ) -> TokenRecord:
        """Consent again with the stored service and client (and the stored scopes, or
        `new_scopes`); the old tokens are replaced only on success. A `certificate` replaces
        the client's credential (and switches it to private_key_jwt); `secret_expires_at`
        records when the credential expires (a new certificate's notAfter by default; for
        another secret, unknown unless given)."""
        record = self.store.get(name)
        service = catalog_service(record.service)
        method = record.token_auth
        if certificate is not None:
            method = TokenAuth.PRIVATE_KEY_JWT
        elif method == TokenAuth.PRIVATE_KEY_JWT and client_secret is not None:
            method = _secret_method(record, service)  # from the certificate back to a secret
        if method == TokenAuth.PRIVATE_KEY_JWT:
            if client_secret is not None:
                raise UsageError(f"{record.name!r} authenticates with a certificate, not a "
                                 "secret: give --client-certificate FILE")  # fmt: skip
            secret = None
            new_certificate, certificate = (
                certificate,
                certificate or self.stored_client_certificate(record),
            )
        else:
            secret = self.client_secret_for(record, client_secret)
            new_certificate = None
        replaced = method != record.token_auth
        if not replaced and client_secret is not None and method != TokenAuth.PRIVATE_KEY_JWT:
            # another secret than the stored one (or none readable: a keyring reset, a corrupt
            # entry): the stored one's expiry is not the new one's
            try:
                replaced = self.store.read_tokens(record).client_secret != client_secret
            except (ReauthorizationRequired, StoreError):
                replaced = True
        asked = record.scopes if new_scopes is None else new_scopes
        if not asked:
            raise UsageError("no scopes left to ask for")
        if service is not None:
            from oauthtok.catalog import endpoint_notice

            notice = endpoint_notice(service, record.params)
            if notice:
                ui.notice(notice)
        auth = oauth.ClientAuth(record.client_id, secret, method, certificate)
        headless = service.headless_flow if service else None
        chosen = choose_flow(flow or record.flow, record.endpoints, browser_ok, ui, headless)
        with self._http_client() as client:
            grant = self._sign_in(
                client, chosen, record.endpoints, auth, asked, record.redirect_uri,
                record.authorize_params, ui, timeout, service, record.name,
            )  # fmt: skip
            return self.save_consent(
                client, record, grant, secret, asked, service, chosen, auth, method=method,
                certificate=certificate,
                secret_expires_at=credential_expiry(new_certificate, secret_expires_at),
                credential_replaced=replaced,
            )  # fmt: skip

    def client_secret_for(self, record: TokenRecord, given: str | None) -> str | None:
        """The client secret for a new consent: `given`, else the stored one (None for a
        public client or a certificate). UsageError when a confidential client's secret is
        nowhere."""
        secret = given
        if secret is None and record.token_auth not in (TokenAuth.NONE, TokenAuth.PRIVATE_KEY_JWT):
            try:
                secret = self.store.read_tokens(record).client_secret
            except ReauthorizationRequired:
                secret = None
            if not secret:
                raise UsageError(
                    f"the client secret of {record.name!r} is not in the secret store; give it "
                    "with --client-secret-stdin or OAUTHTOK_CLIENT_SECRET"
                )
        return secret

    def save_consent(
        self,
        client: httpx.Client,
        record: TokenRecord,
        grant: oauth.Grant,
        secret: str | None,
        asked: tuple[str, ...],
        service: Service | None,
        flow: Flow,
        auth: oauth.ClientAuth,
        *,
        method: TokenAuth | None = None,
        certificate: ClientCertificate | None = None,
        secret_expires_at: int | None = None,
        credential_replaced: bool = False,
        renewed_after: float | None = None,
    ) -> TokenRecord:
        """Store the tokens of a new consent for an existing token (reauthorize, in the
        foreground or by the background device wait). `method` and `certificate` change the
        client's credential; `secret_expires_at` records when it expires (None: as before,
        unless the `credential_replaced` one's expiry no longer applies).

        Written under the token's refresh lock, from its record as it is then: a refresh that
        was writing finishes first and cannot put the old credential back afterwards. With
        `renewed_after` (when the background wait began), a token renewed or given another
        credential since then is left as it is (ConsentSuperseded). A new grant that is not
        kept is revoked (`auth`: how the client authenticated the consent): nothing live is
        left behind at the provider."""
        method = method or record.token_auth
        stored: bool | None = None  # whether the store holds the new grant, once it may
        try:
            issuer = _issuer(service, record.params) if service else None
            account = account_of(client, grant, asked, issuer)
            with self.store.token_lock(record):
                try:
                    current = self.store.get_by_id(record.id, record.name)
                    if renewed_after is not None and (
                        (current.obtained_at or 0) > renewed_after
                        or current.token_auth != record.token_auth
                    ):
                        raise ConsentSuperseded(f"{record.name!r} was renewed meanwhile")
                    tokens = grant.tokens.evolve(client_secret=grant.tokens.client_secret or secret)
                    if method == TokenAuth.PRIVATE_KEY_JWT:  # the key stays with the secrets
                        kept = certificate or self.stored_client_certificate(current)
                        tokens = tokens.evolve(
                            client_certificate=kept.to_secret(), client_secret=None
                        )
                    now = time.time()
                    return self.store.save_tokens(
                        current,
                        tokens,
                        interim=self._interim(current, method, tokens),
                        scopes=asked,
                        granted_scopes=grant.scopes,
                        missing_scopes=self._missing(service, asked, grant),
                        refreshed_at=now,
                        expires_at=tokens.expires_at,
                        has_refresh_token=tokens.refresh_token is not None,
                        flow=flow,
                        account=account or current.account,
                        lapse_rules=grants.rules_snapshot(service, current.params)
                        if service is not None
                        else current.lapse_rules,
                        expiry_note=grant.expiry_note,
                        token_auth=method,
                        secret_expires_at=current.secret_expires_at
                        if secret_expires_at is None and not credential_replaced
                        else secret_expires_at,
                        **grants.after_grant(grant, now),  # needs_reauth=False, no last error
                    )
                except MetadataNotSaved:
                    stored = True  # the new tokens are in the secret store: the grant is kept
                    raise
                except BaseException:
                    # decided under the lock: a refresh afterwards would change what it reads
                    stored = not self._not_stored(record, grant.tokens)
                    raise
        except BaseException as exc:
            if stored:
                raise
            # (None: it failed before anything could be written)
            revoked = self._revoke_quietly(client, record.endpoints, auth, grant.tokens)
            if isinstance(exc, OauthtokError) and not isinstance(exc, ConsentSuperseded):
                fate = "revoked at the provider" if revoked else "not kept"
                exc.message = f"{exc.message}; the sign-in that succeeded was {fate}"
            raise

    def _interim(
        self, current: TokenRecord, method: TokenAuth, tokens: TokenSet
    ) -> TokenSet | None:
        """What the secret store holds while a credential switch is written (`save_tokens`):
        the new tokens with the old credential too. None when the credential keeps its kind,
        or the old secrets cannot be read (a keyring reset): then there is nothing to keep."""
        if method == current.token_auth:
            return None
        try:
            old = self.store.read_tokens(current)
        except (ReauthorizationRequired, StoreError):
            return None
        return tokens.evolve(
            client_secret=tokens.client_secret or old.client_secret,
            client_certificate=tokens.client_certificate or old.client_certificate,
        )

    def _not_stored(self, record: TokenRecord, tokens: TokenSet) -> bool:
        """True when the secret store is known not to hold `tokens` (a save that failed or was
        interrupted before or while writing them, a token deleted meanwhile); False when it
        does, or cannot say (an unreachable or unreadable store)."""
        try:
            return self.store.read_tokens(record).access_token != tokens.access_token
        except ReauthorizationRequired:
            return True  # no entry at all
        except BaseException:
            return False  # unknown: a grant left live beats revoking the stored one

    def stored_client_certificate(self, record: TokenRecord) -> ClientCertificate:
        """The key and certificate kept with a private_key_jwt token's secrets."""
        try:
            certificate = stored_certificate(record, self.store.read_tokens(record))
        except ReauthorizationRequired:
            certificate = None
        if certificate is None:
            raise UsageError(
                f"the client certificate of {record.name!r} is not in the keyring; give it with "
                "--client-certificate FILE"
            )
        return certificate

    def _sign_in(
        self,
        client: httpx.Client,
        flow: Flow,
        endpoints: Endpoints,
        auth: oauth.ClientAuth,
        asked: tuple[str, ...],
        redirect_uri: str,
        authorize_params: dict[str, str],
        ui: SignInUI,
        timeout: float,
        service: Service | None,
        name: str,
    ) -> oauth.Grant:
        what = "the authorization code"
        try:
            if flow == Flow.CLIENT_CREDENTIALS:
                what = "the client credentials"
                return oauth.client_credentials(client, endpoints, auth, scopes=asked)
            if flow == Flow.DEVICE:
                what = "the device authorization"
                device = oauth.start_device_authorization(client, endpoints, auth, scopes=asked)
                ui.device_code(device)
                what = "the device sign-in"
                collector.waiting()
                try:
                    return oauth.poll_device_token(client, endpoints, auth, device, timeout=timeout)
                except oauth.DeviceCodeExpired:
                    raise AuthorizationFailed(
                        "the code was not approved in time; run the command again "
                        "(or raise --timeout)"
                    ) from None
            return self._code_flow(
                client, flow, endpoints, auth, asked, redirect_uri, authorize_params, ui, timeout
            )
        except oauth.OAuthError as exc:
            if exc.error == "access_denied":
                raise AuthorizationFailed(f"the sign-in was denied ({exc})") from None
            if exc.error == "expired_token":
                raise AuthorizationFailed(
                    "the code expired before it was approved; run the command again"
                ) from None
            raise sign_in_failure(exc, what, service, auth.method, name) from None
        except ProviderError as exc:
            raise ProviderError(f"{exc}; nothing was saved") from None

    def _code_flow(
        self,
        client: httpx.Client,
        flow: Flow,
        endpoints: Endpoints,
        auth: oauth.ClientAuth,
        asked: tuple[str, ...],
        redirect_uri: str,
        authorize_params: dict[str, str],
        ui: SignInUI,
        timeout: float,
    ) -> oauth.Grant:
        from oauthtok.loopback import LoopbackListener

        with LoopbackListener(redirect_uri, check=issuer_check(endpoints)) as listener:
            request = oauth.start_authorization(
                endpoints, auth.client_id, asked, listener.redirect_uri, authorize_params
            )
            listener.state = request.state

            def paste(text: str) -> bool:
                return listener.offer(redirect_query(text)) is not None

            ui.authorization_url(request.url, paste if flow == Flow.PASTE else None)
            collector.waiting()
            callback = listener.wait(timeout)
        if callback.error:
            raise oauth.OAuthError(callback.error, callback.error_description)
        assert callback.code is not None
        return oauth.exchange_code(client, endpoints, auth, code=callback.code, request=request)

    # -- handing out and refreshing ---------------------------------------------------------
    def valid_token(
        self, name: str, min_valid: float = contract.DEFAULT_MIN_VALID
    ) -> RefreshOutcome:
        """A token valid for at least `min_valid` seconds, refreshed first when needed."""
        record = self.store.get(name)
        tokens = self.store.read_tokens(record)
        if not contract.is_due(tokens.expires_at, min_valid, time.time()):
            return RefreshOutcome(record, tokens, refreshed=False)
        return self.refresh(record, min_valid=min_valid)

    def refresh(
        self,
        record: TokenRecord,
        *,
        force: bool = False,
        min_valid: float = contract.DEFAULT_MIN_VALID,
    ) -> RefreshOutcome:
        with self.store.token_lock(record):
            # another process may have refreshed (or deleted it) while we waited for the lock
            record = self.store.get_by_id(record.id, record.name)
            tokens = self.store.read_tokens(record)
            if not force and not contract.is_due(tokens.expires_at, min_valid, time.time()):
                return RefreshOutcome(record, tokens, refreshed=False)
            app_only = record.flow == Flow.CLIENT_CREDENTIALS
            if not tokens.refresh_token and not app_only:
                raise ReauthorizationRequired(
                    f"token {record.name!r} is due for refresh but has no refresh token (for "
                    "Microsoft ask for offline_access); run "
                    f"`{command('reauthorize', record.name)}`"
                )
            auth = client_auth(record, tokens)
            try:
                with self._http_client() as client:
                    grant = self._renew(client, record, tokens, auth)
            except oauth.OAuthError as exc:
                error = renewal_failure(exc, record, catalog_service(record.service))
                permanent = isinstance(error, ReauthorizationRequired)
                self._note_failure(record, exc, permanent=permanent)
                raise error from None
            except ProviderError as exc:
                self._note_failure(record, exc, permanent=False)
                raise ProviderError(
                    f"cannot renew {record.name!r}: {exc}; retry later (nothing was changed)"
                ) from None
            with_key = record.token_auth == TokenAuth.PRIVATE_KEY_JWT
            new = grant.tokens.evolve(
                # a reply without a refresh token keeps the old one (RFC 6749 §6)
                refresh_token=grant.tokens.refresh_token or tokens.refresh_token,
                id_token=grant.tokens.id_token or tokens.id_token,
                # the client's credential, and not one left from a switch cut short
                # (`save_tokens`'s interim)
                client_secret=None if with_key else tokens.client_secret,
                client_certificate=tokens.client_certificate if with_key else None,
            )
            now = time.time()
            record = self.store.save_tokens(
                record,
                new,
                expires_at=new.expires_at,
                refreshed_at=now,
                has_refresh_token=new.refresh_token is not None,
                granted_scopes=grant.scopes or record.granted_scopes,
                expiry_note=grant.expiry_note,
                account=from_id_token(grant.tokens.id_token) or record.account,
                **grants.after_refresh(grant, now, record),  # needs_reauth=False, no last error
            )
            warning = None
            still_due = contract.is_due(new.expires_at, min_valid, time.time())
            if not force and still_due and record.min_valid_warned != min_valid:
                lifetime = int((new.expires_at or 0) - time.time())
                warning = (
                    f"--min-valid {min_valid:g} is longer than the {lifetime} s a token of "
                    f"{record.name!r} lives: every call refreshes it (said once)"
                )
                record = self.store.update(record, min_valid_warned=min_valid)
            return RefreshOutcome(record, new, refreshed=True, warning=warning)

    def _note_failure(self, record: TokenRecord, exc: Exception, *, permanent: bool) -> None:
        """Keep the reason of a failed renewal for `status` (and, when the grant was
        rejected, mark the token); the failure itself is what the caller reports."""
        changes = grants.after_failure(str(exc), time.time(), permanent=permanent)
        if permanent:
            self.store.update(record, **changes)
            return
        with contextlib.suppress(OauthtokError):  # the provider's failure is the news
            self.store.update(record, **changes)

    def _renew(
        self,
        client: httpx.Client,
        record: TokenRecord,
        tokens: TokenSet,
        auth: oauth.ClientAuth,
    ) -> oauth.Grant:
        """One renewal request. A refresh asks for the scopes that were granted, never more
        (RFC 6749 §6), and once more without `scope` when the provider says invalid_scope."""
        wanted = tuple(s for s in record.scopes if s not in record.missing_scopes)
        if record.flow == Flow.CLIENT_CREDENTIALS:
            return oauth.client_credentials(client, record.endpoints, auth, scopes=wanted)
        assert tokens.refresh_token is not None
        try:
            return oauth.refresh(
                client, record.endpoints, auth, refresh_token=tokens.refresh_token, scopes=wanted
            )
        except oauth.OAuthError as exc:
            if exc.error != "invalid_scope" or not wanted:
                raise
            return oauth.refresh(client, record.endpoints, auth, refresh_token=tokens.refresh_token)

    def refresh_many(
        self, names: Sequence[str], *, force: bool = False, min_valid: float
    ) -> Iterator[RefreshReport]:
        """`refresh NAME…` (or every token for no names): one report each, in order; a
        failure of one token never stops the others."""
        records = [self.store.get(n) for n in names] if names else self.store.records()
        for record in records:
            if record.expires_at is None and not record.renews_itself:
                yield RefreshReport(record, skipped=True)
                continue
            try:
                yield RefreshReport(record, self.refresh(record, force=force, min_valid=min_valid))
            except OauthtokError as exc:
                yield RefreshReport(record, error=exc)

    # -- deleting ---------------------------------------------------------------------------
    def delete(self, name: str, *, revoke: bool = True) -> DeleteOutcome:
        """Revoke the grant at the provider when it can (RFC 7009), then delete locally.

        A failed revocation never blocks the local delete; it comes back as a warning.
        """
        record = self.store.get(name)
        revoked, warning = False, None
        if revoke and not record.endpoints.revocation_url:
            warning = (
                f"{record.service} has no revocation endpoint: the grant stays live at the "
                "provider until you remove the app's access in your account's settings"
            )
        elif revoke:
            try:
                tokens = self.store.read_tokens(record)
                auth = client_auth(record, tokens)
                with self._http_client() as client:
                    self._revoke(client, record.endpoints, auth, tokens)
                revoked = True
            except (OauthtokError, oauth.OAuthError) as exc:
                warning = (
                    f"could not revoke {record.name!r} at the provider ({exc}); the grant may "
                    "still be live: revoke the app's access in your account settings"
                )
        with self.store.token_lock(record):  # not while a refresh of it is writing
            self.store.delete(record.name)
        return DeleteOutcome(record, revoked, warning)

    @staticmethod
    def _revoke(
        client: httpx.Client, endpoints: Endpoints, auth: oauth.ClientAuth, tokens: TokenSet
    ) -> None:
        """The refresh token first: revoking it ends the whole grant at most providers (Google
        then answers invalid_token for the access token, which is already gone: success)."""
        first = bool(tokens.refresh_token)
        if tokens.refresh_token:
            oauth.revoke(client, endpoints, auth, token=tokens.refresh_token, hint="refresh_token")
        try:
            oauth.revoke(client, endpoints, auth, token=tokens.access_token, hint="access_token")
        except oauth.OAuthError as exc:
            if not (first and exc.error == "invalid_token"):
                raise

    def _revoke_quietly(
        self, client: httpx.Client, endpoints: Endpoints, auth: oauth.ClientAuth, tokens: TokenSet
    ) -> bool:
        """Revoke a grant nobody keeps, if the provider can; True when it was."""
        if endpoints.revocation_url:
            with contextlib.suppress(Exception):
                self._revoke(client, endpoints, auth, tokens)
                return True
        return False
