"""TokenStore: the metadata index (a JSON file) plus one keyring entry of secrets per token.

The index lives in the data dir (0700), is written atomically (temp file + rename, 0600) and
only under a cross-process lock. Secrets are keyed by the token's stable id, so renaming a
token touches only the index, and handing out a token takes one keyring read.
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
from oauthtok.errors import ReauthorizationRequired, StoreError, TokenNotFound, UsageError
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
        self.index_path = os.path.join(self.data_dir, "tokens.json")
        self._lock_dir = os.path.join(self.data_dir, "locks")

    # -- locks ------------------------------------------------------------------------------
    def _lock(self, name: str) -> FileLock:
        ensure_private_dir(self.data_dir)
        ensure_private_dir(self._lock_dir)
        return FileLock(os.path.join(self._lock_dir, name + ".lock"), mode=0o600)

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
        return self._locked("index", "the token index")

    def token_lock(self, record: TokenRecord) -> contextlib.AbstractContextManager[None]:
        """Serializes refreshes of one token across processes (single-flight)."""
        return self._locked(f"token-{record.id}", f"token {record.name!r}")

    # -- index ------------------------------------------------------------------------------
    def _read_index(self) -> dict[str, Any]:
        try:
            data = layout.read_index(self.index_path)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(
                f"the token index {self.index_path} is corrupt ({exc}); it was left as it is: "
                "restore it from a backup or move it aside"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot read the token index {self.index_path}: {exc}") from None
        return data or {"version": layout.INDEX_VERSION, "tokens": []}

    def _write_index(self, data: dict[str, Any]) -> None:
        ensure_private_dir(self.data_dir)
        try:
            atomic_write(self.index_path, json.dumps(data, indent=1).encode())
        except OSError as exc:
            raise StoreError(
                f"cannot write the token index {self.index_path}: {exc}; nothing was changed"
            ) from None

    def records(self) -> list[TokenRecord]:
        """Every token's metadata, sorted by name. Reads the index only, never the keyring."""
        try:
            records = [TokenRecord.from_json(r) for r in self._read_index()["tokens"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"the token index {self.index_path} is corrupt (bad record: {exc}); it was left "
                "as it is: restore it from a backup or move it aside"
            ) from None
        return sorted(records, key=lambda r: layout.name_key(r.name))

    def find(self, name: str) -> TokenRecord | None:
        raw = layout.find_record(self._read_index(), name)
        return None if raw is None else TokenRecord.from_json(raw)

    def get(self, name: str) -> TokenRecord:
        record = self.find(name)
        if record is None:
            raise TokenNotFound(f"no token named {name!r}; `oauthtok list` shows the names")
        return record

    def get_by_id(self, token_id: str, name: str) -> TokenRecord:
        """The current record of a token (it may have been renamed meanwhile)."""
        for raw in self._read_index()["tokens"]:
            if raw.get("id") == token_id:
                return TokenRecord.from_json(raw)
        raise TokenNotFound(f"token {name!r} was deleted meanwhile")

    def _replace_record(self, data: dict[str, Any], record: TokenRecord) -> None:
        tokens = data["tokens"]
        for i, raw in enumerate(tokens):
            if raw.get("id") == record.id:
                tokens[i] = record.to_json()
                return
        raise TokenNotFound(f"token {record.name!r} was deleted meanwhile")

    # -- secrets ----------------------------------------------------------------------------
    def read_tokens(self, record: TokenRecord) -> TokenSet:
        raw = self.keychain.get(record.id)
        if raw is None:
            raise ReauthorizationRequired(
                f"the keyring holds no secrets for token {record.name!r} (keyring reset?); "
                f"run `oauthtok reauthorize {record.name}`"
            )
        try:
            return TokenSet.loads(raw)
        except (ValueError, TypeError):
            raise StoreError(
                f"the keyring entry of token {record.name!r} is corrupt; "
                f"run `oauthtok reauthorize {record.name}`"
            ) from None

    # -- changes ----------------------------------------------------------------------------
    def add(self, record: TokenRecord, tokens: TokenSet) -> TokenRecord:
        """Save a new token. Secrets first, then the index; on failure neither stays."""
        validate_name(record.name)
        with self.index_lock():
            data = self._read_index()
            if layout.find_record(data, record.name) is not None:
                raise UsageError(f"a token named {record.name!r} exists already")
            try:
                self.keychain.set(record.id, tokens.dumps())
                data["tokens"].append(record.to_json())
                self._write_index(data)
            except BaseException:  # Ctrl-C included: leave nothing behind
                with contextlib.suppress(StoreError):
                    self.keychain.delete(record.id)
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
            data = self._read_index()
            raw = next((r for r in data["tokens"] if r.get("id") == record.id), None)
            if raw is None:
                raise TokenNotFound(f"token {record.name!r} was deleted meanwhile")
            updated = TokenRecord.from_json(raw).evolve(**changes)
            self._replace_record(data, updated)
            self._write_index(data)
        return updated

    def rename(self, old: str, new: str) -> TokenRecord:
        validate_name(new)
        with self.index_lock():
            data = self._read_index()
            raw = layout.find_record(data, old)
            if raw is None:
                raise TokenNotFound(f"no token named {old!r}; `oauthtok list` shows the names")
            other = layout.find_record(data, new)
            if other is not None and other is not raw:
                raise UsageError(f"a token named {other['name']!r} exists already")
            raw["name"] = new
            self._write_index(data)
            return TokenRecord.from_json(raw)

    def delete(self, name: str) -> TokenRecord:
        """Remove the keyring entry, then the index entry."""
        with self.index_lock():
            data = self._read_index()
            raw = layout.find_record(data, name)
            if raw is None:
                raise TokenNotFound(f"no token named {name!r}; `oauthtok list` shows the names")
            record = TokenRecord.from_json(raw)
            self.keychain.delete(record.id)
            data["tokens"] = [r for r in data["tokens"] if r.get("id") != record.id]
            self._write_index(data)
        return record
