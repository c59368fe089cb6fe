"""The `work-mail` token the end-to-end tests make (`test_e2e`, `test_kit`): `create` as the
program or in this process, `seed` for tests of what comes after it, and `token`."""

from __future__ import annotations

import os
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

from tests.helpers import create_in_process, run_oauthtok

SECRET = "s3cret-value-Ω"


def create(
    server: Any,
    name: str = "work-mail",
    auth: str = "client_secret_basic",
    public: bool = False,
    scopes: str = "offline_access mail.read",
    extra: tuple[str, ...] = (),
    service: str = "testidp",
    in_process: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`oauthtok create` (`in_process`: by `create_in_process`, see `seed`)."""
    client_id = f"client-{name}"
    server.add_client(client_id, None if public else SECRET, "none" if public else auth)
    args = [name, "--service", service, "--client-id", client_id, "--scopes", scopes]
    run = create_in_process if in_process else partial(run_oauthtok, "create")
    if public:
        return run(*args, "--public", *extra)
    env = {}
    if auth == "client_secret_post":
        # the catalog says basic; a user override file switches the service to post
        env["OAUTHTOK_SERVICES"] = os.environ["OAUTHTOK_SERVICES"] + os.pathsep + post_override()
    return run(*args, "--client-secret-stdin", *extra, input=SECRET + "\n", env=env)


def seed(server: Any, name: str = "work-mail", **options: Any) -> None:
    """A token for tests of what comes after `create`: `create`'s command run in this process
    (tests.helpers.create_in_process); the real program's `create` is tested in test_e2e and
    test_flows."""
    result = create(server, name, in_process=True, **options)
    assert result.returncode == 0, result.stderr


def post_override() -> str:
    path = Path(os.environ["HOME"]) / "post.toml"
    path.write_text('[services.testidp]\ntoken_auth = "client_secret_post"\n')
    return str(path)


def token(name: str = "work-mail", *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run_oauthtok("token", name, *args, **kw)


def stored_metadata() -> str:
    """Every file of the store's data dir, concatenated."""
    folder = Path(os.environ["XDG_DATA_HOME"]) / "oauthtok"
    return "".join(p.read_text() for p in sorted(folder.rglob("*.json")))
