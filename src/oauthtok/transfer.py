"""Handing a grant to another machine: one token (metadata and secrets) sealed with age.

`oauthtok export NAME --to RECIPIENT` seals a payload for the server's age recipient (an
`age1…` X25519 key, or an SSH public key such as `ssh-ed25519 …`, or a file holding one);
`oauthtok import FILE --identity FILE` opens it there. age (through pyrage, the Rust `age`
crate) encrypts and authenticates; it does not say who sealed a file — anyone who knows the
recipient can seal one — so `import` validates everything it reads and shows what it stores.

The payload, a JSON object, is versioned:

    {"format": "oauthtok-export", "version": 1, "exported_at": 1767225600,
     "record": {...the token's metadata: TokenRecord.to_json()...},
     "secrets": {"access_token": "...", "refresh_token": "...", ...TokenSet fields}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from oauthtok.errors import UsageError

FORMAT = "oauthtok-export"
VERSION = 1
#: a sealed token is a few KiB; anything much larger is not one
MAX_SEALED = 1024 * 1024
MAX_PAYLOAD = 256 * 1024
MAX_IDENTITY_FILE = 64 * 1024
SECRET_FIELDS = {
    "access_token": str,
    "token_type": str,
    "expires_at": float,
    "refresh_token": str,
    "client_secret": str,
    "id_token": str,
    "client_certificate": str,  # private_key_jwt: the key and certificate (PEM)
}
_URL_FIELDS = ("token_url", "authorize_url", "device_authorization_url", "revocation_url",
               "introspection_url")  # fmt: skip


def _pyrage() -> Any:
    import pyrage  # type: ignore[import-untyped]  # no stubs; used through Any

    return pyrage


# -- recipients and identities ----------------------------------------------------------------


def parse_recipient(text: str) -> Any:
    """An age recipient from `age1…`, an SSH public key line, or a file holding either."""
    pyrage = _pyrage()
    value = text.strip()
    if (
        value
        and not value.startswith(("age1", "ssh-"))
        and os.path.isfile(os.path.expanduser(value))
    ):
        try:
            with open(os.path.expanduser(value), encoding="utf-8") as f:
                lines = [ln.strip() for ln in f.read(MAX_IDENTITY_FILE).splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the recipient file {value}: {exc}") from None
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        if not lines:
            raise UsageError(f"{value} holds no recipient")
        value = lines[0]
    try:
        if value.startswith("age1"):
            # bech32: the last "1" ends the prefix; "age1yubikey1…" and the like are plugins
            if value.rfind("1") != 3:
                raise UsageError(
                    f"{value[:20]}…: age plugin recipients are not supported; give an X25519 "
                    "recipient (age1…) or an SSH public key"
                )
            return pyrage.x25519.Recipient.from_str(value)
        if value.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return pyrage.ssh.Recipient.from_str(value)
    except pyrage.RecipientError as exc:
        raise UsageError(f"not a valid age recipient ({exc}); check --to") from None
    shown = value[:24] + ("…" if len(value) > 24 else "")
    raise UsageError(
        f"--to {shown!r} is not an age recipient: give an X25519 recipient (age1…, from "
        "`age-keygen -y`), an SSH public key (ssh-ed25519 … or ssh-rsa …), or a file holding one"
    )


def load_identities(identity_file: str) -> list[Any]:
    """The identities in an age identity file (AGE-SECRET-KEY-1… lines) or an unencrypted
    SSH private key."""
    pyrage = _pyrage()
    try:
        with open(identity_file, "rb") as f:
            raw = f.read(MAX_IDENTITY_FILE + 1)
    except OSError as exc:
        raise UsageError(
            f"cannot read the identity file {identity_file}: {exc.strerror or exc}"
        ) from None
    if len(raw) > MAX_IDENTITY_FILE:
        raise UsageError(f"{identity_file} is too large for an identity file")
    text = raw.decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.splitlines()]
    keys = [ln for ln in lines if ln.startswith("AGE-SECRET-KEY-1")]
    try:
        if keys:
            return [pyrage.x25519.Identity.from_str(k) for k in keys]
        if any(ln.startswith("AGE-PLUGIN-") for ln in lines):
            raise UsageError(f"{identity_file}: age plugin identities are not supported")
        if "PRIVATE KEY-----" in text:
            try:
                return [pyrage.ssh.Identity.from_buffer(raw)]
            except pyrage.IdentityError:
                raise UsageError(
                    f"{identity_file}: cannot use this SSH key (passphrase-protected keys are "
                    "not supported); use an age identity (`age-keygen -o FILE`)"
                ) from None
    except pyrage.IdentityError as exc:
        raise UsageError(f"{identity_file}: not a valid age identity ({exc})") from None
    raise UsageError(
        f"{identity_file} holds no age identity (AGE-SECRET-KEY-1…) or SSH private key"
    )


# -- the payload ------------------------------------------------------------------------------


def make_payload(
    record: Mapping[str, Any], secrets: Mapping[str, Any], exported_at: float
) -> dict[str, Any]:
    """The payload of one token: its metadata (`TokenRecord.to_json()`) and its secrets
    (`TokenSet` fields; None values are left out)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": int(exported_at),
        "record": dict(record),
        "secrets": {k: v for k, v in secrets.items() if v is not None},
    }
    return validate_payload(payload)


def _url_problem(url: str) -> str | None:
    from oauthtok.catalog import url_problem

    return url_problem(url)


def validate_payload(data: Any) -> dict[str, Any]:
    """The payload when it is a well-formed export of a known version; UsageError otherwise.
    Endpoints must be https (plain http only for loopback), as the catalog requires."""

    def bad(why: str) -> UsageError:
        return UsageError(f"not a valid oauthtok export: {why}")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad("it is not an oauthtok export")
    version = data.get("version")
    if version != VERSION:
        raise UsageError(
            f"the export has format version {version!r}; this oauthtok reads version {VERSION} "
            "(upgrade oauthtok on the machine that imports, or export with the same version)"
        )
    unknown = sorted(set(data) - {"format", "version", "exported_at", "record", "secrets"})
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}")
    record, secrets = data.get("record"), data.get("secrets")
    if not isinstance(record, dict) or not isinstance(secrets, dict):
        raise bad("it has no record and secrets")
    for key in ("name", "service", "client_id"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise bad(f"record.{key} is missing")
    endpoints = record.get("endpoints")
    if not isinstance(endpoints, dict) or not isinstance(endpoints.get("token_url"), str):
        raise bad("record.endpoints.token_url is missing")
    for key in _URL_FIELDS:
        url = endpoints.get(key)
        if url is None:
            continue
        if not isinstance(url, str):
            raise bad(f"record.endpoints.{key} is not a string")
        problem = _url_problem(url)
        if problem:
            raise bad(f"record.endpoints.{key} {url[:80]!r}: {problem}")
    for key, value in secrets.items():
        kind = SECRET_FIELDS.get(key)
        if kind is None:
            raise bad(f"unknown secret field {key!r}")
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(f"secrets.{key} is not a number")
        elif not isinstance(value, str):
            raise bad(f"secrets.{key} is not a string")
    if not secrets.get("access_token"):
        raise bad("it has no access token")
    return data


# -- sealing ----------------------------------------------------------------------------------


def seal(payload: Mapping[str, Any], recipient: str, *, armored: bool = True) -> bytes:
    """The payload encrypted for `recipient`; ASCII-armored by default (safe to paste)."""
    pyrage = _pyrage()
    data = json.dumps(validate_payload(dict(payload)), ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_PAYLOAD:
        raise UsageError("the token is too large to export")
    target = parse_recipient(recipient)
    try:
        sealed: bytes = pyrage.encrypt(data, [target], armored=armored)
    except pyrage.EncryptError as exc:
        raise UsageError(f"cannot seal the token for that recipient ({exc})") from None
    return sealed


def unseal(data: bytes, identity_file: str, *, source: str = "the export") -> dict[str, Any]:
    """The validated payload of a sealed export. UsageError when the file is not sealed for
    this identity, damaged, not an export, or of an unknown version."""
    pyrage = _pyrage()
    if len(data) > MAX_SEALED:
        raise UsageError(f"{source} is too large to be an oauthtok export")
    identities = load_identities(identity_file)
    try:
        plain = pyrage.decrypt(data, identities)
    except pyrage.DecryptError as exc:
        if "no matching keys" in str(exc).lower():
            raise UsageError(
                f"{source} was not sealed for the identity in {identity_file}; use the identity "
                "whose recipient was given to `oauthtok export --to`"
            ) from None
        raise UsageError(
            f"{source} is not an age-sealed oauthtok export, or it is damaged ({exc})"
        ) from None
    if len(plain) > MAX_PAYLOAD:
        raise UsageError(f"{source}: the sealed payload is too large")
    try:
        payload = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"{source}: not a valid oauthtok export (not JSON)") from None
    return validate_payload(payload)
