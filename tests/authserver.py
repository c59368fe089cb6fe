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
from urllib.parse import urlencode, urlsplit

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
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
    auth_method: str  # client_secret_basic | client_secret_post | none | private_key_jwt
    redirect_uris: list[str]
    scope: str
    #: private_key_jwt (RFC 7523): the client's public key, PEM
    public_key_pem: bytes | None = None

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
    #: RFC 7662 `username` of the resource owner (what Dovecot's oauth2 passdb compares)
    username: str | None = None

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
    # introspection (RFC 7662) and the identity tokens carry
    username: str = "alice@example.test"  # `username` in introspection answers
    introspection_requests: int = 0
    #: when set, access tokens are JWTs (RFC 9068 style, HS256 with `jwt_key`) with these
    #: claims on top of iss/sub/iat/exp/scope; None keeps them opaque ("at-…")
    jwt_access_tokens: dict[str, Any] | None = None
    jwt_key: str = "test-signing-key-not-secret-0123456789"
    #: the claims of each private_key_jwt client assertion the server accepted for checking
    client_assertions: list[dict[str, Any]] = field(default_factory=list)
    # RFC 9207: the `iss` the authorization response carries (None: none), and whether the
    # metadata promises it (authorization_response_iss_parameter_supported)
    iss_param: str | None = None
    iss_supported: bool = False
    #: fields merged into every successful token answer (a hostile or odd provider)
    token_overrides: dict[str, Any] = field(default_factory=dict)
    #: an error answered with HTTP 200 to refresh requests, as GitHub does
    refresh_error_200: str | None = None
    #: fields merged into the device authorization answer; its status instead (e.g. 404)
    device_overrides: dict[str, Any] = field(default_factory=dict)
    device_status: int | None = None
    #: (status, JSON body) answered to the next revocation requests, in order
    revoke_replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
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
        self.seen_jti: set[str] = set()  # RFC 7523 §3 item 7: each assertion once
        self.knobs = Knobs()
        self.lock = threading.Lock()
        self.app = self._make_app()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no request log lines
        self._http = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.port = self._http.server_port
        self.base_url = f"http://127.0.0.1:{self.port}"
        # a short poll interval makes stop() quick (shutdown waits for the next poll)
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
        public_key_pem: bytes | None = None,
    ) -> Client:
        client = Client(
            client_id, client_secret, auth_method, list(redirect_uris), scope, public_key_pem
        )
        self.clients[client_id] = client
        return client

    def revoke_all(self) -> None:
        with self.lock:
            for token in self.tokens.values():
                token.revoked = True

    def revoke_access_token(self, access_token: str) -> None:
        with self.lock:
            self.access_tokens[access_token].revoked = True

    def _access_token(self, *, client: Client, grant_type: str, user: Any, scope: str) -> str:
        claims = self.knobs.jwt_access_tokens
        if claims is None:
            return "at-" + generate_token(40)
        import jwt  # PyJWT, a test dependency (and oauthtok's, for client assertions)

        now = int(time.time())
        payload = {
            "iss": self.base_url,
            "sub": USER_ID,
            "client_id": client.client_id,
            "iat": now,
            "exp": now + self.knobs.expires_in,
            "jti": generate_token(16),
            "scope": scope or "",
            **claims,
        }
        return jwt.encode(payload, self.knobs.jwt_key, algorithm="HS256", headers={"typ": "at+jwt"})

    # -- the Flask app ----------------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("test-auth-server")
        server = AuthorizationServer(
            app, query_client=self.clients.get, save_token=self._save_token
        )
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=self._access_token,
                refresh_token_generator=lambda **_: "rt-" + generate_token(40),
                expires_generator=lambda client, grant_type: self.knobs.expires_in,
            ),
        )
        outer = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = (
                "client_secret_basic",
                "client_secret_post",
                "none",
                "private_key_jwt",
            )

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
            TOKEN_ENDPOINT_AUTH_METHODS = (
                "client_secret_basic",
                "client_secret_post",
                "none",
                "private_key_jwt",
            )

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
            TOKEN_ENDPOINT_AUTH_METHODS = (
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            )

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
            CLIENT_AUTH_METHODS = (
                "client_secret_basic",
                "client_secret_post",
                "none",
                "private_key_jwt",
            )

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

        class Introspection(IntrospectionEndpoint):
            # a resource server (Dovecot) authenticates as a client of its own
            CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")

            def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
                return outer.access_tokens.get(token_string) or outer.tokens.get(token_string)

            def check_permission(self, token: Token, client: Client, request: Any) -> bool:
                return True  # any authenticated client may ask (RFC 7662 §2.1 leaves it open)

            def introspect_token(self, token: Token) -> dict[str, Any]:
                return {
                    "active": True,
                    "client_id": token.client_id,
                    "token_type": "Bearer",
                    "scope": token.scope,
                    "username": token.username or USER_ID,
                    "sub": USER_ID,
                    "iss": outer.base_url,
                    "iat": int(token.issued_at),
                    "exp": int(token.issued_at + token.expires_in),
                }

        server.register_endpoint(Introspection)

        class PrivateKeyJWT(JWTBearerClientAssertion):
            """RFC 7523 §2.2 client authentication, verified by Authlib (joserfc)."""

            CLIENT_AUTH_METHOD = "private_key_jwt"

            def get_audiences(self) -> list[str]:
                return [f"{outer.base_url}/token"]

            def validate_jti(self, claims: Any, jti: str) -> bool:
                # called once the signature checked out
                outer.knobs.client_assertions.append(dict(claims))
                if jti in outer.seen_jti:
                    return False
                outer.seen_jti.add(jti)
                return True

            def resolve_client_public_key(self, client: Client) -> Any:
                from cryptography.hazmat.primitives.asymmetric import rsa
                from cryptography.hazmat.primitives.serialization import load_pem_public_key
                from joserfc.jwk import ECKey, RSAKey

                pem = client.public_key_pem or b""
                kind = RSAKey if isinstance(load_pem_public_key(pem), rsa.RSAPublicKey) else ECKey
                return kind.import_key(pem)

        server.register_client_auth_method(PrivateKeyJWT.CLIENT_AUTH_METHOD, PrivateKeyJWT())

        @app.post("/introspect")
        def introspect() -> Any:
            with self.lock:
                self.knobs.introspection_requests += 1
                return server.create_endpoint_response("introspection")

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
            if self.knobs.device_status:
                return Response("not found", status=self.knobs.device_status)
            return merged(
                server.create_endpoint_response("device_authorization"),
                self.knobs.device_overrides,
            )

        @app.post("/revoke")
        def revoke() -> Any:
            if self.knobs.revoke_replies:
                status, body = self.knobs.revoke_replies.pop(0)
                return Response(json.dumps(body), status=status, content_type="application/json")
            if self.knobs.revocation_status:
                return Response("{}", status=self.knobs.revocation_status)
            with self.lock:
                return server.create_endpoint_response("revocation")

        @app.get("/.well-known/<document>")
        def metadata(document: str) -> Any:
            if document not in self.knobs.discovery:
                return Response("not found", status=404)
            data = AuthorizationServerMetadata(
                authorization_response_iss_parameter_supported=self.knobs.iss_supported,
                issuer=self.knobs.metadata_issuer or self.base_url,
                authorization_endpoint=f"{self.base_url}/authorize",
                token_endpoint=f"{self.base_url}/token",
                device_authorization_endpoint=f"{self.base_url}/device_authorization",
                revocation_endpoint=f"{self.base_url}/revoke",
                introspection_endpoint=f"{self.base_url}/introspect",
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
            response = server.create_authorization_response(grant=grant, grant_user=user)
            if self.knobs.iss_param is not None and "Location" in response.headers:
                location = response.headers["Location"]
                sep = "&" if "?" in location else "?"
                response.headers["Location"] = (
                    f"{location}{sep}{urlencode({'iss': self.knobs.iss_param})}"
                )
            return response

        @app.post("/token")
        def token() -> Any:
            grant_type = request.form.get("grant_type")
            with self.lock:
                self.knobs.token_requests.append(
                    {
                        "grant_type": grant_type,
                        "auth": request.headers.get("Authorization"),
                        "scope": request.form.get("scope"),
                    }
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
            if grant_type == "refresh_token" and self.knobs.refresh_error_200:
                body = {"error": self.knobs.refresh_error_200, "error_description": "as GitHub"}
                return Response(json.dumps(body), status=200, content_type="application/json")
            with self.lock:
                response = server.create_token_response()
            return merged(self._decorate(response), self.knobs.token_overrides)

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
            username=self.knobs.username,
        )
        if refresh:
            self.tokens[refresh] = item
        self.access_tokens[item.access_token] = item


def merged(response: Any, overrides: dict[str, Any]) -> Any:
    """A successful JSON answer with `overrides` merged into it (a test's odd provider)."""
    if not overrides or response.status_code != 200:
        return response
    body = {**json.loads(response.get_data()), **overrides}
    return Response(json.dumps(body), status=200, content_type="application/json")
