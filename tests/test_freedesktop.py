"""oauthtok's Secret Service backend (`freedesktop.SecretServiceBackend`, on minibus): what it
hands to the prompting backend, and how it meets items that vanish and connections that break.
The real Secret Service where one can show it; a scripted connection for the races."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import pytest

from oauthtok import freedesktop
from oauthtok.contract import SECRET_NAMESPACE
from oauthtok.dhsession import PRIME
from oauthtok.errors import StoreError
from oauthtok.freedesktop import ItemMissing, ItemVanished, SecretServiceBackend
from oauthtok.minibus import BusError, Variant
from oauthtok.secretstore import SecretStore
from tests.helpers import locked_collection

NS = SECRET_NAMESPACE


class Prompting:
    """A stand-in for the prompting backend: records what was handed over."""

    made: ClassVar[list[Prompting]] = []

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        Prompting.made.append(self)

    def get_password(self, namespace: str, key: str) -> str | None:
        self.calls.append(("get", key))
        return "from-prompting"

    def set_password(self, namespace: str, key: str, value: str) -> None:
        self.calls.append(("set", key))

    def delete_password(self, namespace: str, key: str) -> None:
        self.calls.append(("delete", key))


@pytest.fixture
def prompting(monkeypatch: pytest.MonkeyPatch) -> type[Prompting]:
    Prompting.made = []
    monkeypatch.setattr(freedesktop, "PromptingBackend", Prompting)
    return Prompting


# -- the real Secret Service -----------------------------------------------------------------


def test_a_locked_collection_goes_to_the_prompting_backend(
    keyring_env: dict[str, str], prompting: type[Prompting]
) -> None:
    backend = SecretServiceBackend()
    backend.set_password(NS, "k1", "v1")
    assert prompting.made == []
    with locked_collection(keyring_env["password"]):
        locked = SecretServiceBackend()
        assert locked.get_password(NS, "k1") == "from-prompting"
        locked.set_password(NS, "k1", "v2")
        assert prompting.made[0].calls == [("get", "k1"), ("set", "k1")]
        # a backend opened before the lock meets the item's IsLocked and hands over too
        assert backend.get_password(NS, "k1") == "from-prompting"
    assert len(prompting.made) == 2
    assert SecretServiceBackend().get_password(NS, "k1") == "v1"  # unlocked: the bus again
    SecretServiceBackend().delete_password(NS, "k1")


def test_the_key_agreement_overlaps_the_services_work_and_opensession_waits_for_readalias(
    keyring_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each half of the key agreement (~1 ms of this process's CPU each) is made while the
    service works on calls already sent: the keypair while ReadAlias is answered, the shared
    key after GetSecrets went out. OpenSession goes out only once ReadAlias answered with the
    collection (gnome-keyring aborts on an OpenSession handled before it knows the client).
    Both readers (fast and backend) read the same secret."""
    from oauthtok import dhsession, minibus

    SecretServiceBackend().set_password(NS, "k-order", "v-order")
    events: list[str] = []
    members = (b"Hello", b"ReadAlias", b"OpenSession", b"SearchItems", b"GetSecrets")
    calls: dict[int, str] = {}
    real_send, real_reply = minibus.Connection.send, minibus.Connection.reply
    real_write, real_init, real_agree = (
        minibus.Connection._send, dhsession.Transport.__init__, dhsession.Transport.agree
    )  # fmt: skip

    def send(self: Any, *call: Any) -> int:
        serial = real_send(self, *call)
        calls[serial] = call[3]
        return serial

    def reply(self: Any, serial: int) -> tuple[object, ...]:
        answer = real_reply(self, serial)
        events.append("answered " + calls[serial])
        return answer

    def write(self: Any, data: bytes) -> None:
        events.append("sent " + "+".join(m.decode() for m in members if m in data))
        real_write(self, data)

    def init(self: Any) -> None:
        events.append("keypair")
        real_init(self)

    def agree(self: Any, server_public: bytes) -> None:
        events.append("agree")
        real_agree(self, server_public)

    monkeypatch.setattr(minibus.Connection, "send", send)
    monkeypatch.setattr(minibus.Connection, "reply", reply)
    monkeypatch.setattr(minibus.Connection, "_send", write)
    monkeypatch.setattr(dhsession.Transport, "__init__", init)
    monkeypatch.setattr(dhsession.Transport, "agree", agree)
    assert freedesktop.read_secret(NS, "k-order") == "v-order"
    assert events == [
        "sent Hello+ReadAlias",
        "keypair",
        "answered ReadAlias",
        "sent OpenSession+SearchItems",
        "answered SearchItems",
        "answered OpenSession",
        "sent GetSecrets",
        "agree",
        "answered GetSecrets",
    ]
    events.clear()
    assert SecretServiceBackend().get_password(NS, "k-order") == "v-order"
    assert events[:5] == [
        "sent Hello+ReadAlias", "keypair", "answered ReadAlias", "sent OpenSession",
        "answered OpenSession",
    ]  # fmt: skip


def test_the_pre_flight_check_sees_a_locked_keyring(keyring_env: dict[str, str]) -> None:
    """`check()` reads an entry that does not exist: finding nothing in a locked collection
    is no answer (exit 8 "locked" before anyone consents, as `create` checks first)."""
    with locked_collection(keyring_env["password"]):
        with pytest.raises(StoreError) as raised:
            SecretStore(SecretServiceBackend(), timeout=10).check()
        assert "locked" in str(raised.value) and raised.value.exit_code == 8
    SecretStore(SecretServiceBackend(), timeout=10).check()  # unlocked: fine


def test_locked_without_a_desktop_is_the_locked_line(keyring_env: dict[str, str]) -> None:
    """The real prompting backend: no desktop answers the unlock, so exit 8 says "locked"."""
    SecretServiceBackend().set_password(NS, "k2", "v")
    try:
        with locked_collection(keyring_env["password"]):
            with pytest.raises(StoreError) as raised:
                SecretStore(SecretServiceBackend(), timeout=10).get("k2")
            assert "locked" in str(raised.value) and raised.value.exit_code == 8
    finally:
        SecretServiceBackend().delete_password(NS, "k2")


def test_no_secret_service_on_the_bus_is_no_usable_keyring(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.secret_service_daemon import start_bus

    bus, address = start_bus(tmp_path)
    try:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        with pytest.raises(StoreError) as raised:
            SecretStore(SecretServiceBackend(timeout=5), timeout=10).get("k")
        assert str(raised.value).startswith("cannot read a secret: no usable keyring (BusError)")
    finally:
        bus.terminate()
        bus.wait()


@pytest.mark.parametrize("key", [0, 1, PRIME - 1, PRIME, PRIME + 1])
def test_a_trivial_public_key_is_refused_before_any_call_names_the_session(key: int) -> None:
    """The secret is asked for while this process makes its half of the key agreement, so the
    service's public key is checked first: a trivial one would make the shared key
    predictable."""

    class Conn:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, *call: Any) -> int:
            self.sent.append(call[3])
            return len(self.sent)

        def reply(self, serial: int) -> tuple[object, ...]:
            return Variant("ay", key.to_bytes(129, "big")[-128:]), "/org/freedesktop/s/1"

    conn = Conn()
    from oauthtok.dhsession import Transport

    opening = freedesktop._Opening(conn, Transport())
    with pytest.raises(freedesktop.Unavailable, match="out of range"):
        opening.session()
    assert conn.sent == ["OpenSession"]


class AliasConn:
    """A connection whose service answers ReadAlias from a list (then "/"), records what went
    out, and answers OpenSession with a usable key."""

    def __init__(self, aliases: list[str]) -> None:
        self.aliases = aliases
        self.sent: list[str] = []
        self.members: dict[int, str] = {}
        self.closed = False

    def send(self, *call: Any) -> int:
        self.sent.append(call[3])
        self.members[len(self.sent)] = call[3]
        return len(self.sent)

    def flush(self) -> None:
        pass

    def reply(self, serial: int) -> tuple[object, ...]:
        member = self.members[serial]
        if member == "ReadAlias":
            return (self.aliases.pop(0) if self.aliases else "/",)
        if member == "OpenSession":
            return Variant("ay", (2).to_bytes(128, "big")), "/org/freedesktop/s/1"
        if member == "SearchItems":
            return ([],)
        raise AssertionError(member)

    def __enter__(self) -> AliasConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True


COLLECTION = "/org/freedesktop/secrets/collection/login"


def test_readalias_answered_slash_is_asked_again_before_opensession() -> None:
    """gnome-keyring can handle a client's first call before it registered the client: its
    ReadAlias then answers "/" (and an OpenSession would abort the daemon). So OpenSession
    goes out only after ReadAlias named the collection, asked a second time after a "/"."""
    conn = AliasConn(["/", COLLECTION])
    path, opening = freedesktop._alias_then_session(conn)
    assert (path, conn.sent) == (COLLECTION, ["ReadAlias", "ReadAlias", "OpenSession"])
    assert opening is not None and opening.session() == "/org/freedesktop/s/1"

    conn = AliasConn([COLLECTION])
    assert freedesktop._alias_then_session(conn)[0] == COLLECTION
    assert conn.sent == ["ReadAlias", "OpenSession"]


def test_no_default_collection_sends_no_opensession(
    monkeypatch: pytest.MonkeyPatch, prompting: type[Prompting]
) -> None:
    """Twice "/": there is no default collection. Neither reader opens a session: the fast
    reader hands over, the backend hands over to the prompting one (creating a collection
    prompts)."""
    from oauthtok import minibus

    made: list[AliasConn] = []

    def connection(address: str, timeout: float) -> AliasConn:
        made.append(AliasConn([]))
        return made[-1]

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nowhere")
    monkeypatch.setattr(minibus, "Connection", connection)
    with pytest.raises(freedesktop.Unavailable, match="no default collection"):
        freedesktop.read_secret(NS, "k")
    assert SecretServiceBackend().get_password(NS, "k") == "from-prompting"
    assert [c.sent for c in made] == [["ReadAlias", "ReadAlias"]] * 2
    assert all(c.closed for c in made)
    with_collection = AliasConn([COLLECTION])
    monkeypatch.setattr(minibus, "Connection", lambda address, timeout: with_collection)
    assert freedesktop.read_secret(NS, "k") is None
    assert with_collection.sent == ["ReadAlias", "OpenSession", "SearchItems"]


# -- races and broken connections (a scripted connection) -------------------------------------


class Script:
    """A connection whose answers are scripted by (interface, member)."""

    def __init__(self, answers: dict[tuple[str, str], list[Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, str]] = []
        self.closed = False

    def call(self, _dest: str, path: str, iface: str, member: str, _sig: str, body: Any) -> Any:
        self.calls.append((path, iface.rsplit(".", 1)[-1], member))
        answer = self.answers[(iface.rsplit(".", 1)[-1], member)].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def renew(self, timeout: float) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        self.closed = True


class Clear:
    """The session's transport, as the identity (the scripted service sends values as they are;
    the real encrypted transport is tested against gnome-keyring and in test_dhsession)."""

    def open(self, iv: bytes, sealed: bytes) -> bytes:
        return sealed

    def seal(self, value: bytes) -> tuple[bytes, bytes]:
        return b"", value


def scripted(monkeypatch: pytest.MonkeyPatch, *scripts: Script) -> SecretServiceBackend:
    queue = list(scripts)
    monkeypatch.setattr(
        SecretServiceBackend, "_open", lambda self: (queue.pop(0), "/c", "/s", Clear())
    )
    return SecretServiceBackend()


GONE = BusError("call 5: gone", "org.freedesktop.Secret.Error.NoSuchObject")
UNLOCKED = Variant("b", False)
SECRET = ("/s", b"", json.dumps({"access_token": "x"}).encode(), "text/plain")


def test_an_item_deleted_between_search_and_read_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ItemVanished is a transient failure: SecretStore tries once more and finds the new
    item another process wrote meanwhile; the connection is kept."""
    script = Script({
        ("Collection", "SearchItems"): [(["/i/1"],), (["/i/2"],)],
        ("Item", "GetSecret"): [GONE, (SECRET,)],
    })  # fmt: skip
    backend = scripted(monkeypatch, script)
    with pytest.raises(ItemVanished):
        backend.get_password(NS, "k")
    assert SecretStore(backend).get("k") == SECRET[2].decode()
    assert not script.closed


def test_a_delete_of_an_item_already_gone_is_fine_and_none_found_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = Script({
        ("Collection", "SearchItems"): [(["/i/1", "/i/2"],), ([],)],
        ("Item", "Delete"): [GONE, ("/",)],
        ("Properties", "Get"): [(UNLOCKED,)],
    })  # fmt: skip
    backend = scripted(monkeypatch, script)
    backend.delete_password(NS, "k")
    assert [c[0] for c in script.calls if c[2] == "Delete"] == ["/i/1", "/i/2"]
    with pytest.raises(ItemMissing):
        backend.delete_password(NS, "k")


def test_a_write_or_delete_that_needs_a_prompt_is_handed_over(
    monkeypatch: pytest.MonkeyPatch, prompting: type[Prompting]
) -> None:
    script = Script({("Collection", "CreateItem"): [("/", "/prompt/1")]})
    backend = scripted(monkeypatch, script)
    backend.set_password(NS, "k", "v")
    assert prompting.made[0].calls == [("set", "k")] and script.closed
    backend.delete_password(NS, "k")  # the rest of the process stays there
    assert prompting.made[0].calls[-1] == ("delete", "k")

    script = Script({
        ("Collection", "SearchItems"): [(["/i/1"],)],
        ("Item", "Delete"): [("/prompt/2",)],
    })  # fmt: skip
    scripted(monkeypatch, script).delete_password(NS, "k")
    assert prompting.made[1].calls == [("delete", "k")]


def test_nothing_found_in_a_locked_collection_is_handed_over(
    monkeypatch: pytest.MonkeyPatch, prompting: type[Prompting]
) -> None:
    """KeePassXC's search finds nothing while locked: a read would say "no secret" (exit 4,
    reauthorize) and a delete would leave the item; both go to the prompting backend."""
    locked = Variant("b", True)
    script = Script({
        ("Collection", "SearchItems"): [([],)],
        ("Properties", "Get"): [(locked,)],
    })  # fmt: skip
    assert scripted(monkeypatch, script).get_password(NS, "k") == "from-prompting"
    script = Script({
        ("Collection", "SearchItems"): [([],)],
        ("Properties", "Get"): [(locked,)],
    })  # fmt: skip
    scripted(monkeypatch, script).delete_password(NS, "k")
    assert [p.calls for p in prompting.made] == [[("get", "k")], [("delete", "k")]]
    unlocked = Script({
        ("Collection", "SearchItems"): [([],), ([],)],
        ("Properties", "Get"): [(UNLOCKED,), (UNLOCKED,)],
    })  # fmt: skip
    backend = scripted(monkeypatch, unlocked)
    assert backend.get_password(NS, "k") is None
    with pytest.raises(ItemMissing):
        backend.delete_password(NS, "k")
    assert len(prompting.made) == 2


def test_a_call_stuck_in_a_prompt_does_not_hold_the_next_one_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SecretStore abandons a call that hangs (an unlock prompt nobody answers); the next
    call waits for the backend at most its timeout, then says so (exit 8)."""
    import threading

    release = threading.Event()

    class Hanging(Prompting):
        def get_password(self, namespace: str, key: str) -> str | None:
            release.wait(10)
            return None

    monkeypatch.setattr(freedesktop, "PromptingBackend", Hanging)
    script = Script({("Collection", "CreateItem"): [("/", "/prompt/1")]})
    monkeypatch.setattr(SecretServiceBackend, "_open", lambda self: (script, "/c", "/s", Clear()))
    backend = SecretServiceBackend(timeout=0.3)
    backend.set_password(NS, "k", "v")  # handed over: the process stays with the prompter
    try:
        with pytest.raises(StoreError, match="did not answer"):
            SecretStore(backend, timeout=0.2).get("k")  # abandoned, still waiting
        started = time.monotonic()
        with pytest.raises(StoreError) as raised:
            backend.get_password(NS, "k")
        assert 0.25 <= time.monotonic() - started < 2
        assert "earlier request is still waiting" in str(raised.value)
        assert raised.value.exit_code == 8
    finally:
        release.set()


def test_a_broken_connection_is_replaced_by_the_next_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = Script({("Collection", "SearchItems"): [BusError("the bus did not answer in time")]})
    second = Script({("Collection", "SearchItems"): [([],)], ("Properties", "Get"): [(UNLOCKED,)]})
    backend = scripted(monkeypatch, first, second)
    with pytest.raises(BusError):
        backend.get_password(NS, "k")
    assert first.closed
    assert backend.get_password(NS, "k") is None
    assert second.calls and not second.closed
