"""The temporary redirect listener of RFC 8252 §7.3, and nothing else.

Bound to loopback only (127.0.0.1, and ::1 too when the redirect host is `localhost`), on a free
port unless the redirect URI pins one. Each connection gets its own thread with a socket
timeout, so an idle pre-connection from the browser cannot block the real callback. Requests
for other paths get 404, requests without the right `state` get 400, and the wait goes on.
"""

from __future__ import annotations

import errno
import hmac
import html
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit, urlunsplit

from oauthtok.errors import AuthorizationFailed

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>oauthtok: {title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em}}</style>
</head><body><h1>{title}</h1><p>{body}</p></body></html>
"""


@dataclass(frozen=True)
class Callback:
    """What the redirect carried: a code, or the provider's error."""

    code: str | None = None
    error: str | None = None
    error_description: str | None = None

    def __repr__(self) -> str:  # the code is a secret until exchanged
        return f"Callback(error={self.error!r})"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], family: int, listener: LoopbackListener):
        self.address_family = family
        self.listener = listener
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # per connection: an idle pre-connection gives up, the others go on
    server: _Server
    server_version = "oauthtok"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the request line carries the authorization code."""

    def do_GET(self) -> None:
        self.server.listener._handle(self)

    def reply(self, status: int, title: str, body: str) -> None:
        page = PAGE.format(title=html.escape(title), body=body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(page)


class LoopbackListener:
    """Use as a context manager: `start()` on enter, `close()` on every exit path."""

    def __init__(self, redirect_uri: str, state: str | None = None) -> None:
        parts = urlsplit(redirect_uri)
        self._host = (parts.hostname or "127.0.0.1").lower()
        self._port = parts.port or 0
        self._path = parts.path or "/"
        self._scheme_host = parts.hostname
        self.state = state
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._done = threading.Event()
        self._result: Callback | None = None
        self._lock = threading.Lock()
        self.port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> LoopbackListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def redirect_uri(self) -> str:
        if self.port is None:
            raise RuntimeError("the listener is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return urlunsplit(("http", f"{host}:{self.port}", self._path, "", ""))

    def _addresses(self) -> list[tuple[int, str]]:
        if self._host == "localhost":
            return [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
        if ":" in self._host:
            return [(socket.AF_INET6, self._host)]
        return [(socket.AF_INET, self._host)]

    def start(self) -> None:
        addresses = self._addresses()
        for _attempt in range(20):
            try:
                self._bind_all(addresses)
                break
            except OSError as exc:
                self._close_servers()
                if self._port or exc.errno != errno.EADDRINUSE:
                    raise AuthorizationFailed(
                        f"cannot listen for the redirect on {self._host}:{self._port or 'any'} "
                        f"({exc.strerror or exc}); free the port or change the redirect URI"
                    ) from None
        else:  # pragma: no cover - 20 collisions in a row
            raise AuthorizationFailed("cannot find a free loopback port for the redirect")
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _bind_all(self, addresses: list[tuple[int, str]]) -> None:
        port = self._port
        for i, (family, host) in enumerate(addresses):
            try:
                server = _Server((host, port), family, self)
            except OSError as exc:
                # ::1 missing (no IPv6) is fine when 127.0.0.1 is already bound
                if i > 0 and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue
                raise
            self._servers.append(server)
            port = server.server_address[1]
        self.port = port

    def _close_servers(self) -> None:
        for server in self._servers:
            server.server_close()
        self._servers = []

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        self._close_servers()
        self._threads = []

    # -- waiting ----------------------------------------------------------------------------
    def wait(self, timeout: float) -> Callback:
        """Block until a valid redirect arrives; Ctrl-C interrupts (KeyboardInterrupt)."""
        deadline = time.monotonic() + timeout
        while not self._done.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise AuthorizationFailed(
                    f"no answer from the browser within {timeout:g} s; run the command again "
                    "(or raise --timeout)"
                )
        assert self._result is not None
        return self._result

    def offer(self, query: str) -> Callback | None:
        """Check a redirect's query string; record and return it when its state matches."""
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        given = params.get("state", "")
        if self.state is None or not hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), self.state.encode()
        ):
            return None
        callback = Callback(
            code=params.get("code") or None,
            error=params.get("error") or None,
            error_description=params.get("error_description") or None,
        )
        if callback.code is None and callback.error is None:
            callback = Callback(error="invalid_request", error_description="no code in redirect")
        with self._lock:
            if self._result is not None:
                return None
            self._result = callback
        self._done.set()
        return callback

    def _handle(self, request: _Handler) -> None:
        parts = urlsplit(request.path)
        if parts.path != self._path:
            request.reply(404, "Not found", "This is oauthtok's sign-in listener.")
            return
        if self._done.is_set():
            request.reply(400, "Already done", "This sign-in is finished; close this tab.")
            return
        callback = self.offer(parts.query)
        if callback is None:
            request.reply(
                400,
                "Not this sign-in",
                "This answer does not belong to the sign-in oauthtok is waiting for. "
                "Start again from the terminal.",
            )
        elif callback.error:
            detail = html.escape(callback.error)
            if callback.error_description:
                detail += ": " + html.escape(callback.error_description)
            request.reply(
                200,
                "Sign-in failed",
                f"The provider said {detail}. Return to the terminal for what to do next.",
            )
        else:
            request.reply(
                200,
                "Signed in",
                "oauthtok received the authorization. You can close this tab and return to "
                "the terminal.",
            )
