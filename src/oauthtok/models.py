"""Plain data: a catalog service, a stored token's metadata, and its secrets."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


@dataclass(frozen=True)
class Endpoints:
    """A service's URLs with every {placeholder} filled in; kept with each token."""

    token_url: str
    authorize_url: str | None = None
    device_authorization_url: str | None = None
    revocation_url: str | None = None


@dataclass(frozen=True)
class Service:
    """One entry of the service catalog, as written (placeholders not yet filled)."""

    name: str
    title: str
    origin: str
    authorize_url: str | None = None
    token_url: str | None = None
    device_authorization_url: str | None = None
    revocation_url: str | None = None
    issuer: str | None = None
    redirect_uri: str = "http://127.0.0.1"
    params: dict[str, str] = field(default_factory=dict)
    refresh_scope: str | None = None
    token_auth: str = "client_secret_post"
    authorize_params: dict[str, str] = field(default_factory=dict)
    scopes: dict[str, str] = field(default_factory=dict)
    default_scopes: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class TokenRecord:
    """What the index keeps about one token. Never a secret."""

    id: str
    name: str
    service: str
    client_id: str
    endpoints: Endpoints
    token_auth: str
    redirect_uri: str
    scopes: tuple[str, ...]
    granted_scopes: tuple[str, ...] | None = None
    params: dict[str, str] = field(default_factory=dict)
    authorize_params: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    refreshed_at: float | None = None
    expires_at: float | None = None
    has_refresh_token: bool = False
    needs_reauth: bool = False
    #: how it was signed in: browser | paste | device | client-credentials
    flow: str = "browser"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["scopes"] = list(self.scopes)
        if self.granted_scopes is not None:
            data["granted_scopes"] = list(self.granted_scopes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["endpoints"] = Endpoints(**data["endpoints"])
        values["scopes"] = tuple(data.get("scopes") or ())
        granted = data.get("granted_scopes")
        values["granted_scopes"] = None if granted is None else tuple(granted)
        return cls(**values)

    def status(self, now: float | None = None) -> str:
        """valid | expired-will-refresh | needs-reauthorization"""
        now = time.time() if now is None else now
        if self.needs_reauth:
            return "needs-reauthorization"
        if self.expires_at is None or self.expires_at > now:
            return "valid"
        if self.has_refresh_token or self.flow == "client-credentials":
            return "expired-will-refresh"
        return "needs-reauthorization"

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

    def __repr__(self) -> str:  # never show secrets, not even in a traceback's locals
        return f"TokenSet(token_type={self.token_type!r}, expires_at={self.expires_at!r})"

    def dumps(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def loads(cls, raw: str) -> TokenSet:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        if self.expires_at is None:
            return False
        now = time.time() if now is None else now
        return self.expires_at - now <= seconds

    def evolve(self, **changes: Any) -> TokenSet:
        return replace(self, **changes)
