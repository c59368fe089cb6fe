"""The Secret Service's encrypted transport, "dh-ietf1024-sha256-aes128-cbc-pkcs7" (the
algorithm of the freedesktop Secret Service specification, as libsecret and secretstorage use).

Not for secrecy on the bus: it is a socket private to the user, and any process of the user may
ask the Secret Service for the same secrets. It is used because gnome-keyring 42 (Debian 12)
aborts after a few hundred to a couple of thousand "plain" sessions: measured here, 350 to 1,857
plain sessions opened and closed ended the daemon with SIGTRAP, and with it every secret of the
desktop session, while 4,058 Diffie-Hellman sessions left it running. `oauthtok token` opens one
session a run, and mail clients run it every few minutes.

The key agreement is stdlib (`pow`, HKDF-SHA256 by `hmac`); AES-128-CBC is cryptography's,
imported on first use.
"""

from __future__ import annotations

import hashlib
import hmac
import os

ALGORITHM = "dh-ietf1024-sha256-aes128-cbc-pkcs7"
#: RFC 2409's second Oakley group (1024-bit MODP), generator 2
PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E34"
    "04DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5C"
    "B6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)


class Transport:
    """One session's key: agreed with the service's public key, then used to open the secrets
    it sends and to seal the ones sent to it."""

    def __init__(self) -> None:
        self._private = int.from_bytes(os.urandom(128), "big")
        self.public = pow(2, self._private, PRIME).to_bytes(128, "big")
        self._key: bytes | None = None

    def agree(self, server_public: bytes) -> None:
        """Derive the AES key from the service's public key (HKDF-SHA256, a zero salt, no
        info, 16 bytes)."""
        other = int.from_bytes(server_public, "big")
        if not 1 < other < PRIME - 1:
            raise ValueError("the service's public key is out of range")
        shared = pow(other, self._private, PRIME).to_bytes(128, "big")
        prk = hmac.new(b"\0" * 32, shared, hashlib.sha256).digest()
        self._key = hmac.new(prk, b"\x01", hashlib.sha256).digest()[:16]

    def _cipher(self, iv: bytes):  # type: ignore[no-untyped-def]
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if self._key is None:
            raise ValueError("no key agreed")
        return Cipher(algorithms.AES(self._key), modes.CBC(iv))

    def open(self, iv: bytes, sealed: bytes) -> bytes:
        """A secret as the service sent it: ValueError when it does not decrypt to a padded
        value."""
        if len(iv) != 16 or not sealed or len(sealed) % 16:
            raise ValueError("not an AES-CBC secret")
        decryptor = self._cipher(iv).decryptor()
        padded: bytes = decryptor.update(sealed) + decryptor.finalize()
        pad = padded[-1]
        if not 1 <= pad <= 16 or padded[-pad:] != bytes((pad,)) * pad:
            raise ValueError("bad padding")
        return padded[:-pad]

    def seal(self, value: bytes) -> tuple[bytes, bytes]:
        """(iv, ciphertext) of a secret to send."""
        iv = os.urandom(16)
        pad = 16 - len(value) % 16
        encryptor = self._cipher(iv).encryptor()
        sealed: bytes = encryptor.update(value + bytes((pad,)) * pad) + encryptor.finalize()
        return iv, sealed
