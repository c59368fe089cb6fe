"""Shared test builders: records, secrets, an in-memory keyring, running the real program, and
tokens seeded by `create`'s own command in the test's process (`seed_token`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
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


#: the real program as its console script starts it (`from oauthtok.launcher import main`),
#: named `oauthtok` in its messages; `python -m oauthtok` would add runpy's imports (~4 ms of
#: each of the suite's ~900 runs) and call itself "python -m oauthtok"
PROGRAM = (
    sys.executable,
    "-c",
    "import sys; sys.argv[0] = 'oauthtok'; from oauthtok.launcher import main; sys.exit(main())",
)


def run_oauthtok(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real program in a subprocess, as scripts run it."""
    return subprocess.run(
        [*PROGRAM, *args],
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
    auth: str | None = None,
    in_process: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`oauthtok create` against the Authlib server (the `testidp`/`testfull` services of the
    `test_catalog` fixture), its client registered first (with the service's client
    authentication, or `auth`; "none" for a public client); the secret comes from the env.
    `in_process`: run by `create_in_process` (see `seed_token`)."""
    if auth is None:
        auth = "client_secret_basic" if service in ("oidc", "testidp") else "client_secret_post"
    extra = {} if client_scope is None else {"scope": client_scope}
    secret = None if auth == "none" else FLOW_SECRET
    server.add_client(f"client-{name}", secret, auth, **extra)
    args = (name, "--service", service, "--client-id", f"client-{name}", "--scopes", scopes,
            "--timeout", "30", *args)  # fmt: skip
    env = {"OAUTHTOK_CLIENT_SECRET": FLOW_SECRET, **(env or {})}
    if in_process:
        return create_in_process(*args, env=env)
    return run_oauthtok("create", *args, env=env, timeout=timeout)


def seed_token(server: Any, *args: str, **options: Any) -> None:
    """A token to test what comes after `create` (token, refresh, status, exec…): made by
    `create_token`'s command in this process; fails the test when it cannot be made."""
    result = create_token(server, *args, in_process=True, **options)
    assert result.returncode == 0, result.stderr


def follow_in_process(url: str) -> bool:
    """The scripted browser's `follow` mode in this process (for `webbrowser.open`): approve at
    the authorization server, then come back to the loopback listener with its redirect."""
    from tests.fake_browser import get

    status, headers, _ = get(url)
    location = headers.get("location")
    if status in (301, 302, 303, 307) and location:
        get(location)
    return True


def create_in_process(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`oauthtok create ARGS` run in this process by Typer's runner, with the scripted browser's
    `follow` in a thread of this process: the same command, sign-in (authorization endpoint,
    loopback listener, code exchange) and store as the real program's, without starting two
    Pythons. For tests whose subject comes after the token exists; what `create` itself does
    as a program (its output, the browser it starts, Ctrl-C) is tested with `run_oauthtok`.
    `test_seed.py` holds what this stores equal to what the real program stores."""
    return run_in_process("create", *args, input=input, env=env)


def run_in_process(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`oauthtok ARGS` run in this process by Typer's runner (the full program's commands and
    its error boundary; a browser it opens is the scripted browser's `follow`, in a thread):
    for tests whose subject is what a command decides and prints, not the program around it
    (its start, its fast path, its exit, signals), which `run_oauthtok` tests. The fast and
    the full path answer alike: test_e2e and test_contract hold them equal."""
    import traceback
    import webbrowser
    from unittest import mock

    from typer.testing import CliRunner

    from oauthtok.cli.app import app

    # a browser can be opened (else a sign-in falls back to a headless flow); it is this one
    env = {"BROWSER": os.environ.get("BROWSER") or "in-process", **(env or {})}
    with mock.patch.object(webbrowser, "open", follow_in_process):
        result = CliRunner().invoke(app, list(args), input=input, env=env)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)


def expire_token(name: str) -> None:
    """Make a stored token's access token expired now (its secrets and its record), as waiting
    out its lifetime would, without the wait."""
    from oauthtok.store import TokenStore

    store = TokenStore()
    record = store.get(name)
    past = time.time() - 1
    store.save_tokens(record, store.read_tokens(record).evolve(expires_at=past), expires_at=past)


def keyring_items() -> list[str]:
    """Every oauthtok entry in the test's Secret Service (their ids, sorted: the order of a
    search is the service's own)."""

    import secretstorage

    with contextlib.closing(secretstorage.dbus_init()) as bus:
        collection = secretstorage.get_default_collection(bus)
        items = collection.search_items({"service": "oauthtok"})
        return sorted(item.get_attributes()["username"] for item in items)


def read_only(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`oauthtok list|show|services|show-help ARGS` answered in this process by the code the
    program answers them with (`fastpath.quick`, before Typer), stdout and stderr captured: for
    tests that read what another command stored. What these commands do as a program (exit
    codes, a closed pipe, the same answer as Typer's) is tested with `run_oauthtok`."""
    import io

    from oauthtok.fastpath import quick

    out, err = io.StringIO(), io.StringIO()
    before = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})  # only these keys, put back after
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = quick(args[0], list(args[1:]))
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert code is not None, f"the program would not answer {args} before Typer"
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def shown(name: str = "t", env: dict[str, str] | None = None) -> dict[str, Any]:
    """`oauthtok show NAME --json` (by `read_only`)."""
    import json

    result = read_only("show", name, "--json", env=env)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def listed(env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """`oauthtok list --json` (by `read_only`)."""
    import json

    result = read_only("list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def internal_session(raw: Any) -> str:
    """A plain session on a jeepney connection, for gnome-keyring's internal interface (it
    takes master passwords). ReadAlias goes first and must name a collection: gnome-keyring
    aborts on an OpenSession handled before it registered the client (see
    `freedesktop._alias_then_session`)."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.wrappers import unwrap_msg

    svc = DBusAddress(
        "/org/freedesktop/secrets", "org.freedesktop.secrets", "org.freedesktop.Secret.Service"
    )
    for _ in range(2):
        (alias,) = unwrap_msg(
            raw.send_and_get_reply(new_method_call(svc, "ReadAlias", "s", ("default",)))
        )
        if alias != "/":
            break
    else:
        raise AssertionError("the test Secret Service has no default collection")
    _, path = unwrap_msg(
        raw.send_and_get_reply(new_method_call(svc, "OpenSession", "sv", ("plain", ("s", ""))))
    )
    return str(path)


@contextlib.contextmanager
def locked_collection(password: str) -> Iterator[None]:
    """The test Secret Service's default collection locked for the block, then unlocked again
    without a prompt (gnome-keyring's internal interface takes the password)."""
    import secretstorage
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg

    with contextlib.closing(secretstorage.dbus_init()) as conn:
        collection = secretstorage.get_default_collection(conn)
        collection.lock()
        try:
            yield
        finally:
            with open_dbus_connection("SESSION") as raw:
                path = internal_session(raw)
                internal = DBusAddress(
                    "/org/freedesktop/secrets",
                    "org.freedesktop.secrets",
                    "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface",
                )
                secret = (path, b"", password.encode(), "text/plain")
                unwrap_msg(
                    raw.send_and_get_reply(
                        new_method_call(
                            internal,
                            "UnlockWithMasterPassword",
                            "o(oayays)",
                            (collection.collection_path, secret),
                        )
                    )
                )


#: modules the fast path must not import (`imported_modules` says which a run imported)
HEAVY = (
    "typer",
    "rich",
    "click",
    "httpx",
    "keyring",
    "secretstorage",
    "cryptography",  # the encrypted session's secrets are opened by dhsession's own AES
    "filelock",
    "platformdirs",
    "pydantic",
    "oauthtok.cli",
    "oauthtok.store",
    "dataclasses",
)


def imported_modules(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the real entry point with -X importtime; the set of modules it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *PROGRAM[1:], *args],
        capture_output=True,
        text=True,
    )
    return result, imported_names(result.stderr)


def imported_names(stderr: str) -> set[str]:
    """The modules a run with -X importtime (or PYTHONPROFILEIMPORTTIME=1) imported."""
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:")
    }
