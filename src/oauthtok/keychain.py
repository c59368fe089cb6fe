"""Every call into the OS keyring: backend choice, time limits, size limits, clear errors.

Secrets are stored under the keyring service `oauthtok` with the token's stable id as the
user name. Backends that cap a secret's size (Windows Credential Manager: 2,560 bytes) get
the value split into numbered chunks behind a small header entry.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from oauthtok.errors import StoreError
from oauthtok.layout import KEYRING_SERVICE, keyring_configured

T = TypeVar("T")

_CHUNK_HEADER = "oauthtok-chunks:"
#: characters per chunk on backends with a size cap (WinVault stores UTF-16: 2,560 bytes)
_CAPPED_BACKENDS = {"WinVaultKeyring": 1200}

LOCKED = "the keyring is locked; unlock it (log in to your desktop session) and retry"
FIX = (
    "start and unlock a Secret Service (gnome-keyring, KeePassXC) in your session, or choose "
    "a backend through keyring's configuration (PYTHON_KEYRING_BACKEND or keyringrc.cfg)"
)


def default_timeout() -> float:
    try:
        return float(os.environ.get("OAUTHTOK_KEYRING_TIMEOUT", "15"))
    except ValueError:
        return 15.0


class SecretServiceBackend:
    """The freedesktop Secret Service through secretstorage, on one D-Bus connection per
    process (keyring's own backend opens a new connection and session for every call).

    Items carry the attributes keyring's Secret Service backend writes, so `keyring get
    oauthtok ID` and `secret-tool lookup service oauthtok username ID` find them too.
    """

    appid = "Python keyring library"

    def __init__(self) -> None:
        self._collection: Any = None

    def _unlocked_collection(self) -> Any:
        import secretstorage

        if self._collection is None:
            connection = secretstorage.dbus_init()
            self._collection = secretstorage.get_default_collection(connection)
        collection = self._collection
        if collection.is_locked():
            collection.unlock()  # a desktop shows its unlock prompt here
            if collection.is_locked():
                raise StoreError(LOCKED)
        return collection

    def _items(self, service: str, username: str) -> list[Any]:
        query = {"service": service, "username": username}
        return list(self._unlocked_collection().search_items(query))

    def get_password(self, service: str, username: str) -> str | None:
        for item in self._items(service, username):
            if item.is_locked():
                item.unlock()
                if item.is_locked():
                    raise StoreError(LOCKED)
            return item.get_secret().decode("utf-8")
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        attributes = {"service": service, "username": username, "application": self.appid}
        label = f"Password for '{username}' on '{service}'"
        self._unlocked_collection().create_item(
            label, attributes, password.encode("utf-8"), replace=True
        )

    def delete_password(self, service: str, username: str) -> None:
        for item in self._items(service, username):
            item.delete()


def choose_backend() -> Any:
    """The backend to use: keyring's configured one if the user chose one, else the platform's.

    keyring's discovery is skipped: it is slow and silently prefers a plaintext file backend
    when keyrings.alt happens to be installed.
    """
    if keyring_configured():
        import keyring

        backend = keyring.get_keyring()
    elif sys.platform.startswith("linux"):
        return SecretServiceBackend()
    elif sys.platform == "darwin":
        from keyring.backends import macOS

        backend = macOS.Keyring()
    elif sys.platform == "win32":
        from keyring.backends import Windows

        backend = Windows.WinVaultKeyring()
    else:
        import keyring

        backend = keyring.get_keyring()
    module = type(backend).__module__
    if module in ("keyring.backends.fail", "keyring.backends.null"):
        raise StoreError(f"no usable keyring ({module.rsplit('.', 1)[-1]} backend); {FIX}")
    return backend


def describe_failure(exc: BaseException) -> str:
    """One line saying why the keyring failed and what to do."""
    name = type(exc).__name__
    if name in ("KeyringLocked", "LockedException") or "locked" in str(exc).lower():
        return LOCKED
    if sys.platform.startswith("linux") and not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return (
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset: SSH, container or cron?); "
            + FIX
        )
    if name in ("SecretServiceNotAvailableException", "NoKeyringError") or isinstance(exc, OSError):
        return f"no usable keyring ({name}); {FIX}"
    return f"the keyring failed ({name}: {exc}); {FIX}"


class _BackendFailure(StoreError):
    """The backend itself raised (not a lock or a time-out of ours): may be transient."""


class Keychain:
    """Time-boxed access to one keyring backend."""

    def __init__(
        self,
        backend: Any = None,
        *,
        timeout: float | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self._backend = backend
        self.timeout = default_timeout() if timeout is None else timeout
        self._chunk_size = chunk_size

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self._backend = self._call(choose_backend, "open the keyring")
        return self._backend

    @property
    def chunk_size(self) -> int | None:
        if self._chunk_size is None:
            return _CAPPED_BACKENDS.get(type(self.backend).__name__)
        return self._chunk_size

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Run `fn` in a daemon thread; a keyring that hangs (a prompt nobody answers) → exit 8."""
        result: list[Any] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                result.append(fn())
            except BaseException as exc:
                error.append(exc)

        worker = threading.Thread(target=run, name="oauthtok-keyring", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            raise StoreError(
                f"the keyring did not answer within {self.timeout:g} s when asked to {what} "
                "(locked, or waiting for an unlock prompt?); unlock it and retry, or raise "
                "OAUTHTOK_KEYRING_TIMEOUT"
            )
        if error:
            exc = error[0]
            if isinstance(exc, StoreError):
                raise exc
            reason = describe_failure(exc)
            cls = StoreError if reason == LOCKED else _BackendFailure
            raise cls(f"cannot {what}: {reason}") from None
        return result[0]

    def _retry_once(self, fn: Callable[[], T], what: str) -> T:
        """A transient Secret Service error (item replaced meanwhile) is retried once."""
        try:
            return self._call(fn, what)
        except _BackendFailure:
            return self._call(fn, what)

    def get(self, key: str) -> str | None:
        backend = self.backend

        def read() -> str | None:
            value = backend.get_password(KEYRING_SERVICE, key)
            if value is None or not value.startswith(_CHUNK_HEADER):
                return value
            count = int(value[len(_CHUNK_HEADER) :])
            parts = [backend.get_password(KEYRING_SERVICE, f"{key}/{i}") for i in range(count)]
            if any(p is None for p in parts):
                raise KeyError("a chunk of the secret is missing")
            return "".join(parts)  # type: ignore[arg-type]

        return self._retry_once(read, "read a secret")

    def set(self, key: str, value: str) -> None:
        backend = self.backend
        size = self.chunk_size

        def write() -> None:
            old = backend.get_password(KEYRING_SERVICE, key) if size else None
            if size and len(value) > size:
                chunks = [value[i : i + size] for i in range(0, len(value), size)]
                for i, chunk in enumerate(chunks):
                    backend.set_password(KEYRING_SERVICE, f"{key}/{i}", chunk)
                backend.set_password(KEYRING_SERVICE, key, f"{_CHUNK_HEADER}{len(chunks)}")
                start = len(chunks)
            else:
                backend.set_password(KEYRING_SERVICE, key, value)
                start = 0
            if old and old.startswith(_CHUNK_HEADER):
                for i in range(start, int(old[len(_CHUNK_HEADER) :])):
                    _delete_quietly(backend, f"{key}/{i}")

        self._call(write, "save a secret")

    def delete(self, key: str) -> None:
        backend = self.backend

        def remove() -> None:
            old = backend.get_password(KEYRING_SERVICE, key)
            if old is None:
                return
            _delete_quietly(backend, key)
            if old.startswith(_CHUNK_HEADER):
                for i in range(int(old[len(_CHUNK_HEADER) :])):
                    _delete_quietly(backend, f"{key}/{i}")

        self._call(remove, "delete a secret")


def _delete_quietly(backend: Any, key: str) -> None:
    """Delete one entry; an entry that is already gone is fine."""
    try:
        backend.delete_password(KEYRING_SERVICE, key)
    except Exception as exc:
        if type(exc).__name__ != "PasswordDeleteError":  # keyring's "no such password"
            raise
