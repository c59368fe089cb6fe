"""A minimal blocking D-Bus client: just enough for the Secret Service's method calls (the
`token` fast path's read, and `freedesktop.SecretServiceBackend`'s reads, writes and deletes).

jeepney (secretstorage's D-Bus library) costs more to import than the rest of a cached
`oauthtok token` run; this module needs only `_socket` and `struct`. It speaks the
D-Bus wire protocol (https://dbus.freedesktop.org/doc/dbus-specification.html) for method calls
and their replies over a Unix socket, with EXTERNAL authentication (the peer's uid, checked by
the bus itself), and marshals the basic, array, struct, dict-entry and variant types.

Anything it does not handle — another transport (tcp, launchd; jeepney has none of them
either), an unexpected answer, an error reply, a timeout — raises `BusError`: the fast path then
hands the command to the full program, and the backend reports it (exit 8) or, for an error
reply asking for a prompt, hands the call to secretstorage. Every wait is bounded by a total
deadline (`renew` sets the next one on a kept connection), and no message over `MAX_MESSAGE`
bytes is read.
"""

from __future__ import annotations

import _socket  # the C module: `socket` adds selectors, array and enums this never uses
import os
import struct
import time

TYPE_CHECKING = False  # typing costs ~3 ms to import, on the `token` fast path
if TYPE_CHECKING:
    from typing import Any

#: the largest message read (the specification allows 128 MiB; a reply here is a few KB, or
#: ~80 KB for a search among 1,000 items)
MAX_MESSAGE = 8 * 1024 * 1024

_CALL, _RETURN, _ERROR = 1, 2, 3
_PATH, _INTERFACE, _MEMBER, _ERROR_NAME, _REPLY_SERIAL, _DESTINATION, _SIGNATURE = (
    1,
    2,
    3,
    4,
    5,
    6,
    8,
)
_ALIGN = {
    "y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8,
    "s": 4, "o": 4, "g": 1, "a": 4, "(": 8, "{": 8, "v": 1,
}  # fmt: skip
_FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d"}


class BusError(Exception):
    """The bus or the peer did not give an answer this client can use; `name` is the error
    reply's name (e.g. org.freedesktop.Secret.Error.IsLocked), "" for anything else."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class Variant:
    """A D-Bus variant: a value and its signature."""

    __slots__ = ("signature", "value")

    def __init__(self, signature: str, value: object) -> None:
        self.signature = signature
        self.value = value


def _one_type(signature: str, start: int) -> int:
    """The end of the single complete type that starts at `start`."""
    if start >= len(signature):
        raise BusError("truncated signature")
    char = signature[start]
    if char == "a":
        return _one_type(signature, start + 1)
    if char in "({":
        close = ")" if char == "(" else "}"
        i = start + 1
        while i < len(signature) and signature[i] != close:
            i = _one_type(signature, i)
        if i >= len(signature):
            raise BusError("unbalanced signature")
        return i + 1
    if char not in _ALIGN:
        raise BusError(f"unsupported type {char!r}")
    return start + 1


def _types(signature: str) -> list[str]:
    found, i = [], 0
    while i < len(signature):
        end = _one_type(signature, i)
        found.append(signature[i:end])
        i = end
    return found


# -- marshalling (little-endian) --------------------------------------------------------------
class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def pad(self, alignment: int) -> None:
        self.buf += b"\0" * (-len(self.buf) % alignment)

    def put(self, kind: str, value: Any) -> None:
        char = kind[0]
        self.pad(_ALIGN[char])
        if char in _FIXED:
            self.buf += struct.pack("<" + _FIXED[char], value)
        elif char in "so":
            data = str(value).encode("utf-8")
            self.buf += struct.pack("<I", len(data)) + data + b"\0"
        elif char == "g":
            data = str(value).encode("ascii")
            self.buf += struct.pack("<B", len(data)) + data + b"\0"
        elif char == "v":
            assert isinstance(value, Variant)
            self.put("g", value.signature)
            self.put(value.signature, value.value)
        elif char == "a":
            element = kind[1:]
            at = len(self.buf)
            self.buf += b"\0\0\0\0"  # the length, filled in below
            self.pad(_ALIGN[element[0]])
            start = len(self.buf)
            if element == "y":  # bytes: as they are, not one put per byte
                self.buf += bytes(value)
                struct.pack_into("<I", self.buf, at, len(self.buf) - start)
                return
            items = value.items() if element[0] == "{" else value
            for item in items:
                self.put(element, item)
            struct.pack_into("<I", self.buf, at, len(self.buf) - start)
        elif char in "({":
            for part, item in zip(_types(kind[1:-1]), value, strict=True):
                self.put(part, item)
        else:  # pragma: no cover - _one_type refused it
            raise BusError(f"unsupported type {char!r}")


# -- unmarshalling ----------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes, order: str, offset: int = 0) -> None:
        self.data = data
        self.order = order
        self.pos = offset

    def align(self, alignment: int) -> None:
        self.pos += -self.pos % alignment

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise BusError("truncated message")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def get(self, kind: str, depth: int = 0) -> object:
        if depth > 32:
            raise BusError("nested too deep")
        char = kind[0]
        self.align(_ALIGN.get(char, 1))
        if char in _FIXED:
            fmt = self.order + _FIXED[char]
            (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
            return bool(value) if char == "b" else value
        if char in "so":
            (size,) = struct.unpack(self.order + "I", self.take(4))
            text = self.take(size + 1)[:-1]
            return text.decode("utf-8", "strict")
        if char == "g":
            (size,) = struct.unpack("B", self.take(1))
            return self.take(size + 1)[:-1].decode("ascii")
        if char == "v":
            signature = str(self.get("g", depth))
            if len(_types(signature)) != 1:
                raise BusError("a variant holds one type")
            return Variant(signature, self.get(signature, depth + 1))
        if char == "a":
            (size,) = struct.unpack(self.order + "I", self.take(4))
            element = kind[1:]
            self.align(_ALIGN.get(element[0], 1))
            end = self.pos + size
            if end > len(self.data):
                raise BusError("truncated array")
            if element == "y":
                return self.take(size)
            items = []
            while self.pos < end:
                items.append(self.get(element, depth + 1))
            if self.pos != end:
                raise BusError("array length mismatch")
            if element[0] == "{":
                return dict(items)  # type: ignore[arg-type]
            return items
        if char in "({":
            return tuple(self.get(part, depth + 1) for part in _types(kind[1:-1]))
        raise BusError(f"unsupported type {char!r}")


# -- the connection ---------------------------------------------------------------------------
def _socket_address(address: str) -> str | bytes:
    """The first unix:path= or unix:abstract= address of a D-Bus address list."""
    for entry in address.split(";"):
        transport, _, params = entry.partition(":")
        if transport != "unix":
            continue
        values = {}
        for pair in params.split(","):
            key, _, value = pair.partition("=")
            values[key] = _unescape(value)
        if "path" in values:
            return values["path"]
        if "abstract" in values:
            return b"\0" + os.fsencode(values["abstract"])
    raise BusError("no unix socket in the bus address")


def _unescape(value: str) -> str:
    raw = value.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == ord("%"):
            try:
                out.append(int(raw[i + 1 : i + 3], 16))
            except ValueError:
                raise BusError("bad escape in the bus address") from None
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


class Connection:
    """One authenticated connection to the session bus; use as a context manager."""

    def __init__(self, address: str, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout
        self._serial = 0
        self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._buffer = b""
        self._replies: dict[int, tuple[int, dict[int, object], tuple[object, ...]]] = {}
        self._waiting: set[int] = set()  # calls sent and not answered yet
        self._unsent: set[int] = set()  # ... of which still in `_outgoing`
        # Pipelined, as sd-bus does: authentication, BEGIN and Hello go out with the first
        # calls in one write, and the bus answers them in order (3 round trips for a secret
        # instead of 6).
        uid = str(os.getuid()).encode("ascii").hex().encode("ascii")
        self._outgoing = bytearray(b"\0AUTH EXTERNAL " + uid + b"\r\nBEGIN\r\n")
        self._authenticated = False
        try:
            self._settimeout()
            self._sock.connect(_socket_address(address))
        except BaseException:
            self._sock.close()
            raise
        self.send("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                  "Hello", "", ())  # fmt: skip

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._drain()
        finally:
            self._sock.close()

    def _drain(self) -> None:
        """Before hanging up, wait (within the deadline) for the answers to calls still
        unanswered, e.g. the session opened together with a search that found nothing: the
        service then never answers a client that is gone, which its crash reports involve
        ("gkd_secret_service_get_pkcs11_session: assertion 'client' failed"). (The crash the
        suite met was plain sessions, see `dhsession`; this is hygiene, not that fix.)"""
        self._outgoing.clear()  # calls never sent need no answer (nor sending now)
        sent = self._waiting - self._unsent
        while sent:
            serial = min(sent)
            sent.discard(serial)
            try:
                self.reply(serial)
            except BusError as exc:
                if exc.name:  # an error reply is an answer too
                    continue
                return  # the deadline passed, or the bus is gone: nothing more to wait for
            except OSError:
                return

    def _settimeout(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise BusError("the bus did not answer in time")
        self._sock.settimeout(left)

    def _recv(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._settimeout()
            try:
                chunk = self._sock.recv(max(65536, size - len(self._buffer)))
            except TimeoutError:
                raise BusError("the bus did not answer in time") from None
            if not chunk:
                raise BusError("the bus closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _send(self, data: bytes) -> None:
        self._settimeout()
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise BusError("the bus did not answer in time") from None

    def _read_greeting(self) -> None:
        line = b""
        while not line.endswith(b"\r\n"):
            line += self._recv(1)
            if len(line) > 512:
                raise BusError("the bus's greeting is too long")
        if not line.startswith(b"OK "):
            raise BusError("the bus refused the authentication")
        self._authenticated = True

    def send(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str,
        body: tuple[object, ...],
    ) -> int:
        """Queue a method call; its serial, for `reply`. It goes out with the next `reply` or
        `flush`."""
        self._serial += 1
        payload = _Writer()
        for kind, value in zip(_types(signature), body, strict=True):
            payload.put(kind, value)
        fields: list[tuple[int, Variant]] = [
            (_PATH, Variant("o", path)),
            (_INTERFACE, Variant("s", interface)),
            (_MEMBER, Variant("s", member)),
            (_DESTINATION, Variant("s", destination)),
        ]
        if signature:
            fields.append((_SIGNATURE, Variant("g", signature)))
        header = _Writer()
        header.buf += struct.pack("<cBBBII", b"l", _CALL, 0, 1, len(payload.buf), self._serial)
        header.put("a(yv)", fields)
        header.pad(8)
        self._outgoing += header.buf + payload.buf
        self._waiting.add(self._serial)
        self._unsent.add(self._serial)
        return self._serial

    def flush(self) -> None:
        """Send the queued calls now (the bus works on them while this process does
        something else), instead of with the next `reply`."""
        if self._outgoing:
            self._send(bytes(self._outgoing))
            self._outgoing.clear()
            self._unsent.clear()

    def reply(self, serial: int) -> tuple[object, ...]:
        """The body of the reply to call `serial`; BusError for an error reply."""
        self.flush()
        if not self._authenticated:
            self._read_greeting()
        while serial not in self._replies:
            message_type, fields, body = self._read_message()
            answered = fields.get(_REPLY_SERIAL)
            if answered in self._waiting and message_type in (_RETURN, _ERROR):
                assert isinstance(answered, int)
                self._waiting.discard(answered)
                self._replies[answered] = message_type, fields, body
            # anything else: a signal (NameAcquired after Hello), or not ours
        message_type, fields, body = self._replies.pop(serial)
        if message_type == _ERROR:
            name = str(fields.get(_ERROR_NAME, ""))
            raise BusError(f"call {serial}: {name or 'error'}", name)
        return body

    def call(
        self, destination: str, path: str, interface: str, member: str, signature: str,
        body: tuple[object, ...],
    ) -> tuple[object, ...]:  # fmt: skip
        """`send` and wait for its `reply`."""
        return self.reply(self.send(destination, path, interface, member, signature, body))

    def renew(self, timeout: float) -> None:
        """A new total deadline, `timeout` seconds from now, for what follows (a connection
        kept for several operations gives each its own)."""
        self._deadline = time.monotonic() + timeout

    def _read_message(self) -> tuple[int, dict[int, object], tuple[object, ...]]:
        fixed = self._recv(16)
        order = {b"l": "<", b"B": ">"}.get(fixed[:1])
        if order is None or fixed[3] != 1:
            raise BusError("not a D-Bus message")
        kind = fixed[1]
        body_size, _serial, fields_size = struct.unpack(order + "III", fixed[4:16])
        header_size = 16 + fields_size + (-(16 + fields_size) % 8)
        if header_size + body_size > MAX_MESSAGE:
            raise BusError("the bus sent a message over the size cap")
        data = fixed + self._recv(header_size - 16 + body_size)
        header = _Reader(data, order, 12)
        fields: dict[int, object] = {}
        for code, value in header.get("a(yv)"):  # type: ignore[attr-defined]
            fields[code] = value.value
        signature = str(fields.get(_SIGNATURE, ""))
        body = _Reader(data, order, header_size)
        values = tuple(body.get(kind_) for kind_ in _types(signature))
        if body.pos != len(data):
            raise BusError("the body does not match its signature")
        return kind, fields, values
