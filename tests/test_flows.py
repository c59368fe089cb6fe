"""The other ways to sign in, discovery, and revocation on delete — end to end against the
Authlib server, with the real program and the real Secret Service."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import IO, Any

import pytest

from tests.fake_browser import get
from tests.helpers import create_in_process, listed, run_oauthtok, seed_token, shown

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")

SECRET = "flow-secret"


def create(
    server: Any, *args: str, name: str = "t", service: str = "testfull",
    scopes: str = "offline_access mail.read", env: dict[str, str] | None = None,
    in_process: bool = True,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`oauthtok create`, in this process (`create_in_process`) unless the test is about what
    the program finds around it (a browser, a display); its own sign-in (the browser it
    starts, Ctrl-C) is tested in test_e2e."""
    auth = "client_secret_basic" if service in ("oidc", "testidp") else "client_secret_post"
    server.add_client(f"client-{name}", SECRET, auth)
    args = (name, "--service", service, "--client-id", f"client-{name}", "--scopes", scopes,
            "--timeout", "30", *args)  # fmt: skip
    env = {"OAUTHTOK_CLIENT_SECRET": SECRET, **(env or {})}
    if in_process:
        return create_in_process(*args, env=env)
    return run_oauthtok("create", *args, env=env)


# -- device code (RFC 8628) --------------------------------------------------------------------


@pytest.mark.slow
def test_device_flow(auth_server: Any) -> None:
    auth_server.knobs.device_pending_polls = 2
    result = create(auth_server, "--flow", "device")
    assert result.returncode == 0, result.stderr
    user_code = next(iter(auth_server.devices.values()))["user_code"]
    assert f"{auth_server.base_url}/device" in result.stderr and user_code in result.stderr
    assert f"user_code={user_code}" in result.stderr  # the complete URI
    assert len(auth_server.knobs.device_polls) == 3  # pending, pending, approved
    assert shown()["flow"] == "device" and shown()["has_refresh_token"]
    assert run_oauthtok("token", "t").stdout.startswith("at-")


@pytest.mark.slow
def test_device_flow_slows_down_when_told(auth_server: Any) -> None:
    auth_server.knobs.device_slow_down_once = True
    auth_server.knobs.device_pending_polls = 1
    result = create(auth_server, "--flow", "device")
    assert result.returncode == 0, result.stderr
    polls = auth_server.knobs.device_polls
    assert len(polls) == 2 and polls[1] - polls[0] >= 5.9  # interval 1 s + 5 s


@pytest.mark.slow
def test_device_flow_denied(auth_server: Any) -> None:
    auth_server.knobs.consent = "deny"
    result = create(auth_server, "--flow", "device")
    assert result.returncode == 5
    assert "denied" in result.stderr and "access_denied" in result.stderr
    assert listed() == []


@pytest.mark.slow
def test_device_code_expires(auth_server: Any) -> None:
    auth_server.knobs.device_expires_in = 1
    auth_server.knobs.device_pending_polls = 100
    result = create(auth_server, "--flow", "device")
    assert result.returncode == 5
    assert "expired" in result.stderr


def test_device_flow_needs_a_device_endpoint(auth_server: Any) -> None:
    result = create(auth_server, "--flow", "device", service="testidp")
    assert result.returncode == 2 and "no device authorization endpoint" in result.stderr


# -- paste -------------------------------------------------------------------------------------


def start(server: Any, *args: str, service: str = "testidp", env: dict[str, str] | None = None
          ) -> subprocess.Popen[str]:  # fmt: skip
    auth = "client_secret_post" if service == "testfull" else "client_secret_basic"
    server.add_client("client-p", SECRET, auth)
    return subprocess.Popen(
        [sys.executable, "-m", "oauthtok", "create", "p", "--service", service,
         "--client-id", "client-p", "--scopes", "offline_access mail.read", "--timeout", "30",
         *args],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "OAUTHTOK_CLIENT_SECRET": SECRET, **(env or {})},
    )  # fmt: skip


def read_until(stream: IO[str], marker: str) -> str:
    seen = ""
    deadline = time.monotonic() + 30
    while marker not in seen and time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen += line
    assert marker in seen, seen
    return seen


def authorization_url(text: str) -> str:
    return next(w for w in text.split() if "/authorize?" in w)


def test_paste_flow(auth_server: Any) -> None:
    proc = start(auth_server, "--flow", "paste")
    assert proc.stdin and proc.stderr
    text = read_until(proc.stderr, "press Enter")
    # the person's browser, elsewhere: approve, then copy the address it was sent to
    status, headers, _ = get(authorization_url(text))
    assert status == 302
    redirect = headers["location"]
    proc.stdin.write(redirect.replace("state=", "state=forged") + "\n")  # a wrong one first
    proc.stdin.flush()
    read_until(proc.stderr, "not the answer to this sign-in")
    proc.stdin.write(redirect + "\n")
    proc.stdin.close()
    assert proc.wait(30) == 0, proc.stderr.read()
    assert "Saved token 'p'" in proc.stderr.read()
    assert shown("p")["flow"] == "paste"


def test_no_browser_over_ssh_falls_back_to_paste(
    auth_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BROWSER")
    proc = start(auth_server, env={"SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"})
    assert proc.stdin and proc.stderr
    text = read_until(proc.stderr, "press Enter")
    assert "No browser can be opened here" in text
    _, headers, _ = get(authorization_url(text))
    proc.stdin.write(headers["location"] + "\n")
    proc.stdin.close()
    assert proc.wait(30) == 0


def test_no_display_falls_back_to_device_when_there_is_one(
    auth_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BROWSER")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = create(auth_server, in_process=False)
    assert result.returncode == 0, result.stderr
    assert "No browser can be opened here" in result.stderr and "enter a code" in result.stderr
    assert shown()["flow"] == "device"


# -- client credentials ------------------------------------------------------------------------


def test_client_credentials(auth_server: Any) -> None:
    auth_server.knobs.expires_in = 30  # always due with the default --min-valid of 60 s
    result = create(auth_server, "--flow", "client-credentials", scopes="mail.read")
    assert result.returncode == 0, result.stderr
    assert "will not refresh" not in result.stderr  # app-only tokens need no refresh scope
    first = run_oauthtok("token", "t")
    second = run_oauthtok("token", "t")
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert first.stdout != second.stdout  # a new token each time it was due
    grants = [r["grant_type"] for r in auth_server.knobs.token_requests]
    assert grants == ["client_credentials"] * 3
    info = shown()
    assert info["flow"] == "client-credentials" and not info["has_refresh_token"]


def test_client_credentials_need_a_secret(auth_server: Any) -> None:
    result = create(auth_server, "--flow", "client-credentials", "--public")
    assert result.returncode == 2 and "client secret" in result.stderr


# -- discovery ---------------------------------------------------------------------------------


def test_oidc_discovery(auth_server: Any) -> None:
    issuer = auth_server.base_url
    result = create(auth_server, "--param", f"issuer={issuer}", service="oidc",
                    scopes="offline_access mail.read")  # fmt: skip
    assert result.returncode == 0, result.stderr
    endpoints = shown()["endpoints"]
    assert endpoints == {
        "token_url": f"{issuer}/token",
        "authorize_url": f"{issuer}/authorize",
        "device_authorization_url": f"{issuer}/device_authorization",
        "revocation_url": f"{issuer}/revoke",
        "issuer": issuer,
        "issuer_pattern": None,
        "iss_required": False,
        "introspection_url": f"{issuer}/introspect",  # RFC 8414 introspection_endpoint
    }


def test_rfc8414_fallback(auth_server: Any) -> None:
    auth_server.knobs.discovery = ("oauth-authorization-server",)
    result = create(auth_server, "--param", f"issuer={auth_server.base_url}", service="oidc")
    assert result.returncode == 0, result.stderr


def test_discovery_refuses_another_issuer(auth_server: Any) -> None:
    auth_server.knobs.metadata_issuer = "https://evil.example.com"
    result = create(auth_server, "--param", f"issuer={auth_server.base_url}", service="oidc")
    assert result.returncode == 5
    assert "names another issuer" in result.stderr and "evil.example.com" in result.stderr


def test_discovery_needs_the_issuer(auth_server: Any) -> None:
    result = create(auth_server, service="oidc")
    assert result.returncode == 2 and "--param issuer=VALUE" in result.stderr
    plain = create(auth_server, "--param", "issuer=http://idp.example.com", service="oidc")
    assert plain.returncode == 2 and "https" in plain.stderr


def test_no_discovery_document(auth_server: Any) -> None:
    auth_server.knobs.discovery = ()
    result = create(auth_server, "--param", f"issuer={auth_server.base_url}", service="oidc")
    assert result.returncode == 5 and "no discovery document" in result.stderr


# -- revocation on delete ----------------------------------------------------------------------


def test_delete_revokes_refresh_then_access_token(auth_server: Any) -> None:
    seed_token(auth_server)  # the same token as `create`, made in this process
    result = run_oauthtok("delete", "t", "--yes")
    assert result.returncode == 0, result.stderr
    assert "revoked it at the provider" in result.stderr
    assert auth_server.knobs.revoked == ["refresh_token", "access_token"]
    assert all(t.revoked for t in auth_server.tokens.values())
    assert listed() == []


def test_delete_no_revoke(auth_server: Any) -> None:
    seed_token(auth_server)  # the same token as `create`, made in this process
    assert run_oauthtok("delete", "t", "--yes", "--no-revoke").returncode == 0
    assert auth_server.knobs.revoked == []


def test_failed_revocation_still_deletes_and_warns(auth_server: Any) -> None:
    seed_token(auth_server)  # the same token as `create`, made in this process
    auth_server.knobs.revocation_status = 503
    result = run_oauthtok("delete", "t", "--yes")
    assert result.returncode == 0
    assert "warning: could not revoke 't'" in result.stderr
    assert "grant may still be live" in result.stderr
    assert listed() == []


def test_ctrl_c_while_polling_saves_nothing(auth_server: Any) -> None:
    import signal

    auth_server.knobs.device_pending_polls = 1000
    proc = start(auth_server, "--flow", "device", service="testfull")
    assert proc.stderr
    read_until(proc.stderr, "enter the code")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 130
    assert "cancelled; nothing was saved" in proc.stderr.read()
    assert listed() == []
