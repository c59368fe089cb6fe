"""The freedesktop Secret Service (gnome-keyring, KeePassXC, KWallet): oauthtok's Linux store.

Two clients of one schema (`contract`: attributes, label, the `default` collection):

- `read_secret`, read-only, on jeepney with a "plain" transport session: the `token` fast path.
  It costs a few ms on top of importing jeepney, where keyring's own backend costs ~300 ms a
  process (imports, backend discovery, a new D-Bus connection and a Diffie-Hellman session per
  call). See README, "Security", for why a plain session gives nothing away.
- `SecretServiceBackend`, read-write, on secretstorage over one D-Bus connection per process:
  everything else. It implements keyring's backend interface, so `secretstore.SecretStore`
  treats it like any keyring backend.

Both search the same collection (the `default` alias) with the same attributes, so the fast
path can never return an item the ordinary path would not.
"""

from __future__ import annotations

from typing import Any

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import unwrap_msg

from oauthtok import contract

_BUS_NAME = "org.freedesktop.secrets"
_SERVICE = DBusAddress(
    "/org/freedesktop/secrets", bus_name=_BUS_NAME, interface="org.freedesktop.Secret.Service"
)


class ItemMissing(LookupError):
    """`delete_password` found nothing to delete (keyring's PasswordDeleteError)."""


class Unavailable(Exception):
    """The fast reader cannot answer (locked, ambiguous, no default collection): hand over."""


def read_secret(namespace: str, key: str, timeout: float = 5.0) -> str | None:
    """The secret stored under (namespace, key) in the default collection, or None."""
    with open_dbus_connection("SESSION") as conn:

        def call(address: DBusAddress, method: str, signature: str, body: tuple[Any, ...]) -> Any:
            msg = new_method_call(address, method, signature, body)
            return unwrap_msg(conn.send_and_get_reply(msg, timeout=timeout))

        (path,) = call(_SERVICE, "ReadAlias", "s", (contract.COLLECTION_ALIAS,))
        if path == "/":
            raise Unavailable("no default collection")
        collection = DBusAddress(
            path, bus_name=_BUS_NAME, interface="org.freedesktop.Secret.Collection"
        )
        attributes = {"service": namespace, "username": key}
        (items,) = call(collection, "SearchItems", "a{ss}", (attributes,))
        if not items:
            return None
        if len(items) != 1:
            raise Unavailable(f"{len(items)} items match")
        _, session = call(_SERVICE, "OpenSession", "sv", ("plain", ("s", "")))
        (secrets,) = call(_SERVICE, "GetSecrets", "aoo", (items, session))
        if items[0] not in secrets:  # GetSecrets leaves out locked items: unlocking needs a
            raise Unavailable("the item is locked")  # prompt, which only the full path shows
        return bytes(secrets[items[0]][2]).decode("utf-8")


class SecretServiceBackend:
    """keyring's backend interface over secretstorage, on one D-Bus connection per process
    (keyring's own backend opens a new connection and session for every call).

    Items carry the attributes and label keyring's Secret Service backend writes, so `keyring
    get oauthtok ID` and `secret-tool lookup service oauthtok username ID` find them too.
    """

    name = "Secret Service"

    def __init__(self) -> None:
        self._collection: Any = None

    def _unlocked_collection(self) -> Any:
        import secretstorage

        from oauthtok.errors import StoreError
        from oauthtok.secretstore import LOCKED

        if self._collection is None:
            connection = secretstorage.dbus_init()
            self._collection = secretstorage.get_default_collection(connection)
        collection = self._collection
        if collection.is_locked():
            collection.unlock()  # a desktop shows its unlock prompt here
            if collection.is_locked():
                raise StoreError(LOCKED)
        return collection

    def _items(self, namespace: str, key: str) -> list[Any]:
        query = {"service": namespace, "username": key}
        return list(self._unlocked_collection().search_items(query))

    def get_password(self, namespace: str, key: str) -> str | None:
        for item in self._items(namespace, key):
            value: bytes = item.get_secret()
            return value.decode("utf-8")
        return None

    def set_password(self, namespace: str, key: str, value: str) -> None:
        attributes = {**contract.item_attributes(key), "application": contract.ITEM_APPLICATION}
        attributes["service"] = namespace
        self._unlocked_collection().create_item(
            contract.item_label(key), attributes, value.encode("utf-8"), replace=True
        )

    def delete_password(self, namespace: str, key: str) -> None:
        items = self._items(namespace, key)
        if not items:
            raise ItemMissing(key)
        for item in items:
            item.delete()
