"""Certificate credentials (RFC 7523 private_key_jwt): loading the PEM file, the assertion's
claims and x5t#S256 header, and a real token request the Authlib server verifies."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from oauthtok import client_cert
from oauthtok.errors import UsageError
from tests import authserver
from tests.certs import inconsistent_rsa_pem, make_client_certificate


def public_pem(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS256"), ("ec", "ES256")])
def test_assertion_claims_and_thumbprint(tmp_path: Path, kind: str, alg: str) -> None:
    cert = make_client_certificate(tmp_path / "c.pem", kind=kind)
    loaded = client_cert.load_file(tmp_path / "c.pem")
    der = cert.public_bytes(serialization.Encoding.DER)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert loaded.x5t_s256 == expected
    assert loaded.not_after == int(cert.not_valid_after_utc.timestamp())
    assert loaded.algorithm == alg

    now = time.time()
    token = loaded.assertion(client_id="app-1", audience="https://idp.example/token", now=now)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "typ": "JWT", "x5t#S256": expected}
    claims = jwt.decode(
        token, public_pem(cert), algorithms=[alg], audience="https://idp.example/token"
    )
    assert claims["iss"] == claims["sub"] == "app-1"
    assert claims["nbf"] == claims["iat"] == int(now)
    assert claims["exp"] - claims["iat"] == 300
    other = loaded.assertion(client_id="app-1", audience="https://idp.example/token", now=now)
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != claims["jti"]


def test_pss_on_request(tmp_path: Path) -> None:
    cert = make_client_certificate(tmp_path / "c.pem")
    loaded = client_cert.load_file(tmp_path / "c.pem")
    token = loaded.assertion(client_id="a", audience="https://x/token", algorithm="PS256")
    jwt.decode(token, public_pem(cert), algorithms=["PS256"], audience="https://x/token")
    with pytest.raises(UsageError):
        loaded.assertion(client_id="a", audience="https://x/token", algorithm="ES256")


def test_the_key_never_shows(tmp_path: Path) -> None:
    make_client_certificate(tmp_path / "c.pem")
    loaded = client_cert.load_file(tmp_path / "c.pem")
    assert "PRIVATE" not in repr(loaded) and "PRIVATE" not in str(loaded.describe())
    again = client_cert.parse(loaded.to_secret())  # the secret store round trip
    assert again.x5t_s256 == loaded.x5t_s256 and again.key_pem == loaded.key_pem


def test_a_given_key_is_checked_the_stored_copy_is_not_checked_again(tmp_path: Path) -> None:
    """RSA's consistency check costs ~55 ms: done on what a user gives (a file, an import),
    not again on the secret store's copy, which `parse` wrote from a checked key."""
    make_client_certificate(tmp_path / "c.pem")
    bad = inconsistent_rsa_pem(tmp_path / "c.pem")
    with pytest.raises(UsageError, match="cannot read the private key in here"):
        client_cert.parse(bad, where="here")
    (tmp_path / "bad.pem").write_bytes(bad)
    (tmp_path / "bad.pem").chmod(0o600)
    with pytest.raises(UsageError, match="cannot read the private key"):
        client_cert.load_file(tmp_path / "bad.pem")
    # the stored copy made from a checked key loads without the check (this one would fail
    # it); a stored copy that does not say so (an import before import checked keys) is checked
    marked = client_cert.STORED_CHECKED.encode() + bad
    assert client_cert.parse(marked, stored=True).algorithm == "RS256"
    with pytest.raises(UsageError, match="cannot read the private key"):
        client_cert.parse(bad, stored=True)
    with pytest.raises(UsageError, match="cannot read the private key"):
        client_cert.parse(marked)  # anything a user gives is checked, whatever it says


def test_assertions_are_signed_with_the_loaded_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyJWT is given the key object: given the PEM text it would load (and check) the key
    again at every assertion."""
    cert = make_client_certificate(tmp_path / "c.pem")
    loaded = client_cert.parse(client_cert.load_file(tmp_path / "c.pem").to_secret(), stored=True)
    keys: list[object] = []
    real = jwt.encode
    monkeypatch.setattr(jwt, "encode", lambda c, key, **k: keys.append(key) or real(c, key, **k))
    token = loaded.assertion(client_id="a", audience="https://x/token")
    assert len(keys) == 1 and not isinstance(keys[0], (bytes, str))
    jwt.decode(token, public_pem(cert), algorithms=["RS256"], audience="https://x/token")


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_readable_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    make_client_certificate(tmp_path / "c.pem", mode=mode)
    with pytest.raises(UsageError, match="chmod 600") as info:
        client_cert.load_file(tmp_path / "c.pem")
    assert info.value.exit_code == 2


def test_an_encrypted_key_is_refused_clearly(tmp_path: Path) -> None:
    make_client_certificate(tmp_path / "c.pem", password=b"pass phrase")
    with pytest.raises(UsageError, match=r"encrypted.*decrypt"):
        client_cert.load_file(tmp_path / "c.pem")


def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    make_client_certificate(tmp_path / "c.pem", days=1)
    with pytest.raises(UsageError, match="expired on"):
        client_cert.load_file(tmp_path / "c.pem", now=time.time() + 3 * 86400)


def test_mismatched_or_missing_parts_are_refused(tmp_path: Path) -> None:
    make_client_certificate(tmp_path / "a.pem")
    make_client_certificate(tmp_path / "b.pem", slot=1)
    a, b = (tmp_path / "a.pem").read_bytes(), (tmp_path / "b.pem").read_bytes()
    key_a = a[: a.index(b"-----BEGIN CERTIFICATE")]
    cert_b = b[b.index(b"-----BEGIN CERTIFICATE") :]
    with pytest.raises(UsageError, match="belongs to its private key"):
        client_cert.parse(key_a + cert_b)
    with pytest.raises(UsageError, match="no certificate"):
        client_cert.parse(key_a)
    with pytest.raises(UsageError, match="found 0 keys"):
        client_cert.parse(cert_b)
    with pytest.raises(UsageError, match="found 2 keys"):
        client_cert.parse(key_a + key_a + cert_b)


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        client_cert.load_file(tmp_path / "nope.pem")


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_the_authorization_server_accepts_the_assertion(tmp_path: Path, kind: str) -> None:
    """Authlib (joserfc) verifies signature, iss/sub, aud = token endpoint, exp and jti."""
    cert = make_client_certificate(tmp_path / "c.pem", kind=kind)
    server = authserver.TestAuthServer().start()
    try:
        server.add_client(
            "app", None, "private_key_jwt", scope="mail.read", public_key_pem=public_pem(cert)
        )
        loaded = client_cert.load_file(tmp_path / "c.pem")
        token_url = f"{server.base_url}/token"
        form = {"grant_type": "client_credentials", "scope": "mail.read"}
        fields = loaded.form_fields(client_id="app", token_url=token_url)
        first = httpx.post(token_url, data={**form, **fields}, timeout=10)
        assert first.status_code == 200, first.text
        assert first.json()["access_token"]
        replay = httpx.post(token_url, data={**form, **fields}, timeout=10)
        assert replay.json()["error"] == "invalid_client"  # the jti is spent
        wrong_aud = loaded.form_fields(client_id="app", token_url=f"{server.base_url}/other")
        assert httpx.post(token_url, data={**form, **wrong_aud}, timeout=10).status_code == 400
        assert [c["aud"] for c in server.knobs.client_assertions][:1] == [token_url]
    finally:
        server.stop()
