"""The explicit file store, end to end: the real program on OAUTHTOK_STORE=file or config.toml,
plain and encrypted with a real key command, against the Authlib server."""

from __future__ import annotations

import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HEAVY, create_in_process, imported_modules, keyring_items, run_oauthtok

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")

SECRET = "file-store-secret"
KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def data_dir() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "oauthtok"


def config_dir() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "oauthtok"


def write_config(text: str) -> Path:
    config_dir().mkdir(parents=True, exist_ok=True)
    path = config_dir() / "config.toml"
    path.write_text(text)
    return path


def key_command(tmp_path: Path, body: str = f"echo {KEY_HEX}") -> str:
    script = tmp_path / "key.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o700)
    return str(script)


def create(
    server: Any, name: str = "srv", env: dict[str, str] | None = None, in_process: bool = False
) -> Any:
    """`oauthtok create` (`in_process`: its command in this process, for a token to test what
    comes after; tests.helpers.create_in_process)."""
    server.add_client(f"client-{name}", SECRET, "client_secret_basic")
    run = create_in_process if in_process else partial(run_oauthtok, "create")
    return run(
        name, "--service", "testidp", "--client-id", f"client-{name}",
        "--scopes", "offline_access mail.read", "--client-secret-stdin",
        input=SECRET + "\n", env=env,
    )  # fmt: skip


def seed(server: Any) -> None:
    result = create(server, in_process=True)
    assert result.returncode == 0, result.stderr


def secret_file(name: str = "srv") -> Path:
    names = json.loads((data_dir() / "names.json").read_text())["names"]
    return data_dir() / "secrets" / f"{names[name]}.secret"


def test_the_plain_file_store_from_the_environment(
    auth_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHTOK_STORE", "file")
    before = keyring_items()
    result = create(auth_server)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "file store" in line]
    assert len(said) == 1 and "protected only by file permissions" in said[0]
    assert keyring_items() == before  # never the keyring
    path = secret_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    entry = json.loads(path.read_text())
    assert entry["cipher"] == "none" and SECRET in entry["value"]

    # the fast path reads the file, imports nothing heavy, and answers as the full path does
    result, modules = imported_modules("token", "srv", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["access_token"] in entry["value"]
    assert "oauthtok.fastpath" in modules and "oauthtok.handout" not in modules
    assert "jeepney" not in modules and "oauthtok.freedesktop" not in modules
    assert "oauthtok.config" not in modules  # OAUTHTOK_STORE alone: no config file to read
    assert "cryptography" not in modules  # a plain file needs no decryption
    assert not [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY]
    for args in [["srv"], ["srv", "-f", "header"], ["SRV", "--format=json"], ["nope"]]:
        fast = run_oauthtok("token", *args)
        full = run_oauthtok("token", *args, env={"OAUTHTOK_NO_FAST_PATH": "1"})
        assert (fast.returncode, fast.stdout, fast.stderr) == (
            full.returncode,
            full.stdout,
            full.stderr,
        ), args
    # the keyring (the default) does not have it: a store is chosen, never fallen back to
    monkeypatch.delenv("OAUTHTOK_STORE")
    missing = run_oauthtok("token", "srv")
    assert missing.returncode == 4 and "secret store holds no secrets" in missing.stderr


def test_a_file_store_the_fast_path_may_not_read_goes_to_the_full_path(
    auth_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHTOK_STORE", "file")
    seed(auth_server)
    secrets = data_dir() / "secrets"
    secrets.chmod(0o750)  # readable by the group: the full path refuses it, so must the fast path
    for args in (["srv"], ["srv", "--format", "json"]):
        fast = run_oauthtok("token", *args)
        assert fast.returncode == 8 and "chmod 700" in fast.stderr
    secrets.chmod(0o700)
    assert run_oauthtok("token", "srv").returncode == 0


def test_the_encrypted_file_store_from_config_toml(auth_server: Any, tmp_path: Path) -> None:
    write_config(f'[store]\nbackend = "file"\nkey_command = ["{key_command(tmp_path)}"]\n')
    result = create(auth_server)
    assert result.returncode == 0, result.stderr
    assert "encrypted with AES-256-GCM" in result.stderr
    entry = json.loads(secret_file().read_text())
    assert entry["cipher"] == "aes-256-gcm" and SECRET not in secret_file().read_text()
    token, modules = imported_modules("token", "srv")
    assert token.returncode == 0 and token.stdout.startswith("at-")
    assert "oauthtok.handout" in modules  # the key command is the full path's business
    assert token.stdout.strip() not in secret_file().read_text()


def test_a_failing_key_command_is_exit_8_with_one_line(auth_server: Any, tmp_path: Path) -> None:
    write_config(f'[store]\nbackend = "file"\nkey_command = ["{key_command(tmp_path)}"]\n')
    seed(auth_server)
    key_command(tmp_path, "echo 'no key for you' >&2; exit 3")
    result = run_oauthtok("token", "srv")
    assert result.returncode == 8
    assert result.stderr.count("\n") == 1 and "failed (exit 3: no key for you)" in result.stderr
    before = auth_server.knobs.code_requests
    again = create(auth_server, name="other")  # refused before anyone consents
    assert again.returncode == 8 and auth_server.knobs.code_requests == before


@pytest.mark.parametrize(("encrypted", "processes"), [(False, 20), (True, 10)])
def test_concurrent_token_processes_refresh_once(
    auth_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encrypted: bool,
    processes: int,
) -> None:  # fmt: skip
    if encrypted:
        write_config(f'[store]\nbackend = "file"\nkey_command = ["{key_command(tmp_path)}"]\n')
    else:
        monkeypatch.setenv("OAUTHTOK_STORE", "file")
    auth_server.knobs.expires_in = 30  # due at once (the default --min-valid is 60 s)
    seed(auth_server)
    auth_server.knobs.expires_in = 3600
    auth_server.knobs.refresh_delay = 0.3  # the others queue on the lock meanwhile
    with ThreadPoolExecutor(processes) as pool:
        results = list(pool.map(lambda _: run_oauthtok("token", "srv"), range(processes)))
    assert [r.returncode for r in results] == [0] * processes, [r.stderr for r in results]
    assert auth_server.knobs.refresh_requests == 1
    assert len({r.stdout for r in results}) == 1
    assert results[0].stdout.strip() in run_oauthtok("token", "srv").stdout
    leftovers = [p.name for p in (data_dir() / "secrets").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_an_invalid_store_choice_is_exit_7(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHTOK_STORE", "files")
    for args in (["token", "x"], ["list"]):
        result = run_oauthtok(*args)
        assert result.returncode == 7, result.stderr
        assert "OAUTHTOK_STORE: 'files' is not a secret store" in result.stderr
