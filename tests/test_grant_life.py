"""Whose token it is and when its grant lapses — end to end against the Authlib server and the
real Secret Service. `token` runs as the real program; `refresh` and `reauthorize`, whose
decisions are the subject here, run their commands in the test process (`run_in_process`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    create_in_process,
    follow_in_process,
    listed,
    read_only,
    run_in_process,
    run_oauthtok,
    shown,
)

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")

SECRET = "life-secret"
DAY = 86400


def create(
    server: Any, *extra: str, name: str = "t", service: str = "testidp",
    scopes: str = "openid offline_access mail.read", env: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """A token: `create`'s command in this process (tests.helpers.create_in_process)."""
    auth = "client_secret_post" if service == "testfull" else "client_secret_basic"
    server.add_client(f"client-{name}", SECRET, auth)
    result = create_in_process(
        name, "--service", service, "--client-id", f"client-{name}",
        "--scopes", scopes, "--timeout", "30", *extra,
        env={"OAUTHTOK_CLIENT_SECRET": SECRET, **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def catalog_override(text: str) -> dict[str, str]:
    """OAUTHTOK_SERVICES with one more layer holding `text`."""
    path = Path(os.environ["HOME"]) / "rules.toml"
    path.write_text(text)
    return {"OAUTHTOK_SERVICES": os.environ["OAUTHTOK_SERVICES"] + os.pathsep + str(path)}


# -- the account ------------------------------------------------------------------------------


def test_the_account_from_the_id_token_everywhere(auth_server: Any) -> None:
    auth_server.knobs.id_token_claims = {
        "sub": "u-1", "email": "alice@example.com", "preferred_username": "alice\x1b[31m",
    }  # fmt: skip
    create(auth_server)
    table = read_only("list").stdout.splitlines()
    header = table[0].split("\t")
    row = dict(zip(header, table[1].split("\t"), strict=True))
    assert row["ACCOUNT"] == "alice [31m"  # control characters from the provider are not kept
    assert shown()["account"] == "alice [31m"
    assert listed()[0]["account"] == "alice [31m"
    fast = run_oauthtok("token", "t", "--format", "json")
    full = run_oauthtok("token", "t", "--format", "json", env={"OAUTHTOK_NO_FAST_PATH": "1"})
    assert fast.stdout == full.stdout and fast.returncode == full.returncode == 0
    assert json.loads(fast.stdout)["account"] == "alice [31m"
    assert auth_server.knobs.userinfo_requests == 0  # the id_token said it


def test_no_account_when_the_provider_does_not_say(auth_server: Any) -> None:
    auth_server.knobs.id_token_claims = {"sub": "u-1"}
    create(auth_server, scopes="offline_access mail.read")  # no openid
    assert shown()["account"] is None
    assert json.loads(run_oauthtok("token", "t", "-f", "json").stdout)["account"] is None
    assert "(not reported)" in read_only("show", "t").stdout


def test_the_account_from_userinfo_when_there_is_no_id_token(auth_server: Any) -> None:
    auth_server.knobs.userinfo = {"sub": "u-2", "email": "bob@example.com"}
    create(
        auth_server, "--param", f"issuer={auth_server.base_url}", service="oidc",
        scopes="openid offline_access",
    )  # fmt: skip
    assert shown()["account"] == "bob@example.com"
    assert auth_server.knobs.userinfo_requests == 1


def test_a_failing_userinfo_endpoint_costs_only_the_account(auth_server: Any) -> None:
    auth_server.knobs.userinfo = None  # answers 401
    create(
        auth_server, "--param", f"issuer={auth_server.base_url}", service="oidc",
        scopes="openid offline_access",
    )  # fmt: skip
    assert shown()["account"] is None and auth_server.knobs.userinfo_requests == 1


def test_reauthorize_warns_when_the_account_changed(auth_server: Any) -> None:
    auth_server.knobs.id_token_claims = {"sub": "1", "preferred_username": "alice"}
    create(auth_server)
    same = run_in_process("reauthorize", "t")
    assert same.returncode == 0 and "warning" not in same.stderr
    auth_server.knobs.id_token_claims = {"sub": "2", "preferred_username": "mallory"}
    other = run_in_process("reauthorize", "t")
    assert other.returncode == 0, other.stderr
    assert "warning: 't' now belongs to 'mallory', no longer to 'alice'" in other.stderr
    assert shown()["account"] == "mallory"


# -- the life of the grant ----------------------------------------------------------------------


def test_lifecycle_fields_follow_grant_refresh_and_failure(auth_server: Any) -> None:
    before = time.time()
    create(auth_server)
    first = shown()
    assert before <= first["obtained_at"] <= time.time()
    assert first["refresh_rotated_at"] == first["obtained_at"] and first["refresh_used_at"] is None
    assert first["last_error"] is None
    assert run_in_process("refresh", "t", "--force").returncode == 0
    second = shown()
    assert second["refresh_used_at"] >= first["obtained_at"]
    assert second["refresh_rotated_at"] == second["refresh_used_at"]  # the server rotates
    auth_server.knobs.token_endpoint_status = 503
    assert run_in_process("refresh", "t", "--force").returncode == 6
    third = shown()
    assert "HTTP 503" in third["last_error"] and third["status"] == "valid"
    auth_server.knobs.token_endpoint_status = None
    auth_server.revoke_all()
    assert run_in_process("refresh", "t", "--force").returncode == 4
    fourth = shown()
    assert "invalid_grant" in fourth["last_error"] and fourth["needs_reauth"]
    assert "invalid_grant" in read_only("show", "t").stdout  # "last error" for people
    assert run_in_process("reauthorize", "t").returncode == 0
    assert shown()["last_error"] is None and not shown()["needs_reauth"]


def test_lapse_from_the_catalog_and_from_the_provider(auth_server: Any) -> None:
    env = catalog_override("[services.testidp]\nrefresh_token_idle_days = 30\n")
    create(auth_server, env=env)
    data = shown(env=env)
    assert data["lapses_at"] == int(data["obtained_at"] + 30 * DAY)
    assert run_in_process("refresh", "t", "--force", env=env).returncode == 0
    refreshed = shown(env=env)
    assert refreshed["lapses_at"] == int(refreshed["refresh_used_at"] + 30 * DAY)  # idle: renewed
    table = read_only("list", env=env).stdout.splitlines()
    row = dict(zip(table[0].split("\t"), table[1].split("\t"), strict=True))
    assert row["LAPSES IN"] in ("29d", "30d")
    text = read_only("show", "t", env=env).stdout
    assert "unused for 30 days" in text

    # the provider's own lifetime, when sooner, wins
    auth_server.knobs.refresh_token_expires_in = 3600
    assert run_in_process("refresh", "t", "--force", env=env).returncode == 0
    data = shown(env=env)
    assert abs(data["lapses_at"] - (time.time() + 3600)) < 60
    assert listed(env=env)[0]["lapses_at"] == data["lapses_at"]
    # the rules are kept with the token at its consent (like its endpoints): a catalog without
    # the rule changes nothing until the next consent, which takes the catalog's rules again
    auth_server.knobs.refresh_token_expires_in = None
    assert run_in_process("refresh", "t", "--force").returncode == 0
    kept = shown()
    assert kept["lapses_at"] == int(kept["refresh_used_at"] + 30 * DAY)
    assert run_in_process("reauthorize", "t").returncode == 0
    assert shown()["lapses_at"] is None


TESTING_SERVICE = """
[services.testidp]
params = { testing = "no" }
refresh_token_max_days = 7
"""


def test_a_grant_of_an_app_in_testing_ends_after_max_days(auth_server: Any) -> None:
    env = catalog_override(TESTING_SERVICE)
    create(auth_server, "--param", "testing=yes", name="testing", env=env)
    data = shown("testing", env=env)
    assert data["lapses_at"] == int(data["obtained_at"] + 7 * DAY)
    assert run_in_process("refresh", "testing", "--force", env=env).returncode == 0
    assert shown("testing", env=env)["lapses_at"] == data["lapses_at"]  # use does not extend it
    create(auth_server, name="published", env=env)
    assert shown("published", env=env)["lapses_at"] is None


@pytest.mark.parametrize(("answer", "testing"), [("y", True), ("n", False)])
def test_create_asks_on_a_terminal_whether_the_app_is_in_testing(
    auth_server: Any, browser: Path, monkeypatch: pytest.MonkeyPatch, answer: str, testing: bool
) -> None:
    import webbrowser

    from typer.testing import CliRunner

    from oauthtok.cli import output
    from oauthtok.cli.app import app

    for key, value in catalog_override(TESTING_SERVICE).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(output, "can_prompt", lambda: True)
    monkeypatch.setattr(webbrowser, "open", follow_in_process)  # the browser, in this process
    auth_server.add_client("cid", SECRET, "client_secret_basic")
    args = ["create", "t", "--service", "testidp", "--client-id", "cid", "--scopes",
            "offline_access mail.read", "--client-secret-stdin", "--timeout", "20"]  # fmt: skip
    # at a terminal, --client-secret-stdin asks as the prompt does: twice
    result = CliRunner().invoke(app, args, input=f"{SECRET}\n{SECRET}\n{answer}\n")
    assert result.exit_code == 0, result.stderr
    assert 'Is the app in "Testing" (testidp ends such grants 7 days after consent)?' in (
        result.stderr
    )
    data = shown()
    assert data["params"]["testing"] == ("yes" if testing else "no")
    assert (data["lapses_at"] is not None) is testing
