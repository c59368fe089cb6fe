"""The temporary redirect listener of RFC 8252 §7.3, and nothing else.

Bound to loopback only (127.0.0.1, and ::1 too when the redirect host is `localhost`), on a free
port unless the redirect URI pins one. Each connection gets its own thread, so an idle
pre-connection from the browser cannot block the real callback. Requests for other paths get
404, requests without the right `state` get 400, and the wait goes on.

Whatever else connects to the port cannot disturb it, or the terminal:

* it is silent: no log line (the request line carries the authorization code) and no traceback
  for a peer that resets the connection or sends garbage;
* at most MAX_CONNECTIONS handler threads: when all are taken, the oldest connection is hung
  up to make room (so a peer holding idle connections cannot keep the browser out), and if
  none frees up at once, the new connection is closed;
* each connection has CONNECTION_DEADLINE_S in total (not per read): a peer trickling bytes
  loses its thread then, and never holds the wait, which has its own timeout.

Once the state matches, an optional `check` decides whether the answer may be used (the RFC
9207 `iss` check plugs in here): when it refuses, the browser page says sign-in failed and
`wait()` raises the check's error.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import html
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from oauthtok.errors import AuthorizationFailed, OauthtokError
from oauthtok.sanitize import terminal_text

#: handler threads at most, per listening socket
MAX_CONNECTIONS = 16
#: the whole life of one connection, from accept to close
CONNECTION_DEADLINE_S = 10.0
#: how often a listener checks for a shutdown and for connections past their deadline
POLL_S = 0.05
#: the `error` of the Callback that `offer` returns for an answer the check refused
REFUSED = "oauthtok_refused"

#: decides whether a redirect whose state matched may be used; it gets the query parameters
#: and raises (an OauthtokError such as AuthorizationFailed, with the line to show) to refuse
Check = Callable[[Mapping[str, str]], None]

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
    #: the issuer the response names (RFC 9207), when it names one
    iss: str | None = None

    def __repr__(self) -> str:  # the code is a secret until exchanged
        return f"Callback(error={self.error!r})"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    # a burst of connections (a browser's pre-connections, or a flood) waits in the kernel's
    # queue instead of being dropped into a second-long SYN retry
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], family: int, listener: LoopbackListener):
        self.address_family = family
        self.listener = listener
        #: open connections and their deadlines, oldest first
        self._live: dict[socket.socket, float] = {}
        self._room = threading.Condition()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: a peer that resets the connection or sends garbage is no news, and the
        default traceback on stderr could end up in someone's terminal or log."""

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection, within MAX_CONNECTIONS (see the module docstring)."""
        with self._room:
            if len(self._live) >= MAX_CONNECTIONS:
                _hang_up(next(iter(self._live)))  # the oldest: its thread ends at once
                self._room.wait_for(lambda: len(self._live) < MAX_CONNECTIONS, timeout=0.5)
            admitted = len(self._live) < MAX_CONNECTIONS
            if admitted:
                self._live[request] = time.monotonic() + CONNECTION_DEADLINE_S
        if not admitted:
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._room:
            # forgotten before it is closed: _hang_up never touches a closed socket
            self._live.pop(request, None)
            self._room.notify_all()
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Called by serve_forever at every poll: hang up connections past their deadline."""
        now = time.monotonic()
        with self._room:
            for connection, deadline in self._live.items():
                if deadline <= now:
                    _hang_up(connection)

    def hang_up_all(self) -> None:
        with self._room:
            for connection in self._live:
                _hang_up(connection)


def _hang_up(connection: socket.socket) -> None:
    """Wake the connection's thread: its blocked read returns end-of-file, a write fails."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    timeout = CONNECTION_DEADLINE_S  # per read; the server also ends each connection by then
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

    def __init__(
        self, redirect_uri: str, state: str | None = None, check: Check | None = None
    ) -> None:
        parts = urlsplit(redirect_uri)
        self._host = (parts.hostname or "127.0.0.1").lower()
        self._port = parts.port or 0
        self._path = parts.path or "/"
        self.state = state
        #: see `Check`; may be set after start(), like `state`
        self.check = check
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._done = threading.Event()
        #: the browser has been sent its page (so closing the listener cannot cut it off)
        self._answered = threading.Event()
        self._result: Callback | None = None
        self._failure: BaseException | None = None
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
                target=server.serve_forever, kwargs={"poll_interval": POLL_S}, daemon=True
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
        # each shutdown waits for its listener's next poll: wait for all of them at once
        stoppers = [threading.Thread(target=s.shutdown, daemon=True) for s in self._servers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=5)
        for server in self._servers:
            server.hang_up_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._close_servers()
        self._threads = []

    # -- waiting ----------------------------------------------------------------------------
    def wait(self, timeout: float) -> Callback:
        """Block until a redirect with the right state arrives, and return it; Ctrl-C
        interrupts (KeyboardInterrupt). Raises what the check raised when it refused the
        redirect, and AuthorizationFailed when the timeout passes first."""
        deadline = time.monotonic() + timeout
        while not self._done.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise AuthorizationFailed(
                    f"no answer from the browser within {timeout:g} s; run the command again "
                    "(or raise --timeout)"
                )
        # the browser's page is written before the listener closes (a few ms; bounded)
        self._answered.wait(max(0.0, min(5.0, deadline - time.monotonic())))
        if self._failure is not None:
            raise self._failure
        assert self._result is not None
        return self._result

    def offer(self, query: str, *, from_browser: bool = False) -> Callback | None:
        """Consider a redirect's query string (from the browser, or pasted).

        None when it is not for this sign-in (no or wrong state) or the sign-in already has its
        answer: ignore it and go on waiting. Otherwise the answer ends the wait, and this
        returns its Callback; when the check refused it, that Callback has error REFUSED, no
        code, and the check's message as error_description, and `wait()` raises the check's
        error. Never raises itself (a paste-reading thread calls it).
        """
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        given = params.get("state", "")
        if self.state is None or not hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), self.state.encode()
        ):
            return None
        if self._done.is_set():
            return None
        failure: BaseException | None = None
        check = self.check
        if check is not None:
            try:
                check(params)
            except Exception as exc:  # an OauthtokError refuses; anything else is a bug
                failure = exc
        if failure is not None:
            message = failure.message if isinstance(failure, OauthtokError) else None
            callback = Callback(error=REFUSED, error_description=message)
        else:
            callback = Callback(
                code=params.get("code") or None,
                error=params.get("error") or None,
                error_description=params.get("error_description") or None,
                iss=params.get("iss") or None,
            )
            if callback.code is None and callback.error is None:
                callback = Callback(
                    error="invalid_request", error_description="no code in redirect"
                )
        with self._lock:
            if self._done.is_set():
                return None
            self._result = callback
            self._failure = failure
            if not from_browser:  # pasted: no page to write
                self._answered.set()
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
        callback = self.offer(parts.query, from_browser=True)
        try:
            self._reply(request, callback)
        finally:
            if callback is not None:
                self._answered.set()

    def _reply(self, request: _Handler, callback: Callback | None) -> None:
        if callback is None:
            request.reply(
                400,
                "Not this sign-in",
                "This answer does not belong to the sign-in oauthtok is waiting for. "
                "Start again from the terminal.",
            )
        elif callback.error == REFUSED:
            reason = _page_text(callback.error_description or "the answer failed a check")
            request.reply(
                200,
                "Sign-in failed",
                f"oauthtok refused this answer: {reason}. Nothing was saved; return to the "
                "terminal for what to do next.",
            )
        elif callback.error:
            detail = _page_text(callback.error)
            if callback.error_description:
                detail += ": " + _page_text(callback.error_description)
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


def _page_text(text: str) -> str:
    """Outside text for the page: bidi and control characters shown as escapes, capped,
    HTML-escaped."""
    return html.escape(terminal_text(text))
