"""Shared test builders: records, secrets, an in-memory keyring, running the real program."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from keyring.backend import KeyringBackend

from oauthtok.models import Endpoints, TokenAuth, TokenRecord, TokenSet
from oauthtok.store import new_token_id


def make_secrets(**changes: Any) -> TokenSet:
    """The secrets of a token valid for an hour from now."""
    tokens = TokenSet(
        access_token="AT-secret-access",
        refresh_token="RT-secret-refresh",
        client_secret="CS-secret-client",
        expires_at=time.time() + 3600,
    )
    return tokens.evolve(**changes)


def make_record(name: str = "work-mail", **changes: Any) -> TokenRecord:
    record = TokenRecord(
        id=new_token_id(),
        name=name,
        service="microsoft",
        client_id="11111111-2222",
        endpoints=Endpoints(
            token_url="https://idp.example.com/token", authorize_url="https://idp.example.com/auth"
        ),
        token_auth=TokenAuth.CLIENT_SECRET_POST,
        redirect_uri="http://localhost",
        scopes=("offline_access", "https://outlook.office.com/IMAP.AccessAsUser.All"),
        created_at=time.time(),
        expires_at=time.time() + 3600,
        has_refresh_token=True,
    )
    return record.evolve(**changes)


class MemoryKeyring(KeyringBackend):
    """An in-memory backend for unit tests; `delay` makes every call hang that long."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}
        self.delay = 0.0

    def _wait(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    def get_password(self, service: str, username: str) -> str | None:
        self._wait()
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._wait()
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        self._wait()
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


def run_oauthtok(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real program in a subprocess, as scripts run it."""
    return subprocess.run(
        [sys.executable, "-m", "oauthtok", *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


FLOW_SECRET = "flow-secret"


def create_token(
    server: Any,
    *args: str,
    name: str = "t",
    service: str = "testfull",
    scopes: str = "offline_access mail.read",
    env: dict[str, str] | None = None,
    client_scope: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`oauthtok create` against the Authlib server (the `testidp`/`testfull` services of the
    `test_catalog` fixture), its client registered first; the secret comes from the env."""
    auth = "client_secret_basic" if service in ("oidc", "testidp") else "client_secret_post"
    extra = {} if client_scope is None else {"scope": client_scope}
    server.add_client(f"client-{name}", FLOW_SECRET, auth, **extra)
    return run_oauthtok(
        "create", name, "--service", service, "--client-id", f"client-{name}",
        "--scopes", scopes, "--timeout", "30", *args,
        env={"OAUTHTOK_CLIENT_SECRET": FLOW_SECRET, **(env or {})}, timeout=timeout,
    )  # fmt: skip


def shown(name: str = "t") -> dict[str, Any]:
    """`oauthtok show NAME --json`."""
    import json

    result = run_oauthtok("show", name, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data
