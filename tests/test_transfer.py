"""export/import with age: X25519 and SSH recipients, wrong identities, damaged, hostile."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pyrage  # type: ignore[import-untyped]
import pytest

from oauthtok.errors import UsageError
from oauthtok.transfer import make_payload, seal, unseal, validate_payload

RECORD: dict[str, Any] = {
    "id": "e" * 32,
    "name": "gmail",
    "service": "google",
    "client_id": "123.apps.googleusercontent.com",
    "endpoints": {
        "token_url": "https://oauth2.googleapis.com/token",
        "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "device_authorization_url": None,
        "revocation_url": "https://oauth2.googleapis.com/revoke",
    },
    "token_auth": "client_secret_post",
    "redirect_uri": "http://127.0.0.1",
    "scopes": ["https://mail.google.com/"],
    "account": "me@gmail.com",
    "created_at": 1_700_000_000.0,
}
SECRETS: dict[str, Any] = {
    "access_token": "AT-secret-access",
    "token_type": "Bearer",
    "expires_at": 1_700_003_600.0,
    "refresh_token": "RT-secret-refresh",
    "client_secret": "CS-secret-client",
    "id_token": None,
}


@pytest.fixture
def age_identity(tmp_path: Path) -> tuple[str, Path]:
    identity = pyrage.x25519.Identity.generate()
    path = tmp_path / "server.agekey"
    path.write_text(f"# created: today\n# public key: {identity.to_public()}\n{identity}\n")
    return str(identity.to_public()), path


def payload() -> dict[str, Any]:
    return make_payload(RECORD, SECRETS, exported_at=time.time())


def test_round_trip_armored_and_binary(age_identity: tuple[str, Path]) -> None:
    recipient, identity = age_identity
    armored = seal(payload(), recipient)
    assert armored.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert b"secret" not in armored
    opened = unseal(armored, str(identity))
    assert opened["record"] == RECORD
    assert opened["secrets"] == {k: v for k, v in SECRETS.items() if v is not None}
    assert opened["version"] == 1 and opened["format"] == "oauthtok-export"
    binary = seal(payload(), recipient, armored=False)
    assert binary.startswith(b"age-encryption.org/v1\n")
    assert unseal(binary, str(identity))["secrets"]["refresh_token"] == "RT-secret-refresh"


def test_recipient_from_a_file(age_identity: tuple[str, Path], tmp_path: Path) -> None:
    recipient, identity = age_identity
    path = tmp_path / "server.pub"
    path.write_text(f"# the server\n{recipient}\n")
    assert unseal(seal(payload(), str(path)), str(identity))["record"]["name"] == "gmail"


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen missing")
def test_ssh_keys(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    sealed = seal(payload(), key.with_suffix(".pub").read_text().strip())
    assert unseal(sealed, str(key))["secrets"]["access_token"] == "AT-secret-access"
    assert unseal(seal(payload(), str(key.with_suffix(".pub"))), str(key))  # a .pub file
    locked = tmp_path / "id_locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-f", str(locked)],
        check=True,
        timeout=30,
    )
    with pytest.raises(UsageError, match="passphrase-protected keys are not supported"):
        unseal(sealed, str(locked))


def test_wrong_identity_is_a_clear_error(age_identity: tuple[str, Path], tmp_path: Path) -> None:
    recipient, _ = age_identity
    other = tmp_path / "other.agekey"
    other.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    with pytest.raises(
        UsageError, match=r"was not sealed for the identity in .*other.agekey"
    ) as info:
        unseal(seal(payload(), recipient), str(other), source="gmail.age")
    assert str(info.value).startswith("gmail.age was not sealed")
    assert info.value.exit_code == 2


def test_damaged_or_foreign_files(age_identity: tuple[str, Path], tmp_path: Path) -> None:
    recipient, identity = age_identity
    sealed = bytearray(seal(payload(), recipient, armored=False))
    sealed[-5] ^= 1
    with pytest.raises(UsageError, match="not an age-sealed oauthtok export, or it is damaged"):
        unseal(bytes(sealed), str(identity))
    with pytest.raises(UsageError, match="damaged"):
        unseal(b"hello world", str(identity))
    with pytest.raises(UsageError, match="too large"):
        unseal(b"x" * (2 * 1024 * 1024), str(identity))
    # an age file of something else
    other = pyrage.encrypt(b"[1, 2, 3]", [pyrage.x25519.Recipient.from_str(recipient)])
    with pytest.raises(UsageError, match="it is not an oauthtok export"):
        unseal(other, str(identity))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not an age recipient"),
        ("bob@example.com", "is not an age recipient"),
        ("age1qqqq", "not a valid age recipient"),
        ("age1yubikey1qwerty", "plugin recipients are not supported"),
        ("ssh-ed25519 AAAAnotakey", "not a valid age recipient"),
        ("ssh-dss AAAAB3Nza", "is not an age recipient"),
    ],
)
def test_bad_recipients(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        seal(payload(), text)


def test_bad_identity_files(tmp_path: Path, age_identity: tuple[str, Path]) -> None:
    recipient, _ = age_identity
    sealed = seal(payload(), recipient)
    with pytest.raises(UsageError, match="cannot read the identity file"):
        unseal(sealed, str(tmp_path / "missing"))
    junk = tmp_path / "junk"
    junk.write_text("hello\n")
    with pytest.raises(UsageError, match="holds no age identity"):
        unseal(sealed, str(junk))
    junk.write_text("AGE-SECRET-KEY-1QQQ\n")
    with pytest.raises(UsageError, match="not a valid age identity"):
        unseal(sealed, str(junk))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "format version 2; this oauthtok reads version 1"),
        ({"format": "other"}, "it is not an oauthtok export"),
        ({"extra": 1}, "unknown field 'extra'"),
        ({"record": []}, "no record and secrets"),
        ({"record": {**RECORD, "client_id": ""}}, r"record.client_id is missing"),
        ({"record": {**RECORD, "endpoints": {}}}, r"token_url is missing"),
        (
            {"record": {**RECORD, "endpoints": {"token_url": "http://evil.example/token"}}},
            "endpoints must use https",
        ),
        ({"secrets": {"refresh_token": "RT"}}, "no access token"),
        ({"secrets": {"access_token": "AT", "password": "x"}}, "unknown secret field 'password'"),
        ({"secrets": {"access_token": "AT", "expires_at": "soon"}}, "expires_at is not a number"),
        ({"secrets": {"access_token": 5}}, "access_token is not a string"),
    ],
)
def test_payload_validation(change: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate_payload({**payload(), **change})


def test_a_hostile_sealed_payload_is_refused(age_identity: tuple[str, Path]) -> None:
    """age does not say who sealed a file: anyone with the recipient can. An export that sends
    the refresh token elsewhere is refused on import."""
    recipient, identity = age_identity
    evil = {**payload(), "record": {**RECORD, "endpoints": {"token_url": "http://10.0.0.1/t"}}}
    raw = json.dumps(evil).encode()
    sealed = pyrage.encrypt(raw, [pyrage.x25519.Recipient.from_str(recipient)])
    with pytest.raises(UsageError, match="endpoints must use https"):
        unseal(sealed, str(identity))
    loopback = {**RECORD, "endpoints": {"token_url": "http://127.0.0.1:8080/token"}}
    assert validate_payload({**payload(), "record": loopback})  # tests' servers are allowed
