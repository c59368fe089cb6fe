"""Which secret store holds the tokens' secrets: the one place that decides.

The OS keyring (`secretstore.SecretStore`: the Secret Service on Linux, Keychain, Credential
Manager) is the default. The file store (`filestore.FileStore`, secrets in files under the data
folder, encrypted when `[store] key_command` is set) is used only when chosen: `[store] backend
= "file"` in config.toml, or `OAUTHTOK_STORE=file` (the environment wins). oauthtok never falls
back from one to the other. `TokenStore()` asks `open_secrets` for its store, so every command
uses the chosen one.
"""

from __future__ import annotations

from oauthtok.config import Config, load_config
from oauthtok.filestore import FileStore, KeyedSecrets
from oauthtok.secretstore import SecretStore

KEYRING = "keyring"
FILE = "file"
BACKENDS = (KEYRING, FILE)


def chosen_backend(cfg: Config | None = None) -> str:
    """ "keyring" or "file", as config.toml and OAUTHTOK_STORE say (CatalogError, exit 7, when
    the config is invalid)."""
    return (cfg or load_config()).store.backend


def open_secrets(
    data_dir: str, backend: str | None = None, cfg: Config | None = None
) -> KeyedSecrets:
    """The secret store to use (`backend` overrides the choice, for `migrate`). Nothing is
    opened yet: the keyring is reached, and the key command run, at the first access."""
    cfg = cfg or load_config()
    backend = backend or cfg.store.backend
    if backend == FILE:
        return FileStore(data_dir, cfg.store.key_command)
    return SecretStore()


def describe(secrets: KeyedSecrets) -> str:
    """One line: which store, and what protects it (for `create`, `status`, `migrate`)."""
    if isinstance(secrets, FileStore):
        return secrets.describe()
    import sys

    from oauthtok.layout import keyring_configured

    if keyring_configured():
        return "the keyring backend chosen in keyring's configuration"
    if sys.platform.startswith("linux"):
        return "the OS keyring (the Secret Service on the session bus: gnome-keyring, KeePassXC)"
    return "the OS keyring (Keychain on macOS, Credential Manager on Windows)"


def kind_of(secrets: KeyedSecrets) -> str:
    return FILE if isinstance(secrets, FileStore) else KEYRING


def check(secrets: KeyedSecrets) -> None:
    """Raise StoreError (exit 8) unless the store answers: the file store's folders are safe
    and its key command works; the keyring answers a read."""
    check = getattr(secrets, "check", None)
    if check is not None:  # FileStore, and SecretStore (which says "cannot open the keyring")
        check()
    else:
        secrets.get("availability-check")
