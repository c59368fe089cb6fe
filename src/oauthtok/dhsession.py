"""The Secret Service's encrypted transport, "dh-ietf1024-sha256-aes128-cbc-pkcs7" (the
algorithm of the freedesktop Secret Service specification, as libsecret and secretstorage use).

Not for secrecy on the bus: it is a socket private to the user, and any process of the user may
ask the Secret Service for the same secrets. It is used because gnome-keyring 42 (Debian 12)
aborts after a few hundred to a couple of thousand "plain" sessions: measured here, 350 to 1,857
plain sessions opened and closed ended the daemon with SIGTRAP, and with it every secret of the
desktop session, while 4,058 Diffie-Hellman sessions left it running. `oauthtok token` opens one
session a run, and mail clients run it every few minutes.

The key agreement is stdlib (`pow`, HKDF-SHA256). Opening a secret — the `token` fast path —
is AES-128-CBC decryption written here (FIPS-197's equivalent inverse cipher with T-tables;
tests hold it equal to cryptography's and to FIPS-197's vector): importing cryptography cost
~30 ms, more than the rest of a cached `token` run, while a few KB decrypt in ~5 ms. Sealing a
secret (writes: the full program) uses cryptography.
"""

from __future__ import annotations

import os

try:  # the builtin module: hashlib would load OpenSSL (~4 ms) for one digest
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - a build without it
    from hashlib import sha256

TYPE_CHECKING = False  # typing costs ~4 ms to import, on the `token` fast path
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

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
        # a 256-bit exponent, as protocols on this group use (twice the group's ~80-bit
        # strength and more): the key agreement costs ~1.5 ms instead of ~6.5 ms
        self._private = int.from_bytes(os.urandom(32), "big") | (1 << 255)
        self.public = pow(2, self._private, PRIME).to_bytes(128, "big")
        self._key: bytes | None = None

    def agree(self, server_public: bytes) -> None:
        """Derive the AES key from the service's public key (HKDF-SHA256, a zero salt, no
        info, 16 bytes)."""
        other = int.from_bytes(server_public, "big")
        if not 1 < other < PRIME - 1:
            raise ValueError("the service's public key is out of range")
        shared = pow(other, self._private, PRIME).to_bytes(128, "big")
        prk = _hmac_sha256(b"\0" * 32, shared)
        self._key = _hmac_sha256(prk, b"\x01")[:16]

    def _cipher(self, iv: bytes) -> Cipher[modes.CBC]:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if self._key is None:
            raise ValueError("no key agreed")
        return Cipher(algorithms.AES(self._key), modes.CBC(iv))

    def open(self, iv: bytes, sealed: bytes) -> bytes:
        """A secret as the service sent it: ValueError when it does not decrypt to a padded
        value."""
        if len(iv) != 16 or not sealed or len(sealed) % 16:
            raise ValueError("not an AES-CBC secret")
        if self._key is None:
            raise ValueError("no key agreed")
        padded = decrypt_cbc(self._key, iv, sealed)
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


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) for keys of at most one block (HKDF's are 32 bytes)."""
    block = key.ljust(64, b"\0")
    inner: bytes = sha256(bytes(b ^ 0x36 for b in block) + message).digest()
    outer: bytes = sha256(bytes(b ^ 0x5C for b in block) + inner).digest()
    return outer


# -- AES-128 decryption ---------------------------------------------------------------------------
def _tables() -> tuple[list[int], list[int], list[int], list[int], list[int], list[int]]:
    """The S-box, its inverse, and the four decryption T-tables (FIPS-197 §5.3)."""
    # GF(2^8) exp/log with generator 3
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x ^= (x << 1) ^ (0x11B if x & 0x80 else 0)
        x &= 0xFF
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    sbox = [0] * 256
    for i in range(256):
        inv = 0 if i == 0 else exp[255 - log[i]]
        s = inv
        for _ in range(4):
            inv = ((inv << 1) | (inv >> 7)) & 0xFF
            s ^= inv
        sbox[i] = s ^ 0x63
    inv_sbox = [0] * 256
    for i, s in enumerate(sbox):
        inv_sbox[s] = i

    def mul(a: int, b: int) -> int:
        return 0 if a == 0 or b == 0 else exp[log[a] + log[b]]

    td0 = [0] * 256
    for i in range(256):
        s = inv_sbox[i]
        td0[i] = (mul(s, 14) << 24) | (mul(s, 9) << 16) | (mul(s, 13) << 8) | mul(s, 11)
    td1 = [((t >> 8) | (t << 24)) & 0xFFFFFFFF for t in td0]
    td2 = [((t >> 16) | (t << 16)) & 0xFFFFFFFF for t in td0]
    td3 = [((t >> 24) | (t << 8)) & 0xFFFFFFFF for t in td0]
    return sbox, inv_sbox, td0, td1, td2, td3


SBOX, INV_SBOX, TD0, TD1, TD2, TD3 = _tables()


def _decryption_keys(key: bytes) -> list[int]:
    """The 44 round-key words, in decryption order, InvMixColumns applied to rounds 1-9."""
    # encryption schedule (44 words)
    w = [int.from_bytes(key[i : i + 4], "big") for i in range(0, 16, 4)]
    rcon = 1
    for i in range(4, 44):
        t = w[i - 1]
        if i % 4 == 0:
            t = (
                (SBOX[(t >> 16) & 0xFF] << 24)
                | (SBOX[(t >> 8) & 0xFF] << 16)
                | (SBOX[t & 0xFF] << 8)
                | SBOX[t >> 24]
            ) ^ (rcon << 24)
            rcon = (rcon << 1) ^ (0x11B if rcon & 0x80 else 0)
        w.append(w[i - 4] ^ t)
    # reverse the round order; InvMixColumns on the middle rounds
    rounds = [w[i : i + 4] for i in range(0, 44, 4)][::-1]
    dk = list(rounds[0])
    for r in rounds[1:10]:
        for t in r:
            dk.append(
                TD0[SBOX[t >> 24]]
                ^ TD1[SBOX[(t >> 16) & 0xFF]]
                ^ TD2[SBOX[(t >> 8) & 0xFF]]
                ^ TD3[SBOX[t & 0xFF]]
            )
    dk.extend(rounds[10])
    return dk


def decrypt_cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC decryption of whole blocks (no padding removed)."""
    dk = _decryption_keys(key)
    td0, td1, td2, td3, inv = TD0, TD1, TD2, TD3, INV_SBOX
    out = bytearray()
    prev = iv
    fb = int.from_bytes
    for off in range(0, len(data), 16):
        block = data[off : off + 16]
        s0 = fb(block[0:4], "big") ^ dk[0]
        s1 = fb(block[4:8], "big") ^ dk[1]
        s2 = fb(block[8:12], "big") ^ dk[2]
        s3 = fb(block[12:16], "big") ^ dk[3]
        k = 4
        for _ in range(9):
            t0 = (
                td0[s0 >> 24] ^ td1[(s3 >> 16) & 255] ^ td2[(s2 >> 8) & 255] ^ td3[s1 & 255] ^ dk[k]
            )
            t1 = (
                td0[s1 >> 24]
                ^ td1[(s0 >> 16) & 255]
                ^ td2[(s3 >> 8) & 255]
                ^ td3[s2 & 255]
                ^ dk[k + 1]
            )
            t2 = (
                td0[s2 >> 24]
                ^ td1[(s1 >> 16) & 255]
                ^ td2[(s0 >> 8) & 255]
                ^ td3[s3 & 255]
                ^ dk[k + 2]
            )
            t3 = (
                td0[s3 >> 24]
                ^ td1[(s2 >> 16) & 255]
                ^ td2[(s1 >> 8) & 255]
                ^ td3[s0 & 255]
                ^ dk[k + 3]
            )
            s0, s1, s2, s3 = t0, t1, t2, t3
            k += 4
        o0 = (
            (inv[s0 >> 24] << 24)
            | (inv[(s3 >> 16) & 255] << 16)
            | (inv[(s2 >> 8) & 255] << 8)
            | inv[s1 & 255]
        ) ^ dk[40]
        o1 = (
            (inv[s1 >> 24] << 24)
            | (inv[(s0 >> 16) & 255] << 16)
            | (inv[(s3 >> 8) & 255] << 8)
            | inv[s2 & 255]
        ) ^ dk[41]
        o2 = (
            (inv[s2 >> 24] << 24)
            | (inv[(s1 >> 16) & 255] << 16)
            | (inv[(s0 >> 8) & 255] << 8)
            | inv[s3 & 255]
        ) ^ dk[42]
        o3 = (
            (inv[s3 >> 24] << 24)
            | (inv[(s2 >> 16) & 255] << 16)
            | (inv[(s1 >> 8) & 255] << 8)
            | inv[s0 & 255]
        ) ^ dk[43]
        plain = ((o0 << 96) | (o1 << 64) | (o2 << 32) | o3) ^ fb(prev, "big")
        out += plain.to_bytes(16, "big")
        prev = block
    return bytes(out)
