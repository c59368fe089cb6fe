"""Moving grants, end to end: `migrate` between the keyring and the file store, and `export` on
a desktop / `import` on a server (two data folders, two stores), with the real program, the
real Secret Service and the Authlib server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyrage  # type: ignore[import-untyped]
import pytest

from oauthtok import transfer
from tests.certs import inconsistent_rsa_pem, make_client_certificate
from tests.helpers import (
    create_in_process,
    keyring_items,
    listed,
    run_in_process,
    run_oauthtok,
    shown,
)

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")

SECRET = "moving-secret"
KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def create(server: Any, name: str = "gmail", env: dict[str, str] | None = None) -> None:
    server.knobs.id_token_claims = {"sub": "7", "email": "me@example.com"}
    server.add_client(f"client-{name}", SECRET, "client_secret_basic")
    result = create_in_process(  # the command's own code, in this process
        name, "--service", "testidp", "--client-id", f"client-{name}",
        "--scopes", "openid offline_access mail.read", "--client-secret-stdin",
        input=SECRET + "\n", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def data_dir() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "oauthtok"


def secret_files() -> list[str]:
    folder = data_dir() / "secrets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def identity(tmp_path: Path) -> tuple[str, Path]:
    key = pyrage.x25519.Identity.generate()
    path = tmp_path / "server.agekey"
    path.write_text(f"# public key: {key.to_public()}\n{key}\n")
    return str(key.to_public()), path


# -- migrate ----------------------------------------------------------------------------------


def test_migrate_to_the_file_store_and_back(auth_server: Any) -> None:
    create(auth_server, "a")
    create(auth_server, "b")
    before = keyring_items()
    moved = run_oauthtok("migrate", "--to", "file", "--all")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.splitlines() == ["a: moved to the file store", "b: moved to the file store"]
    assert "note: oauthtok still uses the keyring; set [store] backend" in moved.stderr
    assert len(keyring_items()) == len(before) - 2 and len(secret_files()) == 2
    assert run_oauthtok("token", "a").returncode == 4  # the keyring no longer has it
    on_file = {"OAUTHTOK_STORE": "file"}
    assert run_oauthtok("token", "a", env=on_file).stdout.startswith("at-")
    again = run_oauthtok("migrate", "--to", "file", "a", env=on_file)
    assert again.stdout == "a: already in the file store\n" and again.stderr == ""
    back = run_oauthtok("migrate", "--to", "keyring", "b", env=on_file)
    assert back.stdout == "b: moved to the keyring\n"
    assert "note: oauthtok still uses the file store; set OAUTHTOK_STORE=keyring" in back.stderr
    assert run_oauthtok("token", "b").stdout.startswith("at-")
    assert len(secret_files()) == 1
    assert run_oauthtok("migrate", "--to", "file").returncode == 2  # neither names nor --all


def test_a_key_command_on_plain_entries_then_migrate_encrypts_them(
    auth_server: Any, tmp_path: Path
) -> None:
    create(auth_server, env={"OAUTHTOK_STORE": "file"})
    key = tmp_path / "key.sh"
    key.write_text(f"#!/bin/sh\necho {KEY_HEX}\n")
    key.chmod(0o700)
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "oauthtok"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(f'[store]\nbackend = "file"\nkey_command = ["{key}"]\n')
    refused = run_oauthtok("token", "gmail")
    assert refused.returncode == 8 and "migrate --to file --all" in refused.stderr
    sealed = run_oauthtok("migrate", "--to", "file", "--all")
    assert sealed.returncode == 0 and sealed.stdout == "gmail: encrypted in the file store\n"
    (name,) = secret_files()
    assert json.loads((data_dir() / "secrets" / name).read_text())["cipher"] == "aes-256-gcm"
    assert run_oauthtok("token", "gmail").stdout.startswith("at-")


# -- export / import --------------------------------------------------------------------------


def test_export_moves_the_grant_to_a_server(
    auth_server: Any, tmp_path: Path, identity: tuple[str, Path]
) -> None:
    recipient, identity_file = identity
    create(auth_server)
    before = keyring_items()
    sealed = tmp_path / "gmail.age"
    exported = run_oauthtok("export", "gmail", "--to", recipient, "-o", str(sealed))
    assert exported.returncode == 0, exported.stderr
    assert "removed it here (not revoked)" in exported.stderr
    text = sealed.read_text()
    assert text.startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    assert SECRET not in text and "at-" not in text
    # the desktop's copy is gone (list, keyring), and the grant was not revoked
    assert listed() == []
    assert len(keyring_items()) == len(before) - 1
    assert auth_server.knobs.revoked == []

    # the server: another data folder, the file store, the identity
    server = {
        "OAUTHTOK_DATA_DIR": str(tmp_path / "server-data"),
        "OAUTHTOK_STORE": "file",
    }
    wrong = tmp_path / "other.agekey"
    wrong.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    refused = run_oauthtok("import", str(sealed), "--identity", str(wrong), env=server)
    assert refused.returncode == 2 and "was not sealed for the identity" in refused.stderr
    imported = run_oauthtok("import", str(sealed), "--identity", str(identity_file), env=server)
    assert imported.returncode == 0, imported.stderr
    assert "Imported 'gmail': service testidp, account me@example.com" in imported.stderr
    assert f"token endpoint {auth_server.base_url}/token" in imported.stderr
    assert "file store" in imported.stderr
    record = shown("gmail", env=server)
    assert record["account"] == "me@example.com" and record["client_id"] == "client-gmail"
    token = run_oauthtok("token", "gmail", env=server)
    assert token.returncode == 0 and token.stdout.startswith("at-")
    # the refresh token travelled: the server renews the grant by itself
    refreshed = run_oauthtok("refresh", "gmail", "--force", env=server)
    assert refreshed.returncode == 0, refreshed.stderr
    taken = run_oauthtok("import", str(sealed), "--identity", str(identity_file), env=server)
    assert taken.returncode == 2 and "--name NEW" in taken.stderr


def test_export_removes_nothing_unless_the_sealed_token_is_written(
    auth_server: Any, tmp_path: Path, identity: tuple[str, Path]
) -> None:
    recipient, identity_file = identity
    create(auth_server)
    existing = tmp_path / "taken.age"
    existing.write_text("something else\n")
    for args, message in [
        (["--to", recipient, "-o", str(existing)], "exists already"),
        (["--to", "age1notarecipient"], "not a valid age recipient"),
        (["--to", recipient, "-o", str(tmp_path / "no-such-folder" / "x.age")], "cannot write"),
    ]:
        result = run_oauthtok("export", "gmail", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert run_oauthtok("token", "gmail").returncode == 0
    assert existing.read_text() == "something else\n"
    # to stdout (a pipe here), then imported from stdin under another name
    piped = run_oauthtok("export", "gmail", "--to", recipient)
    assert piped.returncode == 0 and piped.stdout.startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    back = run_oauthtok(
        "import", "-", "--identity", str(identity_file), "--name", "mail", input=piped.stdout
    )
    assert back.returncode == 0, back.stderr
    assert run_oauthtok("token", "mail").returncode == 0
    assert run_oauthtok("token", "gmail").returncode == 3


def test_an_imported_client_certificate_is_checked(
    auth_server: Any, tmp_path: Path, identity: tuple[str, Path]
) -> None:
    """`import` checks a client certificate as `create` checks a file (anyone who knows the
    recipient can seal one); refreshes then trust the stored copy without checking it again."""
    recipient, identity_file = identity
    create(auth_server)
    sealed = tmp_path / "gmail.age"
    exported = run_in_process("export", "gmail", "--to", recipient, "-o", str(sealed))
    assert exported.returncode == 0, exported.stderr
    payload = transfer.unseal(sealed.read_bytes(), str(identity_file))
    cert = make_client_certificate(tmp_path / "c.pem")
    before = keyring_items()

    def with_certificate(pem: bytes) -> Path:
        secrets = {**payload["secrets"], "client_certificate": pem.decode()}
        record = {**payload["record"], "secret_expires_at": 1}  # the sender's word
        path = tmp_path / "with-certificate.age"
        path.write_bytes(
            transfer.seal({**payload, "record": record, "secrets": secrets}, recipient)
        )
        return path

    bad = with_certificate(inconsistent_rsa_pem(tmp_path / "c.pem"))
    refused = run_in_process("import", str(bad), "--identity", str(identity_file))
    assert refused.returncode == 2
    assert f"cannot read the private key in the client certificate in {bad}" in refused.stderr
    assert listed() == [] and keyring_items() == before
    good = with_certificate((tmp_path / "c.pem").read_bytes())
    imported = run_in_process("import", str(good), "--identity", str(identity_file))
    assert imported.returncode == 0, imported.stderr
    assert [r["name"] for r in listed()] == ["gmail"]
    assert shown("gmail")["secret_expires_at"] == int(cert.not_valid_after_utc.timestamp())
