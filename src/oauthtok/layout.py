"""The on-disk and in-keyring formats, shared by the store and the `token` fast path.

In the data dir:
  names.json          {"version": 1, "names": {display name: token id}} — the one place names
                      live, so a rename is one atomic write, and the fast path's lookup costs
                      the same with 1 token or 1,000
  tokens/<id>.json    one token's metadata (never a secret), without its name
  locks/              cross-process lock files
In the secret store: namespace "oauthtok", key = token id, value = the TokenSet as JSON (the
item schema is in `contract`).

Stdlib only and no dataclasses: the fast path imports this module.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # typing costs ~3 ms to import, on the `token` fast path
if TYPE_CHECKING:
    from typing import Any

INDEX_VERSION = 1
NAMES_FILE = "names.json"
RECORDS_DIR = "tokens"
LOCKS_DIR = "locks"


def name_key(name: str) -> str:
    """The key names are compared by: `café` in NFC and NFD, fullwidth and plain `mail`, `Mail` and
    `mail` are one name (NFKC, then case folding, then NFKC again as Unicode advises)."""
    import unicodedata

    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def names_path(data_dir: str) -> str:
    return os.path.join(data_dir, NAMES_FILE)


def record_path(data_dir: str, token_id: str) -> str:
    return os.path.join(data_dir, RECORDS_DIR, token_id + ".json")


def lock_path(data_dir: str, lock: str) -> str:
    return os.path.join(data_dir, LOCKS_DIR, lock + ".lock")


def token_lock(token_id: str) -> str:
    """The lock that makes the refreshes of one token single-flight across processes."""
    return "token-" + token_id


def read_names(data_dir: str) -> dict[str, str]:
    """Display name → token id ({} when there is no store yet). ValueError when corrupt."""
    try:
        with open(names_path(data_dir), "rb") as f:
            _check_ours(os.fstat(f.fileno()))
            raw = f.read()
    except FileNotFoundError:
        return {}
    _check_ours(os.stat(data_dir))
    data = json.loads(raw)
    names = data.get("names") if isinstance(data, dict) else None
    if not isinstance(names, dict) or data.get("version") != INDEX_VERSION:
        raise ValueError("not an oauthtok name index of a known version")
    if not all(
        isinstance(k, str) and isinstance(v, str) and is_token_id(v) for k, v in names.items()
    ):
        raise ValueError("a name maps to something that is not a token id")
    return names


def _check_ours(st: os.stat_result) -> None:
    """The index and its folder must be ours and not writable by others (the store says why,
    with exit 8; a reader here only declines)."""
    if os.name == "posix" and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
        raise ValueError("the data folder or its index is not private to this user")


def lookup(names: dict[str, str], name: str) -> tuple[str, str] | None:
    """(display name, token id) of `name`, ignoring case."""
    found = None
    token_id = names.get(name)
    if token_id is not None:
        found = name, token_id
    else:
        key = name_key(name)
        for display, other in names.items():
            if name_key(display) == key:
                found = display, other
                break
    if found is not None and not is_token_id(found[1]):
        raise ValueError(f"the name {found[0]!r} maps to something that is not a token id")
    return found


def is_token_id(value: object) -> bool:
    """Ids are uuid4 hex strings; checked before one becomes part of a path."""
    return isinstance(value, str) and len(value) == 32 and not value.strip("0123456789abcdef")


def read_whole(path: str) -> bytes:
    """A whole file, with no file object: open, read to the end, close (`list` reads 1,000
    records; a file object's setup and its size check cost as much as the reading)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_record(data_dir: str, token_id: str) -> dict[str, Any]:
    """One token's metadata as stored. OSError or ValueError when missing or corrupt."""
    data = json.loads(read_whole(record_path(data_dir, token_id)))
    if not isinstance(data, dict) or data.get("id") != token_id:
        raise ValueError(f"record {token_id} is not a token record")
    return data


def keyring_configured() -> bool:
    """True when the user chose a backend through keyring's own configuration
    (PYTHON_KEYRING_BACKEND, or keyringrc.cfg in keyring's config folder); on Linux that
    folder is computed here, so that asking does not import keyring."""
    import sys

    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return True
    if sys.platform.startswith("linux"):
        config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        root = os.path.join(config_home, "python_keyring")
    else:
        from keyring.util import platform_

        root = platform_.config_root()
    return os.path.exists(os.path.join(root, "keyringrc.cfg"))


def fast_read_allowed() -> bool:
    """True when secrets may be read straight from the Secret Service: Linux, a session bus,
    and no keyring backend chosen by the user (that one is honoured through keyring)."""
    import sys

    return (
        sys.platform.startswith("linux")
        and bool(os.environ.get("DBUS_SESSION_BUS_ADDRESS"))
        and not keyring_configured()
    )
