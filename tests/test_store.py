"""The token store: the index on disk, secrets in the real Secret Service, failure modes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from dataclasses import FrozenInstanceError, dataclass, fields
from pathlib import Path
from typing import Any

import pytest
from secretstorage.exceptions import ItemNotFoundException, LockedException

from oauthtok import layout
from oauthtok.contract import SECRET_NAMESPACE
from oauthtok.errors import StoreError, TokenNotFound, UsageError
from oauthtok.models import Endpoints, Flow, TokenAuth, TokenRecord
from oauthtok.secretstore import SecretStore
from oauthtok.store import TokenStore, validate_name
from tests.helpers import (
    MemoryKeyring,
    internal_session,
    locked_collection,
    make_record,
    make_secrets,
    run_oauthtok,
)


@pytest.fixture
def store(keyring_env: dict[str, str]) -> TokenStore:
    return TokenStore()


def test_round_trip_in_the_real_keyring(store: TokenStore) -> None:
    secrets = make_secrets()
    record = store.add(make_record(), secrets)
    assert store.get("WORK-MAIL").id == record.id  # names ignore case
    assert store.read_tokens(record) == secrets
    # stored under service "oauthtok" and the stable id, where secret-tool finds it too
    found = subprocess.run(
        ["secret-tool", "lookup", "service", "oauthtok", "username", record.id],
        capture_output=True,
        text=True,
    )
    assert json.loads(found.stdout)["refresh_token"] == "RT-secret-refresh"  # libsecret-tools
    # and where keyring's own command finds it: the items are keyring-compatible
    via_keyring = subprocess.run(
        [sys.executable, "-m", "keyring", "get", "oauthtok", record.id],
        capture_output=True,
        text=True,
    )
    assert json.loads(via_keyring.stdout)["access_token"] == "AT-secret-access"


def test_one_dbus_connection_per_process(
    store: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every keyring call of a process shares one minibus connection; secretstorage (the
    prompting backend) is never opened while the collection is unlocked."""
    import secretstorage

    from oauthtok import minibus

    opened = []
    original = minibus.Connection.__init__

    def counting(self: minibus.Connection, address: str, timeout: float) -> None:
        opened.append(1)
        original(self, address, timeout)

    monkeypatch.setattr(minibus.Connection, "__init__", counting)
    monkeypatch.setattr(secretstorage, "dbus_init", lambda: pytest.fail("secretstorage used"))
    fresh = TokenStore()
    record = fresh.add(make_record(), make_secrets())
    fresh.save_tokens(record, make_secrets(access_token="AT-2"))
    assert fresh.read_tokens(record).access_token == "AT-2"
    fresh.delete(record.name)
    assert len(opened) == 1


def test_items_carry_keyrings_label_and_attributes(store: TokenStore) -> None:
    """As keyring's own Secret Service backend writes them (read back through secretstorage,
    an independent client), replaced in place on a second write."""
    import contextlib

    import secretstorage

    record = store.add(make_record(), make_secrets())
    store.save_tokens(record, make_secrets(access_token="AT-2"))
    with contextlib.closing(secretstorage.dbus_init()) as bus:
        collection = secretstorage.get_default_collection(bus)
        (item,) = collection.search_items({"service": "oauthtok", "username": record.id})
        assert item.get_label() == f"Password for '{record.id}' on 'oauthtok'"
        attributes = item.get_attributes()
        # gnome-keyring adds the item's type as xdg:schema when it reloads its file
        attributes.pop("xdg:schema", None)
        assert attributes == {
            "service": "oauthtok",
            "username": record.id,
            "application": "Python keyring library",
        }
        assert json.loads(item.get_secret())["access_token"] == "AT-2"


def test_files_are_private_and_hold_no_secret(store: TokenStore) -> None:
    store.add(make_record(), make_secrets())
    folder = Path(store.data_dir)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert [p.relative_to(folder).as_posix() for p in files if p.suffix == ".json"] == [
        "names.json",
        f"tokens/{store.get('work-mail').id}.json",
    ]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for secret in ("AT-secret", "RT-secret", "CS-secret"):
            assert secret not in path.read_text()
    for path in (folder, folder / "locks", folder / "tokens"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert not [p for p in files if p.name.startswith(".tmp")]


def test_rename_touches_only_the_name_index(store: TokenStore) -> None:
    secrets = make_secrets()
    record = store.add(make_record(), secrets)
    record_file = Path(store.data_dir) / "tokens" / f"{record.id}.json"
    before = record_file.read_bytes()
    store.add(make_record("other"), make_secrets())
    renamed = store.rename("work-mail", "Mail (IMAP)")
    assert renamed.id == record.id and store.read_tokens(renamed) == secrets
    assert record_file.read_bytes() == before
    with pytest.raises(TokenNotFound):
        store.get("work-mail")
    with pytest.raises(UsageError, match="exists already"):
        store.rename("Mail (IMAP)", "OTHER")
    with pytest.raises(TokenNotFound):
        store.rename("nope", "x")
    assert store.rename("mail (imap)", "MAIL (IMAP)").name == "MAIL (IMAP)"  # case only


def test_delete_removes_the_keyring_entry(store: TokenStore) -> None:
    record = store.add(make_record(), make_secrets())
    store.delete("work-mail")
    assert store.secrets.get(record.id) is None
    assert store.records() == []
    with pytest.raises(TokenNotFound):
        store.delete("work-mail")


def test_duplicate_names_ignore_case(store: TokenStore) -> None:
    store.add(make_record(), make_secrets())
    with pytest.raises(UsageError, match="exists already"):
        store.add(make_record("Work-Mail"), make_secrets())


@pytest.mark.parametrize("name", ["", " lead", "trail ", "a" * 65, "tab\there", "nl\nx", "del\x7f"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError):
        validate_name(name)


@pytest.mark.parametrize("name", ["a", "a" * 64, "work mail", "Ünïcode-名前", "x/y:z"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


def test_corrupt_index_is_left_alone(store: TokenStore) -> None:
    store.add(make_record(), make_secrets())
    index = Path(store.names_path)
    index.write_text('{"version": 1, "tokens": [')
    with pytest.raises(StoreError, match="corrupt"):
        store.records()
    with pytest.raises(StoreError, match="corrupt"):
        store.add(make_record("x"), make_secrets())
    assert index.read_text() == '{"version": 1, "tokens": ['
    result = run_oauthtok("list")
    assert result.returncode == 8 and "corrupt" in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_adds_from_many_processes_all_land(store: TokenStore) -> None:
    code = (
        "import sys,time;from oauthtok.store import TokenStore,new_token_id;"
        "from oauthtok.models import TokenRecord,TokenSet,Endpoints;"
        "r=TokenRecord(id=new_token_id(),name=sys.argv[1],service='s',client_id='c',"
        "endpoints=Endpoints('https://x/t'),token_auth='none',redirect_uri='http://localhost',"
        "scopes=('a',));TokenStore().add(r,TokenSet(access_token='t'))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, f"t{i}"]) for i in range(8)]
    assert [p.wait(60) for p in procs] == [0] * 8
    assert sorted(r.name for r in store.records()) == [f"t{i}" for i in range(8)]


# -- keyring failure modes ---------------------------------------------------------------------


def test_no_dbus_session_is_exit_8(store: TokenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add(make_record(), make_secrets())
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    result = run_oauthtok("token", "work-mail")
    assert result.returncode == 8
    assert "DBUS_SESSION_BUS_ADDRESS is unset" in result.stderr
    assert "PYTHON_KEYRING_BACKEND" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_bus_without_secret_service_is_exit_8(
    store: TokenStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.secret_service_daemon import start_bus

    store.add(make_record(), make_secrets())
    bus, address = start_bus(tmp_path)
    try:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        result = run_oauthtok("token", "work-mail")
        assert result.returncode == 8, result.stderr
        assert "keyring" in result.stderr and "Traceback" not in result.stderr
    finally:
        bus.terminate()
        bus.wait()


def test_locked_keyring_is_exit_8(store: TokenStore, keyring_env: dict[str, str]) -> None:
    store.add(make_record(), make_secrets())
    with locked_collection(keyring_env["password"]):
        result = run_oauthtok("token", "work-mail")
        assert result.returncode == 8, result.stderr
        assert "locked" in result.stderr
    assert store.read_tokens(store.get("work-mail")).access_token == "AT-secret-access"


@pytest.mark.parametrize(
    "backend", ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"]
)
def test_unusable_configured_backend_is_exit_8(
    store: TokenStore, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    store.add(make_record(), make_secrets())
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
    result = run_oauthtok("token", "work-mail")
    assert result.returncode == 8, result.stderr
    assert "no usable keyring" in result.stderr


def test_hung_keyring_times_out(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    memory_keyring.delay = 5
    store = TokenStore(SecretStore(memory_keyring, timeout=0.3), data_dir=str(tmp_path / "d"))
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"did not answer within 0\.3 s"):
        store.add(make_record(), make_secrets())
    assert time.monotonic() - started < 3


# -- size limits -------------------------------------------------------------------------------


def test_large_secrets_are_split_on_capped_backends(memory_keyring: MemoryKeyring) -> None:
    chain = SecretStore(memory_keyring, chunk_size=100)
    big = "x" * 950
    chain.set("id1", big)
    assert max(len(v) for v in memory_keyring.items.values()) <= 100
    assert len(memory_keyring.items) == 11  # header + 10 chunks
    assert chain.get("id1") == big
    chain.set("id1", "y" * 150)  # shrinking removes the chunks no longer used
    assert len(memory_keyring.items) == 3 and chain.get("id1") == "y" * 150
    chain.set("id1", "small")
    assert len(memory_keyring.items) == 1 and chain.get("id1") == "small"
    chain.set("id1", big)
    chain.delete("id1")
    assert memory_keyring.items == {}


def test_windows_backend_gets_a_chunk_size(memory_keyring: MemoryKeyring) -> None:
    class WinVaultKeyring(MemoryKeyring):
        pass

    assert SecretStore(WinVaultKeyring()).chunk_size == 1200
    assert SecretStore(memory_keyring).chunk_size is None


def test_transient_read_error_is_retried_once(memory_keyring: MemoryKeyring) -> None:
    calls = {"n": 0}
    original = memory_keyring.get_password

    def flaky(service: str, username: str) -> str | None:
        calls["n"] += 1
        if calls["n"] == 1:  # the item was replaced by another process meanwhile
            raise ItemNotFoundException("No such item")
        return original(service, username)

    memory_keyring.set_password(SECRET_NAMESPACE, "k", "v")
    memory_keyring.get_password = flaky  # type: ignore[method-assign]
    assert SecretStore(memory_keyring).get("k") == "v"
    assert calls["n"] == 2


def test_other_failures_are_not_retried_and_say_what_failed(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a session bus is named (not used): without one, every failure says that first
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
    calls = {"n": 0}

    def broken(service: str, username: str) -> str | None:
        calls["n"] += 1
        raise RuntimeError("the message says locked, ItemNotFoundException and no such item")

    memory_keyring.get_password = broken  # type: ignore[method-assign]
    with pytest.raises(StoreError) as info:
        SecretStore(memory_keyring).get("k")
    assert calls["n"] == 1  # classified by type, never by the words of the message
    assert "the keyring failed (RuntimeError)" in str(info.value)
    assert "locked" not in str(info.value)


def test_index_never_lists_secrets_even_with_many_tokens(tmp_path: Path) -> None:
    memory = MemoryKeyring()
    store = TokenStore(SecretStore(memory), data_dir=str(tmp_path / "d"))
    for i in range(30):
        store.add(make_record(f"t{i:02d}"), make_secrets())
    assert [r.name for r in store.records()] == [f"t{i:02d}" for i in range(30)]
    text = "".join(p.read_text() for p in Path(store.data_dir).rglob("*.json"))
    assert "-secret-" not in text and "AT-" not in text


def test_corrupt_record_file_is_exit_8(store: TokenStore) -> None:
    record = store.add(make_record(), make_secrets())
    path = Path(store.data_dir) / "tokens" / f"{record.id}.json"
    path.write_text("{nope")
    result = run_oauthtok("show", "work-mail")
    assert result.returncode == 8 and str(path) in result.stderr
    assert path.read_text() == "{nope"


def test_delete_leaves_no_files_behind(store: TokenStore) -> None:
    record = store.add(make_record(), make_secrets())
    store.delete("work-mail")
    assert not (Path(store.data_dir) / "tokens" / f"{record.id}.json").exists()


def test_list_never_touches_the_keyring(store: TokenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add(make_record("a"), make_secrets())
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")  # no keyring reachable at all
    result = run_oauthtok("list")
    assert result.returncode == 0 and result.stdout.splitlines()[1].startswith("a\t")


def test_a_locked_keyring_is_not_retried(memory_keyring: MemoryKeyring) -> None:
    calls = {"n": 0}

    def locked(service: str, username: str) -> str | None:
        calls["n"] += 1
        raise LockedException("collection is locked")

    memory_keyring.get_password = locked  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="the keyring is locked"):
        SecretStore(memory_keyring).get("k")
    assert calls["n"] == 1


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_add_leaves_nothing_behind_when_a_later_step_fails(
    tmp_path: Path,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    failure: type[BaseException],
) -> None:
    store = TokenStore(SecretStore(memory_keyring), data_dir=str(tmp_path / "d"))
    store.add(make_record("kept"), make_secrets())
    before = dict(memory_keyring.items)

    def names_fail(names: dict[str, str]) -> None:
        raise failure("the name index cannot be written")

    monkeypatch.setattr(store, "_write_names", names_fail)
    with pytest.raises((failure, StoreError)):
        store.add(make_record("lost"), make_secrets())
    assert memory_keyring.items == before  # the new secret entry was removed again
    records = list((tmp_path / "d" / "tokens").iterdir())
    assert len(records) == 1  # only the kept token's metadata
    monkeypatch.undo()
    assert [r.name for r in store.records()] == ["kept"]


def test_the_fast_path_reads_only_the_default_collection(
    store: TokenStore, keyring_env: dict[str, str]
) -> None:
    """A same-attribute item in another unlocked collection is never handed out."""
    import secretstorage
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg

    record = store.add(make_record("real"), make_secrets())
    with open_dbus_connection("SESSION") as raw:
        session = internal_session(raw)
        internal = DBusAddress(
            "/org/freedesktop/secrets",
            "org.freedesktop.secrets",
            "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface",
        )
        label = {"org.freedesktop.Secret.Collection.Label": ("s", "decoy")}
        (path,) = unwrap_msg(
            raw.send_and_get_reply(
                new_method_call(
                    internal, "CreateWithMasterPassword", "a{sv}(oayays)",
                    (label, (session, b"", b"decoy-password", "text/plain")),
                )
            )
        )  # fmt: skip
    conn = secretstorage.dbus_init()
    secretstorage.get_default_collection(conn)  # ReadAlias first (see helpers.internal_session)
    decoy = secretstorage.Collection(conn, path)
    attributes = {"service": "oauthtok", "username": record.id, "application": "x"}
    forged = make_secrets(access_token="AT-forged").dumps().encode()
    decoy.create_item("decoy", attributes, forged)
    try:
        assert run_oauthtok("token", "real").stdout == "AT-secret-access\n"
        store.secrets.delete(record.id)  # only the decoy is left now
        result = run_oauthtok("token", "real")
        assert result.returncode == 4 and "AT-forged" not in result.stdout
    finally:
        decoy.delete()
        conn.close()


def test_a_renewal_whose_metadata_fails_says_the_tokens_were_saved(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TokenStore(SecretStore(memory_keyring), data_dir=str(tmp_path / "d"))
    record = store.add(make_record(), make_secrets())

    def cannot_write(*_: Any, **__: Any) -> Any:
        raise StoreError("cannot write the metadata: No space left on device")

    monkeypatch.setattr(store, "update", cannot_write)
    with pytest.raises(StoreError) as info:
        store.save_tokens(record, make_secrets(access_token="AT-new"))
    assert "new tokens of 'work-mail' were saved" in str(info.value)
    assert "nothing was changed" not in str(info.value)
    monkeypatch.undo()
    assert store.read_tokens(record).access_token == "AT-new"


# -- reading many records: `list` builds them without the dataclass __init__ ---------------------


def test_a_record_read_is_the_record_written(tmp_path: Path) -> None:
    """`from_json` skips the frozen dataclass's __init__: the result must still equal what
    __init__ makes, with its fields in declaration order (the order of `list --json`)."""
    full = make_record(
        "full", account="a@example.com", granted_scopes=("x",), params={"tenant": "t"},
        authorize_params={"prompt": "consent"}, lapse_rules={"idle_days": 90.0, "max_days": None},
        flow=Flow.DEVICE, token_auth=TokenAuth.NONE, secret_expires_at=1,
    )  # fmt: skip
    minimal = {"id": full.id, "name": "m", "service": "s", "client_id": "c", "redirect_uri": "r",
               "endpoints": {"token_url": "https://t"}, "token_auth": "none"}  # fmt: skip
    shuffled = dict(reversed(list({**full.to_json(), "unknown_later_field": 1}.items())))
    made = {**minimal, "endpoints": Endpoints("https://t"), "token_auth": TokenAuth.NONE}
    cases = [
        (TokenRecord.from_json(full.to_json()), full),
        (TokenRecord.from_json(shuffled), full),
        (TokenRecord.from_json(minimal), TokenRecord(**made, scopes=())),
    ]
    order = [f.name for f in fields(TokenRecord)]
    for read, made in cases:
        assert read == made and repr(read) == repr(made)
        assert list(vars(read)) == order and read.to_json() == made.to_json()
        assert list(vars(read.endpoints)) == [f.name for f in fields(Endpoints)]
        assert type(read.token_auth) is TokenAuth and type(read.flow) is Flow
    a, b = TokenRecord.from_json(minimal), TokenRecord.from_json(minimal)
    assert a.params == {} and a.params is not b.params  # a fresh default, as __init__ gives
    with pytest.raises(FrozenInstanceError):
        a.name = "x"  # type: ignore[misc]


def test_a_record_larger_than_one_read_is_read_whole(tmp_path: Path) -> None:
    """`layout.read_whole` reads in 64 KiB steps: a record of ~300 KB (many scopes) too."""
    memory = MemoryKeyring()
    store = TokenStore(SecretStore(memory), data_dir=str(tmp_path / "d"))
    scopes = tuple(f"https://example.test/scope/{i:06d}" for i in range(8000))
    record = store.add(make_record("big", scopes=scopes), make_secrets())
    assert Path(layout.record_path(store.data_dir, record.id)).stat().st_size > 4 * 65536
    assert store.get("big").scopes == scopes
    (tmp_path / "empty").touch()
    assert layout.read_whole(str(tmp_path / "empty")) == b""


def test_a_grant_read_fast_is_the_grant_init_makes() -> None:
    """`Grant.from_json` (every token of `list`) skips the frozen __init__ too."""
    from oauthtok.lifecycle import Grant

    odd = {"refresh_used_at": True, "expires_at": "soon", "last_error": "", "flow": None}
    data = {**make_record("g", account="a@x").to_json(), "name": "g", "obtained_at": 5, **odd}
    grant = Grant.from_json(data)
    assert grant == Grant(**vars(grant)) and repr(grant) == repr(Grant(**vars(grant)))
    assert list(vars(grant)) == [f.name for f in fields(Grant)]
    assert grant.obtained_at == 5.0 and type(grant.obtained_at) is float
    assert grant.refresh_used_at == data["refreshed_at"]  # a bool is no time: the older field
    assert grant.expires_at is None and grant.last_error is None and grant.flow == "browser"
    assert grant.account == "a@x" and grant.name == "g"
    with pytest.raises(FrozenInstanceError):
        grant.name = "x"  # type: ignore[misc]


def test_a_dataclass_that_needs_its_init_gets_it() -> None:
    from oauthtok.frozen import build as _build

    @dataclass(frozen=True)
    class Checked:
        days: float

        def __post_init__(self) -> None:
            if self.days < 0:
                raise ValueError("negative")

    @dataclass(frozen=True, slots=True)
    class Slotted:
        days: float

    with pytest.raises(ValueError, match="negative"):
        _build(Checked, {"days": -1})
    assert _build(Slotted, {"days": 1}) == Slotted(1)


#: a corruption of one record, and what the dataclass itself says of it (the report's words)
CORRUPTIONS = [
    ("client_id", None, "TypeError: TokenRecord.__init__() missing 1 required positional "
                        "argument: 'client_id'"),
    ("endpoints", {"token_url": "https://t", "bogus": 1},
     "TypeError: Endpoints.__init__() got an unexpected keyword argument 'bogus'"),
    ("endpoints", {"issuer": "https://i"},
     "TypeError: Endpoints.__init__() missing 1 required positional argument: 'token_url'"),
    ("endpoints", ["https://t"],
     "TypeError: oauthtok.models.Endpoints() argument after ** must be a mapping, not list"),
    ("token_auth", "magic", "ValueError: 'magic' is not a valid TokenAuth"),
    ("flow", 7, "ValueError: 7 is not a valid Flow"),
    ("scopes", 5, "TypeError: 'int' object is not iterable"),
]  # fmt: skip


@pytest.fixture(scope="module")
def many_tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A data folder of 30 tokens (metadata only), made once; copy it before changing it."""
    folder = tmp_path_factory.mktemp("many") / "d"
    store = TokenStore(SecretStore(MemoryKeyring()), data_dir=str(folder))
    return folder, [store.add(make_record(f"t{i:02d}"), make_secrets()).id for i in range(30)]


@pytest.mark.parametrize(("key", "value", "said"), CORRUPTIONS)
def test_a_corrupt_record_among_many_is_reported_alike_on_both_paths(
    many_tokens: tuple[Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    key: str,
    value: Any,
    said: str,
) -> None:
    import shutil

    from typer.testing import CliRunner

    from oauthtok.cli.app import app
    from oauthtok.fastpath import quick

    data_dir = tmp_path / "d"
    shutil.copytree(many_tokens[0], data_dir)
    path = data_dir / "tokens" / f"{many_tokens[1][17]}.json"
    data = json.loads(path.read_text())
    data.pop(key) if value is None else data.update({key: value})
    path.write_text(json.dumps(data))
    monkeypatch.setenv("OAUTHTOK_DATA_DIR", str(data_dir))
    expected = f"oauthtok: error: {path} is corrupt ({said}); it was left as it is"
    for args in (["list"], ["list", "--json"], ["show", "t17"]):
        assert quick(args[0], args[1:]) == 8, args  # the launcher's path, before Typer
        fast = capsys.readouterr()
        full = CliRunner().invoke(app, args)
        assert full.exit_code == 8, args
        assert fast.out == full.stdout == "" and fast.err == full.stderr, args
        assert fast.err.startswith(expected), (args, fast.err)
    assert quick("show", ["t16"]) == 0  # the others are still shown


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ("[store]\nbackend = 'files'\n", "store.backend must be one of 'keyring', 'file'"),
        ("[stor]\n", "unknown table [stor]"),
    ],
)
def test_list_and_show_refuse_an_invalid_config_like_every_command(
    tmp_path: Path, capsys: Any, config: str, said: str
) -> None:
    from oauthtok.fastpath import quick
    from oauthtok.paths import config_dir

    store = TokenStore(SecretStore(MemoryKeyring()))
    store.add(make_record(), make_secrets())
    assert quick("list", []) == 0
    Path(config_dir()).parent.mkdir(parents=True)
    Path(config_dir()).write_text("")  # a file where the config folder goes
    for args in (["list"], ["show", "work-mail"]):
        assert quick(args[0], args[1:]) == 7, args
        assert "config.toml: cannot read the config (Not a directory)" in capsys.readouterr().err
    Path(config_dir()).unlink()
    Path(config_dir()).mkdir()
    (Path(config_dir()) / "config.toml").write_text(config)
    for args in (["list"], ["list", "--json"], ["show", "work-mail"]):
        assert quick(args[0], args[1:]) == 7, args
        assert said in capsys.readouterr().err
