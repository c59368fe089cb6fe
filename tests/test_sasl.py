"""The SASL initial responses against the published examples, and their refusals."""

from __future__ import annotations

import base64

import pytest

from oauthtok import sasl
from oauthtok.errors import UsageError


def decoded(value: str) -> str:
    assert "\n" not in value
    return base64.b64decode(value, validate=True).decode()


def test_xoauth2_matches_googles_published_example() -> None:
    # Google's XOAUTH2 protocol page, "The SASL XOAUTH2 Mechanism"
    assert sasl.xoauth2(
        "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
    ) == (
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNr"
        "QmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )


def test_oauthbearer_matches_rfc7628_example() -> None:
    # RFC 7628 §4.1, with host and port
    token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    assert sasl.oauthbearer("user@example.com", token, "server.example.com", 143) == (
        "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVh"
        "cmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
    )


def test_formats_as_the_issue_states_them() -> None:
    assert (
        decoded(sasl.xoauth2("a@b.example", "T0K")) == "user=a@b.example\x01auth=Bearer T0K\x01\x01"
    )
    assert decoded(sasl.oauthbearer("a@b.example", "T0K")) == (
        "n,a=a@b.example,\x01auth=Bearer T0K\x01\x01"
    )
    assert decoded(sasl.oauthbearer(None, "T0K")) == "n,,\x01auth=Bearer T0K\x01\x01"


def test_oauthbearer_escapes_the_authzid() -> None:
    # RFC 5801 saslname: "=" → "=3D" first, then "," → "=2C"
    assert decoded(sasl.oauthbearer("o,dd=user", "T")).startswith("n,a=o=2Cdd=3Duser,\x01")
    assert sasl.saslname("=2C") == "=3D2C"


@pytest.mark.parametrize("user", ["a\x01b@example.com", "a\nb", "a\x00", "x\x7f", ""])
def test_refuses_users_that_break_the_framing(user: str) -> None:
    with pytest.raises(UsageError) as info:
        sasl.xoauth2(user, "tok")
    assert info.value.exit_code == 2
    with pytest.raises(UsageError):
        sasl.oauthbearer(user, "tok")


@pytest.mark.parametrize("token", ["", "tok en", "x\x01y", "caf\u00e9"])
def test_refuses_tokens_that_break_the_framing_without_echoing_them(token: str) -> None:
    with pytest.raises(UsageError) as info:
        sasl.xoauth2("a@example.com", token)
    if token:
        assert token not in str(info.value)


def test_initial_response_by_name() -> None:
    assert sasl.initial_response("XOAUTH2", "u@x", "t") == sasl.xoauth2("u@x", "t")
    assert sasl.initial_response("oauthbearer", "u@x", "t") == sasl.oauthbearer("u@x", "t")
    with pytest.raises(UsageError, match="--user"):
        sasl.initial_response("xoauth2", None, "t")
    with pytest.raises(UsageError, match="unknown SASL mechanism"):
        sasl.initial_response("plain", "u", "t")


def test_sasl_is_stdlib_only() -> None:
    """The `token` fast path imports this module: nothing heavy may come with it."""
    import subprocess
    import sys

    code = (
        "import sys; import oauthtok.sasl; "
        "heavy = [m for m in ('httpx', 'typer', 'rich', 'keyring', 'jwt', 'cryptography') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
