"""`migrate`, `export`, `import`: moving grants between the secret stores and between machines."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from oauthtok.cli.app import commands
from oauthtok.cli.options import complete_names
from oauthtok.cli.output import say
from oauthtok.errors import UsageError, command


class StoreChoice(StrEnum):
    """`migrate --to`."""

    KEYRING = "keyring"
    FILE = "file"


STORE_TITLES = {"keyring": "the keyring", "file": "the file store"}


@commands.command("migrate")
def migrate_command(
    to: Annotated[
        StoreChoice,
        typer.Option("--to", case_sensitive=False, show_default=False,
                     help="The store to move the secrets to."),
    ],
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Token names.", autocompletion=complete_names, show_default=False),
    ] = None,
    all_tokens: Annotated[bool, typer.Option("--all", help="Every stored token.")] = False,
) -> None:  # fmt: skip
    """Move tokens' secrets to the keyring or the file store (each removed from the other
    store only after the target holds it). With a key command set, `--to file` also encrypts
    entries stored plain."""
    from oauthtok.config import load_config
    from oauthtok.moving import ENCRYPTED, MOVED, migrate

    if all_tokens == bool(names):
        raise UsageError("name the tokens to migrate, or give --all (not both)")
    target = STORE_TITLES[to.value]
    first_error = None
    for moved in migrate(names or [], to.value):
        name = moved.record.name
        if moved.error is not None:
            say(f"{name}: error: {moved.error}")
            first_error = first_error or moved.error
        elif moved.outcome == MOVED:
            print(f"{name}: moved to {target}")
        elif moved.outcome == ENCRYPTED:
            print(f"{name}: encrypted in the file store")
        else:
            print(f"{name}: already in {target}")
    chosen = load_config().store
    if chosen.backend != to.value:
        how = (
            f"set OAUTHTOK_STORE={to.value}"
            if chosen.backend_from == "OAUTHTOK_STORE"
            else f'set [store] backend = "{to.value}" in config.toml, or OAUTHTOK_STORE={to.value}'
        )
        say(f"note: oauthtok still uses {STORE_TITLES[chosen.backend]}; {how}")
    if first_error is not None:
        raise typer.Exit(first_error.exit_code)


@commands.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help="The token to hand over.", metavar="NAME",
                                        autocompletion=complete_names, show_default=False)],
    to: Annotated[
        str,
        typer.Option("--to", metavar="AGE_RECIPIENT", show_default=False,
                     help="Who may open it: an age recipient (age1…), an SSH public key "
                     "(ssh-ed25519 …), or a file holding one."),
    ],
    output_file: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="FILE",
                     help="Write the sealed token here (default: stdout, not a terminal)."),
    ] = None,
) -> None:  # fmt: skip
    """Seal a token (secrets and metadata) for another machine with age, and remove it here.

    The grant moves: the local copy is removed without revocation once the sealed token is
    written, because a rotating refresh token used from two places breaks both. On the other
    machine: `oauthtok import FILE --identity IDENTITY_FILE`.
    """
    import os

    from oauthtok.filestore import write_atomic
    from oauthtok.moving import export_token
    from oauthtok.store import TokenStore

    def to_file(data: bytes) -> None:
        assert output_file is not None
        try:
            write_atomic(os.path.abspath(output_file), data)
        except OSError as exc:
            raise UsageError(f"cannot write {output_file}: {exc.strerror or exc}") from None

    def to_stdout(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    if output_file is not None and os.path.lexists(output_file):
        raise UsageError(f"{output_file} exists already; choose another file (-o) or remove it")
    if output_file is None and sys.stdout.isatty():
        raise UsageError(
            "the token is removed here once it is sealed: write it to a file with -o FILE "
            "(or redirect stdout)"
        )
    record = export_token(TokenStore(), name, to, to_file if output_file else to_stdout)
    where = output_file or "stdout"
    say(f"Sealed {record.name!r} into {where} and removed it here (not revoked).")
    say(f"On the other machine: {command('import', output_file or 'FILE')} --identity "
        "IDENTITY_FILE")  # fmt: skip


@commands.command("import")
def import_command(
    file: Annotated[str, typer.Argument(help="The sealed token (`-` for stdin).",
                                        metavar="FILE", show_default=False)],
    identity: Annotated[
        str,
        typer.Option("--identity", "-i", metavar="FILE", show_default=False,
                     help="The age identity file (AGE-SECRET-KEY-1…) or unencrypted SSH private "
                     "key it was sealed for."),
    ],
    new_name: Annotated[
        str | None,
        typer.Option("--name", metavar="NEW", help="Store it under this name instead."),
    ] = None,
) -> None:  # fmt: skip
    """Store a token sealed by `oauthtok export` (into the store chosen here)."""
    from oauthtok.moving import import_token
    from oauthtok.store import TokenStore
    from oauthtok.stores import describe
    from oauthtok.transfer import MAX_SEALED

    if file == "-":
        data, source = sys.stdin.buffer.read(MAX_SEALED + 1), "stdin"
    else:
        try:
            with open(file, "rb") as f:
                data, source = f.read(MAX_SEALED + 1), file
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    store = TokenStore()
    record = import_token(store, data, identity, source=source, new_name=new_name)
    say(
        f"Imported {record.name!r}: service {record.service}, account "
        f"{record.account or '(not reported)'}, client id {record.client_id}, token endpoint "
        f"{record.endpoints.token_url}; secrets in {describe(store.secrets)}."
    )
    say(f"Use it with: {command('token', record.name)}")
