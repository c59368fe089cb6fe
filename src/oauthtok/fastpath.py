"""`oauthtok token NAME` when the stored token is still valid, without typer, rich or httpx.

It reads `names.json` and one Secret Service item directly (see `secret_service`). Anything it
does not handle (another option, a token due for refresh, a non-Linux or configured keyring
backend, any error at all) returns None, and the ordinary CLI takes over: the fast path never
gives a different answer, only a faster one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from oauthtok import layout, paths

FORMATS = ("raw", "header", "json")
DEFAULT_MIN_VALID = 60.0


def parse_args(args: list[str]) -> tuple[str, str, float] | None:
    """(name, format, min_valid) for the forms this path handles, else None."""
    name: str | None = None
    fmt = "raw"
    min_valid = DEFAULT_MIN_VALID
    i = 0
    while i < len(args):
        arg = args[i]
        option, eq, value = arg.partition("=")
        if option in ("--format", "-f", "--min-valid") and arg.startswith("-"):
            if not eq:
                i += 1
                if i >= len(args):
                    return None
                value = args[i]
            if option == "--min-valid":
                try:
                    min_valid = float(value)
                except ValueError:
                    return None
            else:
                fmt = value
        elif arg == "--":
            rest = args[i + 1 :]
            if name is not None or len(rest) != 1:
                return None
            name = rest[0]
            break
        elif arg.startswith("-") or name is not None:
            return None
        else:
            name = arg
        i += 1
    if name is None or fmt not in FORMATS or not min_valid >= 0:
        return None
    return name, fmt, min_valid


def render_token(
    access_token: str,
    token_type: str | None,
    expires_at: float | None,
    scopes: list[str] | tuple[str, ...],
    fmt: str,
) -> str:
    """The text `oauthtok token` prints (without the newline)."""
    kind = token_type or "Bearer"
    if kind.lower() == "bearer":
        kind = "Bearer"
    if fmt == "header":
        return f"Authorization: {kind} {access_token}"
    if fmt == "json":
        return json.dumps(
            {
                "access_token": access_token,
                "token_type": kind,
                "expires_at": None if expires_at is None else int(expires_at),
                "scopes": list(scopes),
            }
        )
    return access_token


def cached_token(name: str, fmt: str, min_valid: float) -> str | None:
    if os.environ.get("OAUTHTOK_NO_FAST_PATH") or not layout.fast_path_allowed():
        return None
    data_dir = paths.data_dir()
    found = layout.lookup(layout.read_names(data_dir), name)
    if found is None:
        return None
    token_id = found[1]
    from oauthtok.secret_service import read_secret

    raw = read_secret(layout.KEYRING_SERVICE, token_id)
    if raw is None or not raw.startswith("{"):
        return None
    secret: dict[str, Any] = json.loads(raw)
    expires_at = secret.get("expires_at")
    if expires_at is not None and float(expires_at) - time.time() <= min_valid:
        return None
    scopes: list[str] = []
    if fmt == "json":  # only this format needs the metadata file
        record = layout.read_record(data_dir, token_id)
        scopes = record.get("granted_scopes") or record.get("scopes") or []
    return render_token(secret["access_token"], secret.get("token_type"), expires_at, scopes, fmt)


def run(args: list[str]) -> int | None:
    """Print the token and return 0, or None to let the ordinary CLI answer."""
    parsed = parse_args(args)
    if parsed is None:
        return None
    try:
        text = cached_token(*parsed)
    except Exception:
        return None
    if text is None:
        return None
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        return 0
    return 0
