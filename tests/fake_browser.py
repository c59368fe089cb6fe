"""A scripted browser for $BROWSER: follows the authorization URL and comes back to the
loopback listener the way a real browser does after the user clicks "Accept".

FAKE_BROWSER_MODE:
  follow       follow the redirect to the listener (default)
  noise        first a favicon request and an idle pre-connection, then follow
  wrong-state  come back with a tampered state (the listener must keep waiting)
  nothing      open nothing (the user walked away)
FAKE_BROWSER_LOG: a file to append what the listener answered.
Standard library only, as a browser shares nothing with oauthtok.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def get(url: str) -> tuple[int, dict[str, str], str]:
    """GET `url` (plain HTTP on loopback) as HTTP/1.1 with `Connection: close`: (status,
    headers with lower-case names, body). A socket, not http.client: the browser runs as a
    process for every sign-in the tests make, and http.client's imports (email's parser among
    them) cost it ~60 ms of CPU each time."""
    parts = urlsplit(url)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: fake-browser\r\n"
        "Accept: text/html\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=30) as conn:
        conn.sendall(request.encode("ascii"))
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("iso-8859-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunked(body)
    return int(status_line.split()[1]), headers, body.decode("utf-8", "replace")


def _unchunked(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def log(line: str) -> None:
    target = os.environ.get("FAKE_BROWSER_LOG")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def main() -> int:
    url = sys.argv[1]
    mode = os.environ.get("FAKE_BROWSER_MODE", "follow")
    # a browser must never inherit the client secret from oauthtok's environment
    log(f"secret in environment: {'OAUTHTOK_CLIENT_SECRET' in os.environ}")
    if mode == "nothing":
        return 0
    status, headers, _ = get(url)
    location = headers.get("location")
    if status not in (301, 302, 303, 307) or not location:
        log(f"authorize: {status}")
        return 1
    back = urlsplit(location)
    idle = None
    if mode == "noise":
        idle = socket.create_connection((back.hostname, back.port))  # pre-connect, send nothing
        status, _, _ = get(urlunsplit((back.scheme, back.netloc, "/favicon.ico", "", "")))
        log(f"favicon: {status}")
    if mode == "wrong-state":
        query = dict(parse_qsl(back.query))
        query["state"] = "forged-" + query.get("state", "")
        tampered = urlunsplit((back.scheme, back.netloc, back.path, urlencode(query), ""))
        status, _, body = get(tampered)
        log(f"wrong-state: {status}")
        return 0
    status, _, body = get(location)
    log(f"callback: {status} {body}")
    if idle is not None:
        idle.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
