"""The kit's commands end to end: the real `oauthtok` program, the real Secret Service and the
Authlib server (SASL formats, exec, inspect, consent-url, national clouds, certificate
credentials, secret expiry). The login test against Dovecot is in test_kit_login.py."""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner, Result

from oauthtok.cli.app import app
from oauthtok.errors import UsageError
from oauthtok.store import TokenStore
from tests.certs import make_client_certificate
from tests.helpers import (
    HEAVY,
    create_in_process,
    imported_modules,
    make_record,
    make_secrets,
    run_oauthtok,
)
from tests.workmail import SECRET, create, seed, stored_metadata, token

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")

USER = "alice@example.test"


def sasl(text: str) -> str:
    line = text.removesuffix("\n")
    assert "\n" not in line
    return base64.b64decode(line, validate=True).decode()


def stored_secret(name: str) -> dict[str, Any]:
    store = TokenStore()
    return dict(json.loads(store.secrets.get(store.get(name).id) or "{}"))


def cli(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """The same program in this process (Typer's runner): for the commands whose process
    boundary is not what a test is about. `create` (the real sign-in), `token` (the fast
    path) and `exec` (it replaces the process) run as their own process."""
    return CliRunner().invoke(app, list(args), input=input, env=env)


def shown(name: str) -> dict[str, Any]:
    result = cli("show", name, "--json")
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


# -- token --format xoauth2|oauthbearer --------------------------------------------------------


def test_sasl_formats_with_user(auth_server: Any) -> None:
    """(The same answers without the fast path, and the refusals: test_e2e's SAME_ANSWER.)"""
    seed(auth_server)
    raw = token().stdout.strip()
    xo = token("work-mail", "--format", "xoauth2", "--user", USER)
    assert xo.returncode == 0, xo.stderr
    assert sasl(xo.stdout) == f"user={USER}\x01auth=Bearer {raw}\x01\x01"
    ob = token("work-mail", "-f", "oauthbearer", "--user", "a,b=c@x.example")
    assert sasl(ob.stdout) == f"n,a=a=2Cb=3Dc@x.example,\x01auth=Bearer {raw}\x01\x01"
    none = token("work-mail", "-f", "xoauth2")  # opaque tokens: no account known
    assert none.returncode == 2 and none.stdout == "" and "--user ADDRESS" in none.stderr


def test_the_user_defaults_to_the_tokens_account(auth_server: Any) -> None:
    auth_server.knobs.jwt_access_tokens = {"preferred_username": "Alice@Example.test"}
    seed(auth_server)
    raw = token().stdout.strip()
    fast = token("work-mail", "-f", "xoauth2")
    full = token("work-mail", "-f", "xoauth2", env={"OAUTHTOK_NO_FAST_PATH": "1"})
    assert fast.returncode == full.returncode == 0, fast.stderr + full.stderr
    assert fast.stdout == full.stdout
    assert sasl(fast.stdout) == f"user=Alice@Example.test\x01auth=Bearer {raw}\x01\x01"
    given = token("work-mail", "-f", "oauthbearer", "--user", "shared@example.test")
    assert sasl(given.stdout).startswith("n,a=shared@example.test,\x01")  # --user wins


def test_sasl_formats_are_answered_by_the_fast_path(auth_server: Any) -> None:
    auth_server.knobs.jwt_access_tokens = {"email": USER}
    seed(auth_server)
    # with --user, and with the account from the claims: still nothing heavy
    for args in (["-f", "xoauth2", "--user", USER], ["-f", "oauthbearer"]):
        result, modules = imported_modules("token", "work-mail", *args)
        assert result.returncode == 0, result.stderr
        assert "oauthtok.fastpath" in modules and "oauthtok.handout" not in modules
        assert not [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY]
        assert "oauthtok.jwtinfo" not in modules


# -- exec ---------------------------------------------------------------------------------------

PROBE = (
    "import json, os, sys; "
    "print(json.dumps({'env': dict(os.environ), 'argv': open('/proc/self/cmdline').read(), "
    "'pid': os.getpid(), 'stdin': sys.stdin.read()}))"
)


def test_exec_puts_the_token_in_the_environment_only(auth_server: Any) -> None:
    seed(auth_server)
    raw = token().stdout.strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "oauthtok", "exec", "work-mail", "--", sys.executable, "-c", PROBE],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OAUTHTOK_CLIENT_SECRET": SECRET, "KEEP_ME": "1"},
    )  # fmt: skip
    out, err = proc.communicate("from stdin", timeout=60)
    assert proc.returncode == 0, err
    seen = json.loads(out)
    assert seen["env"]["OAUTHTOK_TOKEN"] == raw and seen["env"]["KEEP_ME"] == "1"
    assert "OAUTHTOK_CLIENT_SECRET" not in seen["env"]
    assert SECRET not in json.dumps(seen["env"]) and raw not in seen["argv"]
    assert seen["stdin"] == "from stdin"
    assert seen["pid"] == proc.pid  # oauthtok became the program: nothing in between
    other = run_oauthtok("exec", "work-mail", "--env", "GRAPH_TOKEN", "--", sys.executable,
                         "-c", "import os; print(os.environ['GRAPH_TOKEN'])")  # fmt: skip
    assert other.returncode == 0 and other.stdout.strip() == raw


def test_exec_exit_status_is_the_programs(auth_server: Any) -> None:
    seed(auth_server)
    assert run_oauthtok("exec", "work-mail", "--", "sh", "-c", "exit 7").returncode == 7
    killed = run_oauthtok("exec", "work-mail", "--", "sh", "-c", "kill -TERM $$")
    assert killed.returncode == -signal.SIGTERM  # it died of the signal itself
    shell = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -m oauthtok exec work-mail -- sh -c "kill -TERM \\$\\$";'
                     ' echo "status $?"'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shell.stdout.strip() == "status 143"  # 128 + 15, as for the program run directly
    # Python ignores SIGPIPE; the program gets the default back
    masks = run_oauthtok("exec", "work-mail", "--", "grep", "SigIgn", "/proc/self/status")
    ignored = int(masks.stdout.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), masks.stdout


def test_exec_failures_keep_oauthtoks_codes(auth_server: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    seed(auth_server)
    missing = run_oauthtok("exec", "nope", "--", "touch", str(marker))
    assert missing.returncode == 3 and not marker.exists()
    unknown = run_oauthtok("exec", "work-mail", "--", "no-such-program-x")
    assert unknown.returncode == 127 and "no-such-program-x: command not found" in unknown.stderr
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert run_oauthtok("exec", "work-mail", "--", str(script)).returncode == 126
    assert run_oauthtok("exec", "work-mail", "--env", "1X", "--", "true").returncode == 2
    assert run_oauthtok("exec", "work-mail").returncode == 2  # no command
    # a due token is refreshed first; a refused refresh is exit 4 and the program never runs
    assert run_oauthtok("exec", "work-mail", "--min-valid", "99999", "--", "true").returncode == 0
    assert auth_server.knobs.refresh_requests == 1
    auth_server.revoke_all()
    refused = run_oauthtok("exec", "work-mail", "--min-valid", "99999", "--", "touch", str(marker))
    assert refused.returncode == 4 and not marker.exists()


# -- inspect ------------------------------------------------------------------------------------


def test_inspect_a_jwt(auth_server: Any) -> None:
    auth_server.knobs.jwt_access_tokens = {"aud": "https://mail.example.test", "email": USER}
    seed(auth_server)
    raw = token().stdout.strip()
    result = cli("inspect", "work-mail", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == ["format", "issuer", "audience", "scopes", "roles", "tenant",
                          "account", "issued_at", "expires_at", "problems"]  # fmt: skip
    assert data["format"] == "jwt" and data["issuer"] == auth_server.base_url
    assert data["audience"] == ["https://mail.example.test"] and data["account"] == USER
    assert data["scopes"] == ["offline_access", "mail.read"] and data["problems"] == []
    text = cli("inspect", "work-mail").stdout
    assert "signature not checked" in text and "problems: none found" in text
    for out in (result.stdout, text):
        assert raw not in out and raw.split(".")[2] not in out


def test_inspect_explains_a_graph_token_used_for_imap(auth_server: Any) -> None:
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    auth_server.knobs.jwt_access_tokens = {
        "aud": "https://graph.microsoft.com", "tid": tenant, "scp": "Mail.Read User.Read",
    }  # fmt: skip
    seed(auth_server)
    result = cli("inspect", "work-mail", "--for", "imap", "--json")
    problems = json.loads(result.stdout)["problems"]
    assert len(problems) == 1 and "the audience is Microsoft Graph" in problems[0]
    text = cli("inspect", "work-mail", "--for", "IMAP").stdout
    assert "problems:\n  - the audience is Microsoft Graph" in text


def test_inspect_an_opaque_token_locally_and_remotely(auth_server: Any) -> None:
    seed(auth_server)
    local = cli("inspect", "work-mail")
    assert local.exit_code == 0 and "not a JWT" in local.stdout and "--remote" in local.stdout
    remote = cli("inspect", "work-mail", "--remote", "--json")
    assert remote.exit_code == 0, remote.stderr
    data = json.loads(remote.stdout)
    assert data["format"] == "opaque" and data["scopes"] == ["offline_access", "mail.read"]
    assert data["account"] == USER and data["problems"] == []
    auth_server.revoke_access_token(token().stdout.strip())
    gone = json.loads(cli("inspect", "work-mail", "--remote", "--json").stdout)
    assert "not active" in gone["problems"][0]


def test_inspect_remote_needs_an_introspection_endpoint(auth_server: Any) -> None:
    seed(auth_server, service="testfull", auth="client_secret_post")
    result = cli("inspect", "work-mail", "--remote")
    assert result.exit_code == 2 and "introspection_url" in result.stderr
    auth_server.stop()  # the local decoding needs no network
    assert cli("inspect", "work-mail").exit_code == 0


# -- test --url (the IMAP and SMTP logins against Dovecot are in test_kit_login.py) ----------


@pytest.fixture
def resource() -> Iterator[tuple[str, list[str]]]:
    """A loopback API that accepts one bearer token (set in the list it yields)."""
    accepted: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") in [f"Bearer {t}" for t in accepted]:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'{"me": "alice"}')
                return
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()  # fmt: skip
    try:
        yield f"http://127.0.0.1:{server.server_port}/me", accepted
    finally:
        server.shutdown()
        server.server_close()


def test_test_url(auth_server: Any, resource: tuple[str, list[str]]) -> None:
    url, accepted = resource
    seed(auth_server)
    refused = run_oauthtok("test", "work-mail", "--url", url)
    assert refused.returncode == 5 and "error=invalid_token" in refused.stderr
    accepted.append(token().stdout.strip())
    works = run_oauthtok("test", "work-mail", "--url", url)
    assert works.returncode == 0, works.stderr
    assert f"GET {url}: HTTP 200 OK" in works.stdout
    assert works.stdout.endswith("OK: the server accepted the token\n")


# -- consent-url and national clouds --------------------------------------------------------


def test_consent_url_for_a_client(auth_server: Any) -> None:
    result = cli(
        "consent-url", "--service", "microsoft", "--client-id", "app-1",
        "--param", "tenant=contoso.us", "--param", "cloud=usgov",
        "--scopes", "https://outlook.office365.us/.default",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith("https://login.microsoftonline.us/contoso.us/v2.0/adminconsent?")
    assert "client_id=app-1" in first and "outlook.office365.us%2F.default" in first
    assert any("- https://outlook.office365.us/.default: Outlook (US Government)" in line
               for line in rest)  # fmt: skip
    default = cli("consent-url", "-s", "microsoft", "--client-id", "a",
                           "--param", "tenant=contoso.com")  # fmt: skip
    assert "https%3A%2F%2Fgraph.microsoft.com%2FUser.Read" in default.stdout.splitlines()[0]
    common = cli("consent-url", "-s", "microsoft", "--client-id", "a")
    assert common.exit_code == 2 and "not 'common'" in common.stderr
    other = cli("consent-url", "-s", "testidp", "--client-id", "a")
    assert other.exit_code == 2 and "Microsoft's" in other.stderr
    assert cli("consent-url").exit_code == 2


def test_consent_url_for_a_stored_token(auth_server: Any) -> None:
    params = {"tenant": "contoso.com", "authority": "login.microsoftonline.com"}
    TokenStore().add(make_record("ms", params=params), make_secrets())
    result = cli("consent-url", "ms")
    assert result.exit_code == 0, result.stderr
    url = result.stdout.splitlines()[0]
    assert url.startswith("https://login.microsoftonline.com/contoso.com/v2.0/adminconsent?")
    assert "client_id=11111111-2222" in url and "IMAP.AccessAsUser.All" in url
    assert "redirect_uri=http%3A%2F%2Flocalhost" in url
    seed(auth_server)
    wrong = cli("consent-url", "work-mail")
    assert wrong.exit_code == 2 and "testidp token" in wrong.stderr
    both = cli("consent-url", "ms", "--client-id", "x")
    assert both.exit_code == 2


def test_create_in_a_national_cloud() -> None:
    """The sign-in goes to the cloud's authority with the scopes on its hosts (no network:
    nobody answers the paste, and the wait ends after a second)."""
    result = run_oauthtok(
        "create", "gov", "--service", "microsoft", "--client-id", "app-1", "--public",
        "--param", "cloud=usgov", "--param", "tenant=contoso.us", "--flow", "paste",
        "--timeout", "1", "--scopes",
        "offline_access https://outlook.office.com/IMAP.AccessAsUser.All", input="",
    )  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert "https://login.microsoftonline.us/contoso.us/oauth2/v2.0/authorize?" in result.stderr
    assert "scope=offline_access%20https%3A%2F%2Foutlook.office365.us%2FIMAP" in result.stderr
    assert "warning" not in result.stderr  # the translated scopes are in the catalog
    bad = cli("create", "x", "--service", "microsoft", "--client-id", "a", "--public",
              "--param", "cloud=mars", "--scopes", "openid")  # fmt: skip
    assert bad.exit_code == 2 and "unknown cloud 'mars'" in bad.stderr


# -- certificate credentials (private_key_jwt) and secret expiry ------------------------------


def public_pem(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def create_with_certificate(
    server: Any, pem: Path, cert: x509.Certificate, *extra: str, name: str = "app",
    in_process: bool = False,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    server.add_client(f"client-{name}", None, "private_key_jwt", public_key_pem=public_pem(cert))
    run = create_in_process if in_process else partial(run_oauthtok, "create")
    return run(
        name, "--service", "testidp", "--client-id", f"client-{name}",
        "--scopes", "offline_access mail.read", "--client-certificate", str(pem), *extra,
        env={"OAUTHTOK_CLIENT_SECRET": "not-used"},
    )  # fmt: skip


def test_certificate_credentials_in_every_flow_and_refresh(
    auth_server: Any, tmp_path: Path
) -> None:
    pem = tmp_path / "app.pem"
    cert = make_client_certificate(pem, days=400)
    result = create_with_certificate(auth_server, pem, cert, in_process=True)
    assert result.returncode == 0, result.stderr
    token_url = f"{auth_server.base_url}/token"
    first = auth_server.knobs.client_assertions[-1]
    assert first["aud"] == token_url and first["iss"] == first["sub"] == "client-app"
    data = shown("app")
    assert data["token_auth"] == "private_key_jwt"
    assert data["secret_expires_at"] == int(cert.not_valid_after_utc.timestamp())
    assert "PRIVATE KEY" not in stored_metadata()
    secret = stored_secret("app")
    assert "PRIVATE KEY" in secret["client_certificate"] and "client_secret" not in secret
    # every refresh signs a new assertion (and the key stays with the refreshed tokens)
    for _ in range(2):
        refreshed = cli("refresh", "app", "--force")
        assert refreshed.exit_code == 0, refreshed.stderr
    assert len(auth_server.knobs.client_assertions) == 3
    assert auth_server.knobs.client_assertions[1]["jti"] != first["jti"]
    assert "PRIVATE KEY" in stored_secret("app")["client_certificate"]
    assert "private_key_jwt" in cli("show", "app").stdout
    # app-only (client credentials) too, and its renewal
    apponly = create_with_certificate(auth_server, pem, cert, "--flow", "client-credentials",
                                      name="job", in_process=True)  # fmt: skip
    assert apponly.returncode == 0, apponly.stderr
    assert token("job", "--min-valid", "99999").returncode == 0
    assert len(auth_server.knobs.client_assertions) == 5


def test_reauthorize_replaces_the_certificate(auth_server: Any, tmp_path: Path) -> None:
    old_pem, new_pem = tmp_path / "old.pem", tmp_path / "new.pem"
    old = make_client_certificate(old_pem, days=100)
    seeded = create_with_certificate(auth_server, old_pem, old, in_process=True)
    assert seeded.returncode == 0, seeded.stderr
    new = make_client_certificate(new_pem, kind="ec", days=700)
    auth_server.clients["client-app"].public_key_pem = public_pem(new)  # rotated at the app
    stale = cli("refresh", "app", "--force")
    assert stale.exit_code == 4 and "--client-certificate FILE" in stale.stderr
    again = cli("reauthorize", "app", "--client-certificate", str(new_pem))
    assert again.exit_code == 0, again.stderr
    assert shown("app")["secret_expires_at"] == int(new.not_valid_after_utc.timestamp())
    # the server now knows only the new (EC) key: a refresh proves the new key signs
    assert cli("refresh", "app", "--force").exit_code == 0, "signed with the new key"
    assert "BEGIN PRIVATE KEY" in stored_secret("app")["client_certificate"]


def test_reauthorize_moves_from_a_certificate_back_to_a_secret(
    auth_server: Any, tmp_path: Path
) -> None:
    """The way back, with a secret given on purpose (stdin): the key leaves the secret store,
    the certificate's expiry is forgotten, the client sends the secret as its service says."""
    pem = tmp_path / "app.pem"
    cert = make_client_certificate(pem, days=100)
    seeded = create_with_certificate(auth_server, pem, cert, in_process=True)
    assert seeded.returncode == 0, seeded.stderr
    # a secret lying in the environment changes nothing
    kept = cli("reauthorize", "app", env={"OAUTHTOK_CLIENT_SECRET": "stray"})
    assert kept.exit_code == 0, kept.stderr
    assert "now authenticates" not in kept.stderr
    assert "note: OAUTHTOK_CLIENT_SECRET is not used: 'app' authenticates with a certificate" in (
        kept.stderr
    )
    assert shown("app")["token_auth"] == "private_key_jwt"
    notify = cli("reauthorize", "app", "--flow", "device", "--notify", "--client-secret-stdin",
                 input="new-secret\n")  # fmt: skip
    assert notify.exit_code == 2 and "--client-secret-stdin" in notify.stderr
    client = auth_server.clients["client-app"]
    client.auth_method, client.client_secret = "client_secret_basic", "new-secret"  # at the app
    moved = cli("reauthorize", "app", "--client-secret-stdin", input="new-secret\n")
    assert moved.exit_code == 0, moved.stderr
    assert "now authenticates with its secret (client_secret_basic)." in moved.stderr
    assert "Its certificate and key left the secret store: remove the certificate" in moved.stderr
    data = shown("app")
    assert data["token_auth"] == "client_secret_basic" and data["secret_expires_at"] is None
    secret = stored_secret("app")
    assert secret["client_secret"] == "new-secret" and "client_certificate" not in secret
    count = len(auth_server.knobs.client_assertions)
    assert cli("refresh", "app", "--force").exit_code == 0, "the secret authenticates"
    assert len(auth_server.knobs.client_assertions) == count  # and no assertion is signed


def test_a_public_client_moves_to_a_certificate(auth_server: Any, tmp_path: Path) -> None:
    seed(auth_server, public=True)
    pem = tmp_path / "app.pem"
    cert = make_client_certificate(pem)
    client = auth_server.clients["client-work-mail"]
    client.auth_method, client.public_key_pem = "private_key_jwt", public_pem(cert)
    moved = cli("reauthorize", "work-mail", "--client-certificate", str(pem))
    assert moved.exit_code == 0, moved.stderr
    assert "now authenticates with its certificate (private_key_jwt)." in moved.stderr
    assert "left the secret store" not in moved.stderr  # it had no secret
    assert shown("work-mail")["token_auth"] == "private_key_jwt"


def test_a_switch_whose_metadata_is_not_written_keeps_the_old_credential(
    auth_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets first, then metadata: the secrets hold both credentials until the metadata
    names the new one, so a token whose metadata write failed still works as it says; its next
    refresh drops the credential it does not use."""
    from oauthtok.errors import StoreError

    pem = tmp_path / "app.pem"
    cert = make_client_certificate(pem)
    assert create_with_certificate(auth_server, pem, cert, in_process=True).returncode == 0
    write_record = TokenStore._write_record

    def full_disk(self: TokenStore, record: Any) -> None:
        raise StoreError("cannot write the record: No space left on device")

    monkeypatch.setattr(TokenStore, "_write_record", full_disk)
    client = auth_server.clients["client-app"]
    # the app registration takes both (as Entra ID does); the test server one method at a time
    client.auth_method, client.client_secret = "client_secret_basic", "new-secret"
    cut = cli("reauthorize", "app", "--client-secret-stdin", input="new-secret\n")
    assert cut.exit_code == 8, cut.stderr
    assert "were saved, but its metadata was not" in cut.stderr
    assert "keeps using its previous client credential" in cut.stderr
    monkeypatch.setattr(TokenStore, "_write_record", write_record)
    assert shown("app")["token_auth"] == "private_key_jwt"
    both = stored_secret("app")
    assert both["client_secret"] == "new-secret" and "PRIVATE KEY" in both["client_certificate"]
    assert auth_server.knobs.revoked == []  # the new grant is the stored one: kept
    client.auth_method = "private_key_jwt"
    assert cli("refresh", "app", "--force").exit_code == 0, "still with its certificate"
    healed = stored_secret("app")
    assert "client_secret" not in healed and "PRIVATE KEY" in healed["client_certificate"]


def test_a_reauthorize_that_fails_revokes_only_a_grant_it_did_not_store(
    auth_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing live is left behind, and nothing stored is revoked: a failure before the new
    tokens are written revokes the new grant; Ctrl-C after they were written keeps it."""
    from oauthtok.errors import StoreError
    from oauthtok.secretstore import SecretStore

    seed(auth_server, service="testfull", auth="client_secret_post")  # it has a revocation_url
    before = stored_secret("work-mail")
    real_set = SecretStore.set
    write_record = TokenStore._write_record

    def failing_set(self: SecretStore, key: str, value: str) -> None:
        raise StoreError("the keyring refused the write")

    monkeypatch.setattr(SecretStore, "set", failing_set)
    failed = cli("reauthorize", "work-mail")
    assert failed.exit_code == 8 and "refused the write" in failed.stderr
    assert "the sign-in that succeeded was revoked at the provider" in failed.stderr
    assert auth_server.knobs.revoked == ["refresh_token", "access_token"]  # the new grant
    assert stored_secret("work-mail") == before
    monkeypatch.setattr(SecretStore, "set", real_set)

    def ctrl_c(self: TokenStore, record: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(TokenStore, "_write_record", ctrl_c)
    cancelled = cli("reauthorize", "work-mail")
    assert cancelled.exit_code == 130, cancelled.stderr
    assert auth_server.knobs.revoked == ["refresh_token", "access_token"]  # no more
    kept = stored_secret("work-mail")
    assert kept["access_token"] != before["access_token"]
    monkeypatch.setattr(TokenStore, "_write_record", write_record)

    def ctrl_c_while_asking_who(*args: Any) -> None:
        raise KeyboardInterrupt

    import oauthtok.manager

    monkeypatch.setattr(oauthtok.manager, "account_of", ctrl_c_while_asking_who)
    early = cli("reauthorize", "work-mail")
    assert early.exit_code == 130, early.stderr
    assert auth_server.knobs.revoked[2:] == ["refresh_token", "access_token"]  # revoked
    assert stored_secret("work-mail") == kept


def test_a_switch_or_a_new_secret_works_after_a_keyring_reset(
    auth_server: Any, tmp_path: Path
) -> None:
    """With the secret store's entry gone or corrupt, reauthorize is the way out: it must not
    need the old entry (to keep the old credential during a switch, or to compare secrets)."""
    pem = tmp_path / "app.pem"
    cert = make_client_certificate(pem)
    assert create_with_certificate(auth_server, pem, cert, in_process=True).returncode == 0
    store = TokenStore()
    store.secrets.delete(store.get("app").id)  # a keyring reset
    client = auth_server.clients["client-app"]
    client.auth_method, client.client_secret = "client_secret_basic", "new-secret"
    moved = cli("reauthorize", "app", "--client-secret-stdin", input="new-secret\n")
    assert moved.exit_code == 0, moved.stderr
    assert stored_secret("app")["client_secret"] == "new-secret"
    assert cli("refresh", "app", "--force").exit_code == 0
    seed(auth_server, extra=("--secret-expires", "2099-01-01"))
    store.secrets.set(store.get("work-mail").id, "{not json")  # corrupt
    again = cli("reauthorize", "work-mail", "--client-secret-stdin", input=SECRET + "\n")
    assert again.exit_code == 0, again.stderr
    assert shown("work-mail")["secret_expires_at"] is None  # the old date cannot be vouched for


def test_a_new_secret_drops_the_old_ones_expiry(auth_server: Any) -> None:
    seed(auth_server, extra=("--secret-expires", "2099-01-01"))
    same = cli("reauthorize", "work-mail", "--client-secret-stdin", input=SECRET + "\n")
    assert same.exit_code == 0 and shown("work-mail")["secret_expires_at"] == 4070908800
    auth_server.clients["client-work-mail"].client_secret = "rotated"
    rotated = cli("reauthorize", "work-mail", "--client-secret-stdin", input="rotated\n")
    assert rotated.exit_code == 0, rotated.stderr
    assert "expiry is not known" in rotated.stderr
    assert "`oauthtok reauthorize work-mail --secret-expires YYYY-MM-DD` records it" in (
        rotated.stderr
    )
    assert shown("work-mail")["secret_expires_at"] is None


def test_a_reauthorize_saves_after_a_refresh_that_is_writing(
    auth_server: Any, tmp_path: Path
) -> None:
    """Its save waits for the token's refresh lock and starts from the record as it is then:
    a refresh that read the old credential cannot write it back afterwards."""
    seed(auth_server)
    store = TokenStore()
    record = store.get("work-mail")
    taken, release = threading.Event(), threading.Event()

    def refresh_in_progress() -> None:
        with store.token_lock(record):
            taken.set()
            release.wait(20)

    holder = threading.Thread(target=refresh_in_progress)
    holder.start()
    assert taken.wait(10)
    released_at: list[float] = []
    timer = threading.Timer(1.0, lambda: (released_at.append(time.time()), release.set()))
    timer.start()
    try:
        again = cli("reauthorize", "work-mail")
    finally:
        release.set()
        holder.join()
        timer.cancel()
    assert again.exit_code == 0, again.stderr
    assert released_at and shown("work-mail")["obtained_at"] >= released_at[0]


def test_a_service_that_takes_only_certificates_refuses_a_secret() -> None:
    from oauthtok.catalog import load_catalog
    from oauthtok.kinds import TokenAuth
    from oauthtok.manager import _secret_method

    ms = load_catalog()["microsoft"]
    record = make_record(service="microsoft", token_auth=TokenAuth.PRIVATE_KEY_JWT)
    assert _secret_method(record, ms) == ms.token_auth == TokenAuth.CLIENT_SECRET_POST
    assert _secret_method(record, None) == TokenAuth.CLIENT_SECRET_BASIC
    strict = replace(ms, token_auth=TokenAuth.PRIVATE_KEY_JWT)
    with pytest.raises(UsageError, match="takes a certificate, not a secret"):
        _secret_method(record, strict)


def test_reauthorize_moves_from_a_secret_to_a_certificate(auth_server: Any, tmp_path: Path) -> None:
    """Microsoft's advice (certificates over secrets) as one command; the secret is dropped."""
    seed(auth_server, extra=("--secret-expires", "2099-01-01"))
    pem = tmp_path / "app.pem"
    cert = make_client_certificate(pem)
    client = auth_server.clients["client-work-mail"]
    client.auth_method, client.public_key_pem = "private_key_jwt", public_pem(cert)
    moved = cli("reauthorize", "work-mail", "--client-certificate", str(pem),
                env={"OAUTHTOK_CLIENT_SECRET": SECRET})  # fmt: skip
    assert moved.exit_code == 0, moved.stderr
    assert "now authenticates with its certificate (private_key_jwt)." in moved.stderr
    assert "Its secret left the secret store: remove it from the app registration" in moved.stderr
    data = shown("work-mail")
    assert data["token_auth"] == "private_key_jwt"
    assert data["secret_expires_at"] == int(cert.not_valid_after_utc.timestamp())
    day = cert.not_valid_after_utc.strftime("%Y-%m-%d")
    assert re.search(rf"certificate expires +{day}", cli("show", "work-mail").stdout)
    secret = stored_secret("work-mail")
    assert "client_secret" not in secret and "PRIVATE KEY" in secret["client_certificate"]
    assert cli("refresh", "work-mail", "--force").exit_code == 0


def test_a_readable_key_file_is_refused_before_anything(
    auth_server: Any, tmp_path: Path, browser: Path
) -> None:
    pem = tmp_path / "app.pem"
    cert = make_client_certificate(pem, mode=0o644)
    result = create_with_certificate(auth_server, pem, cert)
    assert result.returncode == 2 and "chmod 600" in result.stderr
    assert not browser.exists() and cli("list", "--json").stdout.strip() == "[]"
    pem.chmod(0o600)
    both = create_with_certificate(auth_server, pem, cert, "--secret-expires", "2099-01-01")
    assert both.returncode == 2 and "read from it" in both.stderr


def test_secret_expiry_is_stored_and_shown(auth_server: Any) -> None:
    made = create(auth_server, extra=("--secret-expires", "2099-01-31"), in_process=True)
    assert made.returncode == 0, made.stderr
    moment = 4073500800  # 2099-01-31T00:00:00Z
    assert shown("work-mail")["secret_expires_at"] == moment
    assert json.loads(cli("list", "--json").stdout)[0]["secret_expires_at"] == moment
    listed = cli("list").stdout.splitlines()
    assert listed[0].endswith("\tSECRET EXPIRES") and listed[1].endswith("\t2099-01-31")
    assert re.search(r"secret expires +2099-01-31", cli("show", "work-mail").stdout)
    again = cli("reauthorize", "work-mail", "--secret-expires", "2100-02-01")
    assert again.exit_code == 0, again.stderr
    assert shown("work-mail")["secret_expires_at"] == 4105123200
    assert cli("reauthorize", "work-mail").exit_code == 0  # kept when not told
    assert shown("work-mail")["secret_expires_at"] == 4105123200
    for bad, why in (("31.01.2099", "YYYY-MM-DD"), ("2001-01-01", "has passed")):
        refused = cli("reauthorize", "work-mail", "--secret-expires", bad)
        assert refused.exit_code == 2 and why in refused.stderr
    seed(auth_server, name="plain")
    assert shown("plain")["secret_expires_at"] is None


def test_show_help_microsoft_covers_the_admin_kit() -> None:
    text = cli("show-help", "microsoft").stdout
    for part in (
        "App-only IMAP/POP/SMTP",
        "New-ServicePrincipal",
        "Add-MailboxPermission",
        "Shared mailboxes",
        "shared mailbox's",
        "--client-certificate",
        "--secret-expires",
        "consent-url",
        "--param cloud=usgov",
        "oauthtok test",
    ):
        assert part in text, part  # fmt: skip


@pytest.mark.parametrize("name", ["exec", "test", "inspect", "consent-url"])
def test_every_new_command_has_help(name: str) -> None:
    result = cli(name, "--help")
    assert result.exit_code == 0 and f" {name} [OPTIONS]" in result.stdout.splitlines()[0]
    assert len(result.stdout.splitlines()) > 8
