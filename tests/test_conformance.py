"""keyring's own backend conformance suite, run against oauthtok's Secret Service backend, and
against oauthtok's writer paired with the `token` fast path's reader (the pair `token` uses)."""

from __future__ import annotations

from typing import Any

import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError
from keyring.testing.backend import BackendBasicTests

from oauthtok.freedesktop import ItemMissing, SecretServiceBackend, read_secret


class Adapter(KeyringBackend):
    """keyring's base class around our backend (which does not import keyring)."""

    priority = 1  # type: ignore[assignment]
    fast_reader = False

    def __init__(self) -> None:
        super().__init__()
        self.inner = SecretServiceBackend()

    def get_password(self, service: str, username: str) -> str | None:
        if self.fast_reader:
            return read_secret(service, username)
        return self.inner.get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self.inner.set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        try:
            self.inner.delete_password(service, username)
        except ItemMissing:
            raise PasswordDeleteError(username) from None


class FastReaderAdapter(Adapter):
    fast_reader = True


@pytest.mark.usefixtures("keyring_env")
class TestSecretServiceBackend(BackendBasicTests):  # type: ignore[misc]
    def init_keyring(self) -> Any:
        return Adapter()


@pytest.mark.usefixtures("keyring_env")
class TestWriterWithFastReader(BackendBasicTests):  # type: ignore[misc]
    def init_keyring(self) -> Any:
        return FastReaderAdapter()
