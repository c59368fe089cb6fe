"""The freedesktop Secret Service (gnome-keyring, KeePassXC, KWallet): oauthtok's Linux store.

Two clients of one schema (`contract`: attributes, label, the `default` collection):

- `read_secret`, read-only, on `minibus` (a minimal D-Bus client) with an encrypted session
  (`dhsession`): the `token` fast path. It costs a few ms, where keyring's own backend costs
  ~300 ms a process (imports, backend discovery, a new D-Bus connection and session per call).
  See README, "Security", for why the session is encrypted (gnome-keyring 42 does not survive
  many plain ones).
- `SecretServiceBackend`, read-write, on minibus too, over one connection and session per
  process: everything else. It implements keyring's backend interface, so
  `secretstore.SecretStore` treats it like any keyring backend. What needs a prompt (a locked
  collection) it hands to `PromptingBackend`, on secretstorage, which shows the desktop's.

Both search the same collection (the `default` alias) with the same attributes, so the fast
path can never return an item the ordinary path would not.
"""

from __future__ import annotations

import os

from oauthtok import contract

TYPE_CHECKING = False  # typing costs ~3 ms to import, on the `token` fast path
if TYPE_CHECKING:
    from typing import Any

    from oauthtok.dhsession import Transport

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
    from oauthtok.minibus import Connection

    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if not address:
        raise Unavailable("no session bus address")
    with Connection(address, timeout) as conn:
        path, opening = _alias_then_session(conn)
        if opening is None:
            raise Unavailable("no default collection")
        attributes = {"service": namespace, "username": key}
        search = conn.send(_BUS_NAME, path, _COLLECTION, "SearchItems", "a{ss}",
                           (attributes,))  # fmt: skip
        (items,) = conn.reply(search)  # OpenSession went out with it
        if not isinstance(items, list) or not items:
            return None
        if len(items) != 1:
            raise Unavailable(f"{len(items)} items match")
        fetch = conn.send(_BUS_NAME, _SERVICE_PATH, _SERVICE, "GetSecrets", "aoo",
                          (items, opening.session()))  # fmt: skip
        conn.flush()
        transport = opening.agreed()  # while the service looks the secret up
        (secrets,) = conn.reply(fetch)
        if not isinstance(secrets, dict) or items[0] not in secrets:
            # GetSecrets leaves out locked items: unlocking needs a prompt, which only the
            # full path shows
            raise Unavailable("the item is locked")
        _, iv, value, _ = secrets[items[0]]
        if not isinstance(value, bytes) or not isinstance(iv, bytes):
            raise Unavailable("the secret is not bytes")
        return transport.open(iv, value).decode("utf-8")


_ITEM = "org.freedesktop.Secret.Item"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_LABEL = "org.freedesktop.Secret.Item.Label"
_ATTRIBUTES = "org.freedesktop.Secret.Item.Attributes"
#: error replies meaning "that item is gone" (deleted by another process meanwhile)
_GONE = {"org.freedesktop.Secret.Error.NoSuchObject", "org.freedesktop.DBus.Error.UnknownObject"}
_LOCKED = "org.freedesktop.Secret.Error.IsLocked"


class ItemVanished(LookupError):
    """An item found by the search was deleted before it could be read (a second try may
    find its replacement)."""


class _NeedsPrompt(Exception):
    """The Secret Service wants to show a prompt (a locked collection or item, no default
    collection): the prompting backend takes the call."""


class _Opening:
    """An OpenSession sent with the encrypted algorithm (`dhsession`: gnome-keyring 42 does
    not survive many plain sessions), answered when first needed."""

    def __init__(self, conn: Any, transport: Transport) -> None:
        from oauthtok.dhsession import ALGORITHM
        from oauthtok.minibus import Variant

        self._conn = conn
        self._transport = transport
        self._serial = conn.send(_BUS_NAME, _SERVICE_PATH, _SERVICE, "OpenSession", "sv",
                                 (ALGORITHM, Variant("ay", self._transport.public)))  # fmt: skip
        self._answer: tuple[str, bytes] | None = None

    def session(self) -> str:
        """The session's path, once the service answered with a usable public key (checked
        here, before any call names the session: the key agreement itself comes later)."""
        from oauthtok.dhsession import usable_public_key

        if self._answer is None:
            output, session = self._conn.reply(self._serial)
            value = getattr(output, "value", None)
            if getattr(output, "signature", None) != "ay" or not isinstance(value, bytes):
                raise Unavailable("the service did not agree on a key")
            if not usable_public_key(value):
                raise Unavailable("the service's public key is out of range")
            self._answer = str(session), value
        return self._answer[0]

    def agreed(self) -> Transport:
        """The session's transport, its key agreed with the service's (~1 ms: do it while the
        service works on a call that names the session)."""
        self.session()
        assert self._answer is not None
        self._transport.agree(self._answer[1])
        return self._transport


def _alias_then_session(conn: Any) -> tuple[str, _Opening | None]:
    """The path of the collection both readers search, with an OpenSession queued; ("/",
    None) when there is no such collection. This process makes its half of the key agreement
    (~1 ms) while the service answers ReadAlias.

    OpenSession waits for that answer: gnome-keyring (42, and still 50) aborts the whole daemon
    on an OpenSession it handles without a PKCS#11 session for the client (`g_variant_new:
    expected GVariant of type 'v' but received value has type '(null)'`; on a desktop the
    keyring comes back locked). Seen once in CI; the likeliest cause, from its source, is its
    client registry, filled by an idle callback that a busy daemon may run after the client's
    first call. A ReadAlias handled without that session only answers "/", and a collection's
    path proves the client and its session exist: so ReadAlias goes first, and a "/" is asked
    again once before it counts."""
    from oauthtok.dhsession import Transport

    def read_alias() -> int:
        return int(conn.send(_BUS_NAME, _SERVICE_PATH, _SERVICE, "ReadAlias", "s",
                             (contract.COLLECTION_ALIAS,)))  # fmt: skip

    alias = read_alias()
    conn.flush()
    transport = Transport()
    (path,) = conn.reply(alias)
    if path == "/":
        (path,) = conn.reply(read_alias())
    if path == "/":
        return "/", None
    return str(path), _Opening(conn, transport)


class SecretServiceBackend:
    """keyring's backend interface on `minibus`: one D-Bus connection and one encrypted session
    per process, kept open (keyring's own backend opens a new connection and session for every
    call; secretstorage and jeepney cost ~25 ms to import).

    Items carry the attributes and label keyring's Secret Service backend writes, so `keyring
    get oauthtok ID` and `secret-tool lookup service oauthtok username ID` find them too.

    Whatever needs a prompt — a locked collection or item, no default collection yet — goes to
    `PromptingBackend` (secretstorage), which asks the desktop, for the rest of the process.
    """

    name = "Secret Service"

    def __init__(self, timeout: float = 15.0) -> None:
        import threading

        self._timeout = timeout
        self._mutex = threading.Lock()  # calls run in SecretStore's worker threads
        #: connection, collection, session, the session's transport key
        self._bus: tuple[Any, str, str, Transport] | None = None
        self._prompting: PromptingBackend | None = None

    # -- the connection ---------------------------------------------------------------------
    def _open(self) -> tuple[Any, str, str, Transport]:
        from oauthtok.minibus import Connection

        address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        if not address:
            raise OSError("no session bus address (DBUS_SESSION_BUS_ADDRESS)")
        conn = Connection(address, self._timeout)
        try:
            collection, opening = _alias_then_session(conn)
            if opening is None:
                raise _NeedsPrompt("no default collection")  # creating one prompts
            session, transport = opening.session(), opening.agreed()
            # a locked collection: its items answer IsLocked, a new item asks for a prompt, and
            # a search that finds nothing asks whether it is locked (`_search`)
        except BaseException:
            conn.__exit__()
            raise
        return conn, str(collection), session, transport

    def _run(self, method: str, *args: str) -> Any:
        """`method` on the bus, or on the prompting backend when a prompt is needed."""
        from oauthtok.minibus import BusError

        # bounded: a call abandoned by SecretStore's timeout (a prompt nobody answers) may
        # still hold it
        if not self._mutex.acquire(timeout=self._timeout):
            from oauthtok.errors import StoreError

            raise StoreError(
                f"the keyring did not answer within {self._timeout:g} s (an earlier request is "
                "still waiting, for an unlock prompt?); unlock it and retry"
            )
        try:
            if self._prompting is None:
                try:
                    if self._bus is None:
                        self._bus = self._open()
                    else:
                        self._bus[0].renew(self._timeout)
                    return getattr(self, "_" + method)(*self._bus, *args)
                except _NeedsPrompt:
                    self._close()
                    self._prompting = PromptingBackend()
                except BaseException as exc:
                    if not isinstance(exc, ItemMissing | ItemVanished):
                        self._close()  # in an unknown state (a timeout mid-call): a new one
                    if isinstance(exc, BusError) and exc.name == _LOCKED:
                        self._prompting = PromptingBackend()
                    else:
                        raise
            return getattr(self._prompting, method)(*args)
        finally:
            self._mutex.release()

    def _close(self) -> None:
        if self._bus is not None:
            self._bus[0].__exit__()
            self._bus = None

    # -- keyring's interface ----------------------------------------------------------------
    def get_password(self, namespace: str, key: str) -> str | None:
        value: str | None = self._run("get_password", namespace, key)
        return value

    def set_password(self, namespace: str, key: str, value: str) -> None:
        self._run("set_password", namespace, key, value)

    def delete_password(self, namespace: str, key: str) -> None:
        self._run("delete_password", namespace, key)

    # -- on the bus -------------------------------------------------------------------------
    def _search(self, conn: Any, collection: str, namespace: str, key: str) -> list[str]:
        """The items of (namespace, key). Nothing found in a locked collection is no answer:
        KeePassXC finds nothing while locked, and "no secret" would then mean "reauthorize"
        (or a delete that leaves the item): the prompting backend unlocks first."""
        attributes = {"service": namespace, "username": key}
        (items,) = conn.call(_BUS_NAME, collection, _COLLECTION, "SearchItems", "a{ss}",
                             (attributes,))  # fmt: skip
        if not items:
            (locked,) = conn.call(_BUS_NAME, collection, _PROPERTIES, "Get", "ss",
                                  (_COLLECTION, "Locked"))  # fmt: skip
            if getattr(locked, "value", True) is not False:
                raise _NeedsPrompt("the collection is locked")
        return [str(i) for i in items]

    def _get_password(
        self, conn: Any, collection: str, session: str, transport: Transport, namespace: str,
        key: str,
    ) -> str | None:  # fmt: skip
        from oauthtok.minibus import BusError

        for item in self._search(conn, collection, namespace, key):
            try:
                ((_, iv, value, _),) = conn.call(_BUS_NAME, item, _ITEM, "GetSecret", "o",
                                                 (session,))  # fmt: skip
            except BusError as exc:
                if exc.name in _GONE:
                    raise ItemVanished(key) from None
                raise
            if not isinstance(value, bytes) or not isinstance(iv, bytes):
                raise _NeedsPrompt("the secret is not bytes")
            return transport.open(iv, value).decode("utf-8")
        return None

    def _set_password(
        self, conn: Any, collection: str, session: str, transport: Transport, namespace: str,
        key: str, value: str,
    ) -> None:  # fmt: skip
        from oauthtok.minibus import Variant

        attributes = {**contract.item_attributes(key), "application": contract.ITEM_APPLICATION}
        attributes["service"] = namespace
        properties = {
            _LABEL: Variant("s", contract.item_label(key)),
            _ATTRIBUTES: Variant("a{ss}", attributes),
        }
        iv, sealed = transport.seal(value.encode("utf-8"))
        secret = (session, iv, sealed, "text/plain")
        item, _prompt = conn.call(_BUS_NAME, collection, _COLLECTION, "CreateItem",
                                  "a{sv}(oayays)b", (properties, secret, True))  # fmt: skip
        if item == "/":
            raise _NeedsPrompt("creating the item needs a prompt")

    def _delete_password(
        self, conn: Any, collection: str, session: str, transport: Transport, namespace: str,
        key: str,
    ) -> None:  # fmt: skip
        from oauthtok.minibus import BusError

        items = self._search(conn, collection, namespace, key)
        if not items:
            raise ItemMissing(key)
        for item in items:
            try:
                (prompt,) = conn.call(_BUS_NAME, item, _ITEM, "Delete", "", ())
            except BusError as exc:
                if exc.name in _GONE:
                    continue  # deleted by another process meanwhile: gone all the same
                raise
            if prompt != "/":
                raise _NeedsPrompt("deleting the item needs a prompt")


class PromptingBackend:
    """keyring's backend interface over secretstorage, on one D-Bus connection: what
    `SecretServiceBackend` hands over when the Secret Service must show a prompt (it unlocks
    the collection through the desktop's unlock dialog)."""

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
