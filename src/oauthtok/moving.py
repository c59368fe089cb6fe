"""Moving grants: between the two secret stores (`migrate`), and to another machine sealed with
age (`export`, `import`; the sealing itself is `transfer`).

A move never loses a grant on the way: the source entry is removed only after the target has
been written (and, between stores, read back); a failure leaves the source as it was. Export
*moves*: the local copy is removed without revocation once the sealed token is written, because
a rotating refresh token used from two places breaks both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from oauthtok import paths, stores, transfer
from oauthtok.errors import (
    OauthtokError,
    ReauthorizationRequired,
    StoreError,
    UsageError,
    command,
)
from oauthtok.filestore import FileStore, KeyedSecrets
from oauthtok.kinds import Flow, TokenAuth
from oauthtok.models import TokenRecord, TokenSet
from oauthtok.store import TokenStore, new_token_id

MOVED = "moved"
ENCRYPTED = "encrypted"
ALREADY = "already there"


@dataclass(frozen=True)
class Migrated:
    record: TokenRecord
    outcome: str | None = None  # moved | encrypted | already there
    error: OauthtokError | None = None


def _read(secrets: KeyedSecrets, key: str) -> str | None:
    return secrets.read_any(key) if isinstance(secrets, FileStore) else secrets.get(key)


def _move(record: TokenRecord, source: KeyedSecrets, target: KeyedSecrets) -> str:
    value = _read(source, record.id)
    if value is None:
        if isinstance(target, FileStore):
            encrypted = target.is_encrypted(record.id)
            if encrypted is False and target.reseal(record.id):
                return ENCRYPTED
            if encrypted is not None:
                return ALREADY
        elif target.get(record.id) is not None:
            return ALREADY
        raise ReauthorizationRequired(
            f"neither store holds the secrets of {record.name!r}; "
            f"run `{command('reauthorize', record.name)}`"
        )
    target.set(record.id, value)
    if target.get(record.id) != value:
        raise StoreError(
            f"the {stores.kind_of(target)} store did not keep the secrets of {record.name!r}; "
            "they stay where they were"
        )
    source.delete(record.id)
    return MOVED


def migrate(names: Sequence[str], to: str, *, data_dir: str | None = None) -> Iterator[Migrated]:
    """Move the secrets of `names` (every token for none) to the `to` store, one by one under
    each token's lock; a failure of one never stops the others."""
    from oauthtok.config import load_config

    data_dir = data_dir or paths.data_dir()
    cfg = load_config()
    target = stores.open_secrets(data_dir, to, cfg)
    source = stores.open_secrets(
        data_dir, stores.FILE if to == stores.KEYRING else stores.KEYRING, cfg
    )
    store = TokenStore(secrets=target, data_dir=data_dir)
    records = [store.get(n) for n in names] if names else store.records()
    for record in records:
        try:
            with store.token_lock(record):  # no refresh writes the source meanwhile
                outcome = _move(record, source, target)
        except OauthtokError as exc:
            yield Migrated(record, error=exc)
            continue
        yield Migrated(record, outcome)


# -- export and import ------------------------------------------------------------------------


def export_token(
    store: TokenStore, name: str, recipient: str, write: Callable[[bytes], None]
) -> TokenRecord:
    """Seal `name` for `recipient`, hand the sealed bytes to `write`, then remove the token
    here (no revocation). When `write` raises, nothing is removed."""
    record = store.get(name)
    with store.token_lock(record):  # not while a refresh rotates its refresh token
        record = store.get_by_id(record.id, record.name)
        tokens = store.read_tokens(record)
        payload = transfer.make_payload(record.to_json(), json.loads(tokens.dumps()), time.time())
        write(transfer.seal(payload, recipient))
        store.delete(record.name)
    from oauthtok import alerts

    to = alerts.notifier(store.data_dir)
    if to is not None:
        to.forget(record.id)
    return record


_TEXT = ("id", "name", "service", "client_id", "redirect_uri")
_OPTIONAL_TEXT = ("account", "last_error")
_TIMES = (
    "refreshed_at", "expires_at", "obtained_at", "refresh_used_at", "refresh_rotated_at",
    "refresh_expires_at", "last_error_at",
)  # fmt: skip
_FLAGS = ("has_refresh_token", "needs_reauth")


def _record_from(data: dict[str, Any]) -> TokenRecord:
    """A TokenRecord from an export's record, every field of the right type (age does not say
    who sealed a file: what it holds is checked like any input). UsageError otherwise."""

    def bad(why: str) -> UsageError:
        return UsageError(f"not a valid oauthtok export: record.{why}")

    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    def table(value: Any) -> bool:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )

    for key in _TEXT:
        if not isinstance(data.get(key), str):
            raise bad(f"{key} is not a string")
    for key in _OPTIONAL_TEXT:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise bad(f"{key} is not a string")
    for key in ("created_at", *_TIMES):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad(f"{key} is not a time")
    rules = data.get("lapse_rules")
    if rules is not None and not (
        isinstance(rules, dict)
        and set(rules) <= {"idle_days", "max_days"}
        and all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
                for v in rules.values())
    ):  # fmt: skip
        raise bad("lapse_rules is not a table of day counts")
    for key in _FLAGS:
        if not isinstance(data.get(key, False), bool):
            raise bad(f"{key} is not true or false")
    for key in ("scopes", "missing_scopes"):
        if not strings(data.get(key, [])):
            raise bad(f"{key} is not a list of strings")
    if data.get("granted_scopes") is not None and not strings(data["granted_scopes"]):
        raise bad("granted_scopes is not a list of strings")
    for key in ("params", "authorize_params"):
        if not table(data.get(key, {})):
            raise bad(f"{key} is not a table of strings")
    if data.get("token_auth") not in set(TokenAuth):
        raise bad("token_auth is not a known client authentication")
    if data.get("flow", Flow.BROWSER) not in set(Flow):
        raise bad("flow is not a known flow")
    from dataclasses import fields

    from oauthtok.models import Endpoints

    endpoint_keys = {f.name for f in fields(Endpoints)}
    if set(data["endpoints"]) - endpoint_keys:
        raise bad("endpoints has an unknown key")
    for key, value in data["endpoints"].items():
        wanted = bool if key == "iss_required" else str
        if value is not None and not isinstance(value, wanted):
            raise bad(f"endpoints.{key} is not a {wanted.__name__}")
    return TokenRecord.from_json(data)


def import_token(
    store: TokenStore,
    sealed: bytes,
    identity_file: str,
    *,
    source: str,
    new_name: str | None = None,
) -> TokenRecord:
    """Open a sealed export with the identity and store the token (under `new_name`, and a new
    id). UsageError for anything not sealed for this identity, damaged, or not an export."""
    payload = transfer.unseal(sealed, identity_file, source=source)
    data = dict(payload["record"])
    data["id"] = new_token_id()
    if new_name is not None:
        data["name"] = new_name
    record = _record_from(data)
    tokens = TokenSet(**payload["secrets"])
    if tokens.client_certificate:
        # checked here, as a file given to create is: later loads trust the stored copy
        from oauthtok import client_cert

        where = f"the client certificate in {source}"
        checked = client_cert.parse(tokens.client_certificate, where=where)
        tokens = tokens.evolve(client_certificate=checked.to_secret())
        record = record.evolve(secret_expires_at=checked.not_after)  # not the sender's word
    try:
        return store.add(record, tokens)
    except UsageError as exc:
        if store.find(record.name) is not None:
            raise UsageError(f"{exc}; import it under another name with --name NEW") from None
        raise
