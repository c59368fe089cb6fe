"""SASL initial responses that carry an OAuth 2.0 bearer token (IMAP, SMTP, POP, LDAP...).

Stdlib only: `oauthtok token NAME --format xoauth2|oauthbearer` prints these on the fast path.

- XOAUTH2 (Google's and Microsoft's mechanism, documented by both):
  ``base64("user=" USER ^A "auth=Bearer " TOKEN ^A ^A)``
- OAUTHBEARER (RFC 7628 §3.1): a GS2 header (RFC 5801 §4) then key/value pairs, each ended
  by ^A, and a final ^A: ``base64("n,a=" SASLNAME "," ^A ["host=" H ^A "port=" P ^A]
  "auth=Bearer " TOKEN ^A ^A)``. ``n`` says the client does no channel binding; ``a=`` is
  the authorization identity, in which RFC 5801's `saslname` escapes "," as "=2C" and "="
  as "=3D". `host` and `port` are optional pairs (the RFC's own example sends them).

^A is the byte 0x01. Every response is one line of standard base64 without newlines.
"""

from __future__ import annotations

import base64
import re

from oauthtok.errors import UsageError

#: what a token may be inside the response: RFC 7628 values are VCHARs, and a bearer token
#: has no spaces (RFC 6750 §2.1 is stricter still; some providers are not)
_TOKEN = re.compile(r"^[\x21-\x7e]+$")
#: C0 controls (0x01 is the field separator), DEL and C1 controls never belong in a user name
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: RFC 7628 §3.1: key = 1*ALPHA; value = *(VCHAR / SP / HTAB / CR / LF)
_HOST = re.compile(r"^[\x21-\x7e]+$")

FORMATS = ("xoauth2", "oauthbearer")


def _check_user(user: str) -> None:
    if not user:
        raise UsageError("the SASL user is empty; give --user ADDRESS")
    if _CONTROL.search(user):
        raise UsageError(
            "the SASL user contains a control character (it would break the SASL framing); "
            "give --user with the plain mailbox address"
        )


def _check_token(token: str) -> None:
    # never the token itself in the message
    if not _TOKEN.match(token):
        raise UsageError(
            "this access token is empty or has spaces, control or non-ASCII characters, so it "
            "cannot be sent in a SASL response; check it with `oauthtok inspect`"
        )


def saslname(user: str) -> str:
    """RFC 5801 §4 `saslname`: "," → "=2C" and "=" → "=3D" (the "=" first)."""
    return user.replace("=", "=3D").replace(",", "=2C")


def _b64(raw: str) -> str:
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def xoauth2(user: str, access_token: str) -> str:
    """The base64 XOAUTH2 initial response. Raises UsageError for a user or token that
    cannot be framed (control characters, non-token characters)."""
    _check_user(user)
    _check_token(access_token)
    return _b64(f"user={user}\x01auth=Bearer {access_token}\x01\x01")


def oauthbearer(
    user: str | None,
    access_token: str,
    host: str | None = None,
    port: int | None = None,
) -> str:
    """The base64 OAUTHBEARER (RFC 7628) initial response.

    `user` is the authorization identity (`a=`); None leaves it out (the server takes the
    identity from the token). `host`/`port` add RFC 7628's optional pairs."""
    if user is not None:
        _check_user(user)
    _check_token(access_token)
    header = f"n,a={saslname(user)}," if user is not None else "n,,"
    pairs = ""
    if host is not None:
        if not _HOST.match(host):
            raise UsageError(f"{host!r} is not a host name for an OAUTHBEARER response")
        pairs += f"host={host}\x01"
    if port is not None:
        if not 0 < port < 65536:
            raise UsageError(f"port {port} is out of range")
        pairs += f"port={port}\x01"
    return _b64(f"{header}\x01{pairs}auth=Bearer {access_token}\x01\x01")


def initial_response(
    mechanism: str,
    user: str | None,
    access_token: str,
    host: str | None = None,
    port: int | None = None,
) -> str:
    """`xoauth2` or `oauthbearer` by name (case-insensitive), for `--format`."""
    name = mechanism.lower()
    if name == "xoauth2":
        if user is None:
            raise UsageError("XOAUTH2 needs a user: give --user ADDRESS")
        return xoauth2(user, access_token)
    if name == "oauthbearer":
        return oauthbearer(user, access_token, host, port)
    raise UsageError(f"unknown SASL mechanism {mechanism!r}; use one of: {', '.join(FORMATS)}")
