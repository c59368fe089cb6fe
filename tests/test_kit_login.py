"""`oauthtok test` end to end: a token created by `create`'s command at the Authlib server that
Dovecot trusts (its oauth2 passdb asks that server by RFC 7662 introspection), then a real
IMAP and SMTP login at that Dovecot over TLS on loopback."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import create_in_process, run_in_process, run_oauthtok

pytestmark = pytest.mark.usefixtures("keyring_env", "trust")

USER = "alice@example.test"  # the `username` the authorization server reports to Dovecot
CLIENT = ("kit-login", "kit-login-secret")


@pytest.fixture
def mailbox(mail_auth: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A token named `box`, created by `oauthtok create`'s command (client credentials) at the
    authorization server Dovecot trusts; its access tokens are JWTs naming the account."""
    catalog = tmp_path / "mail.toml"
    catalog.write_text(
        f"""
[services.mailidp]
title = "The test mail provider"
token_url = "{mail_auth.base_url}/token"
introspection_url = "{mail_auth.base_url}/introspect"
token_auth = "client_secret_basic"
[services.mailidp.scopes]
"mail.read" = "Read mail"
"mail.send" = "Send mail"
"""
    )
    monkeypatch.setenv("OAUTHTOK_SERVICES", str(catalog))
    mail_auth.add_client(*CLIENT, "client_secret_basic", scope="mail.read mail.send")
    mail_auth.knobs.jwt_access_tokens = {"preferred_username": USER}
    try:
        created = create_in_process(  # `create`'s command in this process
            "box", "--service", "mailidp", "--client-id", CLIENT[0],
            "--flow", "client-credentials", "--scopes", "mail.read mail.send",
            env={"OAUTHTOK_CLIENT_SECRET": CLIENT[1]},
        )  # fmt: skip
    finally:
        mail_auth.knobs.jwt_access_tokens = None  # the server is the session's
    assert created.returncode == 0, created.stderr
    yield "box"


def test_imap_and_smtp_logins_work(dovecot: Any, mailbox: str) -> None:
    imap = run_oauthtok("test", mailbox, "--imap", f"127.0.0.1:{dovecot.imaps_port}", "--tls")
    assert imap.returncode == 0, imap.stderr
    lines = imap.stdout.splitlines()
    assert lines[0] == f"connected to 127.0.0.1:{dovecot.imaps_port}"
    assert any(line.startswith("TLS: TLSv1.") for line in lines)
    # the user is the token's account (from its claims): no --user needed
    assert any(line.startswith(f"AUTHENTICATE OAUTHBEARER as {USER}: OK") for line in lines)
    assert lines[-1] == "OK: the server accepted the token"
    smtp = run_oauthtok(
        "test", mailbox, "--smtp", f"127.0.0.1:{dovecot.submission_port}", "--starttls",
        "--user", USER, "--mechanism", "XOAUTH2",
    )  # fmt: skip
    assert smtp.returncode == 0, smtp.stderr
    assert "AUTH XOAUTH2 as alice@example.test" in smtp.stdout, smtp.stdout
    token = run_oauthtok("token", mailbox).stdout.strip()
    assert token not in imap.stdout + imap.stderr + smtp.stdout + smtp.stderr


def test_a_refused_token_is_exit_5_with_the_servers_answer(
    dovecot: Any, mail_auth: Any, mailbox: str
) -> None:
    mail_auth.revoke_access_token(run_oauthtok("token", mailbox).stdout.strip())
    result = run_oauthtok("test", mailbox, "--imap", f"127.0.0.1:{dovecot.imap_port}",
                          "--starttls")  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("oauthtok: error: 127.0.0.1 refused the token")
    assert "the server said:" in result.stderr and "AUTHENTICATE" in result.stderr
    assert "AUTHENTICATE OAUTHBEARER as alice@example.test: refused" in result.stdout


def test_another_user_is_refused(dovecot: Any, mailbox: str) -> None:
    result = run_oauthtok("test", mailbox, "--smtp", f"127.0.0.1:{dovecot.submissions_port}",
                          "--tls", "--user", "mallory@example.test")  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert "the server said: 535" in result.stderr


def test_unreachable_or_untrusted_is_exit_6(
    dovecot: Any, mailbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nobody listens once it is closed
    down = run_oauthtok("test", mailbox, "--imap", f"127.0.0.1:{closed}", "--tls")
    assert down.returncode == 6 and "cannot connect to 127.0.0.1" in down.stderr
    monkeypatch.delenv("SSL_CERT_FILE")  # the throwaway CA is no longer trusted
    untrusted = run_oauthtok("test", mailbox, "--imap", f"127.0.0.1:{dovecot.imaps_port}",
                             "--tls")  # fmt: skip
    assert untrusted.returncode == 6 and "SSL_CERT_FILE" in untrusted.stderr


def test_usage_errors_come_before_the_token(mailbox: str) -> None:
    """`test`'s command in the test process: its checks and their order are the subject."""
    for args, why in (
        (["--imap", "127.0.0.1:1143"], "no usual TLS mode"),
        (["--imap", "mail.example.test", "--plain"], "loopback"),
        (["--imap", "a", "--smtp", "b"], "one of --imap"),
        ([], "one of --imap"),
        (["--imap", "a", "--tls", "--plain"], "one of --tls"),
        (["--url", "https://x.example", "--user", "a"], "--url takes none"),
    ):
        result = run_in_process("test", mailbox, *args)
        assert result.returncode == 2 and why in result.stderr, (args, result.stderr)
    # checked before the token is looked up: a usage error, not "no such token"
    assert run_in_process("test", "nope", "--imap", "127.0.0.1:1143").returncode == 2
    assert run_in_process("test", "nope", "--imap", "127.0.0.1:993").returncode == 3
