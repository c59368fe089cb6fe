"""The redirect listener over real loopback HTTP."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from oauthtok import loopback
from oauthtok.errors import AuthorizationFailed
from oauthtok.loopback import MAX_CONNECTIONS, REFUSED, LoopbackListener


def get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, body


def test_stray_requests_are_ignored_and_the_code_is_taken() -> None:
    with LoopbackListener("http://127.0.0.1/callback", state="S" * 43) as listener:
        port = listener.port
        assert port and listener.redirect_uri == f"http://127.0.0.1:{port}/callback"
        assert get(port, "/favicon.ico")[0] == 404
        assert get(port, "/callback?code=x&state=wrong")[0] == 400
        assert get(port, "/callback?code=x")[0] == 400
        status, body = get(port, "/callback?code=THE-CODE&state=" + "S" * 43)
        assert status == 200 and "Signed in" in body and "THE-CODE" not in body
        result = listener.wait(1)
        assert result.code == "THE-CODE" and "THE-CODE" not in repr(result)
        assert get(port, "/callback?code=again&state=" + "S" * 43)[0] == 400
    with pytest.raises(OSError):  # closed on exit
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_provider_error_is_escaped_on_the_page() -> None:
    with LoopbackListener("http://127.0.0.1/", state="st") as listener:
        status, body = get(
            listener.port or 0,
            "/?state=st&error=access_denied&error_description=%3Cscript%3Ealert(1)%3C/script%3E",
        )
        assert status == 200 and "Sign-in failed" in body
        assert "<script>" not in body and "&lt;script&gt;" in body
        result = listener.wait(1)
    assert result.error == "access_denied" and result.code is None


def test_idle_preconnection_does_not_block_the_callback() -> None:
    with LoopbackListener("http://127.0.0.1/cb", state="st") as listener:
        port = listener.port or 0
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        started = time.monotonic()
        assert get(port, "/cb?code=c&state=st")[0] == 200
        assert time.monotonic() - started < 2
        assert listener.wait(1).code == "c"
        for sock in idle:
            sock.close()


def test_times_out() -> None:
    with LoopbackListener("http://127.0.0.1/cb", state="st") as listener:
        started = time.monotonic()
        with pytest.raises(AuthorizationFailed, match=r"within 0\.5 s"):
            listener.wait(0.5)
        assert time.monotonic() - started < 2


def test_localhost_listens_on_both_loopback_families() -> None:
    with LoopbackListener("http://localhost/", state="st") as listener:
        port = listener.port or 0
        assert listener.redirect_uri == f"http://localhost:{port}/"
        assert get(port, "/nope")[0] == 404
        if socket.has_ipv6:
            try:
                assert get(port, "/nope", host="::1")[0] == 404
            except OSError:
                pytest.skip("no IPv6 loopback here")


def test_binds_loopback_only() -> None:
    with LoopbackListener("http://127.0.0.1/", state="st") as listener:
        for server in listener._servers:
            assert server.server_address[0] in ("127.0.0.1", "::1")


def test_pinned_port_in_use_is_a_clear_error() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        with (
            pytest.raises(AuthorizationFailed, match="cannot listen"),
            LoopbackListener(f"http://127.0.0.1:{port}/", state="st"),
        ):
            pass
    finally:
        blocker.close()


def test_ctrl_c_interrupts_the_wait() -> None:
    import _thread

    with LoopbackListener("http://127.0.0.1/", state="st") as listener:
        threading.Timer(0.3, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            listener.wait(30)


# -- hardening: quiet, bounded, and a check after the state ----------------------------------
ABUSE = r"""
import os, socket, struct, sys, time, http.client
from oauthtok.loopback import LoopbackListener

def rst(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

with LoopbackListener("http://127.0.0.1/cb", state="st") as listener:
    port = listener.port
    def connect():
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    for _ in range(5):  # reset while the handler waits for the rest of the request line
        s = connect(); s.sendall(b"GET /cb?co"); time.sleep(0.05); rst(s)
    for _ in range(5):  # reset before sending anything
        rst(connect())
    for _ in range(5):  # a whole request, then reset before the answer is read
        s = connect(); s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"); rst(s)
    for junk in (os.urandom(4096), b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
                 b"GET /\xff\xfe HTTP/1.1\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                 b"\r\n\r\n", b"BREW /cb HTTP/1.1\r\n\r\n"):
        s = connect()
        try:
            s.sendall(junk + b"\r\n\r\n"); s.recv(65536)
        except OSError:
            pass
        s.close()
    s = connect(); s.sendall(b"GET /cb?code=x&st"); s.close()  # half a request, then FIN
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/cb?code=REAL&state=st")
    status = conn.getresponse().status
    print("OK", status, listener.wait(5).code)
"""


def test_abuse_leaves_no_trace_on_stderr(tmp_path: Path) -> None:
    script = tmp_path / "abuse.py"
    script.write_text(ABUSE)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "OK 200 REAL", done.stderr[-2000:]
    assert done.stderr == ""


def test_thread_cap_keeps_the_callback_working() -> None:
    with LoopbackListener("http://127.0.0.1/cb", state="st") as listener:
        port = listener.port or 0
        server = listener._servers[0]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3 * MAX_CONNECTIONS)]
        started = time.monotonic()
        # accepted after every idle connection before it
        assert get(port, "/cb?code=c&state=st")[0] == 200
        assert time.monotonic() - started < 2
        assert len(server._live) <= MAX_CONNECTIONS
        assert listener.wait(1).code == "c"
        # the oldest were hung up to make room: they read end-of-file
        idle[0].settimeout(2)
        assert idle[0].recv(10) == b""
        for sock in idle:
            sock.close()


def test_when_no_thread_frees_up_a_new_connection_is_closed_at_once() -> None:
    stuck = threading.Event()

    def slow_check(params: Mapping[str, str]) -> None:
        stuck.wait(10)  # a check that hangs: hanging up its connection does not free it

    with LoopbackListener("http://127.0.0.1/cb", state="st", check=slow_check) as listener:
        port = listener.port or 0
        busy = []
        for _ in range(MAX_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /cb?code=c&state=st HTTP/1.1\r\n\r\n")
            busy.append(sock)
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(3)
        started = time.monotonic()
        assert extra.recv(10) == b""  # closed without a thread
        assert time.monotonic() - started < 1.5
        assert len(listener._servers[0]._live) <= MAX_CONNECTIONS
        stuck.set()
        for sock in [*busy, extra]:
            sock.close()


def test_a_trickling_peer_loses_its_connection_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loopback, "CONNECTION_DEADLINE_S", 0.5)
    with LoopbackListener("http://127.0.0.1/cb", state="st") as listener:
        port = listener.port or 0
        slow = socket.create_connection(("127.0.0.1", port))
        started = time.monotonic()
        hung_up = None
        for byte in b"GET /cb?code=x&state=st HTTP/1.1\r\n" * 10:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                hung_up = time.monotonic() - started
                break
            time.sleep(0.05)  # each read is quick: only a total deadline ends this
        assert hung_up is not None and hung_up < 1.5
        assert not listener._servers[0]._live
        assert get(port, "/cb?code=c&state=st")[0] == 200  # the wait went on meanwhile
        assert listener.wait(1).code == "c"
        slow.close()


def refuse(params: Mapping[str, str]) -> None:
    raise AuthorizationFailed(
        f"the answer names issuer {params.get('iss')!r}, not 'https://honest.example'"
    )


def test_a_refused_answer_fails_the_sign_in_and_says_so_on_the_page() -> None:
    with LoopbackListener("http://127.0.0.1/cb", state="st", check=refuse) as listener:
        port = listener.port or 0
        assert get(port, "/cb?code=c&state=wrong&iss=x")[0] == 400  # state first: ignored
        status, body = get(port, "/cb?code=SECRET&state=st&iss=https%3A%2F%2Fevil%3Cb%3E")
        assert status == 200 and "Sign-in failed" in body and "refused" in body
        assert "evil&lt;b&gt;" in body and "<b>" not in body and "SECRET" not in body
        with pytest.raises(AuthorizationFailed, match="names issuer 'https://evil<b>'"):
            listener.wait(1)
        assert get(port, "/cb?code=c&state=st")[0] == 400  # already done


def test_a_refused_paste_ends_the_wait_without_a_code() -> None:
    with LoopbackListener("http://127.0.0.1/cb", state="st", check=refuse) as listener:
        assert listener.offer("code=c&state=nope") is None
        callback = listener.offer("code=c&state=st&iss=https%3A%2F%2Fevil")
        assert callback is not None and callback.error == REFUSED and callback.code is None
        assert callback.error_description and "evil" in callback.error_description
        with pytest.raises(AuthorizationFailed, match="evil"):
            listener.wait(1)
        assert listener.offer("code=c&state=st") is None


def test_an_accepted_answer_carries_iss() -> None:
    seen: list[Mapping[str, str]] = []
    with LoopbackListener("http://127.0.0.1/cb", state="st", check=seen.append) as listener:
        listener.check = seen.append  # may be set after start, like the state
        assert get(listener.port or 0, "/cb?code=c&state=st&iss=https%3A%2F%2Fidp")[0] == 200
        callback = listener.wait(1)
    assert callback.code == "c" and callback.iss == "https://idp"
    assert seen and seen[0]["iss"] == "https://idp"


def test_a_broken_check_is_raised_not_swallowed() -> None:
    def broken(params: Mapping[str, str]) -> None:
        raise KeyError("bug")

    with LoopbackListener("http://127.0.0.1/cb", state="st", check=broken) as listener:
        status, body = get(listener.port or 0, "/cb?code=c&state=st")
        assert status == 200 and "Sign-in failed" in body
        with pytest.raises(KeyError):
            listener.wait(1)


def test_provider_text_on_the_page_shows_bidi_and_controls() -> None:
    with LoopbackListener("http://127.0.0.1/", state="st") as listener:
        _, body = get(
            listener.port or 0,
            "/?state=st&error=access_denied&error_description=abc%E2%80%AEgnp.exe%1B%5B2J",
        )
    assert "\u202e" not in body and "\x1b" not in body
    assert "abc\\u202egnp.exe\\x1b[2J" in body


def test_the_page_is_written_in_full_before_the_listener_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sign-in goes on (and closes the listener) as soon as the answer is taken: the
    browser's page must not be cut off by that close."""
    original = loopback._Handler.reply

    def slow_reply(self: loopback._Handler, status: int, title: str, body: str) -> None:
        time.sleep(0.5)  # the wait has returned by now, were it not for the page
        original(self, status, title, body)

    monkeypatch.setattr(loopback._Handler, "reply", slow_reply)
    pages: list[tuple[int, str]] = []
    with LoopbackListener("http://127.0.0.1/cb", state="st") as listener:
        port = listener.port or 0
        browser = threading.Thread(target=lambda: pages.append(get(port, "/cb?code=C&state=st")))
        browser.start()
        assert listener.wait(5).code == "C"
    browser.join(10)
    assert pages and pages[0][0] == 200 and "Signed in" in pages[0][1]
