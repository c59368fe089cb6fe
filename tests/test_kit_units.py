"""The kit's glue in isolation: client assertions on every endpoint the protocol calls, the
catalog's introspection endpoint, the secret-expiry date, exec's environment and command
lookup, and the new metadata and secret fields."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx

from oauthtok import catalog, client_cert, kit, oauth, runwith
from oauthtok.errors import CatalogError, UsageError
from oauthtok.models import Endpoints, TokenAuth, TokenRecord, TokenSet
from tests.certs import make_client_certificate
from tests.helpers import make_record, make_secrets

ENDS = Endpoints(
    token_url="https://idp.example.com/token",
    revocation_url="https://idp.example.com/revoke",
    device_authorization_url="https://idp.example.com/device",
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> client_cert.ClientCertificate:
    path = tmp_path_factory.mktemp("cert") / "app.pem"
    make_client_certificate(path, kind="ec")
    return client_cert.load_file(path)


def sent_form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def test_private_key_jwt_signs_for_the_endpoint_called(
    certificate: client_cert.ClientCertificate,
) -> None:
    auth = oauth.ClientAuth("app-1", None, TokenAuth.PRIVATE_KEY_JWT, certificate)
    assert "BEGIN" not in repr(auth) and "key_pem" not in repr(auth)
    with respx.mock() as mock:
        token = mock.post(ENDS.token_url).respond(json={"access_token": "AT", "expires_in": 60})
        revoke = mock.post(ENDS.revocation_url).respond(200)
        device = mock.post(ENDS.device_authorization_url).respond(json={"error": "x"})
        with httpx.Client() as client:
            grant = oauth.client_credentials(client, ENDS, auth, scopes=("a",))
            oauth.revoke(client, ENDS, auth, token="AT", hint="access_token")
            with pytest.raises(oauth.OAuthError):
                oauth.start_device_authorization(client, ENDS, auth, scopes=("a",))
    assert grant.tokens.client_secret is None
    seen = []
    for route, url in ((token, ENDS.token_url), (revoke, ENDS.revocation_url),
                       (device, ENDS.device_authorization_url)):  # fmt: skip
        form = sent_form(route.calls.last.request)
        assert form["client_id"] == "app-1" and "client_secret" not in form
        assert form["client_assertion_type"] == client_cert.ASSERTION_TYPE
        assert "Authorization" not in route.calls.last.request.headers
        claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
        assert claims["aud"] == url and claims["iss"] == claims["sub"] == "app-1"
        seen.append(claims["jti"])
    assert len(set(seen)) == 3  # a fresh assertion each time


def test_a_secret_method_never_sends_an_assertion(
    certificate: client_cert.ClientCertificate,
) -> None:
    auth = oauth.ClientAuth("app-1", "s", TokenAuth.CLIENT_SECRET_POST, certificate)
    with respx.mock() as mock:
        route = mock.post(ENDS.token_url).respond(json={"access_token": "AT"})
        with httpx.Client() as client:
            oauth.client_credentials(client, ENDS, auth, scopes=())
    form = sent_form(route.calls.last.request)
    assert form["client_secret"] == "s" and "client_assertion" not in form


def test_introspection_url_in_the_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[services.x]\ntitle = "X"\ntoken_url = "https://{host}/token"\n'
        'introspection_url = "https://{host}/introspect"\nparams = { host = "a.example" }\n'
    )
    monkeypatch.setenv("OAUTHTOK_SERVICES", str(path))
    service = catalog.get_service("x")
    assert service.introspection_url == "https://{host}/introspect"
    ends = catalog.resolve_endpoints(service, {"host": "b.example"})
    assert ends.introspection_url == "https://b.example/introspect"
    path.write_text('[services.x]\ntitle = "X"\ntoken_url = "https://a/t"\n'
                    'introspection_url = "http://a.example/i"\n')  # fmt: skip
    with pytest.raises(CatalogError, match=r"introspection_url .*https"):
        catalog.load_catalog()


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2099-13-01", "YYYY-MM-DD"), ("20990101", "YYYY-MM-DD"), ("2099-1-1", "YYYY-MM-DD"),
     ("", "YYYY-MM-DD"), ("2020-02-02", "has passed")],
)  # fmt: skip
def test_secret_expiry_dates(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        kit.parse_expiry_date(text)


def test_secret_expiry_is_the_start_of_the_day_utc() -> None:
    moment = kit.parse_expiry_date("2099-06-30")
    assert dt.datetime.fromtimestamp(moment, dt.UTC) == dt.datetime(2099, 6, 30, tzinfo=dt.UTC)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert kit.parse_expiry_date(today) <= time.time()  # today is still accepted


def test_exec_environment_and_variable() -> None:
    env = runwith.child_environment(
        {"PATH": "/bin", "OAUTHTOK_CLIENT_SECRET": "s", "OAUTHTOK_TOKEN": "old"}, "OAUTHTOK_TOKEN",
        "T",
    )  # fmt: skip
    assert env == {"PATH": "/bin", "OAUTHTOK_TOKEN": "T"}
    assert runwith.check_variable("GRAPH_TOKEN") == "GRAPH_TOKEN"
    for bad in ("1X", "A-B", "", "A B", "OAUTHTOK_CLIENT_SECRET", "PATH"):
        with pytest.raises(UsageError):
            runwith.check_variable(bad)


def test_exec_finds_the_command_like_a_shell(tmp_path: Path) -> None:
    program = tmp_path / "prog"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o700)
    assert runwith.find_command("prog", {"PATH": str(tmp_path)}) == str(program)
    with pytest.raises(runwith.CommandNotFound) as missing:
        runwith.find_command("prog", {"PATH": "/nonexistent"})
    assert missing.value.exit_code == 127
    program.chmod(0o600)
    with pytest.raises(runwith.CommandNotRunnable) as blocked:
        runwith.find_command(str(program), dict(os.environ))
    assert blocked.value.exit_code == 126
    with pytest.raises(UsageError):
        runwith.find_command("", {})


def test_new_fields_round_trip_and_stay_out_of_sight() -> None:
    old = make_record().to_json()
    del old["secret_expires_at"]
    old["endpoints"].pop("introspection_url")
    loaded = TokenRecord.from_json(old)  # a record written before these fields existed
    assert loaded.secret_expires_at is None and loaded.endpoints.introspection_url is None
    record = make_record(secret_expires_at=4102444800)
    assert json.loads(json.dumps(record.to_json()))["secret_expires_at"] == 4102444800
    tokens = make_secrets(client_certificate="-----BEGIN PRIVATE KEY-----\nX\n")
    assert "PRIVATE" not in repr(tokens)
    assert TokenSet.loads(tokens.dumps()).client_certificate == tokens.client_certificate
    assert "client_certificate" not in make_secrets().dumps()


def test_exports_carry_the_certificate_and_check_the_introspection_url() -> None:
    from oauthtok.transfer import make_payload

    record = make_record().to_json()
    record["endpoints"]["introspection_url"] = "https://idp.example.com/introspect"
    secrets = {"access_token": "AT", "client_certificate": "-----BEGIN PRIVATE KEY-----\n"}
    payload = make_payload(record, secrets, exported_at=time.time())
    assert payload["secrets"]["client_certificate"].startswith("-----BEGIN")
    record["endpoints"]["introspection_url"] = "http://idp.example.com/introspect"
    with pytest.raises(UsageError, match="introspection_url"):
        make_payload(record, secrets, exported_at=time.time())
