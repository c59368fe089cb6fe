"""TokenStore: metadata files in the data dir plus one secret-store entry per token.

`names.json` maps names to stable ids and `tokens/<id>.json` holds each token's metadata (see
`layout`). Files are written atomically (temp file + rename, 0600, folders 0700) and only under
a cross-process lock. Secrets are keyed by the id, so renaming a token rewrites only
`names.json`, and handing out a token takes one secret-store read.

The data folder must be ours: a folder or file owned by another user, or writable by group or
others, is refused (exit 8) before anything is read from it.

`MetadataReader` reads the metadata alone (`list`, `show`): it never opens the secret store,
and this module imports the secret stores (`stores`, `filestore`, `config`) only when a
`TokenStore` is made, so that listing 1,000 tokens does not pay for them.
"""

from __future__ import annotations

import contextlib
import json
import os

from oauthtok import contract, layout, paths
from oauthtok.errors import (
    MetadataNotSaved,
    ReauthorizationRequired,
    StoreError,
    TokenNotFound,
    UsageError,
    command,
)
from oauthtok.models import TokenRecord, TokenSet

TYPE_CHECKING = False  # typing costs ~4 ms to import: `list` and `show` answer without it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from oauthtok.filestore import KeyedSecrets

MAX_NAME_LENGTH = 64
LOCK_TIMEOUT = contract.LOCK_TIMEOUT


def validate_name(name: str) -> str:
    """Names: 1-64 characters, no control or invisible format characters (zero-width space,
    bidi overrides), no leading or trailing space."""
    import unicodedata

    if not name:
        raise UsageError("a token name may not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"a token name has at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in name):
        raise UsageError("a token name may not contain control, invisible or unassigned characters")
    if name != name.strip():
        raise UsageError("a token name may not begin or end with white space")
    return name


def new_token_id() -> str:
    import uuid

    return uuid.uuid4().hex


def atomic_write(path: str, data: bytes) -> None:
    """The file store's atomic write (0600 temp file, fsync, rename), imported when writing."""
    from oauthtok.filestore import write_atomic

    write_atomic(path, data)


def check_store_choice() -> None:
    """Raise CatalogError (exit 7) where `TokenStore()` would: config.toml or OAUTHTOK_STORE
    is invalid. Without either (the common case) `config` is not imported: a missing
    config.toml is what `config.load_config` turns into the defaults."""
    if not os.environ.get("OAUTHTOK_STORE", "").strip():
        try:
            os.stat(os.path.join(paths.config_dir(), "config.toml"))  # config.CONFIG_FILE
        except FileNotFoundError:
            return
        except OSError:
            pass  # unreadable, or under a file: load_config says so
    from oauthtok.config import load_config

    load_config()


def ensure_private_dir(path: str) -> None:
    """Create `path` and its missing parents 0700; an existing folder must be ours."""
    missing = []
    head = os.path.abspath(path)
    while not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
    if os.name == "posix":
        check_ours(path)


def check_ours(path: str) -> None:
    """Refuse a folder or file owned by another user or writable by group or others: another
    user could then swap our metadata or our lock files (exit 8)."""
    if os.name != "posix":
        return
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    import stat

    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"{path} is a symbolic link; oauthtok keeps its files only in real "
                         "folders: remove the link")  # fmt: skip
    if st.st_uid != os.geteuid():
        raise StoreError(
            f"{path} belongs to another user (uid {st.st_uid}); use your own data folder "
            "(OAUTHTOK_DATA_DIR) or give it to yourself"
        )
    if st.st_mode & 0o022:
        import shlex

        kind = "folder" if stat.S_ISDIR(st.st_mode) else "file"
        raise StoreError(
            f"the {kind} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"fix it with `chmod go-w {shlex.quote(path)}`"
        )


class MetadataReader:
    """The stored tokens' metadata (`names.json`, `tokens/<id>.json`), read only; never the
    secret store."""

    def __init__(self, data_dir: str | None = None) -> None:
        self.data_dir = data_dir or paths.data_dir()
        self.names_path = layout.names_path(self.data_dir)
        self._checked = False

    def _check_folder(self) -> None:
        """The data folder and its index must be ours (once per process)."""
        if not self._checked:
            for path in (self.data_dir, self.names_path):
                check_ours(path)
            self._checked = True

    # -- reading ----------------------------------------------------------------------------
    def _corrupt(self, path: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"{path} is corrupt ({type(exc).__name__}: {exc}); it was left as it is: restore it "
            "from a backup or move it aside"
        )

    def _names(self) -> dict[str, str]:
        self._check_folder()
        try:
            return layout.read_names(self.data_dir)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._corrupt(self.names_path, exc) from None
        except OSError as exc:
            raise StoreError(f"cannot read {self.names_path}: {exc}") from None

    def _record(self, name: str, token_id: str) -> TokenRecord:
        try:
            return TokenRecord.from_json(
                {**layout.read_record(self.data_dir, token_id), "name": name}
            )
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise self._unreadable(name, token_id, exc) from None

    def _unreadable(self, name: str, token_id: str, exc: Exception) -> StoreError:
        """Why a token's record cannot be read: missing, unreadable or corrupt."""
        path = layout.record_path(self.data_dir, token_id)
        if isinstance(exc, FileNotFoundError):
            return StoreError(
                f"the metadata of token {name!r} ({path}) is missing; `{command('delete', name)}` "
                "and create it again"
            )
        if isinstance(exc, OSError):
            return StoreError(f"cannot read {path}: {exc}")
        return self._corrupt(path, exc)  # ValueError (UnicodeDecodeError too), TypeError, KeyError

    def records(self) -> list[TokenRecord]:
        """Every token's metadata, sorted by name. Never reads the keyring."""
        names = self._names()
        ordered = sorted(names, key=layout.name_key)
        return [self._record(name, names[name]) for name in ordered]

    def find(self, name: str) -> TokenRecord | None:
        found = layout.lookup(self._names(), name)
        return None if found is None else self._record(*found)

    def get(self, name: str) -> TokenRecord:
        record = self.find(name)
        if record is None:
            raise TokenNotFound(f"no token named {name!r}; `oauthtok list` shows the names")
        return record

    def get_by_id(self, token_id: str, name: str) -> TokenRecord:
        """The current record of a token (it may have been renamed meanwhile)."""
        for display, other in self._names().items():
            if other == token_id:
                return self._record(display, token_id)
        raise TokenNotFound(f"token {name!r} was deleted meanwhile")


class TokenStore(MetadataReader):
    def __init__(self, secrets: KeyedSecrets | None = None, data_dir: str | None = None) -> None:
        super().__init__(data_dir)
        # the chosen store (config.toml, OAUTHTOK_STORE): the keyring unless the file store
        if not secrets:
            from oauthtok.stores import open_secrets

            secrets = open_secrets(self.data_dir)
        self.secrets: KeyedSecrets = secrets

    def check_available(self) -> None:
        """Raise StoreError (exit 8) now when the data folder or the secret store is unusable,
        before a person consents to anything whose tokens could then not be kept."""
        from oauthtok.stores import check as check_secrets

        try:
            ensure_private_dir(self.data_dir)
        except OSError as exc:
            raise StoreError(
                f"cannot use the data folder {self.data_dir} ({exc.strerror or exc}); check that "
                "it is yours and writable (OAUTHTOK_DATA_DIR moves it)"
            ) from None
        check_secrets(self.secrets)  # the keyring answers; the file store's key command too

    # -- locks ------------------------------------------------------------------------------
    def _lock_path(self, name: str) -> str:
        ensure_private_dir(self.data_dir)
        ensure_private_dir(os.path.join(self.data_dir, layout.LOCKS_DIR))
        path = layout.lock_path(self.data_dir, name)
        check_ours(path)
        return path

    @contextlib.contextmanager
    def _locked(self, name: str, what: str) -> Iterator[None]:
        from oauthtok.lockfile import LockTimeout, held

        stack = contextlib.ExitStack()
        try:
            stack.enter_context(held(self._lock_path(name), LOCK_TIMEOUT))
        except LockTimeout:
            raise StoreError(contract.lock_held_too_long(what, LOCK_TIMEOUT)) from None
        except OSError as exc:
            raise StoreError(
                f"cannot lock {what} in {self.data_dir} ({exc.strerror or exc}); check that the "
                "data folder is yours and writable (OAUTHTOK_DATA_DIR moves it)"
            ) from None
        with stack:  # released however the block ends
            yield

    def index_lock(self) -> contextlib.AbstractContextManager[None]:
        """Serializes every change of the store across processes."""
        return self._locked("index", "the token index")

    def token_lock(self, record: TokenRecord) -> contextlib.AbstractContextManager[None]:
        """Serializes refreshes of one token across processes (single-flight)."""
        return self._locked(layout.token_lock(record.id), f"token {record.name!r}")

    # -- writing (callers hold the index lock) ----------------------------------------------
    def _write(self, path: str, data: dict[str, Any]) -> None:
        try:
            ensure_private_dir(os.path.dirname(path))
            atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False).encode())
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None

    def _write_names(self, names: dict[str, str]) -> None:
        ensure_private_dir(self.data_dir)
        self._write(self.names_path, {"version": layout.INDEX_VERSION, "names": names})

    def _write_record(self, record: TokenRecord) -> None:
        data = record.to_json()
        del data["name"]  # names live in names.json only
        self._write(layout.record_path(self.data_dir, record.id), data)

    # -- secrets ----------------------------------------------------------------------------
    def read_tokens(self, record: TokenRecord) -> TokenSet:
        raw = self.secrets.get(record.id)
        if raw is None:
            raise ReauthorizationRequired(
                f"the secret store holds no secrets for token {record.name!r} (keyring reset, "
                "or another store chosen?); "
                f"run `{command('reauthorize', record.name)}`"
            )
        try:
            return TokenSet.loads(raw)
        except (ValueError, TypeError):
            raise StoreError(
                f"the secret store entry of token {record.name!r} is corrupt; "
                f"run `{command('reauthorize', record.name)}`"
            ) from None

    # -- changes ----------------------------------------------------------------------------
    def add(self, record: TokenRecord, tokens: TokenSet) -> TokenRecord:
        """Save a new token: secrets, then metadata, then the name (the commit point).

        On any failure, Ctrl-C included, nothing stays behind.
        """
        validate_name(record.name)
        with self.index_lock():
            names = self._names()
            taken = layout.lookup(names, record.name)
            if taken is not None:
                raise UsageError(f"a token named {taken[0]!r} exists already")
            try:
                # its refresh lock first, ready for the first refresh: `token`'s fast path
                # waits on an existing one only (it creates nothing), so that concurrent calls
                # on a due token wait for one refresh without loading the full path
                with contextlib.suppress(OSError, StoreError):  # its first refresh says why
                    from oauthtok.lockfile import create

                    create(self._lock_path(layout.token_lock(record.id)))
                self.secrets.set(record.id, tokens.dumps())
                self._write_record(record)
                self._write_names({**names, record.name: record.id})
            except BaseException:
                with contextlib.suppress(StoreError):
                    self.secrets.delete(record.id)
                with contextlib.suppress(OSError):
                    os.unlink(layout.record_path(self.data_dir, record.id))
                raise
        return record

    def save_tokens(
        self,
        record: TokenRecord,
        tokens: TokenSet,
        *,
        interim: TokenSet | None = None,
        **changes: Any,
    ) -> TokenRecord:
        """New secrets for an existing token (refresh, reauthorize), then its metadata.

        The secret store is written first: a rotated refresh token is safe before anything
        else. If the metadata cannot be written afterwards, MetadataNotSaved says that the new
        tokens were saved (they were: only the metadata, such as the expiry shown by `list`, is
        stale). `interim`, when the client's credential changes kind (a secret for a
        certificate or back): the secrets first hold both credentials, so that a token whose
        metadata was not written still works with the credential its metadata names; `tokens`
        replaces them once the metadata is written (if that last write fails, the unused
        credential stays until the next refresh drops it).
        """
        self.secrets.set(record.id, (interim or tokens).dumps())
        try:
            updated = self.update(record, **changes)
        except StoreError as exc:
            message = (
                f"the new tokens of {record.name!r} were saved, but its metadata was not ({exc})"
            )
            if interim is not None:
                message += (
                    "; it keeps using its previous client credential: run "
                    f"`{command('reauthorize', record.name)}` again to switch"
                )
            raise MetadataNotSaved(message) from None
        if interim is not None:
            with contextlib.suppress(StoreError):
                self.secrets.set(record.id, tokens.dumps())
        return updated

    def update(self, record: TokenRecord, **changes: Any) -> TokenRecord:
        with self.index_lock():
            updated = self.get_by_id(record.id, record.name).evolve(**changes)
            self._write_record(updated)
        return updated

    def rename(self, old: str, new: str) -> TokenRecord:
        """Only names.json changes; the keyring and the record file stay as they are."""
        validate_name(new)
        with self.index_lock():
            names = self._names()
            found = layout.lookup(names, old)
            if found is None:
                raise TokenNotFound(f"no token named {old!r}; `oauthtok list` shows the names")
            display, token_id = found
            other = layout.lookup(names, new)
            if other is not None and other[1] != token_id:
                raise UsageError(f"a token named {other[0]!r} exists already")
            renamed = {(new if n == display else n): i for n, i in names.items()}
            self._write_names(renamed)
            return self._record(new, token_id)

    def delete(self, name: str) -> TokenRecord:
        """Remove the keyring entry, then the name, then the metadata file."""
        with self.index_lock():
            names = self._names()
            found = layout.lookup(names, name)
            if found is None:
                raise TokenNotFound(f"no token named {name!r}; `oauthtok list` shows the names")
            display, token_id = found
            record = self._record(display, token_id)
            self.secrets.delete(token_id)
            self._write_names({n: i for n, i in names.items() if i != token_id})
            path = layout.record_path(self.data_dir, token_id)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # the token is gone; only its metadata file is left over
                raise StoreError(
                    f"deleted {display!r}, but cannot remove {path} ({exc.strerror}); remove it "
                    "by hand"
                ) from None
        return record
