"""Every call into the secret store: backend choice, time limits, size limits, clear errors.

A backend is anything with keyring's three methods (`SecretBackend`): the freedesktop Secret
Service on Linux (`freedesktop.SecretServiceBackend`), macOS Keychain and Windows Credential
Manager through keyring, or a backend the user chose through keyring's own configuration.
Secrets are stored under the namespace `oauthtok` with the token's stable id as the key.
Backends that cap a secret's size (Windows Credential Manager: 2,560 bytes) get the value split
into numbered chunks behind a small header entry (`contract.CHUNK_HEADER`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from oauthtok import contract
from oauthtok.errors import StoreError
from oauthtok.layout import keyring_configured

T = TypeVar("T")

#: characters per chunk on backends with a size cap (WinVault stores UTF-16: 2,560 bytes)
_CAPPED_BACKENDS = {"WinVaultKeyring": 1200}

LOCKED = "the keyring is locked; unlock it (log in to your desktop session) and retry"
FIX = (
    "start and unlock a Secret Service (gnome-keyring, KeePassXC) in your session, or choose "
    "a backend through keyring's configuration (PYTHON_KEYRING_BACKEND or keyringrc.cfg)"
)


class SecretBackend(Protocol):
    """keyring's backend interface: what every secret store implements."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...

    def delete_password(self, service: str, username: str) -> None: ...


def default_timeout() -> float:
    try:
        return float(os.environ.get("OAUTHTOK_KEYRING_TIMEOUT", "15"))
    except ValueError:
        return 15.0


def choose_backend() -> SecretBackend:
    """The backend to use: keyring's configured one if the user chose one, else the platform's.

    keyring's discovery is skipped: it is slow and silently prefers a plaintext file backend
    when keyrings.alt happens to be installed.
    """
    backend: SecretBackend
    if keyring_configured():
        import keyring

        backend = keyring.get_keyring()
    elif sys.platform.startswith("linux"):
        from oauthtok.freedesktop import SecretServiceBackend

        return SecretServiceBackend(default_timeout())
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


def _loaded_types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """Exception classes of a module the backend has already imported (none otherwise)."""
    found = sys.modules.get(module)
    return tuple(getattr(found, n) for n in names if found is not None and hasattr(found, n))


def _locked_types() -> tuple[type[BaseException], ...]:
    return _loaded_types("keyring.errors", "KeyringLocked") + _loaded_types(
        "secretstorage.exceptions", "LockedException"
    )


def _missing_types() -> tuple[type[BaseException], ...]:
    return (
        OSError,  # no bus socket, a stale address
        *_loaded_types("keyring.errors", "NoKeyringError", "InitError"),
        *_loaded_types("secretstorage.exceptions", "SecretServiceNotAvailableException"),
        *_loaded_types("jeepney.wrappers", "DBusErrorResponse"),
        *_loaded_types("oauthtok.minibus", "BusError"),  # e.g. no Secret Service on the bus
    )


def _transient_types() -> tuple[type[BaseException], ...]:
    """Failures a second try may cure: an item replaced by another process meanwhile."""
    return (
        *_loaded_types(
            "secretstorage.exceptions", "ItemNotFoundException", "PromptDismissedException"
        ),
        *_loaded_types("keyring.errors", "InitError"),
        *_loaded_types("oauthtok.freedesktop", "ItemVanished"),
    )


def _not_found_types() -> tuple[type[BaseException], ...]:
    return (
        *_loaded_types("keyring.errors", "PasswordDeleteError"),
        *_loaded_types("secretstorage.exceptions", "ItemNotFoundException"),
        *_loaded_types("oauthtok.freedesktop", "ItemMissing"),
    )


def describe_failure(exc: BaseException) -> str:
    """One line saying why the store failed and what to do."""
    name = type(exc).__name__
    if isinstance(exc, _locked_types()):
        return LOCKED
    if sys.platform.startswith("linux") and not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return (
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and no bus at "
            "$XDG_RUNTIME_DIR/bus: SSH, container or cron?); " + FIX
        )
    if isinstance(exc, _missing_types()):
        return f"no usable keyring ({name}); {FIX}"
    return f"the keyring failed ({name}); {FIX}"


class _TransientFailure(StoreError):
    """The backend raised something a second try may cure."""


class SecretStore:
    """Time-boxed access to one secret backend, with chunking for capped backends."""

    def __init__(
        self,
        backend: SecretBackend | None = None,
        *,
        timeout: float | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self._backend = backend
        self.timeout = default_timeout() if timeout is None else timeout
        self._chunk_size = chunk_size

    @property
    def backend(self) -> SecretBackend:
        if self._backend is None:
            self._backend = self._call(choose_backend, "open the keyring")
        return self._backend

    @property
    def chunk_size(self) -> int | None:
        if self._chunk_size is None:
            return _CAPPED_BACKENDS.get(type(self.backend).__name__)
        return self._chunk_size

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Run `fn` in a daemon thread; a store that hangs (a prompt nobody answers) → exit 8."""
        result: list[T] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                result.append(fn())
            except BaseException as exc:
                error.append(exc)

        worker = threading.Thread(target=run, name="oauthtok-secrets", daemon=True)
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
            cls = _TransientFailure if isinstance(exc, _transient_types()) else StoreError
            raise cls(f"cannot {what}: {describe_failure(exc)}") from None
        return result[0]

    def _retry_once(self, fn: Callable[[], T], what: str) -> T:
        try:
            return self._call(fn, what)
        except _TransientFailure:
            return self._call(fn, what)

    def check(self) -> None:
        """StoreError (exit 8) now when the store cannot be opened and read."""
        backend = self.backend
        self._call(lambda: backend.get_password(contract.SECRET_NAMESPACE, "-"), "open the keyring")

    def get(self, key: str) -> str | None:
        backend = self.backend
        ns = contract.SECRET_NAMESPACE

        def read() -> str | None:
            value = backend.get_password(ns, key)
            count = None if value is None else contract.chunk_count(value)
            if count is None:
                return value
            parts = [backend.get_password(ns, contract.chunk_key(key, i)) for i in range(count)]
            if any(p is None for p in parts):
                raise StoreError(f"cannot read a secret: a chunk of {key} is missing")
            return "".join(p for p in parts if p is not None)

        return self._retry_once(read, "read a secret")

    def set(self, key: str, value: str) -> None:
        backend = self.backend
        size = self.chunk_size
        ns = contract.SECRET_NAMESPACE

        def write() -> None:
            old = backend.get_password(ns, key) if size else None
            if size and len(value) > size:
                chunks = [value[i : i + size] for i in range(0, len(value), size)]
                for i, chunk in enumerate(chunks):
                    backend.set_password(ns, contract.chunk_key(key, i), chunk)
                backend.set_password(ns, key, f"{contract.CHUNK_HEADER}{len(chunks)}")
                start = len(chunks)
            else:
                backend.set_password(ns, key, value)
                start = 0
            old_count = None if old is None else contract.chunk_count(old)
            for i in range(start, old_count or 0):
                _delete_quietly(backend, contract.chunk_key(key, i))

        self._call(write, "save a secret")

    def delete(self, key: str) -> None:
        backend = self.backend
        ns = contract.SECRET_NAMESPACE

        def remove() -> None:
            old = backend.get_password(ns, key)
            if old is None:
                return
            _delete_quietly(backend, key)
            for i in range(contract.chunk_count(old) or 0):
                _delete_quietly(backend, contract.chunk_key(key, i))

        self._call(remove, "delete a secret")


def _delete_quietly(backend: SecretBackend, key: str) -> None:
    """Delete one entry; an entry that is already gone is fine."""
    try:
        backend.delete_password(contract.SECRET_NAMESPACE, key)
    except _not_found_types():
        pass
