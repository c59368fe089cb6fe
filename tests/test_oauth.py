"""The protocol module against mocked HTTP (respx): requests sent, replies and errors parsed."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from oauthtok import oauth
from oauthtok.errors import ProviderError
from oauthtok.models import Endpoints

ENDS = Endpoints(
    token_url="https://idp.example.com/token",
    authorize_url="https://idp.example.com/authorize?tenant=x",
)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_authorization_url_has_state_and_pkce_s256() -> None:
    req = oauth.start_authorization(
        ENDS, "cid", ("offline_access", "mail"), "http://127.0.0.1:5/cb", {"prompt": "consent"}
    )
    q = query(req.url)
    assert q["tenant"] == "x" and q["prompt"] == "consent"  # existing query kept
    assert q["response_type"] == "code" and q["client_id"] == "cid"
    assert q["redirect_uri"] == "http://127.0.0.1:5/cb" and q["scope"] == "offline_access mail"
    assert q["state"] == req.state and len(req.state) >= 43  # >= 256 bits, urlsafe
    assert q["code_challenge_method"] == "S256"
    digest = hashlib.sha256(req.code_verifier.encode()).digest()
    assert q["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert 43 <= len(req.code_verifier) <= 128
    other = oauth.start_authorization(ENDS, "cid", (), "http://127.0.0.1:5/cb")
    assert other.state != req.state and other.code_verifier != req.code_verifier
    assert "code_verifier" not in repr(req) and req.code_verifier not in repr(req)


def exchange(token_auth: str, secret: str | None = "p@ss w:rd") -> httpx.Request:
    req = oauth.start_authorization(ENDS, "my id", ("a",), "http://127.0.0.1:5/cb")
    with respx.mock() as mock:
        route = mock.post(ENDS.token_url).respond(
            json={
                "access_token": "AT",
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": "RT",
                "scope": "a b",
            }
        )
        with httpx.Client() as client:
            grant = oauth.exchange_code(
                client,
                ENDS,
                oauth.ClientAuth("my id", secret, token_auth),
                code="CODE",
                request=req,
            )
        assert grant.tokens.access_token == "AT" and grant.tokens.refresh_token == "RT"
        assert grant.scopes == ("a", "b")
        sent = route.calls.last.request
    form = parse_qs(sent.content.decode())
    assert form["code_verifier"] == [req.code_verifier] and form["code"] == ["CODE"]
    assert form["grant_type"] == ["authorization_code"]
    return sent


def test_client_secret_basic() -> None:
    sent = exchange("client_secret_basic")
    expected = base64.b64encode(b"my%20id:p%40ss%20w%3Ard").decode()  # RFC 6749 §2.3.1
    assert sent.headers["Authorization"] == f"Basic {expected}"
    assert "client_secret" not in sent.content.decode()


def test_client_secret_post() -> None:
    sent = exchange("client_secret_post")
    form = parse_qs(sent.content.decode())
    assert form["client_id"] == ["my id"] and form["client_secret"] == ["p@ss w:rd"]
    assert "Authorization" not in sent.headers


def test_public_client_sends_only_its_id() -> None:
    sent = exchange("none", secret=None)
    form = parse_qs(sent.content.decode())
    assert form["client_id"] == ["my id"] and "client_secret" not in form


def refresh_reply(**reply: object) -> None:
    with respx.mock() as mock:
        mock.post(ENDS.token_url).mock(return_value=httpx.Response(**reply))  # type: ignore[arg-type]
        with httpx.Client() as client:
            oauth.refresh(
                client,
                ENDS,
                oauth.ClientAuth("c", "s", "client_secret_post"),
                refresh_token="RT",
            )


def test_an_error_reply_carries_the_provider_fields() -> None:
    """The protocol words nothing: it hands the RFC 6749 §5.2 fields to the use cases."""
    with pytest.raises(oauth.OAuthError) as info:
        refresh_reply(
            status_code=400,
            json={
                "error": "invalid_grant",
                "error_description": "AADSTS70000: revoked\nTrace ID: 1",
                "error_uri": "https://idp.example.com/e",
            },
        )
    exc = info.value
    assert (exc.error, exc.uri, exc.host) == ("invalid_grant", "https://idp.example.com/e",
                                              "idp.example.com")  # fmt: skip
    assert exc.rejected and str(exc) == "invalid_grant: AADSTS70000: revoked"
    assert "reauthorize" not in str(exc) and "oauthtok" not in str(exc)


def test_server_error_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="HTTP 502") as info:
        refresh_reply(status_code=502, text="<html>bad gateway</html>")
    assert info.value.exit_code == 6


def test_error_in_a_200_body_counts() -> None:
    """GitHub answers errors with HTTP 200, and names a dead grant its own way."""
    for error in ("invalid_grant", "bad_refresh_token", "incorrect_client_credentials"):
        with pytest.raises(oauth.OAuthError) as info:
            refresh_reply(status_code=200, json={"error": error})
        assert info.value.error == error and info.value.rejected
    with pytest.raises(oauth.OAuthError) as passing:
        refresh_reply(status_code=200, json={"error": "temporarily_unavailable"})
    assert not passing.value.rejected


def test_reply_without_access_token() -> None:
    with pytest.raises(ProviderError, match="without an access token"):
        refresh_reply(status_code=200, json={"token_type": "bearer"})


def test_network_down() -> None:
    with respx.mock() as mock:
        mock.post(ENDS.token_url).mock(side_effect=httpx.ConnectError("refused"))
        with httpx.Client() as client, pytest.raises(ProviderError, match="cannot reach"):
            oauth.refresh(
                client,
                ENDS,
                oauth.ClientAuth("c", None, "none"),
                refresh_token="RT",
            )


def test_form_encoded_reply_and_comma_scopes() -> None:
    with respx.mock() as mock:
        mock.post(ENDS.token_url).respond(
            text="access_token=gho_x&scope=repo%2Cread%3Aorg&token_type=bearer"
        )
        with httpx.Client() as client:
            grant = oauth.refresh(
                client,
                ENDS,
                oauth.ClientAuth("c", None, "none"),
                refresh_token="RT",
            )
    assert grant.tokens.access_token == "gho_x" and grant.tokens.expires_at is None
    assert grant.scopes == ("repo", "read:org")


def test_code_exchange_error_is_neutral_and_never_holds_the_secret() -> None:
    req = oauth.start_authorization(ENDS, "c", (), "http://127.0.0.1:5/cb")
    with respx.mock() as mock:
        mock.post(ENDS.token_url).respond(
            400,
            json={
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            },
        )
        with httpx.Client() as client, pytest.raises(oauth.OAuthError) as info:
            oauth.exchange_code(
                client,
                ENDS,
                oauth.ClientAuth("c", "wrong", "client_secret_post"),
                code="x",
                request=req,
            )
    assert info.value.error == "invalid_client" and "wrong" not in str(info.value)


PUBLIC = oauth.ClientAuth("c")
DEVICE_ENDS = Endpoints(
    token_url="https://idp.example.com/token",
    device_authorization_url="https://idp.example.com/device",
    revocation_url="https://idp.example.com/revoke",
)


def test_device_polling_follows_the_interval_rules() -> None:
    replies = [
        httpx.Response(400, json={"error": "authorization_pending"}),
        httpx.Response(400, json={"error": "slow_down"}),
        httpx.Response(400, json={"error": "authorization_pending"}),
        httpx.Response(200, json={"access_token": "AT", "refresh_token": "RT"}),
    ]
    slept: list[float] = []
    with respx.mock() as mock:
        mock.post(DEVICE_ENDS.device_authorization_url).respond(
            json={"device_code": "DC", "user_code": "ABCD-EFGH",
                  "verification_url": "https://idp.example.com/activate", "interval": 2}
        )  # fmt: skip
        route = mock.post(DEVICE_ENDS.token_url).mock(side_effect=replies)
        with httpx.Client() as client:
            device = oauth.start_device_authorization(
                client, DEVICE_ENDS, oauth.ClientAuth("c", None, "none"),
                scopes=("a",),
            )  # fmt: skip
            assert device.verification_uri == "https://idp.example.com/activate"  # Google's key
            grant = oauth.poll_device_token(
                client, DEVICE_ENDS, PUBLIC, device, timeout=600, sleep=slept.append,
            )  # fmt: skip
    assert grant.tokens.access_token == "AT"
    assert slept == [2, 2, 7, 7]  # +5 s from the slow_down on, for good
    form = parse_qs(route.calls.last.request.content.decode())
    assert form["grant_type"] == [oauth.DEVICE_GRANT] and form["device_code"] == ["DC"]


@pytest.mark.parametrize("error", ["access_denied", "expired_token"])
def test_device_polling_stops(error: str) -> None:
    device = oauth.DeviceAuthorization("DC", "U", "https://x/a", None, 600, 1)
    with respx.mock() as mock:
        mock.post(DEVICE_ENDS.token_url).respond(400, json={"error": error})
        with httpx.Client() as client, pytest.raises(oauth.OAuthError) as info:
            oauth.poll_device_token(
                client, DEVICE_ENDS, PUBLIC, device, timeout=600, sleep=lambda _: None,
            )  # fmt: skip
    assert info.value.error == error


@pytest.mark.parametrize("interval", ["nan", "1e400", 10**20, "soon", -5])
def test_a_silly_interval_never_sleeps_past_the_timeout(interval: object) -> None:
    slept: list[float] = []
    with respx.mock(assert_all_called=False) as mock:
        mock.post(DEVICE_ENDS.device_authorization_url).respond(
            json={"device_code": "DC", "user_code": "U", "verification_uri": "https://x/a",
                  "interval": interval, "expires_in": "nan"}
        )  # fmt: skip
        mock.post(DEVICE_ENDS.token_url).respond(400, json={"error": "authorization_pending"})
        with httpx.Client() as client:
            device = oauth.start_device_authorization(client, DEVICE_ENDS, PUBLIC, scopes=())
            with pytest.raises(oauth.DeviceCodeExpired):
                oauth.poll_device_token(
                    client, DEVICE_ENDS, PUBLIC, device, timeout=30, sleep=slept.append
                )
    assert sum(slept) <= 30 and all(1 <= s <= oauth.MAX_INTERVAL for s in slept)


def test_revocation_must_be_confirmed() -> None:
    with respx.mock() as mock:
        route = mock.post(DEVICE_ENDS.revocation_url).respond(200)
        with httpx.Client() as client:
            oauth.revoke(
                client,
                DEVICE_ENDS,
                oauth.ClientAuth("c", "s", "client_secret_basic"),
                token="RT",
                hint="refresh_token",
            )
            assert parse_qs(route.calls.last.request.content.decode()) == {
                "token": ["RT"],
                "token_type_hint": ["refresh_token"],
            }
            mock.post(DEVICE_ENDS.revocation_url).respond(503)
            with pytest.raises(oauth.OAuthError, match="http_503"):
                oauth.revoke(
                    client,
                    DEVICE_ENDS,
                    oauth.ClientAuth("c", "s", "client_secret_basic"),
                    token="RT",
                    hint="refresh_token",
                )
