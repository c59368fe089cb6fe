"""`oauthtok test`'s logic against real servers: Dovecot (IMAP and submission, with its
oauth2 passdb asking the Authlib server by RFC 7662 introspection), a loopback HTTP(S)
server, and a scripted SMTP server for answers only big providers give."""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from oauthtok import logintest
from oauthtok.errors import AuthorizationFailed, ProviderError, UsageError
from tests import authserver
from tests.certs import ServerTLS, make_server_tls
from tests.dovecot import MAIL_CLIENT, Dovecot

USER = "alice@example.test"


# -- fixtures (the session's Dovecot and its authorization server: tests/conftest.py) ----------


@pytest.fixture
def token(mail_auth: authserver.TestAuthServer) -> str:
    """A fresh access token from the Authlib server (client credentials, over HTTP)."""
    response = httpx.post(
        f"{mail_auth.base_url}/token",
        data={"grant_type": "client_credentials", "scope": "mail.read mail.send"},
        auth=MAIL_CLIENT,
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        assert "\n" not in line
        self.append(line)


def soon(seconds: float = 10) -> float:
    return time.monotonic() + seconds


def mail_targets(d: Dovecot) -> list[tuple[Callable[..., None], int, str]]:
    return [
        (logintest.test_imap, d.imap_port, "starttls"),
        (logintest.test_imap, d.imaps_port, "implicit"),
        (logintest.test_smtp, d.submission_port, "starttls"),
        (logintest.test_smtp, d.submissions_port, "implicit"),
    ]


# -- real logins at Dovecot ---------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_real_logins_pass(dovecot: Dovecot, trust: Path, token: str, mechanism: str) -> None:
    for check, port, mode in mail_targets(dovecot):
        lines = Lines()
        check(
            "127.0.0.1",
            port,
            USER,
            token,
            tls_mode=mode,
            mechanism=mechanism,
            report=lines,
            deadline=soon(),
        )
        assert lines[0] == f"connected to 127.0.0.1:{port}"
        assert any(line.startswith("TLS: TLSv1.") and "verified" in line for line in lines)
        assert any(line.startswith("server offers:") and "XOAUTH2" in line for line in lines)
        verb = "AUTHENTICATE" if check is logintest.test_imap else "AUTH"
        assert lines[-1].startswith(f"{verb} {mechanism.upper()} as {USER}: ")
        assert "OK" in lines[-1] or " 235 " in lines[-1]
        assert token not in " ".join(lines)


def test_the_standard_mechanism_is_chosen_when_offered(
    dovecot: Dovecot, trust: Path, token: str
) -> None:
    lines = Lines()
    logintest.test_smtp(
        "127.0.0.1",
        dovecot.submission_port,
        USER,
        token,
        tls_mode="starttls",
        report=lines,
        deadline=soon(),
    )
    assert lines[-1].startswith("AUTH OAUTHBEARER as")


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_a_garbage_token_is_refused_with_the_servers_answer(
    dovecot: Dovecot, trust: Path, mechanism: str
) -> None:
    garbage = "at-not-a-token-this-server-issued"
    for check, port, mode in mail_targets(dovecot)[::2]:  # one IMAP, one SMTP
        lines = Lines()
        with pytest.raises(AuthorizationFailed) as info:
            check(
                "127.0.0.1",
                port,
                USER,
                garbage,
                tls_mode=mode,
                mechanism=mechanism,
                report=lines,
                deadline=soon(),
            )
        message = str(info.value)
        assert info.value.exit_code == 5
        assert garbage not in message and garbage not in " ".join(lines)
        assert lines[-1].endswith(": refused")
        # the decoded error challenge Dovecot sends, then the server's own final answer
        assert "server error: status=" in message
        if check is logintest.test_imap:
            assert message.endswith(
                "the server said: [AUTHENTICATIONFAILED] Authentication failed."
            )
        else:
            assert message.endswith("the server said: 535 5.7.8 Authentication failed.")


def test_a_revoked_token_is_refused(
    dovecot: Dovecot, mail_auth: authserver.TestAuthServer, trust: Path, token: str
) -> None:
    logintest.test_imap(
        "127.0.0.1",
        dovecot.imaps_port,
        USER,
        token,
        report=Lines(),
        tls_mode="implicit",
        deadline=soon(),
    )
    mail_auth.revoke_access_token(token)
    with pytest.raises(AuthorizationFailed) as info:
        logintest.test_imap(
            "127.0.0.1",
            dovecot.imaps_port,
            USER,
            token,
            report=Lines(),
            tls_mode="implicit",
            deadline=soon(),
        )
    assert info.value.exit_code == 5


def test_a_token_for_another_user_is_refused(dovecot: Dovecot, trust: Path, token: str) -> None:
    # Dovecot compares the introspected username with the SASL user
    with pytest.raises(AuthorizationFailed):
        logintest.test_smtp(
            "127.0.0.1",
            dovecot.submissions_port,
            "bob@example.test",
            token,
            tls_mode="implicit",
            report=Lines(),
            deadline=soon(),
        )


def test_tls_verification_fails_without_the_ca(
    dovecot: Dovecot, token: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other_ca = make_server_tls(tmp_path / "other").ca_file
    for cafile in (None, other_ca):
        if cafile is None:
            monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        else:
            monkeypatch.setenv("SSL_CERT_FILE", str(cafile))
        for check, port, mode in mail_targets(dovecot):
            lines = Lines()
            with pytest.raises(ProviderError) as info:
                check("127.0.0.1", port, USER, token, tls_mode=mode, report=lines, deadline=soon())
            message = str(info.value)
            assert info.value.exit_code == 6
            assert "certificate" in message and "SSL_CERT_FILE" in message
            assert (f"SSL_CERT_FILE={cafile} is in use" in message) == (cafile is not None)
            assert not any(line.startswith(("AUTH", "server offers")) for line in lines)


def test_plain_works_to_loopback(dovecot: Dovecot, token: str) -> None:
    lines = Lines()
    logintest.test_imap(
        "127.0.0.1", dovecot.imap_port, USER, token, tls_mode="plain", report=lines, deadline=soon()
    )
    assert "TLS: none (--plain, loopback only)" in lines
    assert lines[-1].startswith("AUTHENTICATE OAUTHBEARER as")


@pytest.mark.parametrize("host", ["mail.example.com", "192.0.2.1", "10.0.0.1", "::ffff:1.2.3.4"])
def test_plain_to_a_non_loopback_host_is_refused_before_connecting(host: str) -> None:
    for check in (logintest.test_imap, logintest.test_smtp):
        lines = Lines()
        with pytest.raises(UsageError, match="loopback") as info:
            check(host, 143, USER, "tok", tls_mode="plain", report=lines, deadline=soon())
        assert info.value.exit_code == 2
        assert lines == []


def test_implicit_tls_to_a_starttls_port_says_so(dovecot: Dovecot, trust: Path) -> None:
    with pytest.raises(ProviderError, match="STARTTLS port"):
        logintest.test_imap(
            "127.0.0.1",
            dovecot.imap_port,
            USER,
            "tok",
            tls_mode="implicit",
            report=Lines(),
            deadline=soon(),
        )


def test_an_unreachable_server_is_exit_6() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ProviderError, match="cannot connect") as info:
        logintest.test_smtp(
            "127.0.0.1", port, USER, "tok", tls_mode="plain", report=Lines(), deadline=soon()
        )
    assert info.value.exit_code == 6


def test_a_silent_server_hits_the_deadline() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts into the backlog, never greets
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ProviderError, match="in time"):
            logintest.test_imap(
                "127.0.0.1", port, USER, "tok", tls_mode="plain", report=Lines(), deadline=soon(0.5)
            )
        assert time.monotonic() - started < 3


# -- a scripted SMTP server, for Microsoft's answers --------------------------------------------


class ScriptedSMTP:
    """Plain SMTP on loopback: EHLO offers XOAUTH2, AUTH gets the scripted answer."""

    def __init__(self, auth_answers: list[bytes | None], offer: bytes = b"LOGIN XOAUTH2") -> None:
        self.answers = auth_answers  # None: say nothing (to test the deadline)
        self.offer = offer
        self.received: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(5)
        with conn, conn.makefile("rwb") as f:
            f.write(b"220 smtp.example.test ESMTP ready\r\n")
            f.flush()
            answers = list(self.answers)
            for line in f:
                self.received.append(line)
                verb = line.split(b" ", 1)[0].upper().strip()
                if verb == b"EHLO":
                    f.write(b"250-smtp.example.test\r\n250 AUTH " + self.offer + b"\r\n")
                elif verb == b"QUIT":
                    f.write(b"221 bye\r\n")
                    f.flush()
                    return
                elif answers:
                    answer = answers.pop(0)
                    if answer is not None:
                        f.write(answer)
                else:
                    f.write(b"503 unexpected\r\n")
                f.flush()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def test_microsofts_smtp_auth_disabled_gets_the_fix() -> None:
    answer = (
        b"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
        b"the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. "
        b"[AM0PR02CA0001.eurprd02.prod.outlook.com 2024-01-01T00:00:00.000Z]\r\n"
    )
    server = ScriptedSMTP([answer])
    try:
        with pytest.raises(AuthorizationFailed) as info:
            logintest.test_smtp(
                "127.0.0.1",
                server.port,
                USER,
                "secret-token-value",
                tls_mode="plain",
                report=Lines(),
                deadline=soon(),
            )
    finally:
        server.close()
    message = str(info.value)
    assert "Set-CASMailbox -Identity ADDRESS -SmtpClientAuthenticationDisabled $false" in message
    assert message.endswith(logintest.sanitize(answer.decode()))  # the answer, capped at 300
    assert len(message.split("the server said: ", 1)[1]) <= logintest.ANSWER_CAP
    assert "secret-token-value" not in message
    # XOAUTH2 with the initial response on the AUTH line (RFC 4954)
    assert server.received[1].startswith(b"AUTH XOAUTH2 dXNlcj1")


def test_a_gmail_style_error_challenge_is_decoded_and_answered() -> None:
    challenge = b"334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\r\n"  # noqa: E501
    final = (
        b"535-5.7.8 Username and Password not accepted.\r\n"
        b"535 5.7.8 https://support.google.com/mail/?p=BadCredentials\r\n"
    )
    server = ScriptedSMTP([challenge, final])
    try:
        with pytest.raises(AuthorizationFailed) as info:
            logintest.test_smtp(
                "127.0.0.1",
                server.port,
                USER,
                "tok",
                tls_mode="plain",
                report=Lines(),
                deadline=soon(),
            )
    finally:
        server.close()
    assert "status=400, schemes=Bearer, scope=https://mail.google.com/" in str(info.value)
    assert server.received[2] == b"\r\n"  # XOAUTH2: an empty line ends the failed exchange


def test_oauthbearer_ends_a_refused_exchange_with_a_lone_ctrl_a() -> None:
    # RFC 7628 §3.2.3: after the error challenge the client sends %x01, then gets the failure
    challenge = b"334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n"  # {"status":"invalid_token"}
    server = ScriptedSMTP([challenge, b"535 5.7.8 nope\r\n"], offer=b"OAUTHBEARER XOAUTH2")
    try:
        with pytest.raises(AuthorizationFailed, match="status=invalid_token"):
            logintest.test_smtp(
                "127.0.0.1",
                server.port,
                USER,
                "tok",
                tls_mode="plain",
                report=Lines(),
                deadline=soon(),
            )
    finally:
        server.close()
    assert server.received[1].startswith(b"AUTH OAUTHBEARER bixhPWFsaWNl")  # "n,a=alice"
    assert server.received[2] == b"AQ==\r\n"


def test_a_server_silent_after_auth_hits_the_deadline() -> None:
    server = ScriptedSMTP([None])
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError, match="did not answer in time \\(AUTH\\)"):
            logintest.test_smtp(
                "127.0.0.1",
                server.port,
                USER,
                "tok",
                tls_mode="plain",
                report=Lines(),
                deadline=soon(0.5),
            )
    finally:
        server.close()
    assert time.monotonic() - started < 3


def test_server_text_is_sanitized_and_the_token_masked() -> None:
    text = "NO \x1b[31mbad\x07 token tok-123 " + "x" * 400
    clean = logintest.sanitize(text, secrets=("tok-123",))
    assert "\x1b" not in clean and "\x07" not in clean and "tok-123" not in clean
    assert "[token]" in clean and len(clean) == logintest.ANSWER_CAP


# -- HTTP ---------------------------------------------------------------------------------------


class BearerHandler(http.server.BaseHTTPRequestHandler):
    expected = "good-token"

    def do_GET(self) -> None:
        if self.path == "/missing":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"no such thing")
            return
        if self.headers.get("Authorization") == f"Bearer {self.expected}":
            body = b'{"ok": true}'
            self.send_response(200)
        else:
            body = b'{"error": {"code": "InvalidAuthenticationToken"}}'
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                'Bearer error="invalid_token", error_description="The token expired"',
            )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_http(scheme: str, folder: Path) -> Iterator[tuple[str, ServerTLS]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BearerHandler)
    tls = make_server_tls(folder / "web-tls")
    if scheme == "https":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_port}", tls
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["http", "https"])
def web(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, ServerTLS]]:
    with serve_http(request.param, tmp_path) as served:
        yield served


def test_http_passes_with_the_right_token(
    web: tuple[str, ServerTLS], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, tls = web
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    lines = Lines()
    logintest.test_http(f"{base}/me", "good-token", report=lines, deadline=soon())
    assert lines[-1] == f"GET {base}/me: HTTP 200 OK (12 bytes)"
    assert any(line.startswith("TLS: TLSv1.") for line in lines) == base.startswith("https")


def test_http_refusal_is_exit_5_with_the_bearer_error(
    web: tuple[str, ServerTLS], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, tls = web
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    with pytest.raises(AuthorizationFailed) as info:
        logintest.test_http(f"{base}/me", "stale-token", report=Lines(), deadline=soon())
    message = str(info.value)
    assert "error=invalid_token, error_description=The token expired" in message
    assert message.endswith(
        'HTTP 401 Unauthorized {"error": {"code": "InvalidAuthenticationToken"}}'
    )
    assert "stale-token" not in message


def test_http_other_statuses_are_no_verdict(
    web: tuple[str, ServerTLS], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, tls = web
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    with pytest.raises(ProviderError, match="HTTP 404"):
        logintest.test_http(f"{base}/missing", "good-token", report=Lines(), deadline=soon())


def test_https_without_the_ca_fails_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with (
        serve_http("https", tmp_path) as (base, _),
        pytest.raises(ProviderError, match=r"certificate.*SSL_CERT_FILE") as info,
    ):
        logintest.test_http(f"{base}/me", "good-token", report=Lines(), deadline=soon())
    assert info.value.exit_code == 6


def test_http_to_a_remote_host_in_clear_is_refused() -> None:
    with pytest.raises(UsageError, match="unencrypted"):
        logintest.test_http("http://graph.example.com/me", "t", report=Lines(), deadline=soon())


# -- the small rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "protocol", "expected"),
    [
        ("outlook.office365.com", "imap", ("outlook.office365.com", 993)),
        ("smtp.office365.com", "smtp", ("smtp.office365.com", 587)),
        ("mail.example.com:143", "imap", ("mail.example.com", 143)),
        ("[::1]:2525", "smtp", ("::1", 2525)),
        ("[::1]", "imap", ("::1", 993)),
    ],
)
def test_parse_target(value: str, protocol: str, expected: tuple[str, int]) -> None:
    assert logintest.parse_target(value, protocol) == expected


@pytest.mark.parametrize("value", ["", ":993", "host:0", "host:70000", "host:abc", "[::1]x"])
def test_parse_target_refuses(value: str) -> None:
    with pytest.raises(UsageError):
        logintest.parse_target(value, "imap")


def test_tls_mode_defaults_by_port() -> None:
    assert logintest.resolve_tls_mode("h", 993, None) == "implicit"
    assert logintest.resolve_tls_mode("h", 465, None) == "implicit"
    for port in (143, 587, 25):
        assert logintest.resolve_tls_mode("h", port, None) == "starttls"
    with pytest.raises(UsageError, match="--tls"):
        logintest.resolve_tls_mode("h", 2525, None)
    assert logintest.resolve_tls_mode("h", 2525, "starttls") == "starttls"
    assert logintest.resolve_tls_mode("localhost", 2525, "plain") == "plain"
    assert logintest.resolve_tls_mode("::1", 2525, "plain") == "plain"


def test_mechanism_choice() -> None:
    assert logintest.choose_mechanism({"XOAUTH2", "OAUTHBEARER"}, None, "h") == "OAUTHBEARER"
    assert logintest.choose_mechanism({"XOAUTH2", "PLAIN"}, None, "h") == "XOAUTH2"
    assert logintest.choose_mechanism({"OAUTHBEARER"}, "xoauth2", "h") == "XOAUTH2"
    with pytest.raises(AuthorizationFailed, match="no OAuth mechanism"):
        logintest.choose_mechanism({"PLAIN", "LOGIN"}, None, "h")
    with pytest.raises(UsageError):
        logintest.choose_mechanism(set(), "plain", "h")


def test_ssl_cert_file_that_is_missing_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "nope.pem"))
    with pytest.raises(UsageError, match="SSL_CERT_FILE"):
        logintest.ssl_context()


def test_the_functions_are_not_collected_as_tests() -> None:
    assert getattr(logintest.test_imap, "__test__", True) is False
