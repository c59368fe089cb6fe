"""A real OAuth 2.0 authorization server for the end-to-end tests, built on Authlib.

The protocol logic (PKCE, client authentication, code and refresh grants, error bodies) is
Authlib's, written independently of oauthtok; this file only supplies storage, a user who
consents (or refuses), and knobs the tests turn. It serves on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc8628 import (
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialDict,
)
from flask import Flask, Response, request
from werkzeug.serving import make_server

USER_ID = "alice"


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    auth_method: str  # client_secret_basic | client_secret_post | none
    redirect_uris: list[str]
    scope: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # RFC 8252 §7.3: any port on a registered loopback redirect URI
        given = urlsplit(redirect_uri)
        for registered in map(urlsplit, self.redirect_uris):
            if (given.scheme, given.hostname, given.path or "/") == (
                registered.scheme,
                registered.hostname,
                registered.path or "/",
            ):
                return True
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in (
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
        )


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Token:
    client_id: str
    access_token: str
    refresh_token: str | None
    scope: str
    issued_at: float
    expires_in: int
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() > self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return USER_ID

    def get_client(self) -> Client:  # pragma: no cover - not used by these grants
        raise NotImplementedError


@dataclass
class Knobs:
    """What a test may change while the server runs."""

    consent: str = "approve"  # approve | deny
    expires_in: int = 3600
    rotate_refresh_tokens: bool = True
    refresh_delay: float = 0.0
    token_endpoint_status: int | None = None  # e.g. 503 to simulate an outage
    refresh_requests: int = 0
    code_requests: int = 0
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    # device flow: the user's answer after `device_pending_polls` pending polls
    device_pending_polls: int = 1
    device_slow_down_once: bool = False
    device_expires_in: int = 600
    device_polls: list[float] = field(default_factory=list)  # when each poll came
    # revocation
    revocation_status: int | None = None
    revoked: list[str] = field(default_factory=list)  # token_type_hint of each revocation
    # discovery: which documents exist, and the issuer they claim
    discovery: tuple[str, ...] = ("openid-configuration", "oauth-authorization-server")
    metadata_issuer: str | None = None
    # OpenID Connect: an (unsigned) id_token with these claims when `openid` was granted, and
    # the claims /userinfo answers for a valid access token
    id_token_claims: dict[str, Any] | None = None
    userinfo: dict[str, Any] | None = None
    userinfo_requests: int = 0
    # the provider's own refresh-token lifetime in each token response (GitHub Apps' name)
    refresh_token_expires_in: int | None = None
    # device flow approved only by a visit to the verification URI (GET /device?user_code=…),
    # as a person does on a phone, instead of after `device_pending_polls` polls
    device_manual: bool = False
    device_approved: set[str] = field(default_factory=set)


class TestAuthServer:
    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, AuthCode] = {}
        self.tokens: dict[str, Token] = {}  # by refresh token
        self.access_tokens: dict[str, Token] = {}
        self.devices: dict[str, DeviceCredentialDict] = {}
        self.knobs = Knobs()
        self.lock = threading.Lock()
        self.app = self._make_app()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no request log lines
        self._http = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.port = self._http.server_port
        self.base_url = f"http://127.0.0.1:{self.port}"
        # a short poll interval: stop() returns at once, not after half a second
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> TestAuthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def add_client(
        self,
        client_id: str,
        client_secret: str | None,
        auth_method: str,
        scope: str = "mail.read mail.send offline_access profile openid",
        redirect_uris: tuple[str, ...] = ("http://127.0.0.1/callback",),
    ) -> Client:
        client = Client(client_id, client_secret, auth_method, list(redirect_uris), scope)
        self.clients[client_id] = client
        return client

    def revoke_all(self) -> None:
        with self.lock:
            for token in self.tokens.values():
                token.revoked = True

    # -- the Flask app ----------------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("test-auth-server")
        server = AuthorizationServer(
            app, query_client=self.clients.get, save_token=self._save_token
        )
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: "at-" + generate_token(40),
                refresh_token_generator=lambda **_: "rt-" + generate_token(40),
                expires_generator=lambda client, grant_type: self.knobs.expires_in,
            ),
        )
        outer = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

            def save_authorization_code(self, code: str, req: Any) -> None:
                outer.codes[code] = AuthCode(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.scope or "",
                    code_challenge=req.payload.data.get("code_challenge"),
                    code_challenge_method=req.payload.data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
                item = outer.codes.get(code)
                return item if item and item.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: AuthCode) -> None:
                outer.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: AuthCode) -> str:
                return USER_ID

        class RefreshGrant(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

            @property
            def INCLUDE_NEW_REFRESH_TOKEN(self) -> bool:
                return outer.knobs.rotate_refresh_tokens

            def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
                token = outer.tokens.get(refresh_token)
                if token and not token.revoked:
                    return token
                return None

            def authenticate_user(self, credential: Token) -> str:
                return USER_ID

            def revoke_old_credential(self, credential: Token) -> None:
                if outer.knobs.rotate_refresh_tokens:
                    credential.revoked = True

        class ClientCredentials(grants.ClientCredentialsGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

        class DeviceEndpoint(DeviceAuthorizationEndpoint):
            INTERVAL = 1

            def get_verification_uri(self) -> str:
                return f"{outer.base_url}/device"

            def save_device_credential(self, client_id: str, scope: str, data: dict) -> None:
                outer.devices[data["device_code"]] = DeviceCredentialDict(
                    client_id=client_id,
                    scope=scope,
                    user_code=data["user_code"],
                    expires_at=time.time() + outer.knobs.device_expires_in,
                    polls=0,
                )

        class DeviceGrant(DeviceCodeGrant):
            def query_device_credential(self, device_code: str) -> Any:
                return outer.devices.get(device_code)

            def query_user_grant(self, user_code: str) -> Any:
                credential = next(c for c in outer.devices.values() if c["user_code"] == user_code)
                credential["polls"] += 1
                outer.knobs.device_polls.append(time.monotonic())
                if outer.knobs.device_slow_down_once and credential["polls"] == 1:
                    return None  # -> should_slow_down
                if outer.knobs.device_manual:
                    if user_code not in outer.knobs.device_approved:
                        return None  # -> authorization_pending
                    return USER_ID, outer.knobs.consent == "approve"
                if credential["polls"] <= outer.knobs.device_pending_polls:
                    return None  # -> authorization_pending
                return USER_ID, outer.knobs.consent == "approve"

            def should_slow_down(self, credential: Any) -> bool:
                return outer.knobs.device_slow_down_once and credential["polls"] == 1

        class Revocation(RevocationEndpoint):
            CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

            def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
                return outer.tokens.get(token_string) or outer.access_tokens.get(token_string)

            def revoke_token(self, token: Token, req: Any) -> None:
                token.revoked = True
                outer.knobs.revoked.append(req.form.get("token_type_hint") or "")

        server.register_grant(CodeGrant, [CodeChallenge(required=True)])
        server.register_grant(RefreshGrant)
        server.register_grant(ClientCredentials)
        server.register_grant(DeviceGrant)
        server.register_endpoint(DeviceEndpoint)
        server.register_endpoint(Revocation)

        @app.get("/device")
        def device_page() -> Any:
            """The verification page: visiting it with the user code approves that code."""
            code = request.args.get("user_code", "")
            if not any(c["user_code"] == code for c in self.devices.values()):
                return Response("unknown code", status=404)
            self.knobs.device_approved.add(code)
            return Response("approved", status=200)

        @app.get("/userinfo")
        def userinfo() -> Any:
            self.knobs.userinfo_requests += 1
            auth = request.headers.get("Authorization", "")
            token = self.access_tokens.get(auth.removeprefix("Bearer "))
            if not auth.startswith("Bearer ") or token is None or self.knobs.userinfo is None:
                return Response('{"error": "invalid_token"}', status=401)
            return self.knobs.userinfo

        @app.post("/device_authorization")
        def device_authorization() -> Any:
            return server.create_endpoint_response("device_authorization")

        @app.post("/revoke")
        def revoke() -> Any:
            if self.knobs.revocation_status:
                return Response("{}", status=self.knobs.revocation_status)
            with self.lock:
                return server.create_endpoint_response("revocation")

        @app.get("/.well-known/<document>")
        def metadata(document: str) -> Any:
            if document not in self.knobs.discovery:
                return Response("not found", status=404)
            data = AuthorizationServerMetadata(
                issuer=self.knobs.metadata_issuer or self.base_url,
                authorization_endpoint=f"{self.base_url}/authorize",
                token_endpoint=f"{self.base_url}/token",
                device_authorization_endpoint=f"{self.base_url}/device_authorization",
                revocation_endpoint=f"{self.base_url}/revoke",
                userinfo_endpoint=f"{self.base_url}/userinfo",
                response_types_supported=["code"],
                grant_types_supported=["authorization_code", "refresh_token"],
                code_challenge_methods_supported=["S256"],
                token_endpoint_auth_methods_supported=[
                    "client_secret_basic",
                    "client_secret_post",
                    "none",
                ],
            )
            if not self.knobs.metadata_issuer:
                data.validate()  # Authlib checks the document against RFC 8414
            return data

        @app.get("/authorize")
        def authorize() -> Any:
            user = None if self.knobs.consent == "deny" else USER_ID
            grant = server.get_consent_grant(end_user=user)
            return server.create_authorization_response(grant=grant, grant_user=user)

        @app.post("/token")
        def token() -> Any:
            grant_type = request.form.get("grant_type")
            with self.lock:
                self.knobs.token_requests.append(
                    {"grant_type": grant_type, "auth": request.headers.get("Authorization")}
                )
                if grant_type == "refresh_token":
                    self.knobs.refresh_requests += 1
                elif grant_type == "authorization_code":
                    self.knobs.code_requests += 1
            if self.knobs.token_endpoint_status:
                return Response(
                    '{"error": "temporarily_unavailable"}',
                    status=self.knobs.token_endpoint_status,
                    content_type="application/json",
                )
            if grant_type == "refresh_token" and self.knobs.refresh_delay:
                time.sleep(self.knobs.refresh_delay)
            with self.lock:
                response = server.create_token_response()
            return self._decorate(response)

        return app

    def _decorate(self, response: Response) -> Response:
        """Add what Authlib's grants do not issue: an id_token, a refresh-token lifetime."""
        if response.status_code != 200:
            return response
        data = json.loads(response.get_data())
        claims = self.knobs.id_token_claims
        if claims is not None and "openid" in str(data.get("scope", "")).split():
            data["id_token"] = (
                ".".join(
                    base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
                    for part in ({"alg": "none"}, claims)
                )
                + ".sig"
            )
        if self.knobs.refresh_token_expires_in is not None and data.get("refresh_token"):
            data["refresh_token_expires_in"] = self.knobs.refresh_token_expires_in
        response.set_data(json.dumps(data))
        return response

    def _save_token(self, token: dict, req: Any) -> None:
        refresh = token.get("refresh_token")
        old = getattr(req, "refresh_token", None)
        if refresh is None and isinstance(old, Token):
            refresh = old.refresh_token  # not rotated: the old one stays valid
        item = Token(
            client_id=req.client.client_id,
            access_token=token["access_token"],
            refresh_token=refresh,
            scope=token.get("scope", ""),
            issued_at=time.time(),
            expires_in=token.get("expires_in", 0),
        )
        if refresh:
            self.tokens[refresh] = item
        self.access_tokens[item.access_token] = item
