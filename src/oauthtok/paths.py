"""Where oauthtok keeps its files.

On Linux the XDG rules are applied here directly (same result as platformdirs), so the
`oauthtok token` fast path does not pay for importing platformdirs; elsewhere platformdirs decides.
`OAUTHTOK_DATA_DIR` and `OAUTHTOK_CONFIG_DIR` override both.
"""

from __future__ import annotations

import os
import sys

APP = "oauthtok"


def _xdg(var: str, default: str) -> str:
    value = os.environ.get(var, "").strip()
    if not value or not os.path.isabs(value):
        value = os.path.join(os.path.expanduser("~"), default)
    return os.path.join(value, APP)


def data_dir() -> str:
    """The folder holding the token index and the lock files."""
    override = os.environ.get("OAUTHTOK_DATA_DIR")
    if override:
        return override
    if sys.platform.startswith("linux"):
        return _xdg("XDG_DATA_HOME", ".local/share")
    import platformdirs

    return platformdirs.user_data_dir(APP, appauthor=False)


def config_dir() -> str:
    """The folder holding the user's own `services.toml`."""
    override = os.environ.get("OAUTHTOK_CONFIG_DIR")
    if override:
        return override
    if sys.platform.startswith("linux"):
        return _xdg("XDG_CONFIG_HOME", ".config")
    import platformdirs

    return platformdirs.user_config_dir(APP, appauthor=False)


def user_catalog_path() -> str:
    return os.path.join(config_dir(), "services.toml")
