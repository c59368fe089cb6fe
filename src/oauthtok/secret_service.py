"""A direct, read-only Secret Service client (jeepney), for the `oauthtok token` fast path.

keyring's own Secret Service backend costs ~300 ms a process (imports, backend discovery, a
new D-Bus connection and a Diffie-Hellman session per call); this reader costs a few ms on
top of importing jeepney. It finds the items keyring writes (attributes `service` and
`username`) and opens a "plain" transport session: see README, "Security".
Any failure raises; the caller then falls back to the ordinary path through keyring.
"""

from __future__ import annotations

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import unwrap_msg

_SERVICE = DBusAddress(
    "/org/freedesktop/secrets",
    bus_name="org.freedesktop.secrets",
    interface="org.freedesktop.Secret.Service",
)


class ItemLocked(Exception):
    """The item exists but is locked; unlocking needs a prompt, which the fast path never shows."""


def read_secret(service: str, username: str, timeout: float = 5.0) -> str | None:
    """The secret stored under (service, username), or None when there is none."""
    with open_dbus_connection("SESSION") as conn:

        def call(method: str, signature: str, body: tuple) -> tuple:
            msg = new_method_call(_SERVICE, method, signature, body)
            return unwrap_msg(conn.send_and_get_reply(msg, timeout=timeout))

        _, session = call("OpenSession", "sv", ("plain", ("s", "")))
        unlocked, locked = call(
            "SearchItems", "a{ss}", ({"service": service, "username": username},)
        )
        if not unlocked:
            if locked:
                raise ItemLocked(username)
            return None
        (secrets,) = call("GetSecrets", "aoo", (unlocked[:1], session))
        return bytes(secrets[unlocked[0]][2]).decode("utf-8")
