"""The freedesktop Secret Service (gnome-keyring, KeePassXC, KWallet): oauthtok's Linux store.

Two clients of one schema (`contract`: attributes, label, the `default` collection):

- `read_secret`, read-only, on `minibus` (a minimal D-Bus client) with a "plain" transport
  session: the `token` fast path. It costs a few ms, where keyring's own backend costs ~300 ms
  a process (imports, backend discovery, a new D-Bus connection and a Diffie-Hellman session
  per call). See README, "Security", for why a plain session gives nothing away.
- `SecretServiceBackend`, read-write, on secretstorage over one D-Bus connection per process:
  everything else. It implements keyring's backend interface, so `secretstore.SecretStore`
  treats it like any keyring backend.

Both search the same collection (the `default` alias) with the same attributes, so the fast
path can never return an item the ordinary path would not.
"""

from __future__ import annotations

import os

from oauthtok import contract

TYPE_CHECKING = False  # typing costs ~3 ms to import, on the `token` fast path
if TYPE_CHECKING:
    from typing import Any

_BUS_NAME = "org.freedesktop.secrets"
_SERVICE_PATH = "/org/freedesktop/secrets"
_SERVICE = "org.freedesktop.Secret.Service"
_COLLECTION = "org.freedesktop.Secret.Collection"


class ItemMissing(LookupError):
    """`delete_password` found nothing to delete (keyring's PasswordDeleteError)."""


class Unavailable(Exception):
    """The fast reader cannot answer (locked, ambiguous, no default collection): hand over."""


def read_secret(namespace: str, key: str, timeout: float = 5.0) -> str | None:
    """The secret stored under (namespace, key) in the default collection, or None.

    Raises Unavailable (or minibus.BusError) when it cannot answer: the full path then does."""
    from oauthtok.minibus import Connection, Variant

    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if not address:
        raise Unavailable("no session bus address")
    with Connection(address, timeout) as conn:
        # the calls that need no answer first go out together with the connection's own
        alias = conn.send(_BUS_NAME, _SERVICE_PATH, _SERVICE, "ReadAlias", "s",
                          (contract.COLLECTION_ALIAS,))  # fmt: skip
        opened = conn.send(_BUS_NAME, _SERVICE_PATH, _SERVICE, "OpenSession", "sv",
                           ("plain", Variant("s", "")))  # fmt: skip
        (path,) = conn.reply(alias)
        if path == "/":
            raise Unavailable("no default collection")
        attributes = {"service": namespace, "username": key}
        search = conn.send(_BUS_NAME, str(path), _COLLECTION, "SearchItems", "a{ss}",
                           (attributes,))  # fmt: skip
        (items,) = conn.reply(search)
        if not isinstance(items, list) or not items:
            return None
        if len(items) != 1:
            raise Unavailable(f"{len(items)} items match")
        _, session = conn.reply(opened)
        fetch = conn.send(_BUS_NAME, _SERVICE_PATH, _SERVICE, "GetSecrets", "aoo",
                          (items, session))  # fmt: skip
        (secrets,) = conn.reply(fetch)
        if not isinstance(secrets, dict) or items[0] not in secrets:
            # GetSecrets leaves out locked items: unlocking needs a prompt, which only the
            # full path shows
            raise Unavailable("the item is locked")
        value = secrets[items[0]][2]
        if not isinstance(value, bytes):
            raise Unavailable("the secret is not bytes")
        return value.decode("utf-8")


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
