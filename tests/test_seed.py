"""`seed_token` (the real `create` command run in the test's process) stores what the real
program stores: the same record, field by field, and the same kind of secrets, for each way
the tests make tokens. Without this, tests that seed their tokens could drift from `create`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from oauthtok.store import TokenStore
from tests.helpers import create_token, seed_token

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")

#: what differs between two tokens made one after the other: who they are and when
PER_TOKEN = ("id", "name", "client_id")
MOMENTS = ("created_at", "refreshed_at", "expires_at", "obtained_at", "refresh_rotated_at")


def stored(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A token's record and secrets, as the store keeps them."""
    store = TokenStore()
    record = store.get(name)
    return record.to_json(), json.loads(store.secrets.get(record.id) or "{}")


def rules_layer() -> dict[str, str]:
    path = Path(os.environ["HOME"]) / "rules.toml"
    path.write_text("[services.testidp]\nrefresh_token_idle_days = 30\n")
    return {"OAUTHTOK_SERVICES": os.environ["OAUTHTOK_SERVICES"] + os.pathsep + str(path)}


VARIANTS: dict[str, dict[str, Any]] = {
    "testfull": {},
    "testidp, openid, an id_token": {
        "service": "testidp", "scopes": "openid offline_access mail.read",
    },
    "public": {"args": ("--public",), "auth": "none"},
    "client credentials": {"args": ("--flow", "client-credentials"), "scopes": "mail.read"},
    "secret expiry": {"args": ("--secret-expires", "2099-01-31")},
    "scope not granted": {
        "scopes": "offline_access mail.read mail.send", "client_scope": "offline_access mail.read",
    },
    "discovery": {"service": "oidc", "issuer": True, "scopes": "openid offline_access"},
    "lapse rules": {"service": "testidp", "rules": True},
    "file store": {"env": {"OAUTHTOK_STORE": "file"}},
}  # fmt: skip


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_seeded_token_is_stored_as_create_stores_it(auth_server: Any, variant: str) -> None:
    options = dict(VARIANTS[variant])
    args = tuple(options.pop("args", ()))
    if options.pop("issuer", False):
        args += ("--param", f"issuer={auth_server.base_url}")
    env = dict(options.pop("env", {}))
    if options.pop("rules", False):
        env.update(rules_layer())
    auth_server.knobs.id_token_claims = {"sub": "1", "email": "me@example.com"}
    auth_server.knobs.userinfo = {"sub": "1", "email": "me@example.com"}
    made = create_token(auth_server, *args, name="made", env=env, **options)
    assert made.returncode == 0, made.stderr
    seed_token(auth_server, *args, name="seeded", env=env, **options)

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        (made_record, made_secrets), (seeded_record, seeded_secrets) = map(
            stored, ("made", "seeded")
        )
    assert seeded_record["client_id"] == "client-seeded"
    for key in PER_TOKEN:
        del made_record[key], seeded_record[key]
    for key in MOMENTS:
        made_at, seeded_at = made_record.pop(key), seeded_record.pop(key)
        assert (made_at is None) == (seeded_at is None), key
        if made_at is not None:
            assert abs(made_at - seeded_at) < 120, key
    assert seeded_record == made_record
    assert sorted(seeded_secrets) == sorted(made_secrets)
    assert seeded_secrets.get("client_secret") == made_secrets.get("client_secret")
    assert seeded_secrets["access_token"] != made_secrets["access_token"]  # two real grants
