"""Certificate credentials: the client authenticates with a short-lived JWT signed by its
private key (RFC 7523 §2.2 `private_key_jwt`, OpenID Connect Core §9) instead of a secret.

The user gives one PEM file holding the private key and its certificate (0600, unencrypted).
The PEM text is what the secret store keeps, like a client secret; the metadata keeps only
the certificate's thumbprint and notAfter (`ClientCertificate.describe()`).

Each assertion carries iss = sub = client_id, aud = the token endpoint, a random jti, and
iat/nbf/exp over five minutes, with the `x5t#S256` header (base64url SHA-256 of the DER
certificate) by which Entra ID finds the uploaded certificate. Signing is PyJWT's (with
`cryptography`): RS256 (or PS256) for RSA keys, ES256/ES384/ES512 for P-256/P-384/P-521.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oauthtok.errors import UsageError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LIFETIME = 300  # seconds: long enough for clock skew and a slow network, short if leaked
MAX_FILE = 1024 * 1024
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
#: the first line of the secret store's copy (text outside the PEM blocks, which RFC 7468
#: readers skip): `to_secret` wrote it from a key `parse` checked, so a later load may skip the
#: RSA consistency check. A copy without it (imported before import checked keys) is checked.
STORED_CHECKED = "oauthtok: key and certificate checked when stored\n"
_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)  # RFC 7468 textual encoding


@dataclass(frozen=True)
class ClientCertificate:
    """A private key and its certificate. The key never appears in repr or messages."""

    key_pem: bytes = field(repr=False)
    cert_pem: bytes
    x5t_s256: str
    not_after: int  # Unix time
    subject: str
    algorithm: str  # the default signing algorithm for the key type
    #: the loaded key (a `cryptography` private key), signed with as it is: PyJWT given the
    #: PEM text would load (and for RSA, check) it again for every assertion, ~55 ms each
    key: Any = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return f"ClientCertificate(x5t#S256={self.x5t_s256!r}, not_after={self.not_after!r})"

    def to_secret(self) -> str:
        """What the secret store keeps: the key and the certificate as PEM text, after the
        line that says `parse` checked them (`STORED_CHECKED`)."""
        return STORED_CHECKED + (self.key_pem + self.cert_pem).decode("ascii")

    def describe(self) -> dict[str, Any]:
        """What metadata may keep (no key): thumbprint, notAfter, subject."""
        return {"x5t#S256": self.x5t_s256, "not_after": self.not_after, "subject": self.subject}

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.not_after - now <= seconds

    def assertion(
        self,
        *,
        client_id: str,
        audience: str,
        now: float | None = None,
        lifetime: int = LIFETIME,
        algorithm: str | None = None,
    ) -> str:
        """A signed client assertion (RFC 7523 §3) for one request to `audience`."""
        import jwt  # PyJWT, lazily: not on the `token` fast path

        issued = int(time.time() if now is None else now)
        algorithm = algorithm or self.algorithm
        if algorithm.startswith(("RS", "PS")) != self.algorithm.startswith(("RS", "PS")):
            raise UsageError(f"{algorithm} does not fit this {self.algorithm[:2]} key")
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime,
        }
        headers = {"typ": "JWT", "x5t#S256": self.x5t_s256}
        return jwt.encode(claims, self.key, algorithm=algorithm, headers=headers)

    def form_fields(
        self, *, client_id: str, token_url: str, now: float | None = None
    ) -> dict[str, str]:
        """The token request's client authentication (RFC 7523 §2.2), with client_id."""
        return {
            "client_id": client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(client_id=client_id, audience=token_url, now=now),
        }


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def load_file(path: str | os.PathLike[str], now: float | None = None) -> ClientCertificate:
    """Read `--client-certificate FILE`: refused unless 0600 (POSIX), unencrypted, with a
    certificate that matches the key and has not expired. Raises UsageError."""
    path = Path(path).expanduser()
    try:
        info = path.stat()
    except OSError as exc:
        raise UsageError(f"cannot read the client certificate {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is not a file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise UsageError(
            f"{path} holds a private key but others may read it (mode "
            f"{stat.S_IMODE(info.st_mode):o}); run `chmod 600 {path}` first"
        )
    if info.st_size > MAX_FILE:
        raise UsageError(f"{path} is over 1 MiB: not a PEM key and certificate")
    cert = parse(path.read_bytes(), where=str(path))
    now = time.time() if now is None else now
    if cert.not_after <= now:
        raise UsageError(
            f"the certificate in {path} expired on "
            f"{time.strftime('%Y-%m-%d', time.gmtime(cert.not_after))}; make a new one and "
            "upload it to the app registration"
        )
    return cert


def parse(
    data: bytes | str, *, where: str = "the client certificate", stored: bool = False
) -> ClientCertificate:
    """A ClientCertificate from PEM text (a file's, or the secret store's). Raises UsageError.

    `stored`: the text is the secret store's copy; when `to_secret` made it from a key
    `parse` checked when the user gave it (its first line says so), an RSA key's consistency
    check (~55 ms of CPU, at every refresh) is not repeated. Anything a user gives is checked."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    blocks = [(m.group(1).decode(), m.group(0)) for m in _BLOCK.finditer(raw)]
    keys = [pem for label, pem in blocks if label.endswith("PRIVATE KEY")]
    certs = [pem for label, pem in blocks if label == "CERTIFICATE"]
    if any(label == "ENCRYPTED PRIVATE KEY" for label, _ in blocks) or any(
        b"Proc-Type: 4,ENCRYPTED" in pem for pem in keys
    ):
        raise UsageError(
            f"the private key in {where} is encrypted; oauthtok keeps it in the secret store "
            "instead: decrypt it once (`openssl pkey -in FILE -out NEW.pem`, then chmod 600)"
        )
    if len(keys) != 1:
        raise UsageError(
            f"{where} must hold exactly one private key and its certificate (PEM), "
            f"found {len(keys)} keys"
        )
    if not certs:
        raise UsageError(f"{where} has no certificate (-----BEGIN CERTIFICATE-----); append it")
    try:
        checked = stored and raw.startswith(STORED_CHECKED.encode())
        key = serialization.load_pem_private_key(
            keys[0], password=None, unsafe_skip_rsa_key_validation=checked
        )
    except TypeError:  # "Password was not given but private key is encrypted"
        raise UsageError(f"the private key in {where} is encrypted; decrypt it first") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"cannot read the private key in {where} ({exc})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise UsageError(f"the RSA key in {where} has {key.key_size} bits; use 2048 or more")
        algorithm = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHMS:
        algorithm = _EC_ALGORITHMS[key.curve.name]
    else:
        raise UsageError(f"the key in {where} is neither RSA nor EC P-256/P-384/P-521")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for pem in certs:
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise UsageError(f"cannot read a certificate in {where} ({exc})") from None
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if spki == public:
            break
    else:
        raise UsageError(f"no certificate in {where} belongs to its private key")
    return ClientCertificate(
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        x5t_s256=_b64url(cert.fingerprint(hashes.SHA256())),
        not_after=int(cert.not_valid_after_utc.timestamp()),
        subject=cert.subject.rfc4514_string(),
        algorithm=algorithm,
        key=key,
    )
