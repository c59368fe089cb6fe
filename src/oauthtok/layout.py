"""The on-disk and in-keyring formats, shared by the store and the `token` fast path.

Stdlib only and no dataclasses: the fast path imports this module.
"""

from __future__ import annotations

import json
import os
from typing import Any

#: keyring "service" under which every secret is stored; the keyring "username" is the token id.
KEYRING_SERVICE = "oauthtok"
INDEX_VERSION = 1


def name_key(name: str) -> str:
    """Names are unique without regard to case."""
    return name.casefold()


def read_index(path: str) -> dict[str, Any] | None:
    """The parsed index, or None when there is none yet. Raises ValueError when it is corrupt."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    data = json.loads(raw)
    if (
        not isinstance(data, dict)
        or data.get("version") != INDEX_VERSION
        or not isinstance(data.get("tokens"), list)
    ):
        raise ValueError("not an oauthtok index of a known version")
    return data


def find_record(index: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if not index:
        return None
    key = name_key(name)
    for record in index["tokens"]:
        if isinstance(record, dict) and name_key(str(record.get("name", ""))) == key:
            return record
    return None


def fast_path_allowed() -> bool:
    """True when secrets may be read straight from the Secret Service (Linux, default backend).

    A backend chosen through keyring's own configuration (PYTHON_KEYRING_BACKEND or
    keyringrc.cfg) is honoured by going through keyring instead.
    """
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("PYTHON_KEYRING_BACKEND"):
        return False
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return not os.path.exists(os.path.join(config_home, "python_keyring", "keyringrc.cfg"))
