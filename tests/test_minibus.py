"""The fast path's minimal D-Bus client: marshalling, addresses, replies, limits.

Against the real bus: tests/test_conformance.py (writer + fast reader) and the end-to-end tests
of the `token` fast path. Here: what the real bus never sends on demand."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from oauthtok import minibus
from oauthtok.minibus import BusError, Connection, Variant


def roundtrip(signature: str, *values: object, order: str = "<") -> tuple[object, ...]:
    writer = minibus._Writer()
    for kind, value in zip(minibus._types(signature), values, strict=True):
        writer.put(kind, value)
    data = bytes(writer.buf)
    if order == ">":  # the same values, big-endian: re-marshal by hand for the fixed types
        data = big_endian(signature, values)
    reader = minibus._Reader(data, order)
    found = tuple(reader.get(kind) for kind in minibus._types(signature))
    assert reader.pos == len(data)
    return found


def big_endian(signature: str, values: tuple[object, ...]) -> bytes:
    assert signature == "uso"
    number, text, path = values
    out = struct.pack(">I", number)
    for item in (text, path):
        raw = str(item).encode()
        out += struct.pack(">I", len(raw)) + raw + b"\0" + b"\0" * (-(len(raw) + 1) % 4)
    return out.rstrip(b"\0") + b"\0"


def test_values_survive_marshalling() -> None:
    assert roundtrip("s", "héllo") == ("héllo",)
    assert roundtrip("a{ss}", {"service": "oauthtok", "username": "x"}) == (
        {"service": "oauthtok", "username": "x"},
    )
    assert roundtrip("ao", ["/a/b", "/c"]) == (["/a/b", "/c"],)
    assert roundtrip("ao", []) == ([],)
    (variant,) = roundtrip("v", Variant("s", ""))
    assert isinstance(variant, Variant) and (variant.signature, variant.value) == ("s", "")
    secrets = {"/item/1": ("/session/1", b"", b"\x00secret\xff", "text/plain")}
    assert roundtrip("a{o(oayays)}", secrets) == (secrets,)
    big = bytes(range(256)) * 40  # a secret's size; written as it is, not byte by byte
    properties = {"a.Label": Variant("s", "l"), "a.Attributes": Variant("a{ss}", {"k": "v"})}
    sent = roundtrip("a{sv}(oayays)b", properties, ("/s", b"", big, "text/plain"), True)
    assert sent[1:] == (("/s", b"", big, "text/plain"), True)
    assert {k: (v.signature, v.value) for k, v in sent[0].items()} == {  # type: ignore[attr-defined]
        "a.Label": ("s", "l"),
        "a.Attributes": ("a{ss}", {"k": "v"}),
    }
    assert roundtrip("ybxtd", 7, True, -(2**40), 2**63, 0.5) == (7, True, -(2**40), 2**63, 0.5)
    assert roundtrip("uso", 5, "ab", "/x", order=">") == (5, "ab", "/x")


def test_malformed_bodies_are_refused() -> None:
    with pytest.raises(BusError, match="truncated"):
        minibus._Reader(struct.pack("<I", 50) + b"short\0", "<").get("s")
    with pytest.raises(BusError, match="truncated"):
        minibus._Reader(struct.pack("<I", 1000), "<").get("ay")
    with pytest.raises(BusError, match="unsupported"):
        minibus._types("z")
    with pytest.raises(BusError, match="unsupported"):  # a file descriptor: never ours
        minibus._types("h")
    with pytest.raises(BusError, match="unbalanced"):
        minibus._types("(ss")
    deep = b""
    for _ in range(40):  # a variant in a variant in a variant ...
        deep += b"\x01v\x00"
    with pytest.raises(BusError, match="nested too deep"):
        minibus._Reader(deep + b"\x01y\x00\x05", "<").get("v")


def test_addresses() -> None:
    assert minibus._socket_address("unix:path=/run/user/1/bus") == "/run/user/1/bus"
    assert minibus._socket_address("unix:abstract=/tmp/dbus-x,guid=ab") == b"\0/tmp/dbus-x"
    assert minibus._socket_address("tcp:host=a,port=1;unix:path=/a%20b") == "/a b"
    with pytest.raises(BusError, match="no unix socket"):
        minibus._socket_address("tcp:host=localhost,port=1234")
    with pytest.raises(BusError, match="bad escape"):
        minibus._socket_address("unix:path=/a%zz")


# -- a scripted bus on a Unix socket ----------------------------------------------------------
def message(kind: int, reply_serial: int, signature: str, *values: object, **extra: str) -> bytes:
    body = minibus._Writer()
    for item_kind, value in zip(minibus._types(signature), values, strict=True):
        body.put(item_kind, value)
    fields: list[tuple[int, Variant]] = [(minibus._REPLY_SERIAL, Variant("u", reply_serial))]
    if signature:
        fields.append((minibus._SIGNATURE, Variant("g", signature)))
    if "error" in extra:
        fields.append((minibus._ERROR_NAME, Variant("s", extra["error"])))
    header = minibus._Writer()
    header.buf += struct.pack("<cBBBII", b"l", kind, 0, 1, len(body.buf), 1000 + reply_serial)
    header.put("a(yv)", fields)
    header.pad(8)
    return bytes(header.buf + body.buf)


def read_calls(conn: socket.socket, data: bytes, count: int) -> tuple[list[int], bytes]:
    """The serials of the next `count` method calls (the client pipelines them), and what
    is left over."""
    serials = []
    while len(serials) < count:
        while len(data) < 16:
            data += conn.recv(4096)
        body_size, serial, fields_size = struct.unpack("<III", data[4:16])
        size = 16 + fields_size + (-(16 + fields_size) % 8) + body_size
        while len(data) < size:
            data += conn.recv(4096)
        serials.append(serial)
        data = data[size:]
    return serials, data


@contextmanager
def scripted_bus(tmp_path: Path, answer: Callable[[socket.socket, int], None]) -> Iterator[str]:
    """A bus that authenticates, answers Hello, then lets `answer(conn, serial)` reply to the
    next call."""
    path = str(tmp_path / "bus")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"BEGIN\r\n" not in data:  # the client sends it without waiting for OK
                data += conn.recv(100)
            assert data.startswith(b"\0AUTH EXTERNAL ")
            conn.sendall(b"OK 1234567890abcdef\r\n")
            data = data.split(b"BEGIN\r\n", 1)[1]
            (hello, call), _ = read_calls(conn, data, 2)  # Hello, then the call, together
            assert (hello, call) == (1, 2)
            # a signal first (as the bus sends NameAcquired), then Hello's reply
            conn.sendall(message(4, 0, "s", ":1.1") + message(2, 1, "s", ":1.1"))
            answer(conn, call)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"unix:path={path}"
    finally:
        server.close()
        thread.join(timeout=5)


def call(address: str, timeout: float = 5.0) -> tuple[object, ...]:
    with Connection(address, timeout) as conn:
        return conn.reply(conn.send("d.e", "/p", "i.f", "M", "s", ("x",)))


def test_a_reply_after_a_signal(tmp_path: Path) -> None:
    with scripted_bus(tmp_path, lambda c, s: c.sendall(message(2, s, "ao", ["/a", "/b"]))) as bus:
        assert call(bus) == (["/a", "/b"],)


def test_replies_in_any_order_and_strangers_ignored(tmp_path: Path) -> None:
    def answers(conn: socket.socket, serial: int) -> None:
        second = serial + 1  # sent in the same write as the first
        conn.sendall(
            message(2, 99, "s", "not ours")  # a reply to nothing this client sent
            + message(2, second, "s", "second")
            + message(2, serial, "s", "first")
        )

    with scripted_bus(tmp_path, answers) as bus, Connection(bus, 5.0) as conn:
        first = conn.send("d.e", "/p", "i.f", "M", "s", ("x",))
        second = conn.send("d.e", "/p", "i.f", "N", "s", ("y",))
        assert conn.reply(first) == ("first",) and conn.reply(second) == ("second",)
        assert 99 not in conn._replies and conn._waiting == set()  # only Hello's is kept


def test_flush_sends_the_queued_calls_before_a_reply_is_asked_for(tmp_path: Path) -> None:
    answered = threading.Event()

    def answers(conn: socket.socket, serial: int) -> None:
        conn.sendall(message(2, serial, "s", "early"))
        answered.set()

    with scripted_bus(tmp_path, answers) as bus, Connection(bus, 5.0) as conn:
        serial = conn.send("d.e", "/p", "i.f", "M", "s", ("x",))
        conn.flush()
        assert answered.wait(5), "the bus never saw the call"
        assert conn.reply(serial) == ("early",)


def test_an_error_reply_is_a_bus_error(tmp_path: Path) -> None:
    def error(conn: socket.socket, serial: int) -> None:
        conn.sendall(message(3, serial, "s", "no", error="org.freedesktop.DBus.Error.Failed"))

    with scripted_bus(tmp_path, error) as bus, pytest.raises(BusError) as raised:
        call(bus)
    assert raised.value.name == "org.freedesktop.DBus.Error.Failed"  # what the backend tells
    assert "Error.Failed" in str(raised.value)  # apart (IsLocked, NoSuchObject)


def test_a_message_over_the_cap_is_not_read(tmp_path: Path) -> None:
    def huge(conn: socket.socket, serial: int) -> None:
        head = bytearray(message(2, serial, "s", "x"))
        struct.pack_into("<I", head, 4, minibus.MAX_MESSAGE)  # the body length it claims
        conn.sendall(bytes(head))

    with scripted_bus(tmp_path, huge) as bus, pytest.raises(BusError, match="size cap"):
        call(bus)


def test_a_silent_bus_ends_at_the_deadline(tmp_path: Path) -> None:
    with scripted_bus(tmp_path, lambda c, s: time.sleep(0.8)) as bus:
        started = time.monotonic()
        with pytest.raises(BusError, match="in time"):
            call(bus, timeout=0.3)
        assert time.monotonic() - started < 0.7


def test_renew_gives_a_kept_connection_a_new_deadline(tmp_path: Path) -> None:
    late = scripted_bus(tmp_path, lambda c, s: c.sendall(message(2, s, "s", "late")))
    with late as bus, Connection(bus, 0.5) as conn:
        time.sleep(0.6)  # the first deadline has passed: a call now would be refused
        conn.renew(5.0)
        assert conn.call("d.e", "/p", "i.f", "M", "s", ("x",)) == ("late",)


def test_it_hangs_up_only_after_every_call_sent_is_answered(tmp_path: Path) -> None:
    """A search that finds nothing ends the read before the session it opened alongside is
    answered: hanging up then made gnome-keyring abort (it answered a client that was gone).
    The connection waits for that answer first; a call never sent is not sent at exit."""
    seen: dict[str, float] = {}

    def answers(conn: socket.socket, serial: int) -> None:
        conn.sendall(message(2, serial, "s", "first"))
        time.sleep(0.3)  # the second call's answer comes late
        seen["answered"] = time.monotonic()
        conn.sendall(message(2, serial + 1, "s", "second"))
        rest = b""
        while chunk := conn.recv(4096):  # until the client hangs up
            rest += chunk
        seen["hung_up"] = time.monotonic()
        seen["more"] = len(rest)

    with scripted_bus(tmp_path, answers) as bus:
        conn = Connection(bus, 5.0)
        first = conn.send("d.e", "/p", "i.f", "M", "s", ("x",))
        conn.send("d.e", "/p", "i.f", "N", "s", ("y",))  # sent with the first, never asked for
        assert conn.reply(first) == ("first",)
        conn.send("d.e", "/p", "i.f", "O", "s", ("z",))  # queued, never sent
        with conn:
            pass
        time.sleep(0.1)
    assert seen["hung_up"] >= seen["answered"]
    assert seen["more"] == 0  # the queued call did not go out at the end


def test_no_bus_there(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        call(f"unix:path={tmp_path / 'nothing'}")
    assert not os.path.exists(tmp_path / "nothing")
