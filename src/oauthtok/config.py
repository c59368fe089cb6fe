"""`config.toml` in the config folder (beside the user's `services.toml`): how oauthtok behaves.

    [notify]
    command = "notify-send oauthtok \"$OAUTHTOK_NAME: $OAUTHTOK_REASON\""   # or ["argv", ...]
    every = "1d"                       # at most one notification per token and event per 1d

    [store]
    backend = "file"                   # or "keyring" (the default); OAUTHTOK_STORE wins
    key_command = ["systemd-creds", "decrypt", "/etc/oauthtok/key.cred", "-"]

Validated like the catalog: any problem is a CatalogError (exit 7) naming the file and the key.
Loaded only by the commands that need it. Stdlib only, and cheap to import (no dataclasses, no
tomllib until a file is read). The `token` fast path reads OAUTHTOK_STORE itself when there
is no config file (`fastpath._chosen_store`, with `contract`'s names).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from oauthtok import contract, paths
from oauthtok.errors import CatalogError

CONFIG_FILE = "config.toml"
#: a config file is a few lines; anything larger is a mistake (and must not cost memory)
MAX_BYTES = 64 * 1024
BACKENDS = contract.STORE_BACKENDS
DEFAULT_BACKEND = contract.DEFAULT_STORE_BACKEND
DEFAULT_EVERY = 86400
STORE_ENV = contract.STORE_ENV


class CommandSpec(NamedTuple):
    """A configured command: a string for the shell, or an argv list run without one."""

    argv: tuple[str, ...]
    shell: bool = False

    @classmethod
    def from_config(cls, value: str | Sequence[str]) -> CommandSpec:
        if isinstance(value, str):
            return cls((value,), shell=True)
        return cls(tuple(value), shell=False)

    def to_argv(self) -> list[str]:
        """What to execute: `/bin/sh -c STRING` for a string, the list itself otherwise."""
        if not self.shell:
            return list(self.argv)
        if os.name == "nt":
            return ["cmd.exe", "/d", "/s", "/c", self.argv[0]]
        return ["/bin/sh", "-c", self.argv[0]]

    def display(self) -> str:
        """For messages: the command as configured (a configured command holds no secret)."""
        if self.shell:
            return self.argv[0]
        import shlex

        return shlex.join(self.argv)


class NotifyConfig(NamedTuple):
    command: CommandSpec | None = None
    every: int = DEFAULT_EVERY  # seconds


class StoreConfig(NamedTuple):
    backend: str = DEFAULT_BACKEND
    #: who chose the backend: "default", the config file's path, or "OAUTHTOK_STORE"
    backend_from: str = "default"
    key_command: CommandSpec | None = None


class Config(NamedTuple):
    path: str
    exists: bool
    notify: NotifyConfig = NotifyConfig()
    store: StoreConfig = StoreConfig()


def config_path() -> str:
    return os.path.join(paths.config_dir(), CONFIG_FILE)


# -- validation -------------------------------------------------------------------------------

_SCHEMA: dict[str, tuple[str, ...]] = {
    "notify": ("command", "every"),
    "store": ("backend", "key_command"),
}


def _closest(word: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(choices)})"


def _command(where: str, key: str, value: Any) -> CommandSpec:
    if isinstance(value, str):
        if not value.strip():
            raise CatalogError(f"{where}: {key} is empty; give a command, or remove the key")
        if "\0" in value:
            raise CatalogError(f"{where}: {key} contains a NUL character")
        return CommandSpec.from_config(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if not value[0]:
            raise CatalogError(f"{where}: {key}: the program (first item) is empty")
        if any("\0" in v for v in value):
            raise CatalogError(f"{where}: {key} contains a NUL character")
        return CommandSpec.from_config(value)
    raise CatalogError(
        f"{where}: {key} must be a string (run by the shell) or a non-empty list of strings "
        "(the program and its arguments)"
    )


def _every(where: str, value: Any) -> int:
    from oauthtok.durations import EXAMPLES, parse_duration
    from oauthtok.errors import UsageError

    if not isinstance(value, str):
        raise CatalogError(f"{where}: notify.every must be a duration string ({EXAMPLES})")
    try:
        return parse_duration(value, what="notify.every")
    except UsageError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def validate(data: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> Config:
    """A parsed config.toml (a dict) → Config; CatalogError naming `where` and the key."""
    for table, value in data.items():
        if table not in _SCHEMA:
            raise CatalogError(f"{where}: unknown table [{table}]{_closest(table, list(_SCHEMA))}")
        if not isinstance(value, dict):
            raise CatalogError(f"{where}: {table} must be a table ([{table}])")
        for key in value:
            if key not in _SCHEMA[table]:
                raise CatalogError(
                    f"{where}: unknown key {table}.{key}{_closest(key, _SCHEMA[table])}"
                )
    notify_table = data.get("notify", {})
    store_table = data.get("store", {})

    notify = NotifyConfig(
        command=(
            _command(where, "notify.command", notify_table["command"])
            if "command" in notify_table
            else None
        ),
        every=_every(where, notify_table["every"]) if "every" in notify_table else DEFAULT_EVERY,
    )

    backend, backend_from = DEFAULT_BACKEND, "default"
    if "backend" in store_table:
        backend, backend_from = store_table["backend"], where
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise CatalogError(
                f"{where}: store.backend must be one of {', '.join(map(repr, BACKENDS))}, "
                f"not {backend!r}"
            )
    from_env = environ.get(STORE_ENV, "").strip()
    if from_env:
        if from_env not in BACKENDS:
            raise CatalogError(
                f"{STORE_ENV}: {from_env[:40]!r} is not a secret store; use "
                f"{' or '.join(BACKENDS)}, or unset it"
            )
        backend, backend_from = from_env, STORE_ENV
    store = StoreConfig(
        backend=backend,
        backend_from=backend_from,
        key_command=(
            _command(where, "store.key_command", store_table["key_command"])
            if "key_command" in store_table
            else None
        ),
    )
    return Config(path=where, exists=True, notify=notify, store=store)


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The user's config (defaults when there is no file). CatalogError (exit 7) when invalid."""
    path = config_path() if path is None else path
    environ = os.environ if environ is None else environ
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return validate({}, path, environ)._replace(exists=False)
    except IsADirectoryError:
        raise CatalogError(f"{path}: is a folder, not a config file; remove or rename it") from None
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise CatalogError(
            f"{path}: larger than {MAX_BYTES // 1024} KiB; this is not an oauthtok config file"
        )
    import tomllib

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise CatalogError(f"{path}: invalid TOML: nested too deeply") from None
    return validate(data, path, environ)
