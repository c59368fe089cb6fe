"""TokenStore: metadata files in the data dir plus one keyring entry of secrets per token.

`names.json` maps names to stable ids and `tokens/<id>.json` holds each token's metadata (see
`layout`). Files are written atomically (temp file + rename, 0600, folders 0700) and only under
a cross-process lock. Secrets are keyed by the id, so renaming a token rewrites only
`names.json`, and handing out a token takes one keyring read.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

from filelock import FileLock, Timeout

from oauthtok import layout, paths
from oauthtok.errors import ReauthorizationRequired, StoreError, TokenNotFound, UsageError, command
from oauthtok.keychain import Keychain
from oauthtok.models import TokenRecord, TokenSet

MAX_NAME_LENGTH = 64
LOCK_TIMEOUT = 120.0


def validate_name(name: str) -> str:
    """Names: 1-64 characters, no control characters, no leading or trailing space."""
    if not name:
        raise UsageError("a token name may not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"a token name has at most {MAX_NAME_LENGTH} characters")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise UsageError("a token name may not contain control characters")
    if name != name.strip():
        raise UsageError("a token name may not begin or end with white space")
    return name


def new_token_id() -> str:
    return uuid.uuid4().hex


def ensure_private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.name == "posix":
        os.chmod(path, 0o700)


def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to `path` through a 0600 temp file in the same folder, then rename."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name == "posix":
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class TokenStore:
    def __init__(self, keychain: Keychain | None = None, data_dir: str | None = None) -> None:
        self.keychain = keychain or Keychain()
        self.data_dir = data_dir or paths.data_dir()
        self.names_path = layout.names_path(self.data_dir)

    # -- locks ------------------------------------------------------------------------------
    def _lock(self, name: str) -> FileLock:
        lock_dir = os.path.join(self.data_dir, layout.LOCKS_DIR)
        ensure_private_dir(self.data_dir)
        ensure_private_dir(lock_dir)
        return FileLock(os.path.join(lock_dir, name + ".lock"), mode=0o600)

    @contextlib.contextmanager
    def _locked(self, name: str, what: str) -> Iterator[None]:
        try:
            with self._lock(name).acquire(timeout=LOCK_TIMEOUT):
                yield
        except Timeout:
            raise StoreError(
                f"another oauthtok process held the lock on {what} for {LOCK_TIMEOUT:g} s; "
                "retry, or look for a stuck oauthtok process"
            ) from None

    def index_lock(self) -> contextlib.AbstractContextManager[None]:
        """Serializes every change of the store across processes."""
        return self._locked("index", "the token index")

    def token_lock(self, record: TokenRecord) -> contextlib.AbstractContextManager[None]:
        """Serializes refreshes of one token across processes (single-flight)."""
        return self._locked(f"token-{record.id}", f"token {record.name!r}")

    # -- reading ----------------------------------------------------------------------------
    def _corrupt(self, path: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"{path} is corrupt ({type(exc).__name__}: {exc}); it was left as it is: restore it "
            "from a backup or move it aside"
        )

    def _names(self) -> dict[str, str]:
        try:
            return layout.read_names(self.data_dir)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._corrupt(self.names_path, exc) from None
        except OSError as exc:
            raise StoreError(f"cannot read {self.names_path}: {exc}") from None

    def _record(self, name: str, token_id: str) -> TokenRecord:
        path = layout.record_path(self.data_dir, token_id)
        try:
            return TokenRecord.from_json(
                {**layout.read_record(self.data_dir, token_id), "name": name}
            )
        except FileNotFoundError:
            raise StoreError(
                f"the metadata of token {name!r} ({path}) is missing; `{command('delete', name)}` "
                "and create it again"
            ) from None
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise self._corrupt(path, exc) from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from None

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

    # -- writing (callers hold the index lock) ----------------------------------------------
    def _write(self, path: str, data: dict[str, Any]) -> None:
        ensure_private_dir(os.path.dirname(path))
        try:
            atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False).encode())
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}; nothing was changed") from None

    def _write_names(self, names: dict[str, str]) -> None:
        ensure_private_dir(self.data_dir)
        self._write(self.names_path, {"version": layout.INDEX_VERSION, "names": names})

    def _write_record(self, record: TokenRecord) -> None:
        data = record.to_json()
        del data["name"]  # names live in names.json only
        self._write(layout.record_path(self.data_dir, record.id), data)

    # -- secrets ----------------------------------------------------------------------------
    def read_tokens(self, record: TokenRecord) -> TokenSet:
        raw = self.keychain.get(record.id)
        if raw is None:
            raise ReauthorizationRequired(
                f"the keyring holds no secrets for token {record.name!r} (keyring reset?); "
                f"run `{command('reauthorize', record.name)}`"
            )
        try:
            return TokenSet.loads(raw)
        except (ValueError, TypeError):
            raise StoreError(
                f"the keyring entry of token {record.name!r} is corrupt; "
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
                self.keychain.set(record.id, tokens.dumps())
                self._write_record(record)
                self._write_names({**names, record.name: record.id})
            except BaseException:
                with contextlib.suppress(StoreError):
                    self.keychain.delete(record.id)
                with contextlib.suppress(OSError):
                    os.unlink(layout.record_path(self.data_dir, record.id))
                raise
        return record

    def save_tokens(self, record: TokenRecord, tokens: TokenSet, **changes: Any) -> TokenRecord:
        """New secrets for an existing token (refresh, reauthorize), then its metadata.

        The keyring is written first: a rotated refresh token is safe before anything else.
        """
        self.keychain.set(record.id, tokens.dumps())
        return self.update(record, **changes)

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
            self.keychain.delete(token_id)
            self._write_names({n: i for n, i in names.items() if i != token_id})
            with contextlib.suppress(FileNotFoundError):
                os.unlink(layout.record_path(self.data_dir, token_id))
        return record
