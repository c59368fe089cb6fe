"""Bounded HTTP: every request oauthtok sends to a provider goes through `send`.

A provider (or whatever answers in its place) must not be able to hold a command or fill its
memory. So each request has

* a TOTAL deadline, not a per-read timeout: name resolution, connecting, the TLS handshake,
  sending, the status line, the headers and the body all count against one monotonic deadline.
  A server that trickles one byte a second is cut off when the deadline passes, in whatever
  phase it trickles. `new_http_client` installs this at the socket layer (see
  `_DeadlineBackend`); `send` checks the deadline between body chunks as well, so even another
  httpx.Client is bounded once the headers are in.
* a size cap (1 MB, as Go's x/oauth2 caps token responses): a Content-Length over the cap is
  refused before the body is read, a longer body is cut off while streaming at cap + 1 byte,
  and a compressed body is decompressed with the same bound (no gzip bomb).
* one-line errors (ProviderError, exit 6) that say what happened: timed out after N s, answer
  too large, the certificate problem and SSL_CERT_FILE, connection refused or unreachable.

TLS: `new_http_client` trusts SSL_CERT_FILE / SSL_CERT_DIR when set (like curl, git, requests
and httpx itself), else certifi's bundle, as httpx does by default. Either is loaded at the
first TLS handshake, so a plain-http (loopback) provider never pays for parsing a bundle.

httpx is imported lazily: importing this module costs nothing on paths that send nothing.
"""

from __future__ import annotations

import contextvars
import errno
import functools
import json
import os
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlsplit

from oauthtok import __version__
from oauthtok.errors import CatalogError, ProviderError
from oauthtok.sanitize import terminal_text

if TYPE_CHECKING:
    import ssl

    import httpcore
    import httpx

#: the whole request, from name resolution to the last body byte
DEFAULT_DEADLINE_S = 30.0
#: the largest answer read (Go's x/oauth2 uses 1 << 20 for token responses)
MAX_BYTES = 1_000_000
#: JSON nested deeper than this is refused (OAuth answers are two or three levels deep)
MAX_JSON_DEPTH = 64

#: the deadline (time.monotonic()) of the request running in this thread, for the socket layer
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "oauthtok_netio_deadline", default=None
)


# -- the answer -----------------------------------------------------------------------------
class Reply:
    """A provider's answer, read whole (at most the cap). Its repr never shows the body."""

    __slots__ = ("body", "headers", "host", "status", "url")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, url: str) -> None:
        self.status = status
        #: case-insensitive (an httpx.Headers)
        self.headers = headers
        self.body = body
        self.url = url
        #: host[:port], safe to print
        self.host = display_host(url)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.host!r}, {len(self.body)} bytes)"

    def json(self) -> dict[str, Any]:
        """The body as a JSON object. Raises ProviderError when it is not JSON, is nested more
        than 64 levels deep, or is an array, string or number rather than an object."""
        try:
            value = json.loads(self.body)
        except RecursionError:  # the C parser gives up around 1000 levels
            raise self._too_deep() from None
        except ValueError:  # also UnicodeDecodeError, and ints beyond 4300 digits
            kind = self.headers.get("content-type", "no content type").split(";")[0]
            raise ProviderError(
                f"{self.host} answered HTTP {self.status} with something that is not JSON "
                f"({terminal_text(kind, 60)}); retry later, or check the endpoint URL"
            ) from None
        if not _depth_within(value, MAX_JSON_DEPTH):
            raise self._too_deep()
        if not isinstance(value, dict):
            raise ProviderError(
                f"{self.host} answered HTTP {self.status} with a JSON "
                f"{_json_kind(value)}, not an object; retry later, or check the endpoint URL"
            )
        return value

    def fields(self) -> dict[str, Any]:
        """The body's fields, for reading error answers too: a JSON object (strictly, as
        `json`), or a form-encoded body (GitHub answers so without Accept: application/json),
        or {} for anything else (an HTML error page)."""
        if self.body.lstrip()[:1] in (b"{", b"["):
            return self.json()
        kind = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/x-www-form-urlencoded", "text/plain"):
            return {}
        try:
            pairs = parse_qsl(self.body.decode("utf-8", "replace"), max_num_fields=100)
        except ValueError:  # more fields than any OAuth answer has
            return {}
        return dict(pairs)

    def _too_deep(self) -> ProviderError:
        return ProviderError(
            f"{self.host} answered with JSON nested more than {MAX_JSON_DEPTH} levels deep; "
            "refusing it"
        )


def _depth_within(value: object, limit: int) -> bool:
    """Whether parsed JSON nests at most `limit` levels (iteratively: no recursion to abuse)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def display_host(url: str) -> str:
    """host[:port] of a URL, safe to print (never a userinfo part)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return terminal_text(url, 80)
    if ":" in host:
        host = f"[{host}]"
    return terminal_text(f"{host}:{port}" if port else host or url, 120)


def _size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000} MB"
    if n >= 1000:
        return f"{n / 1000:g} kB"
    return f"{n} bytes"


# -- sending --------------------------------------------------------------------------------
def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    deadline_s: float = DEFAULT_DEADLINE_S,
    max_bytes: int = MAX_BYTES,
) -> Reply:
    """Send one request and read the whole answer, within `deadline_s` seconds in total and
    `max_bytes` bytes of body. `data` is sent as a form. Redirects are not followed.

    Raises ProviderError (one line, naming the host) for a timeout, an answer over the cap, an
    unsupported Content-Encoding, a TLS failure (the certificate problem and SSL_CERT_FILE), a
    refused or unreachable connection, a failed name lookup, or a broken HTTP answer. Any HTTP
    status is a Reply: the caller decides what a 400 or 503 means.
    """
    import httpx

    if not deadline_s > 0:
        raise ValueError("deadline_s must be positive")
    host = display_host(url)
    deadline = time.monotonic() + deadline_s
    # identity: a provider has no reason to compress a token answer, and we decompress with a
    # bound anyway (see _decoder) if it does
    sent_headers = {"Accept-Encoding": "identity", **(headers or {})}
    token = _DEADLINE.set(deadline)
    try:
        with client.stream(
            method,
            url,
            data=dict(data) if data is not None else None,
            headers=sent_headers,
            timeout=httpx.Timeout(deadline_s),
        ) as response:
            declared = response.headers.get("content-length", "").strip()
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(host, max_bytes)
            body = _read_body(response.iter_raw(), response.headers, deadline, max_bytes, host)
            if time.monotonic() > deadline:
                raise _timed_out(host, deadline_s)
            return Reply(response.status_code, response.headers, body, url)
    except _DeadlinePassed:
        raise _timed_out(host, deadline_s) from None
    except httpx.TimeoutException:
        raise _timed_out(host, deadline_s) from None
    except httpx.HTTPError as exc:
        raise transport_error(exc, host) from None
    except httpx.InvalidURL:
        raise ProviderError(f"cannot send a request to the invalid URL {host}") from None
    finally:
        _DEADLINE.reset(token)


class _DeadlinePassed(Exception):
    pass


def _timed_out(host: str, deadline_s: float) -> ProviderError:
    return ProviderError(
        f"{host} did not answer in time (timed out after {deadline_s:g} s); check the network "
        "and retry"
    )


def _too_large(host: str, max_bytes: int) -> ProviderError:
    return ProviderError(f"{host} sent an answer too large (over {_size(max_bytes)}); refusing it")


def _read_body(
    chunks: Iterator[bytes],
    headers: Mapping[str, str],
    deadline: float,
    max_bytes: int,
    host: str,
) -> bytes:
    """The body, decoded, never more than max_bytes + one chunk in memory."""
    decode = _decoder(headers.get("content-encoding", ""), host)
    body = bytearray()
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise _DeadlinePassed
        body += decode(chunk, max_bytes + 1 - len(body)) if decode else chunk
        if len(body) > max_bytes:
            raise _too_large(host, max_bytes)
    return bytes(body)


def _decoder(encoding: str, host: str) -> Callable[[bytes, int], bytes] | None:
    """A bounded decompressor for gzip/deflate: it never makes more than the room left."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()  # RFC 9110 §8.4.1.2: the zlib format
    else:
        raise ProviderError(
            f"{host} sent its answer in an encoding oauthtok does not read "
            f"({terminal_text(encoding, 40)}); retry later"
        )

    def decode(chunk: bytes, room: int) -> bytes:
        # at most `room` bytes out, and room is max_bytes + 1 - what we have: when the output
        # fills it, the caller refuses the answer, whatever is left undecompressed
        try:
            return inflater.decompress(chunk, max(room, 1))  # (0 would mean "no limit")
        except zlib.error:
            raise ProviderError(f"{host} sent a corrupt {encoding} answer; retry later") from None

    return decode


def transport_error(exc: BaseException, host: str) -> ProviderError:
    """One line for a failure below HTTP, naming the host and what to check."""
    import ssl

    import httpx

    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            problem = cause.verify_message or cause.reason or "not trusted"
            problem = terminal_text(problem, 120).rstrip(".")
            return ProviderError(
                f"the TLS certificate of {host} was refused ({problem}); if a private CA or a "
                "TLS-inspecting proxy signs it, set SSL_CERT_FILE to a PEM bundle with that CA"
            )
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            reason = terminal_text(cause.reason or type(cause).__name__, 80)
            return ProviderError(
                f"the TLS connection to {host} failed ({reason}); check SSL_CERT_FILE and any "
                "proxy, then retry"
            )
        if isinstance(cause, socket.gaierror):
            return ProviderError(
                f"cannot find the address of {host} (name lookup failed); check the URL and "
                "the network, then retry"
            )
        if isinstance(cause, ConnectionRefusedError):
            return ProviderError(
                f"cannot reach {host}: connection refused; check the URL (and the port), then retry"
            )
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return ProviderError(
                f"cannot reach {host}: network unreachable; check the network, then retry"
            )
    if isinstance(exc, httpx.ProxyError):
        return ProviderError(
            f"the proxy did not connect to {host}; check HTTPS_PROXY / NO_PROXY, then retry"
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return ProviderError(f"{host} broke off or sent a malformed HTTP answer; retry later")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ProviderError(f"cannot send a request to {host}: the URL is not http(s)")
    return ProviderError(f"cannot reach {host} ({type(exc).__name__}); check the network and retry")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# -- the client -----------------------------------------------------------------------------
def tls_context() -> ssl.SSLContext:
    """Certificate verification as the environment asks: SSL_CERT_FILE and/or SSL_CERT_DIR
    when set (they replace the default bundle, as for curl and httpx), else certifi's bundle.

    The certificates are loaded at the first TLS handshake (`_DeadlineStream.start_tls`), not
    now: parsing a bundle costs more than a whole `oauthtok token` run, and a provider on
    loopback over plain http never needs one. Until then the context trusts no certificate, so
    a handshake that bypassed the loading would fail verification, never pass it.

    Raises CatalogError (exit 7: configuration) when a set variable names nothing — here — or
    names something that holds no certificates — at the first handshake.
    """
    import ssl

    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    for name, path in (("SSL_CERT_FILE", cafile), ("SSL_CERT_DIR", capath)):
        if path is not None and not os.path.exists(path):
            raise _unusable_trust(f"{name}={path}", os.strerror(errno.ENOENT))
    context = _deferred_ca_class()(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    context.trust = (cafile, capath)  # type: ignore[attr-defined]
    keylog = os.environ.get("SSLKEYLOGFILE")  # as ssl.create_default_context does
    if keylog and not sys.flags.ignore_environment:
        context.keylog_filename = keylog
    return context


def _unusable_trust(which: str, why: str) -> CatalogError:
    return CatalogError(
        f"{terminal_text(which, 200)} cannot be used ({terminal_text(why, 80)}); point it "
        "at a PEM file of CA certificates, or unset it"
    )


_LOADING = threading.Lock()


@functools.cache
def _deferred_ca_class() -> type[ssl.SSLContext]:
    import ssl

    class DeferredCA(ssl.SSLContext):
        """An SSLContext whose CA certificates are loaded at the first handshake."""

        loaded = False
        trust: tuple[str | None, str | None] = (None, None)

    return DeferredCA


def _load_deferred(context: ssl.SSLContext) -> None:
    """Load the certificates of a `tls_context` context, once: SSL_CERT_FILE / SSL_CERT_DIR
    as they were when it was made, else certifi's bundle."""
    import ssl

    if not isinstance(context, _deferred_ca_class()) or getattr(context, "loaded", True):
        return
    with _LOADING:
        if getattr(context, "loaded", True):
            return
        cafile, capath = getattr(context, "trust", (None, None))
        if cafile is None and capath is None:
            import certifi

            context.load_verify_locations(cafile=certifi.where())
        else:
            try:
                context.load_verify_locations(cafile=cafile, capath=capath)
            except (OSError, ssl.SSLError) as exc:
                which = f"SSL_CERT_FILE={cafile}" if cafile else f"SSL_CERT_DIR={capath}"
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else None
                raise _unusable_trust(which, why or "no certificates") from None
        context.loaded = True  # type: ignore[attr-defined]


def new_http_client() -> httpx.Client:
    """The httpx.Client for provider requests: TLS per `tls_context`, no redirects followed,
    proxies from the environment (HTTPS_PROXY, NO_PROXY), and the total deadline of `send`
    enforced on every socket operation of every transport."""
    import httpx

    client = httpx.Client(
        verify=tls_context(),
        follow_redirects=False,
        trust_env=True,
        timeout=DEFAULT_DEADLINE_S,
        headers={"User-Agent": f"oauthtok/{__version__}"},
    )
    _install_deadlines(client)
    return client


def _install_deadlines(client: httpx.Client) -> None:
    """Wrap the network backend of each of the client's connection pools.

    httpcore pools take a `network_backend`, but httpx 0.28 does not pass one through, so this
    reaches into two attributes (`Client._transport` / `_mounts`, `HTTPTransport._pool`). It
    checks what it finds and fails loudly (a RuntimeError, caught by the tests) if httpx
    changes, rather than silently losing the deadline.
    """
    import httpx

    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        if transport is None:  # a NO_PROXY pattern
            continue
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(transport, httpx.HTTPTransport) or backend is None:
            raise RuntimeError(
                "httpx's transport is not what oauthtok.netio expects; the total deadline "
                "cannot be installed (pin httpx to a tested version)"
            )
        if not isinstance(backend, _DeadlineBackend):
            pool._network_backend = cast("httpcore.NetworkBackend", _DeadlineBackend(backend))  # type: ignore[union-attr]


def _left(timeout: float | None, phase: str) -> float | None:
    """The timeout for one socket operation: the smaller of httpcore's and the time left."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        import httpcore

        kind = {"connect": httpcore.ConnectTimeout, "write": httpcore.WriteTimeout}.get(
            phase, httpcore.ReadTimeout
        )
        raise kind("the total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """An httpcore NetworkStream whose every read, write and TLS handshake ends by the
    deadline of the request in progress (a per-operation timeout alone lets a trickle go on)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, "read"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, "write"))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> _DeadlineStream:
        # CPython bounds the whole handshake by the socket timeout, not each read
        _load_deferred(ssl_context)
        inner = self._inner.start_tls(ssl_context, server_hostname, _left(timeout, "connect"))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend:
    """An httpcore NetworkBackend: name resolution and connecting end by the deadline too."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> _DeadlineStream:
        import httpcore

        last: Exception | None = None
        for address in _resolve(host, port, _left(timeout, "connect")):
            try:
                stream = self._inner.connect_tcp(
                    address, port, _left(timeout, "connect"), local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # like socket.create_connection: next address
                last = exc
                continue
            return _DeadlineStream(stream)
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> _DeadlineStream:
        stream = self._inner.connect_unix_socket(path, _left(timeout, "connect"), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses of `host`, in getaddrinfo's order, within `timeout`.

    getaddrinfo has no timeout of its own (a dead resolver can take 30 s and more), so it runs
    in a daemon thread that is left behind if the deadline passes first.
    """
    import httpcore

    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return [host]
    except OSError:
        pass
    found: list[Any] = []
    failed: list[OSError] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="oauthtok-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise httpcore.ConnectTimeout(f"looking up {host} took too long")
    addresses: list[str] = []
    for *_, sockaddr in found:
        if sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    if failed or not addresses:
        # raised while handling the lookup error, so it stays the __context__ (httpcore's pool
        # re-raises with `from None`, which drops __cause__ but keeps __context__)
        try:
            raise failed[0] if failed else socket.gaierror(socket.EAI_NONAME, "no address")
        except OSError as exc:
            raise httpcore.ConnectError(f"looking up {host} failed") from exc
    return addresses
