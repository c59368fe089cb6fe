"""Right with real providers, smooth on first use (issue 10): scopes that survive refresh,
errors that mean what they say, headless fallbacks, an interactive create that never
dead-ends, output that behaves in pipes and terminals."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from typer.testing import CliRunner

from oauthtok import oauth
from oauthtok.catalog import load_catalog
from oauthtok.cli import output, views
from oauthtok.cli.app import app
from oauthtok.errors import AuthorizationFailed, ReauthorizationRequired
from oauthtok.kinds import Flow, TokenAuth
from oauthtok.manager import TokenManager, choose_flow, renewal_failure, sign_in_failure
from oauthtok.models import Endpoints
from oauthtok.scopes import missing_scopes
from oauthtok.store import TokenStore
from tests.helpers import (
    create_token,
    make_record,
    make_secrets,
    run_in_process,
    run_oauthtok,
    seed_token,
    shown,
)

E2E = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")
runner = CliRunner()


# -- scopes ----------------------------------------------------------------------------------


@E2E
def test_a_refresh_asks_only_for_what_was_granted(auth_server: Any) -> None:
    result = create_token(
        auth_server, scopes="offline_access mail.read mail.send",
        client_scope="offline_access mail.read", in_process=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the provider did not grant: mail.send" in result.stderr
    assert shown()["missing_scopes"] == ["mail.send"]
    refreshed = run_oauthtok("refresh", "t", "--force")
    assert refreshed.returncode == 0, refreshed.stderr  # not invalid_scope for ever
    sent = [r for r in auth_server.knobs.token_requests if r["grant_type"] == "refresh_token"]
    assert [r["scope"] for r in sent] == ["offline_access mail.read"]  # one request, as granted


@E2E
def test_reauthorize_changes_scopes_with_a_new_consent(auth_server: Any) -> None:
    """`reauthorize`'s command in the test process (its scope decisions are the subject; the
    program's own `reauthorize` runs in test_e2e and test_device_notify)."""
    seed_token(auth_server, scopes="offline_access mail.read")
    added = run_in_process("reauthorize", "t", "--add-scope", "mail.send")
    assert added.returncode == 0, added.stderr
    assert shown()["scopes"] == ["offline_access", "mail.read", "mail.send"]
    auth_server.knobs.consent = "deny"
    denied = run_in_process("reauthorize", "t", "--remove-scope", "mail.read")
    assert denied.returncode == 5 and "unchanged" not in denied.stdout
    assert shown()["scopes"] == ["offline_access", "mail.read", "mail.send"]  # kept
    assert run_oauthtok("token", "t").returncode == 0
    auth_server.knobs.consent = "approve"
    removed = run_in_process("reauthorize", "t", "-r", "mail.read")
    assert removed.returncode == 0 and shown()["scopes"] == ["offline_access", "mail.send"]
    replaced = run_in_process("reauthorize", "t", "--scopes", "offline_access,profile")
    assert replaced.returncode == 0 and shown()["scopes"] == ["offline_access", "profile"]
    unknown = run_in_process("reauthorize", "t", "--remove-scope", "nope")
    assert unknown.returncode == 2 and "does not ask for 'nope'" in unknown.stderr


def test_no_false_missing_scope_warnings() -> None:
    catalog = load_catalog()
    ms, google = catalog["microsoft"], catalog["google"]
    asked = ("offline_access", "openid", "https://graph.microsoft.com/User.Read")
    # Microsoft reports short forms, and offline_access/openid through what came back
    assert missing_scopes(ms, asked, ("User.Read", "profile"), got_refresh_token=True,
                          got_id_token=True) == ()  # fmt: skip
    assert missing_scopes(ms, asked, ("User.Read",), got_refresh_token=False,
                          got_id_token=True) == ("offline_access",)  # fmt: skip
    outlook = ("https://outlook.office.com/IMAP.AccessAsUser.All",)
    assert missing_scopes(ms, outlook, ("IMAP.AccessAsUser.All",), got_refresh_token=True,
                          got_id_token=False) == ()  # fmt: skip
    long_form = (
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
        "https://mail.google.com/",
    )
    assert missing_scopes(google, ("email", "profile", "https://mail.google.com/"), long_form,
                          got_refresh_token=True, got_id_token=False) == ()  # fmt: skip
    assert missing_scopes(google, ("email", "openid"), long_form[:1], got_refresh_token=True,
                          got_id_token=False) == ("openid",)  # fmt: skip


def test_invalid_scope_on_refresh_is_retried_once_without_scope() -> None:
    record = make_record(granted_scopes=None)
    store_calls: list[dict[str, str]] = []
    ends = record.endpoints
    with respx.mock() as mock:

        def answer(request: httpx.Request) -> httpx.Response:
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            store_calls.append(form)
            if "scope" in form:
                return httpx.Response(400, json={"error": "invalid_scope"})
            return httpx.Response(200, json={"access_token": "AT2", "expires_in": 60})

        mock.post(ends.token_url).mock(side_effect=answer)
        manager = TokenManager(store=TokenStore(data_dir="/nonexistent"))
        with httpx.Client() as client:
            auth = oauth.ClientAuth("c", "s", TokenAuth.CLIENT_SECRET_POST)
            grant = manager._renew(client, record, make_secrets(), auth)
    assert grant.tokens.access_token == "AT2"
    assert "scope" in store_calls[0] and "scope" not in store_calls[1]


# -- provider errors mean what they say --------------------------------------------------------


@E2E
@pytest.mark.parametrize("error", ["bad_refresh_token", "incorrect_client_credentials"])
def test_github_errors_in_a_200_answer_need_reauthorization(auth_server: Any, error: str) -> None:
    seed_token(auth_server)
    auth_server.knobs.refresh_error_200 = error
    result = run_oauthtok("token", "t", "--min-valid", "99999")
    assert result.returncode == 4 and "oauthtok reauthorize t" in result.stderr
    assert ("--client-secret-stdin" in result.stderr) == (error != "bad_refresh_token")
    assert shown()["status"] == "needs-reauthorization"  # a cron job stops retrying


@E2E
def test_a_second_revocation_answered_invalid_token_is_success(auth_server: Any) -> None:
    seed_token(auth_server)
    auth_server.knobs.revoke_replies = [(200, {}), (400, {"error": "invalid_token"})]
    result = run_oauthtok("delete", "t", "--yes")
    assert result.returncode == 0 and "revoked it at the provider" in result.stderr
    assert "warning" not in result.stderr


@E2E
def test_delete_says_when_the_grant_stays_live(auth_server: Any) -> None:
    seed_token(auth_server, service="testidp")  # no revocation URL
    result = run_oauthtok("delete", "t", "--yes")
    assert result.returncode == 0 and "stays live at the provider" in result.stderr


def error(code: str, description: str = "") -> oauth.OAuthError:
    return oauth.OAuthError(code, description)


@pytest.mark.parametrize(
    ("description", "words"),
    [
        ("AADSTS28003: Provided value for the input parameter scope cannot be empty",
         "scope can't be empty"),
        ("AADSTS700022: The provided value for the input parameter scope is not valid",
         "two APIs were mixed"),
        ("AADSTS700082: The refresh token has expired due to inactivity", "90 days unused"),
        ("AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret'",
         "recreate the token with --public"),
        ("AADSTS500113: No reply address is registered", None),
    ],
)  # fmt: skip
def test_microsoft_hints(description: str, words: str | None) -> None:
    ms = load_catalog()["microsoft"]
    record = make_record("w", token_auth=TokenAuth.CLIENT_SECRET_POST)
    text = str(renewal_failure(error("invalid_grant", description), record, ms))
    if words:
        assert words in text
    else:
        assert " — " not in text  # 500113 is not 50011


def test_never_suggest_public_to_a_public_client() -> None:
    ms = load_catalog()["microsoft"]
    exc = error("invalid_client", "AADSTS7000218: The request body must contain client_secret")
    confidential = str(sign_in_failure(exc, "x", ms, TokenAuth.CLIENT_SECRET_POST, "n"))
    public = str(sign_in_failure(exc, "x", ms, TokenAuth.NONE, "n"))
    assert "--public" in confidential and "--public" not in public
    assert "Allow public client flows" in public


@E2E
def test_a_missing_device_endpoint_says_use_paste(auth_server: Any) -> None:
    auth_server.knobs.device_status = 404
    result = create_token(auth_server, "--flow", "device", in_process=True)
    assert result.returncode == 5 and "use --flow paste" in result.stderr


@E2E
def test_a_wrong_client_secret_says_what_to_check(auth_server: Any) -> None:
    auth_server.add_client("client-w", "right", "client_secret_post")
    result = run_oauthtok(
        "create", "w", "--service", "testfull", "--client-id", "client-w",
        "--scopes", "offline_access", env={"OAUTHTOK_CLIENT_SECRET": "wrong"},
    )  # fmt: skip
    assert result.returncode == 5 and "check the client id and secret" in result.stderr
    assert "--client-secret-stdin" in result.stderr and "wrong" not in result.stderr


# -- headless fallback, help ---------------------------------------------------------------------


class Notes:
    def __init__(self) -> None:
        self.said: list[str] = []

    def authorization_url(self, url: str, paste: Any) -> None:
        raise AssertionError

    def device_code(self, device: Any) -> None:
        raise AssertionError

    def notice(self, message: str) -> None:
        self.said.append(message)


def test_the_catalog_chooses_the_headless_flow() -> None:
    google = load_catalog()["google"]
    assert google.headless_flow == Flow.PASTE
    ends = Endpoints("https://t/token", "https://t/auth", "https://t/device")
    ui = Notes()
    assert choose_flow(Flow.BROWSER, ends, False, ui, google.headless_flow) == Flow.PASTE
    assert choose_flow(Flow.BROWSER, ends, False, ui, None) == Flow.DEVICE
    assert choose_flow(Flow.BROWSER, ends, True, ui, google.headless_flow) == Flow.BROWSER


def test_help_texts_name_the_provider_switches() -> None:
    catalog = load_catalog()
    assert "Enable Device Flow" in catalog["github"].help
    assert "TVs and Limited Input devices" in catalog["google"].help


def test_show_help_on_a_terminal_keeps_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    buffer = io.StringIO()
    monkeypatch.setattr(views, "is_tty", lambda: True)
    monkeypatch.setattr(
        views, "console", lambda **_: Console(file=buffer, width=100, force_terminal=False)
    )
    views.show_help_view("microsoft")
    text = buffer.getvalue()
    assert "Grant admin consent for <tenant>" in text
    assert "--param tenant=<tenant id or contoso.com>" in text


# -- the interactive create never throws away what was typed ------------------------------------


@pytest.fixture
def interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "can_prompt", lambda: True)


@pytest.mark.usefixtures("keyring_env", "interactive")
def test_required_params_are_asked_right_after_the_service() -> None:
    result = runner.invoke(app, ["create", "n", "--service", "oidc"], input="https://x.example\n")
    asked = result.stderr.index("Issuer (--param issuer=…)")
    assert asked < result.stderr.index("Client id")  # before anything else is typed


@pytest.mark.usefixtures("keyring_env", "interactive")
def test_the_service_menu_forgives_case_and_suggests() -> None:
    result = runner.invoke(app, ["create", "n"], input="MICROSOFT\n")
    assert "No service" not in result.stderr and "Client id" in result.stderr
    typo = runner.invoke(app, ["create", "n"], input="micrsoft\nmicrosoft\n")
    assert "did you mean 'microsoft'?" in typo.stderr and "Client id" in typo.stderr


@pytest.mark.usefixtures("keyring_env", "interactive")
def test_an_empty_secret_means_a_public_client() -> None:
    result = runner.invoke(
        app, ["create", "n", "--service", "microsoft", "--client-id", "c"], input="\n"
    )
    assert "public client (PKCE only)" in result.stderr
    assert "Client secret (again)" not in result.stderr


@pytest.mark.usefixtures("keyring_env", "interactive")
def test_the_scope_picker_asks_again() -> None:
    answers = "99\nmail.sned\nn\n1,2\n"
    result = runner.invoke(
        app, ["create", "n", "--service", "microsoft", "--client-id", "c", "--public"],
        input=answers,
    )  # fmt: skip
    assert "There is no scope number 99" in result.stderr
    assert "did you mean" in result.stderr or "not in the microsoft catalog" in result.stderr
    assert result.stderr.count("Scopes (numbers or names") == 3
    assert "…" not in result.stderr  # every scope in full, folded where it must be
    scopes, current = [], ""
    for line in result.stderr.splitlines():
        cells = line.split("│")
        if len(cells) != 3:
            continue
        number, scope = cells[0].strip(), cells[1].strip()
        if number and current:
            scopes.append(current)
            current = ""
        current += scope
    scopes.append(current)
    assert "https://graph.microsoft.com/Directory.Read.All" in scopes


def test_no_secret_store_is_said_before_anything_is_asked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)  # no session bus to be found either
    result = subprocess.run(
        [sys.executable, "-m", "oauthtok", "create", "n", "--service", "microsoft"],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert result.returncode == 8
    assert "Client id" not in result.stderr and "Open this URL" not in result.stderr


# -- output in pipes and terminals ---------------------------------------------------------------


@pytest.mark.usefixtures("keyring_env")
def test_list_never_cuts_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    store = TokenStore()
    long_name = "shared-mailbox-of-the-accounts-payable-department-2026"
    store.add(make_record(long_name), make_secrets())
    buffer = io.StringIO()
    monkeypatch.setattr(views, "print_table", output.print_table)
    monkeypatch.setattr(output, "is_tty", lambda: True)
    monkeypatch.setattr(output, "console", lambda **_: Console(file=buffer, width=60))
    views.list_view(False)
    assert long_name in buffer.getvalue()


@E2E
def test_min_valid_longer_than_the_lifetime_is_said_once(auth_server: Any) -> None:
    seed_token(auth_server)
    first = run_oauthtok("token", "t", "--min-valid", "99999")
    second = run_oauthtok("token", "t", "--min-valid", "99999")
    assert first.returncode == second.returncode == 0
    assert "every call refreshes it" in first.stderr and second.stderr == ""


@E2E
def test_bash_completion_offers_names_services_and_choices(auth_server: Any) -> None:
    seed_token(auth_server, name="work-mail")
    seed_token(auth_server, name="work-graph")

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {**os.environ, "_OAUTHTOK_COMPLETE": "complete_bash", "COMP_WORDS": line,
               "COMP_CWORD": str(len(words) - 1)}  # fmt: skip
        program = str(Path(sys.executable).parent / "oauthtok")  # the installed command
        done = subprocess.run([program], env=env, capture_output=True, text=True, timeout=30)
        return done.stdout.split()

    assert complete("oauthtok token work-") == ["work-graph", "work-mail"]
    assert "microsoft" in complete("oauthtok create x --service mi")
    assert complete("oauthtok token x --format ") == [
        "raw",
        "header",
        "json",
        "xoauth2",
        "oauthbearer",
    ]
    assert "client-credentials" in complete("oauthtok create x --flow ")


def test_reauthorization_errors_keep_their_codes() -> None:
    record = make_record("x")
    assert isinstance(renewal_failure(error("invalid_grant"), record, None),
                      ReauthorizationRequired)  # fmt: skip
    assert isinstance(sign_in_failure(error("access_denied"), "x", None, TokenAuth.NONE, "x"),
                      AuthorizationFailed)  # fmt: skip


@E2E
def test_a_token_of_a_rejected_grant_comes_with_a_warning(auth_server: Any) -> None:
    seed_token(auth_server)
    auth_server.revoke_all()
    assert run_oauthtok("refresh", "t", "--force").returncode == 4
    result = run_oauthtok("token", "t")  # the access token has not expired yet
    assert result.returncode == 0 and result.stdout.startswith("at-")
    assert "rejected the last renewal" in result.stderr and "reauthorize t" in result.stderr


@pytest.mark.usefixtures("keyring_env", "interactive")
def test_a_bad_issuer_is_asked_again_at_once() -> None:
    result = runner.invoke(
        app,
        ["create", "n", "--service", "oidc"],
        input="http://example.com/realm\nhttps://x.example\n",
    )
    assert "endpoints must use https" in result.stderr and "try again" in result.stderr
    assert result.stderr.count("Issuer (--param issuer=…)") == 2
    assert "Client id" in result.stderr  # went on, nothing typed was lost
