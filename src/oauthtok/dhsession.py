"""The Secret Service's encrypted transport, "dh-ietf1024-sha256-aes128-cbc-pkcs7" (the
algorithm of the freedesktop Secret Service specification, as libsecret and secretstorage use).

Not for secrecy on the bus: it is a socket private to the user, and any process of the user may
ask the Secret Service for the same secrets. It is used because gnome-keyring 42 (Debian 12)
aborts after a few hundred to a couple of thousand "plain" sessions: measured here, 350 to 1,857
plain sessions opened and closed ended the daemon with SIGTRAP, and with it every secret of the
desktop session, while 4,058 Diffie-Hellman sessions left it running. `oauthtok token` opens one
session a run, and mail clients run it every few minutes.

The key agreement is stdlib (`pow`, HKDF-SHA256). Opening a secret — the `token` fast path —
is AES-128-CBC decryption written here (FIPS-197's inverse cipher run on all blocks at once;
tests hold it equal to cryptography's and to FIPS-197's vector): importing cryptography cost
~30 ms, more than the rest of a cached `token` run, while 4 KB decrypt here in ~1 ms. Sealing
a secret (writes: the full program) uses cryptography.
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
        if not usable_public_key(server_public):
            raise ValueError("the service's public key is out of range")
        other = int.from_bytes(server_public, "big")
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


def usable_public_key(value: bytes) -> bool:
    """A peer's public key other than the trivial ones (0, 1, p - 1, or beyond p), which
    would make the shared key predictable."""
    return 1 < int.from_bytes(value, "big") < PRIME - 1


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) for keys of at most one block (HKDF's are 32 bytes)."""
    block = key.ljust(64, b"\0")
    inner: bytes = sha256(bytes(b ^ 0x36 for b in block) + message).digest()
    outer: bytes = sha256(bytes(b ^ 0x5C for b in block) + inner).digest()
    return outer


# -- AES-128 decryption ---------------------------------------------------------------------------
# CBC decrypts every block on its own (P[i] = D(C[i]) xor C[i-1]), so all blocks go through each
# step of FIPS-197's inverse cipher at once: a byte substitution is one `bytes.translate` of the
# whole secret, a byte move one slice assignment per position, and the rest XORs and shifts of
# the whole secret read as one integer (little-endian: byte i is bits 8i..8i+7). ~1 ms for 4 KB,
# where a block at a time in Python took ~5 ms.


def _tables() -> tuple[bytes, bytes, dict[int, bytes], dict[int, bytes]]:
    """The S-box and its inverse (FIPS-197 §5.1.1), and products in GF(2^8) with InvMixColumns'
    coefficients: `mul[k][x]` = k·x and `inv_mul[k][x]` = k·InvSubBytes(x)."""
    exp = [0] * 510  # powers of the generator 3, twice over: exp[log a + log b] needs no modulo
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = exp[i + 255] = x
        log[x] = i
        x ^= (x << 1) ^ (0x11B if x & 0x80 else 0)
    sbox = bytearray(256)
    for i in range(256):
        inv = 0 if i == 0 else exp[255 - log[i]]
        s = inv
        for _ in range(4):
            inv = ((inv << 1) | (inv >> 7)) & 0xFF
            s ^= inv
        sbox[i] = s ^ 0x63
    inv_sbox = bytearray(256)
    for i, s in enumerate(sbox):
        inv_sbox[s] = i
    mul = {k: bytes(0 if a == 0 else exp[log[a] + log[k]] for a in range(256)) for k in _COEFFS}
    inv_mul = {k: bytes(mul[k][inv_sbox[a]] for a in range(256)) for k in _COEFFS}
    return bytes(sbox), bytes(inv_sbox), mul, inv_mul


_COEFFS = (14, 11, 13, 9)  # InvMixColumns' (FIPS-197 §5.3.3)
SBOX, INV_SBOX, _MUL, _INV_MUL = _tables()
#: InvShiftRows: the state's byte r + 4c (row r, column c) comes from byte r + 4((c - r) mod 4)
_INV_SHIFT = tuple(r + 4 * ((c - r) % 4) for c in range(4) for r in range(4))


def _round_keys(key: bytes) -> list[bytes]:
    """AES-128's key expansion (FIPS-197 §5.2): the 11 round keys."""
    words = [key[i : i + 4] for i in range(0, 16, 4)]
    rcon = 1
    for i in range(4, 44):
        t = words[i - 1]
        if i % 4 == 0:
            t = bytes((SBOX[t[1]] ^ rcon, SBOX[t[2]], SBOX[t[3]], SBOX[t[0]]))
            rcon = (rcon << 1) ^ (0x11B if rcon & 0x80 else 0)
        words.append(bytes(a ^ b for a, b in zip(words[i - 4], t, strict=True)))
    return [b"".join(words[i : i + 4]) for i in range(0, 44, 4)]


def _mix(state: bytes | bytearray, products: dict[int, bytes]) -> int:
    """InvMixColumns of `state` whose bytes are first looked up in `products` (`_MUL`, or
    `_INV_MUL` for InvSubBytes too), as an integer. Row r of each column is 14·a[r] ^ 11·a[r+1]
    ^ 13·a[r+2] ^ 9·a[r+3]: each product of the whole state moves down k = 1, 2, 3 rows, the
    top k rows of each column wrapping to its bottom."""
    fb = int.from_bytes
    out = fb(state.translate(products[14]), "little")
    columns = len(state) // 4
    for k, coefficient in ((1, 11), (2, 13), (3, 9)):
        product = fb(state.translate(products[coefficient]), "little")
        stay = fb((b"\xff" * (4 - k) + b"\0" * k) * columns, "little")  # rows 0..3-k
        wrap = fb((b"\0" * (4 - k) + b"\xff" * k) * columns, "little")  # rows 4-k..3
        out ^= ((product >> 8 * k) & stay) | ((product << 8 * (4 - k)) & wrap)
    return out


def decrypt_cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC decryption of whole blocks (no padding removed)."""
    size = len(data)
    blocks = size // 16
    fb = int.from_bytes
    rounds = _round_keys(key)
    # InvMixColumns is linear, so AddRoundKey before it is AddRoundKey of the mixed key after
    mixed = _mix(b"".join(rounds[1:10]), _MUL).to_bytes(144, "little")
    state = fb(data, "little") ^ fb(rounds[10] * blocks, "little")
    moved = bytearray(size)

    def inv_shift_rows(state: int) -> bytearray:
        raw = state.to_bytes(size, "little")
        for i, source in enumerate(_INV_SHIFT):
            moved[i::16] = raw[source::16]
        return moved

    for r in range(8, -1, -1):  # rounds 9..1
        shifted = inv_shift_rows(state)
        state = _mix(shifted, _INV_MUL) ^ fb(mixed[16 * r : 16 * r + 16] * blocks, "little")
    shifted = inv_shift_rows(state)
    state = fb(shifted.translate(INV_SBOX), "little") ^ fb(rounds[0] * blocks, "little")
    return (state ^ fb(iv + data[:-16], "little")).to_bytes(size, "little")
