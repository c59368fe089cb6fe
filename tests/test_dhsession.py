"""The Secret Service's encrypted transport (`dhsession`): the algorithm secretstorage and
libsecret speak, and why it replaced the "plain" one (gnome-keyring 42 aborts after a few
hundred to a couple of thousand plain sessions)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from secretstorage.dhcrypto import DH_PRIME_1024, Session

from oauthtok.dhsession import PRIME, Transport, _hmac_sha256, decrypt_cbc


def test_the_group_and_the_key_are_secretstorages() -> None:
    """The same prime, and the same AES key from the same exchange as secretstorage derives
    (an independent implementation of the specification)."""
    assert PRIME == DH_PRIME_1024
    ours, theirs = Transport(), Session()
    ours.agree(theirs.my_public_key.to_bytes(128, "big"))
    theirs.set_server_public_key(int.from_bytes(ours.public, "big"))
    assert ours._key == theirs.aes_key and ours._key is not None and len(ours._key) == 16


@pytest.mark.parametrize("value", [b"", b"x", b"0123456789abcdef", os.urandom(5000)])
def test_seal_and_open(value: bytes) -> None:
    a, b = Transport(), Transport()
    a.agree(b.public)
    b.agree(a.public)
    iv, sealed = a.seal(value)
    assert len(iv) == 16 and len(sealed) % 16 == 0 and sealed != value
    assert b.open(iv, sealed) == value


def test_what_does_not_open_is_refused() -> None:
    a, b = Transport(), Transport()
    a.agree(b.public)
    b.agree(a.public)
    iv, sealed = a.seal(b"secret")
    with pytest.raises(ValueError):
        b.open(iv, sealed[:-1])  # not whole blocks
    with pytest.raises(ValueError):
        b.open(b"", sealed)
    other = Transport()
    other.agree(Transport().public)
    with pytest.raises(ValueError, match="padding"):
        for _ in range(20):  # a wrong key gives valid padding 1 time in ~256
            other.open(*a.seal(b"secret"))
    with pytest.raises(ValueError, match="range"):
        a.agree(b"\x01")
    with pytest.raises(ValueError, match="range"):
        a.agree((PRIME - 1).to_bytes(128, "big"))


def test_every_session_oauthtok_opens_is_encrypted(
    keyring_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast reader and the backend both ask for the encrypted algorithm (a "plain"
    session anywhere would bring gnome-keyring 42 down in time)."""
    from oauthtok import minibus
    from oauthtok.freedesktop import SecretServiceBackend, read_secret

    asked: list[object] = []
    send = minibus.Connection.send

    def recording(self: minibus.Connection, *call: Any) -> int:
        if call[3] == "OpenSession":
            asked.append(call[5][0])
        return send(self, *call)

    monkeypatch.setattr(minibus.Connection, "send", recording)
    backend = SecretServiceBackend()
    backend.set_password("oauthtok", "enc", "v")
    assert read_secret("oauthtok", "enc") == "v"
    assert backend.get_password("oauthtok", "enc") == "v"
    backend.delete_password("oauthtok", "enc")
    assert asked == ["dh-ietf1024-sha256-aes128-cbc-pkcs7"] * 2  # the backend's one, the reader's


def test_the_aes_decryption_is_fips_197s_and_cryptographys() -> None:
    """The fast path's own AES-128-CBC decryption: FIPS-197's appendix C.1 vector, and equal to
    cryptography's for random keys, IVs and lengths."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    plain = bytes.fromhex("00112233445566778899aabbccddeeff")
    sealed = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")
    assert decrypt_cbc(key, bytes(16), sealed) == plain  # one block, zero IV: plain ECB
    for n in range(300):
        key, iv, data = os.urandom(16), os.urandom(16), os.urandom(16 * (1 + n % 50))
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        assert decrypt_cbc(key, iv, encryptor.update(data) + encryptor.finalize()) == data


def test_the_hmac_is_the_standard_librarys() -> None:
    import hashlib
    import hmac

    for n in range(65):
        key, message = os.urandom(n), os.urandom(n * 3)
        assert _hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()
