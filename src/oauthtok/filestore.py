"""The file secret store: for hosts without a Secret Service, chosen explicitly, never a fallback.

One file per secret, `secrets/<key>.secret` under the data folder, keyed exactly like the
keyring entries (key = token id), so that `migrate` moves entries one to one. Folder 0700,
files 0600, both owned by this user (anything else is refused: exit 8), written atomically
(temp file + fsync + rename) under a cross-process lock; readers need no lock.

Each file is one line of JSON with a format name and version:

    {"format": "oauthtok-secret", "version": 1, "cipher": "none", "value": "..."}
    {"format": "oauthtok-secret", "version": 1, "cipher": "aes-256-gcm",
     "key_id": "<16 hex>", "nonce": "<base64, 12 bytes>", "data": "<base64 ciphertext+tag>"}

With `[store] key_command`, entries are encrypted with AES-256-GCM (`cryptography`'s AESGCM): a
fresh random 96-bit nonce per write, and as associated data the format, version, cipher, key id
and the entry's key, so that an entry cannot be moved to another key's file or downgraded. The
32-byte key is what the command prints, as 64 hex digits or as base64 (one trailing newline is
stripped); the key id is a truncated SHA-256 of a label and the key, so that a wrong key is told
apart from a tampered file.

The module's top level is stdlib only (cryptography is imported when used): the
`token` fast path imports it for `read_plain`.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from typing import TYPE_CHECKING, Any, Protocol

from oauthtok.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from oauthtok.config import CommandSpec

# base64, binascii, hashlib, re and tempfile are imported where used: `read_plain` is on the
# `token` fast path, which must cost no more with the file store than with the keyring.

SECRETS_DIR = "secrets"
SUFFIX = ".secret"
FORMAT = "oauthtok-secret"
VERSION = 1
PLAIN = "none"
AES_GCM = "aes-256-gcm"
KEY_BYTES = 32
NONCE_BYTES = 12
#: a token set is a few KiB; a larger file is not ours
MAX_FILE_BYTES = 1024 * 1024
KEY_TIMEOUT = 15.0
LOCK_TIMEOUT = 30.0
LOCK_NAME = "secrets.lock"
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def is_valid_key(key: str) -> bool:
    """1-128 letters, digits, _ . - and not starting with a dot (keys become file names)."""
    return 0 < len(key) <= 128 and not key.startswith(".") and _KEY_CHARS.issuperset(key)


class KeyedSecrets(Protocol):
    """What `TokenStore` needs of a secret store: `secretstore.SecretStore` and `FileStore`."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


def secrets_dir(data_dir: str) -> str:
    return os.path.join(data_dir, SECRETS_DIR)


def secret_path(data_dir: str, key: str) -> str:
    if not is_valid_key(key):
        raise ValueError("a secret key is 1-128 letters, digits, _ . - (not starting with .)")
    return os.path.join(data_dir, SECRETS_DIR, key + SUFFIX)


# -- the fast path ----------------------------------------------------------------------------


def read_plain(data_dir: str, key: str) -> str | None:
    """The value of a plain (unencrypted) entry, for the `token` fast path; stdlib only.

    None means "ask the full path": no such entry, an encrypted entry, or anything unusual
    (not a regular file, not ours, readable by others, corrupt). The full path then answers,
    or reports the problem. Nothing here raises for those; the caller still treats any
    exception as "ask the full path".
    """
    try:
        path = secret_path(data_dir, key)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        if os.name == "posix" and (info.st_uid != os.getuid() or info.st_mode & 0o077):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or data.get("version") != VERSION
        or data.get("cipher") != PLAIN
        or not isinstance(data.get("value"), str)
    ):
        return None
    value: str = data["value"]
    return value


def folders_safe(data_dir: str) -> bool:
    """For the `token` fast path: the data folder and the secrets folder pass the checks the
    full store makes (`FileStore._ready`); stdlib only. False means "ask the full path"."""
    try:
        return _unsafe(data_dir, os.lstat(data_dir), True, private=False) is None and (
            _unsafe(secrets_dir(data_dir), os.lstat(secrets_dir(data_dir)), True) is None
        )
    except OSError:
        return False


# -- the key ----------------------------------------------------------------------------------


def _short(text: str, limit: int = 100) -> str:
    """A long command for a one-line message: its start and its end."""
    text = "".join(c if c.isprintable() else " " for c in text)
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return text[:half] + "…" + text[-half:]


def parse_key(output: bytes) -> bytes:
    """The 32-byte key from a key command's output: 64 hex digits, or base64 of 32 bytes.

    One trailing newline (LF or CRLF) is stripped, nothing else. StoreError otherwise; the
    message never shows what the command printed.
    """
    import binascii
    import re

    text = output
    if text.endswith(b"\r\n"):
        text = text[:-2]
    elif text.endswith(b"\n"):
        text = text[:-1]
    if len(text) == 2 * KEY_BYTES and re.fullmatch(rb"[0-9a-fA-F]+", text):
        return bytes.fromhex(text.decode("ascii"))
    try:
        key = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) == KEY_BYTES:
        return key
    raise StoreError(
        f"the key command printed {len(text)} bytes, not a {KEY_BYTES}-byte key written as 64 "
        "hex digits or as base64 (44 characters); make it print such a key, e.g. one made with "
        "`openssl rand -hex 32`"
    )


def key_id(key: bytes) -> str:
    """Names a key without revealing it: tells "wrong key" apart from "tampered file"."""
    import hashlib

    return hashlib.sha256(b"oauthtok file store key id\0" + key).hexdigest()[:16]


def fetch_key(command: CommandSpec, timeout: float = KEY_TIMEOUT) -> bytes:
    """Run the key command (no shell for an argv list, no oauthtok variables in its
    environment, no stdin, a deadline) and parse its output. StoreError (exit 8) otherwise."""
    from oauthtok.children import child_env, last_line, run_bounded

    shown = _short(command.display())
    try:
        done = run_bounded(command.to_argv(), env=child_env(), timeout=timeout, cap=4096)
    except OSError as exc:
        raise StoreError(
            f"cannot run the key command `{shown}` ({exc.strerror or exc}); fix [store] "
            "key_command in config.toml"
        ) from None
    if done.timed_out:
        raise StoreError(
            f"the key command `{shown}` did not finish within {timeout:g} s (waiting for a "
            "prompt?); make it run without asking, then retry"
        )
    if done.returncode != 0:
        why = last_line(done.stderr)
        raise StoreError(
            f"the key command `{shown}` failed (exit {done.returncode}"
            + (f": {why}" if why else "")
            + "); fix it, then retry"
        )
    if done.truncated:
        raise StoreError(f"the key command `{shown}` printed far more than a key")
    return parse_key(done.stdout)


def _aad(kid: str, key: str) -> bytes:
    return b"\0".join(
        [FORMAT.encode(), str(VERSION).encode(), AES_GCM.encode(), kid.encode(), key.encode()]
    )


def encrypt(secret_key: bytes, key: str, value: str) -> dict[str, Any]:
    """The file contents (as a dict) of `value` encrypted for entry `key`."""
    import base64

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kid = key_id(secret_key)
    nonce = os.urandom(NONCE_BYTES)
    data = AESGCM(secret_key).encrypt(nonce, value.encode("utf-8"), _aad(kid, key))
    return {
        "format": FORMAT,
        "version": VERSION,
        "cipher": AES_GCM,
        "key_id": kid,
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "data": base64.b64encode(data).decode("ascii"),
    }


def decrypt(secret_key: bytes, key: str, entry: dict[str, Any], where: str) -> str:
    import base64
    import binascii

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kid = entry.get("key_id")
    ours = key_id(secret_key)
    if kid != ours:
        raise StoreError(
            f"{where} was encrypted with another key (key id {str(kid)[:16]!r}, the key command "
            f"gives {ours!r}); make [store] key_command print the key it was written with"
        )
    try:
        nonce = base64.b64decode(entry["nonce"], validate=True)
        data = base64.b64decode(entry["data"], validate=True)
        if len(nonce) != NONCE_BYTES:
            raise ValueError("nonce")
        plain = AESGCM(secret_key).decrypt(nonce, data, _aad(ours, key))
        return plain.decode("utf-8")
    except (InvalidTag, KeyError, TypeError, ValueError, binascii.Error):
        raise StoreError(
            f"{where} fails to decrypt with the right key: it was altered or is corrupt; "
            "restore it from a backup, or delete the token and create it again"
        ) from None


# -- the store --------------------------------------------------------------------------------


def sync_folder(folder: str) -> None:
    """Make a rename or unlink in `folder` durable."""
    if os.name == "posix":
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` through a 0600 temp file in the same folder, fsync, rename."""
    import tempfile

    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)  # created 0600
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
    sync_folder(folder)


def _unsafe(path: str, info: os.stat_result, folder: bool, private: bool = True) -> str | None:
    """Why `path` may not hold secrets, or None. `private`: no access at all for others (the
    secrets folder and files); otherwise only no write access (the data folder)."""
    if os.name != "posix":
        return None
    kind = "folder" if folder else "file"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link; replace it with a real {kind}"
    if folder and not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder; move it aside"
    if not folder and not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file; move it aside"
    if info.st_uid != os.getuid():
        return f"{path} belongs to another user (uid {info.st_uid}); it must be yours"
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        return f"{path} is writable by others (mode {mode:04o}); run `chmod go-w {path}`"
    if private and mode & 0o077:
        want = "700" if folder else "600"
        return f"{path} is readable by others (mode {mode:04o}); run `chmod {want} {path}`"
    return None


class FileStore:
    """Secrets in files under `data_dir/secrets/`, encrypted when a key command is given.

    The same interface as `secretstore.SecretStore`: get(key) -> str | None, set, delete. Every
    failure is a StoreError (exit 8) with one line.
    """

    def __init__(
        self,
        data_dir: str,
        key_command: CommandSpec | None = None,
        *,
        key_timeout: float = KEY_TIMEOUT,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self.data_dir = data_dir
        self.folder = secrets_dir(data_dir)
        self.key_command = key_command
        self.key_timeout = key_timeout
        self.lock_timeout = lock_timeout
        self._key: bytes | None = None

    def __repr__(self) -> str:  # never the key
        return f"FileStore({self.folder!r}, encrypted={self.encrypted})"

    @property
    def encrypted(self) -> bool:
        return self.key_command is not None

    def describe(self) -> str:
        """One line for `create` and `status`: which store, and what protects it."""
        if self.key_command is None:
            return (
                f"file store {self.folder} (plain files, mode 0600: protected only by file "
                "permissions; set [store] key_command in config.toml to encrypt them)"
            )
        shown = _short(self.key_command.display())
        return (
            f"file store {self.folder} (encrypted with AES-256-GCM; the key comes from the key "
            f"command `{shown}`)"
        )

    # -- checks -------------------------------------------------------------------------------
    def _check(self, path: str, folder: bool, private: bool = True) -> None:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot inspect {path}: {exc.strerror or exc}") from None
        problem = _unsafe(path, info, folder, private)
        if problem:
            raise StoreError(f"refusing the file store: {problem}")

    def _ready(self, create: bool) -> None:
        """The data folder and the secrets folder exist (when `create`) and are safe."""
        self._check(self.data_dir, folder=True, private=False)
        if create:
            try:
                os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
                os.makedirs(self.folder, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create {self.folder}: {exc.strerror or exc}; check the data folder"
                ) from None
        self._check(self.data_dir, folder=True, private=False)
        self._check(self.folder, folder=True)

    def check(self) -> None:
        """For `status`: the folder is safe and, when encrypted, the key command works."""
        self._ready(create=False)
        if self.key_command is not None:
            self._secret_key()

    def _secret_key(self) -> bytes:
        if self._key is None:
            assert self.key_command is not None
            self._key = fetch_key(self.key_command, self.key_timeout)
        return self._key

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        from oauthtok.lockfile import LockTimeout, held

        lock_dir = os.path.join(self.data_dir, "locks")
        try:
            os.makedirs(self.data_dir, mode=0o700, exist_ok=True)  # (makedirs gives parents
            os.makedirs(lock_dir, mode=0o700, exist_ok=True)  # the umask's mode, not 0700)
        except OSError as exc:
            raise StoreError(f"cannot create {lock_dir}: {exc.strerror or exc}") from None
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(held(os.path.join(lock_dir, LOCK_NAME), self.lock_timeout))
        except LockTimeout:
            raise StoreError(
                f"another oauthtok process held the file store's lock for {self.lock_timeout:g} "
                "s; retry, or look for a stuck oauthtok process"
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot lock the file store in {lock_dir} ({exc.strerror or exc}); check that "
                "the data folder is yours and writable (OAUTHTOK_DATA_DIR moves it)"
            ) from None
        with stack:  # released however the block ends
            yield

    # -- reading ------------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        try:
            return secret_path(self.data_dir, key)
        except ValueError as exc:
            raise StoreError(f"cannot use {key!r} as a file store key: {exc}") from None

    def _load(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        self._ready(create=False)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb") as f:
            problem = _unsafe(path, os.fstat(f.fileno()), folder=False)
            if problem:
                raise StoreError(f"refusing the file store: {problem}")
            raw = f.read(MAX_FILE_BYTES + 1)
        try:
            if len(raw) > MAX_FILE_BYTES:
                raise ValueError("too large")
            entry = json.loads(raw)
            if not isinstance(entry, dict) or entry.get("format") != FORMAT:
                raise ValueError("not an oauthtok secret file")
        except (ValueError, UnicodeDecodeError):
            raise StoreError(
                f"{path} is corrupt (not an oauthtok secret file); move it aside, then "
                "reauthorize the token"
            ) from None
        if entry.get("version") != VERSION:
            raise StoreError(
                f"{path} has format version {entry.get('version')!r}, which this oauthtok does "
                f"not know (it writes {VERSION}); upgrade oauthtok"
            )
        return entry

    def _value(self, key: str, entry: dict[str, Any], allow_plain: bool) -> str:
        path = self._path(key)
        cipher = entry.get("cipher")
        if cipher == PLAIN:
            if self.key_command is not None and not allow_plain:
                raise StoreError(
                    f"{path} is stored unencrypted but [store] key_command is set; encrypt the "
                    "stored entries (`migrate --to file --all`) or remove key_command"
                )
            value = entry.get("value")
            if not isinstance(value, str):
                raise StoreError(f"{path} is corrupt (no value); move it aside and reauthorize")
            return value
        if cipher == AES_GCM:
            if self.key_command is None:
                raise StoreError(
                    f"{path} is encrypted, but no [store] key_command is set in config.toml to "
                    "give its key; set it"
                )
            return decrypt(self._secret_key(), key, entry, path)
        raise StoreError(f"{path} uses the unknown cipher {str(cipher)[:30]!r}; upgrade oauthtok")

    def get(self, key: str) -> str | None:
        entry = self._load(key)
        return None if entry is None else self._value(key, entry, allow_plain=False)

    def read_any(self, key: str) -> str | None:
        """Like `get`, but a plain entry is read even when a key command is set (for
        `migrate`, which moves or encrypts such entries)."""
        entry = self._load(key)
        return None if entry is None else self._value(key, entry, allow_plain=True)

    def keys(self) -> list[str]:
        """Every stored key (for `migrate --all` and `status`), sorted."""
        self._ready(create=False)
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot list {self.folder}: {exc.strerror or exc}") from None
        found = [n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX)]
        return sorted(k for k in found if is_valid_key(k))

    def is_encrypted(self, key: str) -> bool | None:
        """Whether the entry is encrypted (None: no such entry)."""
        entry = self._load(key)
        return None if entry is None else entry.get("cipher") != PLAIN

    # -- writing ------------------------------------------------------------------------------
    def _entry(self, key: str, value: str) -> dict[str, Any]:
        if self.key_command is None:
            return {"format": FORMAT, "version": VERSION, "cipher": PLAIN, "value": value}
        return encrypt(self._secret_key(), key, value)

    def _write(self, path: str, data: bytes) -> None:
        write_atomic(path, data)

    def _sync_folder(self) -> None:
        sync_folder(self.folder)

    def set(self, key: str, value: str) -> None:
        path = self._path(key)
        self._ready(create=True)
        data = json.dumps(self._entry(key, value), ensure_ascii=False).encode("utf-8") + b"\n"
        with self._locked():
            self._check(path, folder=False)
            try:
                self._write(path, data)
            except OSError as exc:
                raise StoreError(
                    f"cannot write {path}: {exc.strerror or exc}; nothing was changed"
                ) from None

    def delete(self, key: str) -> None:
        """Remove an entry; one that is not there is fine."""
        path = self._path(key)
        self._ready(create=False)
        if not os.path.isdir(self.folder):
            return
        with self._locked():
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise StoreError(f"cannot delete {path}: {exc.strerror or exc}") from None
            self._sync_folder()

    def reseal(self, key: str) -> bool:
        """Encrypt a plain entry, once key_command has been set. True when it was rewritten."""
        if self.key_command is None:
            return False
        secret_key = self._secret_key()  # before the lock: the command may take a while
        with self._locked():
            entry = self._load(key)
            if entry is None or entry.get("cipher") != PLAIN:
                return False
            value = self._value(key, entry, allow_plain=True)
            data = json.dumps(encrypt(secret_key, key, value), ensure_ascii=False).encode()
            path = self._path(key)
            try:
                self._write(path, data + b"\n")
            except OSError as exc:
                raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
        return True
