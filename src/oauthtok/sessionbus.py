"""Finding the user's D-Bus session bus when nobody said where it is (cron, systemd, SSH).

A session started by systemd-logind listens at `$XDG_RUNTIME_DIR/bus`, i.e.
`/run/user/$UID/bus`. Only a socket owned by this user is taken: anything else there could be
someone else's listener posing as our Secret Service. Stdlib only: the `token` fast path calls
`ensure_session_bus()` before it asks the Secret Service.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # collections.abc costs ~2 ms to import, on the `token` fast path
if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping

ENV = "DBUS_SESSION_BUS_ADDRESS"
#: where systemd-logind makes each user's runtime folder
RUN_USER = "/run/user"
#: characters D-Bus allows unescaped in an address value; the rest are %-encoded bytes
_SAFE = frozenset(b"-_/.\\*0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def escape_address_value(value: str) -> str:
    """A D-Bus address value: bytes outside [-_/.\\*A-Za-z0-9] written as %XX."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02x}" for b in os.fsencode(value))


def candidates(environ: Mapping[str, str] | None = None, uid: int | None = None) -> list[str]:
    """Where the bus socket may be, in order: $XDG_RUNTIME_DIR/bus, then /run/user/UID/bus."""
    environ = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    found = []
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        found.append(os.path.join(runtime, "bus"))
    standard = os.path.join(RUN_USER, str(uid), "bus")
    if standard not in found:
        found.append(standard)
    return found


def is_own_socket(path: str, uid: int | None = None) -> bool:
    """True for a socket (not a symlink to one) owned by `uid` (default: this user)."""
    uid = os.getuid() if uid is None else uid
    try:
        info = os.lstat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISSOCK(info.st_mode) and info.st_uid == uid


def find_session_bus(
    environ: Mapping[str, str] | None = None, uid: int | None = None
) -> str | None:
    """`unix:path=…` of the user's session bus socket, or None when there is none we trust."""
    if not hasattr(os, "getuid"):
        return None  # not a POSIX system: no session bus sockets to find
    uid = os.getuid() if uid is None else uid
    for path in candidates(environ, uid):
        if is_own_socket(path, uid):
            return "unix:path=" + escape_address_value(path)
    return None


def ensure_session_bus(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set DBUS_SESSION_BUS_ADDRESS for this process when it is unset and the user's bus is
    found. Returns the address in effect (None: unset and not found). A value that is set is
    never changed; an empty one counts as unset."""
    environ = os.environ if environ is None else environ
    current = environ.get(ENV)
    if current:
        return current
    found = find_session_bus(environ)
    if found is not None:
        environ[ENV] = found
    return found
