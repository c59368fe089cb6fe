"""`inspect`'s logic: decoding access tokens locally and explaining the classic mismatches;
RFC 7662 introspection at the Authlib server for opaque tokens."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from oauthtok import jwtinfo
from oauthtok.errors import ProviderError, UsageError
from oauthtok.oauth import ClientAuth
from tests import authserver

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
NOW = 1_700_000_000


def make(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, "k" * 32, algorithm="HS256", headers=header)


def microsoft(**claims: Any) -> dict[str, Any]:
    base = {
        "iss": f"https://sts.windows.net/{TENANT}/",
        "tid": TENANT,
        "iat": NOW - 60,
        "exp": NOW + 3600,
        "upn": "alice@contoso.com",
        "sub": "pairwise-sub",
    }
    return {**base, **claims}


def problems(token: str, use: str | None = None, **kw: Any) -> list[str]:
    return list(jwtinfo.decode(token, use=use, now=NOW, **kw).problems)


def test_delegated_outlook_token_for_imap_is_fine() -> None:
    token = make(microsoft(aud="https://outlook.office.com", scp="IMAP.AccessAsUser.All SMTP.Send"))
    info = jwtinfo.decode(token, use="imap", now=NOW)
    assert info.to_json() == {
        "format": "jwt",
        "issuer": f"https://sts.windows.net/{TENANT}/",
        "audience": ["https://outlook.office.com"],
        "scopes": ["IMAP.AccessAsUser.All", "SMTP.Send"],
        "roles": None,
        "tenant": TENANT,
        "account": "alice@contoso.com",
        "issued_at": NOW - 60,
        "expires_at": NOW + 3600,
        "problems": [],
    }
    assert info.app_only is False
    assert problems(token, "smtp") == []


def test_json_has_exactly_the_issues_keys() -> None:
    keys = set(jwtinfo.TokenInfo(format="opaque").to_json())
    assert keys == {
        "format",
        "issuer",
        "audience",
        "scopes",
        "roles",
        "tenant",
        "account",
        "issued_at",
        "expires_at",
        "problems",
    }
    json.dumps(jwtinfo.TokenInfo(format="opaque").to_json())


@pytest.mark.parametrize(
    "aud",
    [
        "https://graph.microsoft.com",
        "00000003-0000-0000-c000-000000000000",
        "https://graph.microsoft.us/",
    ],
)
def test_a_graph_token_used_for_imap_or_smtp(aud: str) -> None:
    token = make(microsoft(aud=aud, scp="Mail.Read User.Read"))
    for use in ("imap", "smtp"):
        (problem,) = problems(token, use)
        assert "audience is Microsoft Graph" in problem and "https://outlook.office.com" in problem
    assert problems(token, None) == []  # fine for Graph itself


def test_missing_mail_scopes() -> None:
    token = make(microsoft(aud="00000002-0000-0ff1-ce00-000000000000", scp="IMAP.AccessAsUser.All"))
    assert problems(token, "imap") == []
    (problem,) = problems(token, "smtp")
    assert "lacks SMTP.Send" in problem
    (problem,) = problems(
        make(microsoft(aud="https://outlook.office365.com", scp="SMTP.Send")), "imap"
    )
    assert "lacks IMAP.AccessAsUser.All" in problem


def test_app_only_tokens() -> None:
    with_role = make(
        microsoft(
            aud="https://outlook.office365.com",
            roles=["IMAP.AccessAsApp"],
            appid="app-id",
            idtyp="app",
        )
    )
    info = jwtinfo.decode(with_role, use="imap", now=NOW)
    assert info.app_only is True and info.roles == ("IMAP.AccessAsApp",) and info.scopes is None
    assert info.problems == ()
    (problem,) = problems(with_role, "smtp")
    assert "lacks the SMTP.SendAsApp role" in problem
    # recognised without idtyp too: roles and no scp
    assert jwtinfo.decode(make(microsoft(aud="x", roles=["R"])), now=NOW).app_only is True


def test_an_app_only_token_without_roles() -> None:
    token = make(microsoft(aud="https://outlook.office365.com", appid="app-id"))
    info = jwtinfo.decode(token, now=NOW)
    assert info.app_only is True
    (problem,) = info.problems
    assert "no roles" in problem and "admin consent" in problem


def test_another_tenant_and_expiry() -> None:
    token = make(microsoft(aud="https://outlook.office.com", scp="SMTP.Send", exp=NOW - 120))
    other = "11111111-2222-3333-4444-555555555555"
    found = problems(token, "smtp", expected_tenant=other)
    assert any("expired at 2023-11-14" in p for p in found)
    assert any(f"for tenant {TENANT}, not {other}" in p for p in found)
    # names like "common" or a domain cannot be compared
    assert not any("tenant" in p for p in problems(token, expected_tenant="common"))


def test_an_id_token_in_place_of_an_access_token() -> None:
    token = make(microsoft(aud="my-client-id"))
    assert any("own client id" in p for p in problems(token, client_id="my-client-id"))


def test_generic_scope_claim_and_account_order() -> None:
    token = make(
        {
            "iss": "https://idp.example",
            "aud": ["api", "mail"],
            "scope": "a b",
            "sub": "u-1",
            "email": "bob@example.com",
            "iat": NOW,
            "exp": NOW + 10,
        }
    )
    info = jwtinfo.decode(token, use="imap", now=NOW)
    assert info.audience == ("api", "mail") and info.scopes == ("a", "b")
    assert info.account == "bob@example.com" and info.tenant is None
    assert info.problems == ()  # not a Microsoft token: no Outlook rules


@pytest.mark.parametrize(
    "token",
    [
        "at-opaque-123",
        "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA",
        "a.b.c",
        "a.b",
        "x" * 100,
        "eyJub3QiOiJqd3QifQ.eyJ4IjoxfQ.sig",
    ],  # header without alg
)
def test_non_jwts_are_opaque(token: str) -> None:
    info = jwtinfo.decode(token)
    assert info.format == "opaque" and info.audience is None and info.to_json()["scopes"] is None


def test_jwe_and_nested_tokens() -> None:
    assert "encrypted" in jwtinfo.decode("a.b.c.d.e").problems[0]
    nested = make({"x": 1}, header={"cty": "JWT"})
    info = jwtinfo.decode(nested)
    assert info.format == "jwt" and "nested" in info.problems[0] and info.issuer is None


def test_size_and_use_limits() -> None:
    with pytest.raises(UsageError, match="64 KiB"):
        jwtinfo.decode("a" * (64 * 1024 + 1))
    with pytest.raises(UsageError):
        jwtinfo.decode("x", use="ftp")


def test_deeply_nested_json_is_opaque_not_a_crash() -> None:
    deep = base64.urlsafe_b64encode(b"[" * 20000 + b"]" * 20000).rstrip(b"=").decode()
    head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    assert jwtinfo.decode(f"{head}.{deep[:60000]}.x").format == "opaque"


def test_the_result_never_holds_the_token_or_signature() -> None:
    token = make(microsoft(aud="https://outlook.office.com", scp="SMTP.Send"))
    text = repr(jwtinfo.decode(token)) + json.dumps(jwtinfo.decode(token).to_json())
    assert token.split(".")[2] not in text and token not in text


def test_account_hint_for_the_sasl_user() -> None:
    access = make(microsoft(aud="https://outlook.office.com", upn="alice@contoso.com"))
    id_token = make({"preferred_username": "Alice@Contoso.com", "sub": "x"})
    assert jwtinfo.account_hint(access, id_token) == "Alice@Contoso.com"
    assert jwtinfo.account_hint(access) == "alice@contoso.com"
    assert jwtinfo.account_hint(make({"sub": "248289761001"})) is None  # not an address
    assert jwtinfo.account_hint("opaque-token", None) is None
    assert jwtinfo.account_hint(make({"email": "a\x01b@x.example"})) is None


# -- against the Authlib server -----------------------------------------------------------------


@pytest.fixture
def idp() -> Iterator[authserver.TestAuthServer]:
    server = authserver.TestAuthServer().start()
    server.add_client("app", "app-secret", "client_secret_basic", scope="mail.read mail.send")
    server.add_client("rs-post", "rs-secret", "client_secret_post", scope="")
    try:
        yield server
    finally:
        server.stop()


def client_credentials(server: authserver.TestAuthServer) -> str:
    response = httpx.post(
        f"{server.base_url}/token",
        auth=("app", "app-secret"),
        timeout=10,
        data={"grant_type": "client_credentials", "scope": "mail.read"},
    )
    return str(response.json()["access_token"])


def test_a_jwt_access_token_from_the_server_decodes(idp: authserver.TestAuthServer) -> None:
    idp.knobs.jwt_access_tokens = {"aud": "https://mail.example.test", "preferred_username": "al"}
    info = jwtinfo.decode(client_credentials(idp))
    assert info.format == "jwt" and info.issuer == idp.base_url
    assert info.scopes == ("mail.read",) and info.account == "al"
    assert info.expires_at is not None and info.expires_at > time.time()


@pytest.mark.parametrize(
    "auth",
    [
        ClientAuth("app", "app-secret", "client_secret_basic"),
        ClientAuth("rs-post", "rs-secret", "client_secret_post"),
    ],
)
def test_introspection(idp: authserver.TestAuthServer, auth: ClientAuth) -> None:
    token = client_credentials(idp)
    url = f"{idp.base_url}/introspect"
    with httpx.Client() as client:
        info = jwtinfo.introspect(client, url, token, auth, time.monotonic() + 10)
        assert info.format == "opaque" and info.problems == ()
        assert info.scopes == ("mail.read",) and info.account == "alice@example.test"
        assert info.issuer == idp.base_url and info.expires_at is not None
        idp.revoke_access_token(token)
        gone = jwtinfo.introspect(client, url, token, auth, time.monotonic() + 10)
    assert "not active" in gone.problems[0] and gone.scopes is None


def test_introspection_refused_or_unreachable(idp: authserver.TestAuthServer) -> None:
    token = client_credentials(idp)
    with httpx.Client() as client:
        with pytest.raises(ProviderError, match="refused the introspection \\(invalid_client"):
            jwtinfo.introspect(
                client,
                f"{idp.base_url}/introspect",
                token,
                ClientAuth("app", "wrong", "client_secret_basic"),
                time.monotonic() + 10,
            )
        with pytest.raises(ProviderError, match="no time left"):
            jwtinfo.introspect(
                client,
                f"{idp.base_url}/introspect",
                token,
                ClientAuth("app", "app-secret", "client_secret_basic"),
                time.monotonic() - 1,
            )
    idp.stop()
    with httpx.Client() as client, pytest.raises(ProviderError, match="cannot reach"):
        jwtinfo.introspect(
            client,
            f"{idp.base_url}/introspect",
            token,
            ClientAuth("app", "app-secret", "client_secret_basic"),
            time.monotonic() + 5,
        )


def test_decoding_is_stdlib_only() -> None:
    """`token --format` may need the account on the fast path: no heavy imports."""
    import subprocess
    import sys

    code = (
        "import sys; import oauthtok.jwtinfo; "
        "print([m for m in ('httpx', 'typer', 'rich', 'keyring', 'jwt', 'cryptography') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
