"""The redirect listener over real loopback HTTP."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from oauthtok.errors import AuthorizationFailed
from oauthtok.loopback import LoopbackListener


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
