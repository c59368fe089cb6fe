"""Plain data: a stored token's metadata and its secrets, and the public JSON shapes of these
and of a catalog service, `catalog.Service` (`record_json`, `service_json`: a documented
contract, see README)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum

from oauthtok.frozen import build as _build
from oauthtok.frozen import known_fields
from oauthtok.kinds import DEFAULT_AUTH_TIMEOUT, Flow, Status, TokenAuth

TYPE_CHECKING = False  # typing costs ~4 ms to import: `list` and `show` answer without it
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from oauthtok.catalog import Service  # a catalog entry (defined there: not every command
    # reads the catalog, and a 25-field dataclass costs ~2.5 ms to create)

__all__ = [
    "DEFAULT_AUTH_TIMEOUT",
    "Endpoints",
    "Flow",
    "Status",
    "TokenAuth",
    "TokenRecord",
    "TokenSet",
    "record_json",
    "service_json",
]


@dataclass(frozen=True)
class Endpoints:
    """A service's URLs with every {placeholder} filled in; kept with each token."""

    token_url: str
    authorize_url: str | None = None
    device_authorization_url: str | None = None
    revocation_url: str | None = None
    #: the authorization server's identity (RFC 8414 `issuer`): an authorization response
    #: carrying another `iss` is refused (RFC 9207)
    issuer: str | None = None
    #: a regular expression any issuer of this service matches (Microsoft's tenant ids)
    issuer_pattern: str | None = None
    #: the server said it always sends `iss` (authorization_response_iss_parameter_supported)
    iss_required: bool = False
    #: RFC 7662 token introspection (`inspect --remote`)
    introspection_url: str | None = None


@dataclass(frozen=True)
class TokenRecord:
    """What the index keeps about one token. Never a secret."""

    id: str
    name: str
    service: str
    client_id: str
    endpoints: Endpoints
    token_auth: TokenAuth
    redirect_uri: str
    scopes: tuple[str, ...]
    granted_scopes: tuple[str, ...] | None = None
    #: asked-for scopes the provider really did not grant (compared in normalized form)
    missing_scopes: tuple[str, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    authorize_params: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    refreshed_at: float | None = None
    expires_at: float | None = None
    has_refresh_token: bool = False
    needs_reauth: bool = False
    flow: Flow = Flow.BROWSER
    #: why the expiry is clamped or unknown (the provider's expires_in was not a sane number)
    expiry_note: str | None = None
    #: the --min-valid already warned about as longer than the token's lifetime
    min_valid_warned: float | None = None
    #: the catalog's refresh-token rules at the last consent: {"idle_days", "max_days"}
    lapse_rules: dict[str, float | None] | None = None
    #: when the client secret or certificate expires (Unix time): `--secret-expires`, or the
    #: certificate's notAfter
    secret_expires_at: int | None = None
    # -- the life of the grant (issue 11; records written before have the defaults) ----------
    #: who the provider says the token belongs to (id_token or userinfo), when it says
    account: str | None = None
    #: when the person last consented (create, reauthorize)
    obtained_at: float | None = None
    #: when the refresh token was last used successfully
    refresh_used_at: float | None = None
    #: when the provider last issued a new refresh token
    refresh_rotated_at: float | None = None
    #: the provider's own end of the refresh token (`refresh_token_expires_in`), when it said
    refresh_expires_at: float | None = None
    #: the last failed renewal, one line, and when
    last_error: str | None = None
    last_error_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        # field by field, not dataclasses.asdict (which deep-copies): `list --json` of 1,000
        # tokens calls this 1,000 times
        data = dict(vars(self))
        data["endpoints"] = dict(vars(self.endpoints))
        data["params"] = dict(self.params)
        data["authorize_params"] = dict(self.authorize_params)
        data["scopes"] = list(self.scopes)
        data["missing_scopes"] = list(self.missing_scopes)
        if self.granted_scopes is not None:
            data["granted_scopes"] = list(self.granted_scopes)
        data["token_auth"] = str(self.token_auth)
        data["flow"] = str(self.flow)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenRecord:
        """A stored record (`to_json()` plus its "name"). TypeError, ValueError or KeyError
        when it is not one: the same exceptions, with the same words, as `cls(**values)`."""
        known = known_fields(cls)
        if data.keys() <= known:  # as written by this version: nothing to leave out
            values = dict(data)
        else:
            values = {k: v for k, v in data.items() if k in known}
        values["endpoints"] = _build(Endpoints, data["endpoints"])
        values["scopes"] = tuple(data.get("scopes") or ())
        values["missing_scopes"] = tuple(data.get("missing_scopes") or ())
        granted = data.get("granted_scopes")
        values["granted_scopes"] = None if granted is None else tuple(granted)
        values["token_auth"] = _member(TokenAuth, _TOKEN_AUTHS, data["token_auth"])
        values["flow"] = _member(Flow, _FLOWS, data.get("flow", Flow.BROWSER))
        return _build(cls, values)

    @property
    def renews_itself(self) -> bool:
        """True when an expired access token can be renewed without a person."""
        return self.has_refresh_token or self.flow == Flow.CLIENT_CREDENTIALS

    def status(self, now: float | None = None) -> Status:
        now = time.time() if now is None else now
        if self.needs_reauth:
            return Status.NEEDS_REAUTHORIZATION
        if self.expires_at is None or self.expires_at > now:
            return Status.VALID
        if self.renews_itself:
            return Status.EXPIRED_WILL_REFRESH
        return Status.NEEDS_REAUTHORIZATION

    def evolve(self, **changes: Any) -> TokenRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class TokenSet:
    """The secrets of one token, stored as one keyring entry."""

    access_token: str
    token_type: str = "Bearer"
    expires_at: float | None = None
    refresh_token: str | None = None
    client_secret: str | None = None
    id_token: str | None = None
    #: the client's private key and certificate (PEM) for private_key_jwt, kept like a secret
    client_certificate: str | None = None

    def __repr__(self) -> str:  # never show secrets, not even in a traceback's locals
        return f"TokenSet(token_type={self.token_type!r}, expires_at={self.expires_at!r})"

    def dumps(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def loads(cls, raw: str) -> TokenSet:
        data = json.loads(raw)
        known = known_fields(cls)
        return cls(**{k: v for k, v in data.items() if k in known})

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        if self.expires_at is None:
            return False
        now = time.time() if now is None else now
        return self.expires_at - now <= seconds

    def evolve(self, **changes: Any) -> TokenSet:
        return replace(self, **changes)


if TYPE_CHECKING:
    _E = TypeVar("_E", bound=StrEnum)
_TOKEN_AUTHS = {m.value: m for m in TokenAuth}
_FLOWS = {m.value: m for m in Flow}


def _member(kind: type[_E], members: Mapping[str, _E], value: Any) -> _E:
    """`kind(value)` (ValueError when not a member's value); a dict lookup for a string."""
    found = members.get(value) if type(value) is str else None
    return kind(value) if found is None else found


# -- the public JSON shapes (README, "JSON output") ---------------------------------------------


def record_json(record: TokenRecord, now: float, lapses_at: float | None = None) -> dict[str, Any]:
    """`show --json`, and each element of `list --json`; `lapses_at` is the predicted end of
    the grant (`lifecycle.lapses_at`)."""
    data = record.to_json()
    data.pop("min_valid_warned", None)  # internal
    data.pop("lapse_rules", None)  # internal: "lapses_at" is what they predict
    data["status"] = str(record.status(now))
    data["expires_in"] = None if record.expires_at is None else int(record.expires_at - now)
    data["lapses_at"] = None if lapses_at is None else int(lapses_at)
    return data


def service_json(service: Service) -> dict[str, Any]:
    """Each element of `services --json`."""
    return {
        "name": service.name,
        "title": service.title,
        "origin": service.origin,
        "redirect_uri": service.redirect_uri,
        "params": service.params,
        "refresh_scope": service.refresh_scope,
        "token_auth": str(service.token_auth),
        "default_scopes": list(service.default_scopes),
        "scopes": service.scopes,
    }
