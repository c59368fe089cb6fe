"""Bounded HTTP against real loopback servers that trickle, flood, nest or present bad TLS."""

from __future__ import annotations

import functools
import gzip
import json
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oauthtok import netio
from oauthtok.errors import CatalogError, ProviderError
from oauthtok.netio import Reply, new_http_client, send
from tests.helpers_terminal import assert_terminal_safe
from tests.rawserver import RawServer, make_certificate, read_request, server_tls

#: how long past its deadline a request may end (thread scheduling on a busy CI machine)
SLACK = 0.6


@pytest.fixture(autouse=True)
def _no_proxies_or_ca_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with new_http_client() as c:
        yield c


def answer(status: str, headers: dict[str, str], body: bytes) -> Callable[[socket.socket], None]:
    """A handler that reads the request and sends one well-formed answer."""

    def handle(conn: socket.socket) -> None:
        handle.request = read_request(conn)  # type: ignore[attr-defined]
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.sendall(head.encode() + b"\r\n" + body)

    return handle


def until_closed(conn: socket.socket, chunks: Iterator[bytes], pause: float = 0.0) -> None:
    """Send chunks until the client hangs up."""
    try:
        for chunk in chunks:
            conn.sendall(chunk)
            if pause:
                time.sleep(pause)
    except OSError:
        return


def forever(chunk: bytes) -> Iterator[bytes]:
    while True:
        yield chunk


# -- the ordinary case ----------------------------------------------------------------------
def test_form_post_and_json_answer(client: httpx.Client) -> None:
    handler = answer("200 OK", {"Content-Type": "application/json"}, b'{"access_token": "t"}')
    with RawServer(handler) as server:
        reply = send(
            client,
            "POST",
            f"http://127.0.0.1:{server.port}/token",
            data={"grant_type": "refresh_token", "refresh_token": "r"},
            headers={"Accept": "application/json"},
        )
    assert reply.status == 200 and reply.json() == {"access_token": "t"}
    request = handler.request  # type: ignore[attr-defined]
    assert b"grant_type=refresh_token&refresh_token=r" in request
    assert b"accept-encoding: identity" in request.lower()
    assert b"user-agent: oauthtok/" in request.lower()
    assert "access_token" not in repr(reply) and "200" in repr(reply)


def test_error_status_is_a_reply(client: httpx.Client) -> None:
    body = b'{"error": "invalid_grant"}'
    with RawServer(answer("400 Bad Request", {"Content-Type": "application/json"}, body)) as s:
        reply = send(client, "POST", f"http://127.0.0.1:{s.port}/token", data={"a": "b"})
    assert reply.status == 400 and reply.fields() == {"error": "invalid_grant"}


def test_gzip_answer_is_decoded(client: httpx.Client) -> None:
    body = gzip.compress(b'{"ok": true}')
    with RawServer(answer("200 OK", {"Content-Encoding": "gzip"}, body)) as server:
        reply = send(client, "GET", f"http://127.0.0.1:{server.port}/")
    assert reply.json() == {"ok": True}


def test_unknown_encoding_is_refused(client: httpx.Client) -> None:
    unsupported = pytest.raises(ProviderError, match=r"encoding oauthtok does not read \(br\)")
    with RawServer(answer("200 OK", {"Content-Encoding": "br"}, b"xx")) as server, unsupported:
        send(client, "GET", f"http://127.0.0.1:{server.port}/")


# -- the total deadline ---------------------------------------------------------------------
def timed(call: Callable[[], object]) -> tuple[ProviderError, float]:
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        call()
    return caught.value, time.monotonic() - started


def test_trickled_headers_end_at_the_deadline(client: httpx.Client) -> None:
    """One header byte at a time: each read is quick, so only a total deadline ends it."""

    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        until_closed(conn, forever(b"a"), pause=0.05)

    with RawServer(handle) as server:
        url = f"http://127.0.0.1:{server.port}/token"
        error, took = timed(lambda: send(client, "POST", url, data={}, deadline_s=0.5))
    assert "timed out after 0.5 s" in str(error) and f"127.0.0.1:{server.port}" in str(error)
    assert took < 0.5 + SLACK


def test_trickled_body_ends_at_the_deadline(client: httpx.Client) -> None:
    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{")
        until_closed(conn, forever(b" "), pause=0.05)

    with RawServer(handle) as server:
        url = f"http://127.0.0.1:{server.port}/"
        error, took = timed(lambda: send(client, "GET", url, deadline_s=0.5))
    assert "did not answer in time" in str(error) and took < 0.5 + SLACK


def test_another_client_is_still_bounded_once_the_headers_are_in() -> None:
    """`send` checks the deadline between body chunks too, for a client it did not make."""

    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{")
        until_closed(conn, forever(b" "), pause=0.05)

    with RawServer(handle) as server, httpx.Client() as plain:
        url = f"http://127.0.0.1:{server.port}/"
        error, took = timed(lambda: send(plain, "GET", url, deadline_s=0.5))
    assert "timed out after 0.5 s" in str(error) and took < 0.5 + SLACK


def test_silent_server_and_silent_tls_end_at_the_deadline(client: httpx.Client) -> None:
    release = threading.Event()

    def handle(conn: socket.socket) -> None:
        release.wait(10)  # accepts, then says nothing (not even a TLS hello)

    with RawServer(handle) as server:
        for scheme in ("http", "https"):
            url = f"{scheme}://127.0.0.1:{server.port}/"
            error, took = timed(functools.partial(send, client, "GET", url, deadline_s=0.5))
            assert "timed out after 0.5 s" in str(error) and took < 0.5 + SLACK
        release.set()


def test_slow_name_lookup_ends_at_the_deadline(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getaddrinfo has no timeout: a dead resolver must not hold the command (unit: the
    resolver is replaced, everything else is real)."""
    real = socket.getaddrinfo

    def slow(host: str, *args: object, **kwargs: object) -> object:
        if host == "slow.invalid":
            time.sleep(3)
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    error, took = timed(lambda: send(client, "GET", "http://slow.invalid/", deadline_s=0.5))
    assert "timed out after 0.5 s" in str(error) and took < 0.5 + SLACK


def test_failed_name_lookup_names_the_host(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(ProviderError, match=r"cannot find the address of login\.example\.invalid"):
        send(client, "GET", "https://login.example.invalid/token")


def test_the_proxy_connection_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        until_closed(conn, forever(b"a"), pause=0.05)

    with RawServer(handle) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        with new_http_client() as client:
            url = "http://provider.invalid/token"
            error, took = timed(lambda: send(client, "GET", url, deadline_s=0.5))
    assert "timed out" in str(error) and took < 0.5 + SLACK


# -- the size cap ---------------------------------------------------------------------------
def peak_memory(call: Callable[[], object]) -> tuple[ProviderError, int]:
    tracemalloc.start()
    try:
        with pytest.raises(ProviderError) as caught:
            call()
        return caught.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_declared_huge_answer_is_refused_before_reading(client: httpx.Client) -> None:
    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 30000000\r\n\r\n")
        until_closed(conn, (b"x" * 65536 for _ in range(458)))

    with RawServer(handle) as server:
        url = f"http://127.0.0.1:{server.port}/"
        started = time.monotonic()
        error, peak = peak_memory(lambda: send(client, "GET", url))
    assert "too large (over 1 MB)" in str(error)
    assert time.monotonic() - started < 2 and peak < 1_000_000


@pytest.mark.parametrize("chunked", [False, True], ids=["until-close", "chunked"])
def test_streamed_huge_answer_stops_at_the_cap(client: httpx.Client, chunked: bool) -> None:
    piece = b"x" * 65536

    def handle(conn: socket.socket) -> None:
        read_request(conn)
        if chunked:
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            frame = b"%x\r\n%s\r\n" % (len(piece), piece)
            until_closed(conn, (frame for _ in range(458)))
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            until_closed(conn, (piece for _ in range(458)))  # 30 MB

    with RawServer(handle) as server:
        url = f"http://127.0.0.1:{server.port}/"
        error, peak = peak_memory(lambda: send(client, "GET", url))
    assert "too large (over 1 MB)" in str(error)
    assert peak < 3_000_000  # the cap and a few chunks, not 30 MB


def test_gzip_bomb_stops_at_the_cap(client: httpx.Client) -> None:
    bomb = gzip.compress(b"\0" * 30_000_000, compresslevel=9)  # about 30 kB
    with RawServer(answer("200 OK", {"Content-Encoding": "gzip"}, bomb)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        error, peak = peak_memory(lambda: send(client, "GET", url))
    assert "too large (over 1 MB)" in str(error)
    assert peak < 3_000_000


def test_a_smaller_cap(client: httpx.Client) -> None:
    with RawServer(answer("200 OK", {}, b"x" * 5000)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        with pytest.raises(ProviderError, match=r"over 4 kB"):
            send(client, "GET", url, max_bytes=4000)


# -- JSON -----------------------------------------------------------------------------------
def test_deeply_nested_json_from_a_server(client: httpx.Client) -> None:
    with RawServer(answer("200 OK", {"Content-Type": "application/json"}, b"[" * 500_000)) as s:
        reply = send(client, "GET", f"http://127.0.0.1:{s.port}/")
    with pytest.raises(ProviderError, match="nested more than 64 levels"):
        reply.json()
    with pytest.raises(ProviderError, match="nested more than 64 levels"):
        reply.fields()


def nested(depth: int) -> bytes:
    value: object = "leaf"
    for _ in range(depth - 1):
        value = {"a": value}
    return json.dumps({"a": value} if depth else value).encode()


def reply(body: bytes, content_type: str = "application/json", status: int = 200) -> Reply:
    return Reply(status, httpx.Headers({"content-type": content_type}), body, "https://idp/x")


def test_json_depth_limit_and_kinds() -> None:
    assert reply(nested(64)).json()
    with pytest.raises(ProviderError, match="nested more than 64"):
        reply(nested(65)).json()
    with pytest.raises(ProviderError, match="nested more than 64"):
        reply(b'{"a": ' + b"[" * 70 + b"]" * 70 + b"}").json()
    with pytest.raises(ProviderError, match=r"idp answered HTTP 200 with a JSON array"):
        reply(b"[1, 2]").json()
    with pytest.raises(ProviderError, match="JSON string, not an object"):
        reply(b'"x"').json()
    with pytest.raises(ProviderError, match=r"not JSON \(text/html\)"):
        reply(b"<html>oops</html>", "text/html").json()
    with pytest.raises(ProviderError, match="not JSON"):
        reply(b'{"n": ' + b"1" * 5000 + b"}").json()  # beyond CPython's int digits limit
    with pytest.raises(ProviderError, match="not JSON"):
        reply(b'{"a": "\xff"}').json()


def test_fields_reads_forms_and_ignores_pages() -> None:
    form = b"access_token=gho_x&scope=repo%2Cgist&token_type=bearer"
    assert reply(form, "application/x-www-form-urlencoded; charset=utf-8").fields() == {
        "access_token": "gho_x",
        "scope": "repo,gist",
        "token_type": "bearer",
    }
    assert reply(b"<html>error=x</html>", "text/html").fields() == {}
    assert reply(b"&".join([b"a=b"] * 500), "text/plain").fields() == {}
    assert reply(b'{"error": "x"}', "text/html").fields() == {"error": "x"}


# -- TLS ------------------------------------------------------------------------------------
def tls_server(folder: Path, **cert: object) -> tuple[RawServer, Path]:
    cert_file, key_file = make_certificate(folder, **cert)  # type: ignore[arg-type]
    handler = answer("200 OK", {"Content-Type": "application/json"}, b'{"ok": 1}')
    return RawServer(handler, tls=server_tls(cert_file, key_file)), cert_file


def test_untrusted_certificate_names_the_problem_and_ssl_cert_file(tmp_path: Path) -> None:
    server, _ = tls_server(tmp_path)
    with server, new_http_client() as client, pytest.raises(ProviderError) as caught:
        send(client, "GET", f"https://127.0.0.1:{server.port}/")
    message = str(caught.value)
    assert "self-signed certificate" in message or "self signed certificate" in message
    assert "SSL_CERT_FILE" in message and f"127.0.0.1:{server.port}" in message
    assert "cannot reach" not in message
    assert_terminal_safe(message, newlines=False)


def test_certifi_bundle_is_loaded_at_the_first_handshake(tmp_path: Path) -> None:
    """The default trust (certifi's bundle) costs ~40 ms to parse, so it is loaded when the
    first TLS handshake needs it: never for plain http, and before any certificate check."""
    plain = RawServer(answer("200 OK", {"Content-Type": "application/json"}, b'{"ok": 1}'))
    server, _ = tls_server(tmp_path)
    with plain, server, new_http_client() as client:
        context = client._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.cert_store_stats()["x509_ca"] == 0
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert send(client, "GET", f"http://127.0.0.1:{plain.port}/").json() == {"ok": 1}
        assert context.cert_store_stats()["x509_ca"] == 0
        with pytest.raises(ProviderError, match=r"self.signed certificate"):
            send(client, "GET", f"https://127.0.0.1:{server.port}/")
        assert context.cert_store_stats()["x509_ca"] > 100  # certifi's, not the server's


def test_ssl_cert_file_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, cert_file = tls_server(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    with server, new_http_client() as client:
        assert send(client, "GET", f"https://127.0.0.1:{server.port}/").json() == {"ok": 1}


def test_expired_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, cert_file = tls_server(tmp_path, expired=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    expired = pytest.raises(ProviderError, match=r"\(certificate has expired\).*SSL_CERT_FILE")
    with server, new_http_client() as client, expired:
        send(client, "GET", f"https://127.0.0.1:{server.port}/")


def test_hostname_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, cert_file = tls_server(tmp_path, names=("other.example",), ips=())
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    with server, new_http_client() as client:
        # localhost: ::1 first where it exists (refused: the server is on 127.0.0.1), then
        # 127.0.0.1
        with pytest.raises(ProviderError, match=r"\(Hostname mismatch, certificate is not valid"):
            send(client, "GET", f"https://localhost:{server.port}/")
        with pytest.raises(ProviderError, match=r"\(IP address mismatch"):
            send(client, "GET", f"https://127.0.0.1:{server.port}/")


def test_unusable_ssl_cert_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(CatalogError, match=r"SSL_CERT_FILE=.*missing\.pem cannot be used"):
        new_http_client()
    # a file without certificates: found at the first TLS handshake (plain http needs none)
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    server, _ = tls_server(tmp_path)
    plain = RawServer(answer("200 OK", {"Content-Type": "application/json"}, b'{"ok": 1}'))
    with server, plain, new_http_client() as client:
        assert send(client, "GET", f"http://127.0.0.1:{plain.port}/").json() == {"ok": 1}
        with pytest.raises(CatalogError, match=r"SSL_CERT_FILE=.*empty\.pem cannot be used"):
            send(client, "GET", f"https://127.0.0.1:{server.port}/")


# -- connections ----------------------------------------------------------------------------
def test_connection_refused_names_the_host(client: httpx.Client) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(
        ProviderError, match=rf"cannot reach 127\.0\.0\.1:{port}: connection refused"
    ):
        send(client, "GET", f"http://127.0.0.1:{port}/")


def test_broken_answer(client: httpx.Client) -> None:
    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"this is not HTTP at all\r\n\r\n")

    malformed = pytest.raises(ProviderError, match="malformed HTTP answer")
    with RawServer(handle) as server, malformed:
        send(client, "GET", f"http://127.0.0.1:{server.port}/")


def test_every_transport_gets_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    with new_http_client() as client:
        pools = [t._pool for t in [client._transport, *client._mounts.values()] if t]  # type: ignore[attr-defined]
        assert len(pools) >= 2
        assert all(isinstance(p._network_backend, netio._DeadlineBackend) for p in pools)


def test_unexpected_transport_fails_loudly() -> None:
    mock = httpx.MockTransport(lambda r: httpx.Response(200))
    with httpx.Client(transport=mock) as client, pytest.raises(RuntimeError, match="pin httpx"):
        netio._install_deadlines(client)


def test_display_host() -> None:
    assert netio.display_host("https://user:pw@login.example:8443/x") == "login.example:8443"
    assert netio.display_host("https://[::1]:80/") == "[::1]:80"
    assert netio.display_host("https://evil\x1b.example/") == "evil\\x1b.example"
    assert netio.display_host("https://ev[il\x1b/") == "https://ev[il\\x1b/"  # unparsable


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
            max_leaves=30,
        ).map(lambda v: json.dumps(v).encode()),
        st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(min_value=1, max_value=3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    ),
    st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]),
)
def test_fuzz_reply_parsing(body: bytes, content_type: str) -> None:
    """Whatever the body, json() and fields() give a dict or raise ProviderError."""
    for parse in (reply(body, content_type).json, reply(body, content_type).fields):
        try:
            value = parse()
        except ProviderError as exc:
            assert_terminal_safe(str(exc), newlines=False)
        else:
            assert isinstance(value, dict)
