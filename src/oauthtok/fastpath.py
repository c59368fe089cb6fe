"""The commands answered before Typer loads: `oauthtok token` (the program's hot path, without
Typer, rich or keyring), and the read-only `list`, `show`, `services` and `show-help`.

`run` parses the arguments exactly as Typer does (a differential test holds the two parsers
equal) and, for a token that is still valid, answers from `names.json` and one read of the
secret store. A token that is due goes to the same use case the full CLI calls (`handout`),
still without Typer. Anything this parser does not accept (help, a usage error) returns None and
the full CLI answers. The read-only commands (`quick`) parse their few flags the same way and
render through `cli.views`, which their Typer commands call too.
`OAUTHTOK_NO_FAST_PATH=1` sends everything to the full CLI;
`OAUTHTOK_DEBUG=1` says on stderr why the cached read declined.

Stdlib only at import time: every module imported here is on the hot path.
"""

from __future__ import annotations

import os
import sys
import time

from oauthtok import contract, layout, paths

_FORMATS = {f.value: f for f in contract.Format}


class TokenArgs:
    """The parameters of `oauthtok token`, as Typer would give them."""

    __slots__ = ("fmt", "min_valid", "name", "user")

    def __init__(
        self, name: str, fmt: contract.Format, min_valid: float, user: str | None = None
    ) -> None:
        self.name = name
        self.fmt = fmt
        self.min_valid = min_valid
        self.user = user

    def as_tuple(self) -> tuple[str, contract.Format, float, str | None]:
        return self.name, self.fmt, self.min_valid, self.user


def parse_args(args: list[str]) -> TokenArgs | None:
    """Click's grammar for `token NAME [--format|-f F] [--min-valid S] [--user ADDRESS]`; None
    for anything it would refuse and for `--help`/`-h` (Typer answers those)."""
    name: str | None = None
    fmt = contract.DEFAULT_FORMAT
    min_valid = contract.DEFAULT_MIN_VALID
    user: str | None = None
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        value: str | None = None
        if arg == "--":  # everything after it is an argument
            for positional in rest:
                if name is not None:
                    return None
                name = positional
            break
        if arg.startswith("--"):
            option, eq, attached = arg.partition("=")
            if eq:
                value = attached
        elif arg.startswith("-") and arg != "-":
            option, attached = arg[:2], arg[2:]
            if attached:
                if option != "-f":  # -h and unknown short options: not ours
                    return None
                value = attached  # `-fjson` is json, `-f=json` is "=json" (refused below)
        else:
            if name is not None:
                return None  # an extra argument
            name = arg
            continue
        if option not in ("--format", "-f", "--min-valid", "--user"):
            return None  # --help, -h or an unknown option
        if value is None:
            if not rest:
                return None
            value = rest.pop(0)
        if option == "--user":
            user = value
        elif option == "--min-valid":
            try:
                min_valid = contract.parse_min_valid(value)
            except ValueError:
                return None
        else:
            found = _FORMATS.get(value.lower())
            if found is None:
                return None
            fmt = found
    if name is None:
        return None
    return TokenArgs(name, fmt, min_valid, user)


def _find(data_dir: str, name: str) -> tuple[str, str]:
    """(the stored name, the token id) of `name`."""
    found = layout.lookup(layout.read_names(data_dir), name)
    if found is None:
        raise LookupError("no such name")  # the full path says so, with its wording
    return found


def _stored_token(data_dir: str, token_id: str, parsed: TokenArgs) -> tuple[str | None, bool]:
    """(the rendered token, or None for the full path; whether it is due for a refresh)."""
    raw = _read_secret(data_dir, token_id)
    if raw is None or not raw.startswith("{"):
        raise LookupError("no plain secret entry")
    import json

    secret = json.loads(raw)
    expires_at = secret.get("expires_at")
    if contract.is_due(expires_at, parsed.min_valid, time.time()):
        return None, True
    record = layout.read_record(data_dir, token_id)
    if record.get("needs_reauth"):
        return None, False  # the full path hands it out with a warning
    scopes = contract.shown_scopes(record.get("granted_scopes"), record.get("scopes") or [])
    account = record.get("account")
    if account is not None and not isinstance(account, str):
        raise LookupError("the stored account is not a string")
    user = parsed.user
    if parsed.fmt in contract.SASL_FORMATS:
        # the stored account, else the token's own claims: the same rule as `handout`
        user = contract.sasl_user(user, account, secret["access_token"], secret.get("id_token"))
    text = contract.render_token(
        secret["access_token"],
        secret.get("token_type"),
        expires_at,
        scopes,
        parsed.fmt,
        user,
        account,
    )
    return text, False


class _WaitedTooLong(Exception):
    """Another process held a due token's refresh lock for contract.LOCK_TIMEOUT."""


def _refresh_lock_ahead(
    data_dir: str, token_id: str, name: str
) -> tuple[tuple[int, int], bool] | None:
    """A due token's refresh lock, held from here on (`lockfile.take_ahead`): (its key,
    whether another process held it first, i.e. was refreshing it). The full path refreshes
    under it; a process that waited reads the new token instead, without loading the full
    path (~100 ms of CPU each, when a mail client asks for one token many times at once)."""
    from oauthtok import lockfile

    path = layout.lock_path(data_dir, layout.token_lock(token_id))
    timeout = contract.LOCK_TIMEOUT
    try:
        return lockfile.take_ahead(path, timeout)
    except lockfile.LockTimeout:
        raise _WaitedTooLong(contract.lock_held_too_long(f"token {name!r}", timeout)) from None


def _release(ahead: tuple[tuple[int, int], bool] | None) -> None:
    if ahead is not None:
        from oauthtok.lockfile import release_ahead

        release_ahead(ahead[0])


def _chosen_store() -> tuple[str, bool]:
    """(backend, encrypted) as config.toml and OAUTHTOK_STORE choose them (an invalid config
    raises, and the full path reports it). Without a config file, the common case, the choice
    is known without importing `config` (typing alone costs ~10 ms here)."""
    if not os.path.exists(os.path.join(paths.config_dir(), "config.toml")):
        # without a config file, OAUTHTOK_STORE alone chooses, and a key command needs the file
        chosen = os.environ.get(contract.STORE_ENV, "").strip() or contract.DEFAULT_STORE_BACKEND
        if chosen in contract.STORE_BACKENDS:  # anything else: config refuses it, in its words
            return chosen, False
    from oauthtok import config

    store = config.load_config().store
    return store.backend, store.key_command is not None


def _read_secret(data_dir: str, token_id: str) -> str | None:
    """One read of the chosen secret store."""
    backend, encrypted = _chosen_store()
    if backend == "file":
        from oauthtok import filestore

        if encrypted:  # the key command is the full path's business
            raise LookupError("the file store is encrypted")
        if not filestore.folders_safe(data_dir):
            raise LookupError("the file store's folders need the full path's checks")
        return filestore.read_plain(data_dir, token_id)
    if not layout.fast_read_allowed():
        raise LookupError("the secret store is not one the fast path reads")
    from oauthtok.freedesktop import read_secret

    return read_secret(contract.SECRET_NAMESPACE, token_id)


def run(args: list[str]) -> int | None:
    """Answer `oauthtok token ARGS` and return the exit code, or None for the full CLI."""
    if os.environ.get("OAUTHTOK_NO_FAST_PATH"):
        return None
    parsed = parse_args(args)
    if parsed is None:
        return None
    from oauthtok.errors import StoreError, UsageError, report

    ahead = None
    try:
        try:
            contract.check_user_option(parsed.fmt, parsed.user)
            data_dir = paths.data_dir()
            name, token_id = _find(data_dir, parsed.name)
            text, due = _stored_token(data_dir, token_id, parsed)
            if due:
                ahead = _refresh_lock_ahead(data_dir, token_id, name)
                if ahead is not None and ahead[1]:
                    # another process refreshed it meanwhile: let go at once (other waiters
                    # read too), and read; still due, the full path takes the lock itself
                    _release(ahead)
                    ahead = None
                    text = _stored_token(data_dir, token_id, parsed)[0]
        except UsageError as exc:  # the answer itself (the full path words it the same)
            return report(exc)
        except _WaitedTooLong as exc:
            return report(StoreError(str(exc)))
        except Exception as exc:
            if os.environ.get("OAUTHTOK_DEBUG"):
                sys.stderr.write(
                    f"oauthtok: debug: fast path declined ({type(exc).__name__}: {exc})\n"
                )
            text = None
        if text is None:
            from oauthtok.handout import main

            return main(parsed.name, parsed.fmt, parsed.min_valid, parsed.user)
    finally:
        _release(ahead)  # unless the full path's refresh took it over (and ended it)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        return 141
    return 0


# -- the read-only commands ---------------------------------------------------------------------

#: command → (fewest arguments, most arguments, flags)
QUICK: dict[str, tuple[int, int, frozenset[str]]] = {
    "list": (0, 0, frozenset({"--json"})),
    "show": (1, 1, frozenset({"--json"})),
    "services": (0, 0, frozenset({"--json"})),
    "show-help": (0, 1, frozenset()),
}


def parse_quick(command: str, args: list[str]) -> tuple[list[str], frozenset[str]] | None:
    """(arguments, flags given) as click would parse them, or None (help, usage errors)."""
    low, high, known = QUICK[command]
    positionals: list[str] = []
    flags: set[str] = set()
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            positionals += rest
            break
        if arg.startswith("-") and arg != "-":
            if arg not in known:
                return None  # --help, -h, unknown options, `--json=x`
            flags.add(arg)
        else:
            positionals.append(arg)
    if not low <= len(positionals) <= high:
        return None
    return positionals, frozenset(flags)


def quick(command: str, args: list[str]) -> int | None:
    """Answer a read-only command and return the exit code, or None for the full CLI."""
    if os.environ.get("OAUTHTOK_NO_FAST_PATH"):
        return None
    parsed = parse_quick(command, args)
    if parsed is None:
        return None
    return _answer(command, *parsed)  # the launcher has turned the cyclic collector off


def _answer(command: str, positionals: list[str], flags: frozenset[str]) -> int:
    from oauthtok.cli import views
    from oauthtok.errors import report

    as_json = "--json" in flags
    try:
        if command == "list":
            views.list_view(as_json)
        elif command == "show":
            views.show_view(positionals[0], as_json)
        elif command == "services":
            views.services_view(as_json)
        else:
            views.show_help_view(positionals[0] if positionals else None)
        sys.stdout.flush()
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        return report(exc)
    return 0
