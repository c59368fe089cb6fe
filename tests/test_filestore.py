"""The file secret store: plain and encrypted with a real key command, refusals, real processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from oauthtok import filestore
from oauthtok.config import CommandSpec
from oauthtok.errors import StoreError
from oauthtok.filestore import FileStore, parse_key, read_plain, secret_path

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
OTHER_HEX = "ff" * 32
TOKEN_ID = "0123456789abcdef0123456789abcdef"
VALUE = json.dumps({"access_token": "AT-secret-access", "refresh_token": "RT-secret-refresh"})


def key_script(tmp_path: Path, body: str, name: str = "key.sh") -> CommandSpec:
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o700)
    return CommandSpec((str(script),))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def key_command(tmp_path: Path) -> CommandSpec:
    return key_script(tmp_path, f"echo {KEY_HEX}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- plain --------------------------------------------------------------------------------------


def test_plain_round_trip_modes_and_layout(data_dir: Path) -> None:
    store = FileStore(str(data_dir))
    assert store.get(TOKEN_ID) is None
    store.set(TOKEN_ID, VALUE)
    assert store.get(TOKEN_ID) == VALUE
    path = data_dir / "secrets" / f"{TOKEN_ID}.secret"  # keyed by the token id, like the keyring
    assert Path(secret_path(str(data_dir), TOKEN_ID)) == path
    assert mode(path) == 0o600
    assert mode(data_dir / "secrets") == 0o700
    assert json.loads(path.read_text()) == {
        "format": "oauthtok-secret",
        "version": 1,
        "cipher": "none",
        "value": VALUE,
    }
    assert read_plain(str(data_dir), TOKEN_ID) == VALUE  # the fast reader agrees
    store.set(TOKEN_ID, "second")
    assert store.get(TOKEN_ID) == read_plain(str(data_dir), TOKEN_ID) == "second"
    assert store.keys() == [TOKEN_ID]
    assert store.is_encrypted(TOKEN_ID) is False
    assert [p.name for p in (data_dir / "secrets").iterdir()] == [f"{TOKEN_ID}.secret"]  # no temp
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "locks").stat().st_mode) == 0o700
    store.delete(TOKEN_ID)
    store.delete(TOKEN_ID)  # gone already: fine
    FileStore(str(data_dir / "never")).delete(TOKEN_ID)  # no store at all: fine, nothing made
    assert not (data_dir / "never").exists()
    assert store.get(TOKEN_ID) is None
    assert read_plain(str(data_dir), TOKEN_ID) is None
    assert store.keys() == []
    assert "plain files" in store.describe() and str(data_dir / "secrets") in store.describe()


def test_keys_are_checked_before_they_become_paths(data_dir: Path) -> None:
    store = FileStore(str(data_dir))
    for bad in ("../x", ".hidden", "a/b", "", "x" * 200):
        with pytest.raises(StoreError, match=r"cannot use .* as a file store key"):
            store.set(bad, "v")
        assert read_plain(str(data_dir), bad) is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"format": "other"}',
        b'{"format": "oauthtok-secret", "version": 9}',
    ],
)
def test_corrupt_or_unknown_files(data_dir: Path, content: bytes) -> None:
    store = FileStore(str(data_dir))
    store.set(TOKEN_ID, VALUE)
    Path(secret_path(str(data_dir), TOKEN_ID)).write_bytes(content)
    with pytest.raises(StoreError, match=r"(corrupt|format version 9)"):
        store.get(TOKEN_ID)
    assert read_plain(str(data_dir), TOKEN_ID) is None


# -- refusals -----------------------------------------------------------------------------------


def test_refuses_a_folder_writable_or_readable_by_others(data_dir: Path) -> None:
    store = FileStore(str(data_dir))
    store.set(TOKEN_ID, VALUE)
    secrets = data_dir / "secrets"
    secrets.chmod(0o770)
    with pytest.raises(StoreError, match=r"writable by others .*chmod go-w") as info:
        store.get(TOKEN_ID)
    assert info.value.exit_code == 8
    secrets.chmod(0o750)
    with pytest.raises(StoreError, match=r"readable by others .*chmod 700"):
        store.set(TOKEN_ID, VALUE)
    secrets.chmod(0o700)
    data_dir.chmod(0o757)
    with pytest.raises(StoreError, match=f"{data_dir} is writable by others"):
        store.get(TOKEN_ID)
    data_dir.chmod(0o755)  # a readable data folder is fine; the secrets folder is closed
    assert store.get(TOKEN_ID) == VALUE


def test_refuses_a_file_readable_by_others_or_a_symlink(data_dir: Path, tmp_path: Path) -> None:
    store = FileStore(str(data_dir))
    store.set(TOKEN_ID, VALUE)
    path = Path(secret_path(str(data_dir), TOKEN_ID))
    path.chmod(0o644)
    with pytest.raises(StoreError, match=r"readable by others .*chmod 600"):
        store.get(TOKEN_ID)
    assert read_plain(str(data_dir), TOKEN_ID) is None
    path.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(
        json.dumps(
            {"format": "oauthtok-secret", "version": 1, "cipher": "none", "value": "planted"}
        )
    )
    elsewhere.chmod(0o600)
    path.symlink_to(elsewhere)
    with pytest.raises(StoreError):
        store.get(TOKEN_ID)
    assert read_plain(str(data_dir), TOKEN_ID) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_refuses_what_another_user_owns(data_dir: Path) -> None:
    store = FileStore(str(data_dir))
    store.set(TOKEN_ID, VALUE)
    path = Path(secret_path(str(data_dir), TOKEN_ID))
    os.chown(path, 65534, 65534)  # nobody
    with pytest.raises(StoreError, match=r"belongs to another user"):
        store.get(TOKEN_ID)
    assert read_plain(str(data_dir), TOKEN_ID) is None
    os.chown(path, 0, 0)
    os.chown(data_dir / "secrets", 65534, 65534)
    with pytest.raises(StoreError, match=r"secrets belongs to another user"):
        store.set(TOKEN_ID, VALUE)


# -- encrypted ----------------------------------------------------------------------------------


def test_encrypted_round_trip_with_a_real_key_command(
    data_dir: Path, key_command: CommandSpec
) -> None:
    store = FileStore(str(data_dir), key_command)
    store.set(TOKEN_ID, VALUE)
    path = Path(secret_path(str(data_dir), TOKEN_ID))
    raw = path.read_bytes()
    assert b"AT-secret" not in raw and b"RT-secret" not in raw and KEY_HEX.encode() not in raw
    entry = json.loads(raw)
    assert entry["cipher"] == "aes-256-gcm" and entry["version"] == 1
    assert entry["key_id"] == filestore.key_id(bytes.fromhex(KEY_HEX))
    assert mode(path) == 0o600
    assert store.get(TOKEN_ID) == VALUE
    assert FileStore(str(data_dir), key_command).get(TOKEN_ID) == VALUE  # a new process's view
    # a fresh nonce per write
    store.set(TOKEN_ID, VALUE)
    assert json.loads(path.read_bytes())["nonce"] != entry["nonce"]
    # the fast path hands encrypted entries over to the full path
    assert read_plain(str(data_dir), TOKEN_ID) is None
    assert store.is_encrypted(TOKEN_ID) is True
    assert "AES-256-GCM" in store.describe() and "key.sh" in store.describe()
    assert KEY_HEX not in repr(store)


def test_base64_key_and_crlf(tmp_path: Path, data_dir: Path) -> None:
    import base64

    b64 = base64.b64encode(bytes.fromhex(KEY_HEX)).decode()
    store = FileStore(str(data_dir), key_script(tmp_path, f"printf '%s\\r\\n' {b64}"))
    store.set(TOKEN_ID, VALUE)
    hex_store = FileStore(str(data_dir), key_script(tmp_path, f"printf %s {KEY_HEX}", "k2.sh"))
    assert hex_store.get(TOKEN_ID) == VALUE  # the same key, written the other way


@pytest.mark.parametrize(
    "output",
    [
        b"",
        b"\n",
        b"abc\n",
        KEY_HEX[:-2].encode(),
        (KEY_HEX + "00").encode(),
        b"zz" * 32,
        KEY_HEX.encode() + b"\n\n",
        b" " + KEY_HEX.encode(),
    ],
)
def test_wrong_key_formats(output: bytes) -> None:
    with pytest.raises(StoreError, match=r"not a 32-byte key") as info:
        parse_key(output)
    assert KEY_HEX not in str(info.value)


def test_wrong_key_and_tampering(tmp_path: Path, data_dir: Path, key_command: CommandSpec) -> None:
    store = FileStore(str(data_dir), key_command)
    store.set(TOKEN_ID, VALUE)
    other = FileStore(str(data_dir), key_script(tmp_path, f"echo {OTHER_HEX}", "other.sh"))
    with pytest.raises(StoreError, match=r"encrypted with another key") as info:
        other.get(TOKEN_ID)
    assert info.value.exit_code == 8
    path = Path(secret_path(str(data_dir), TOKEN_ID))
    entry = json.loads(path.read_text())
    data = bytearray(__import__("base64").b64decode(entry["data"]))
    data[3] ^= 1
    entry["data"] = __import__("base64").b64encode(bytes(data)).decode()
    path.write_text(json.dumps(entry))
    with pytest.raises(StoreError, match=r"fails to decrypt with the right key: it was altered"):
        store.get(TOKEN_ID)


def test_an_entry_moved_to_another_key_fails(data_dir: Path, key_command: CommandSpec) -> None:
    """The entry's key is associated data: a file copied under another token id is refused."""
    store = FileStore(str(data_dir), key_command)
    store.set(TOKEN_ID, VALUE)
    other_id = "f" * 32
    Path(secret_path(str(data_dir), other_id)).write_bytes(
        Path(secret_path(str(data_dir), TOKEN_ID)).read_bytes()
    )
    os.chmod(secret_path(str(data_dir), other_id), 0o600)
    with pytest.raises(StoreError, match=r"altered or is corrupt"):
        store.get(other_id)


def test_plain_and_encrypted_do_not_mix_silently(data_dir: Path, key_command: CommandSpec) -> None:
    FileStore(str(data_dir)).set(TOKEN_ID, VALUE)
    encrypted = FileStore(str(data_dir), key_command)
    with pytest.raises(StoreError, match=r"stored unencrypted but \[store\] key_command is set"):
        encrypted.get(TOKEN_ID)
    assert encrypted.reseal(TOKEN_ID) is True
    assert encrypted.reseal(TOKEN_ID) is False
    assert encrypted.get(TOKEN_ID) == VALUE
    with pytest.raises(StoreError, match=r"is encrypted, but no \[store\] key_command is set"):
        FileStore(str(data_dir)).get(TOKEN_ID)


def test_failing_key_commands_are_exit_8_with_one_line(tmp_path: Path, data_dir: Path) -> None:
    failing = FileStore(
        str(data_dir), key_script(tmp_path, "echo 'gpg: decryption failed' >&2; exit 3")
    )
    with pytest.raises(StoreError, match=r"failed \(exit 3: gpg: decryption failed\)") as info:
        failing.set(TOKEN_ID, VALUE)
    assert info.value.exit_code == 8 and "\n" not in str(info.value)
    assert not Path(secret_path(str(data_dir), TOKEN_ID)).exists()  # nothing written

    missing = FileStore(str(data_dir), CommandSpec((str(tmp_path / "no-such-program"),)))
    with pytest.raises(StoreError, match=r"cannot run the key command"):
        missing.set(TOKEN_ID, VALUE)

    short = FileStore(str(data_dir), key_script(tmp_path, "echo abcd", "short.sh"))
    with pytest.raises(StoreError, match=r"printed 4 bytes, not a 32-byte key"):
        short.set(TOKEN_ID, VALUE)

    started = time.monotonic()
    hanging = FileStore(
        str(data_dir), key_script(tmp_path, "sleep 60 & sleep 60", "hang.sh"), key_timeout=0.5
    )
    with pytest.raises(StoreError, match=r"did not finish within 0.5 s"):
        hanging.set(TOKEN_ID, VALUE)
    assert time.monotonic() - started < 5

    shell = FileStore(str(data_dir), CommandSpec((f"echo {KEY_HEX} | tr -d ' '",), shell=True))
    shell.set(TOKEN_ID, VALUE)
    assert shell.get(TOKEN_ID) == VALUE
    shell.check()
    with pytest.raises(StoreError):
        failing.check()


def test_key_command_env_has_no_oauthtok_secrets(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHTOK_CLIENT_SECRET", "CS-secret-client")
    monkeypatch.setenv("OAUTHTOK_OTHER", "x")
    dump = tmp_path / "env.txt"
    command = key_script(tmp_path, f"env > {dump}; echo {KEY_HEX}")
    FileStore(str(data_dir), command).set(TOKEN_ID, VALUE)
    env = dump.read_text()
    assert "CS-secret-client" not in env and "OAUTHTOK_" not in env
    assert "PATH=" in env and "HOME=" in env  # what `pass` and gpg need stays


# -- real processes -----------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from oauthtok.config import CommandSpec
    from oauthtok.filestore import FileStore, read_plain
    data_dir, role, key_cmd, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = FileStore(data_dir, CommandSpec((key_cmd,)) if key_cmd else None)
    key = "0123456789abcdef0123456789abcdef"
    seen = set()
    if role.startswith("w"):
        for i in range(rounds):
            store.set(key, json.dumps({"writer": role, "i": i, "pad": "x" * 3000}))
        open(os.path.join(data_dir, "done-" + role), "w").close()
    else:
        # read until both writers are done (or 30 s): the reads overlap the writes
        deadline = time.monotonic() + 30
        i = 0
        while time.monotonic() < deadline:
            done = [os.path.join(data_dir, "done-" + w) for w in ("w1", "w2")]
            finished = all(os.path.exists(p) for p in done)
            value = store.get(key) if (key_cmd or i % 2) else read_plain(data_dir, key)
            i += 1
            if value is not None:
                data = json.loads(value)  # a torn or half-written file would fail here
                assert len(data["pad"]) == 3000, data
                seen.add(data["writer"])
            if finished:
                break
    print(json.dumps(sorted(seen)))
    """
)


@pytest.mark.parametrize("encrypted", [False, True])
def test_concurrent_writers_and_readers(
    tmp_path: Path, data_dir: Path, key_command: CommandSpec, encrypted: bool
) -> None:
    store = FileStore(str(data_dir), key_command if encrypted else None)
    store.set(TOKEN_ID, json.dumps({"writer": "init", "i": 0, "pad": "x" * 3000}))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    key_cmd = key_command.argv[0] if encrypted else ""
    roles = ["w1", "w2", "r1", "r2"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(data_dir), role, key_cmd, "80"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in roles
    ]
    results = {}
    for role, proc in zip(roles, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results[role] = json.loads(out)
    final = json.loads(store.get(TOKEN_ID) or "{}")
    assert final["writer"] in ("w1", "w2") and final["i"] == 79
    seen = set(results["r1"]) | set(results["r2"])
    assert seen <= {"init", "w1", "w2"} and seen & {"w1", "w2"}  # they did read the writers' data
    leftovers = [p.name for p in (data_dir / "secrets").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


# -- behind the token store -----------------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [False, True])
def test_the_token_store_runs_on_the_file_store(
    data_dir: Path, key_command: CommandSpec, encrypted: bool
) -> None:
    """TokenStore takes the file store where it takes the keyring: same keys, same calls."""
    from oauthtok.models import Endpoints, TokenRecord, TokenSet
    from oauthtok.store import TokenStore, new_token_id

    files = FileStore(str(data_dir), key_command if encrypted else None)
    store = TokenStore(secrets=files, data_dir=str(data_dir))
    record = TokenRecord(
        id=new_token_id(),
        name="server mail",
        service="microsoft",
        client_id="c",
        endpoints=Endpoints(token_url="https://idp.example.com/token"),
        token_auth="none",
        redirect_uri="http://localhost",
        scopes=("offline_access",),
        has_refresh_token=True,
    )
    secrets = TokenSet(access_token="AT-secret-access", refresh_token="RT-secret-refresh")
    store.add(record, secrets)
    assert files.keys() == [record.id]  # the keyring's key: the token id
    assert store.read_tokens(store.get("server mail")) == secrets
    assert (read_plain(str(data_dir), record.id) == secrets.dumps()) is not encrypted
    rotated = secrets.evolve(refresh_token="RT-rotated")
    store.save_tokens(record, rotated)
    assert store.read_tokens(record) == rotated
    store.rename("server mail", "mail")
    assert store.read_tokens(store.get("mail")) == rotated
    store.delete("mail")
    assert files.keys() == []
