"""Fixtures: private user paths for every test, a private Secret Service for the session,
an in-memory keyring for unit tests, and the Authlib server plus a scripted browser."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import MemoryKeyring

TESTS = Path(__file__).parent
REQUIRE_SECRET_SERVICE = os.environ.get("OAUTHTOK_REQUIRE_SECRET_SERVICE") == "1"
REQUIRE_DOVECOT = os.environ.get("OAUTHTOK_REQUIRE_DOVECOT") == "1"


def pytest_configure(config: pytest.Config) -> None:
    """Compile oauthtok's source to bytecode once, before the workers start; let pytest keep
    the test modules it rewrites.

    The suite runs hundreds of `oauthtok` processes on the editable install. An
    installed oauthtok has its bytecode (pip compiles at install), but under
    PYTHONDONTWRITEBYTECODE=1 (set on this machine and in CI) nothing writes it for the source
    tree, so each process would compile every module it imports, again: ~50 ms for `create`.
    The same setting keeps pytest from caching the test modules whose assertions it rewrites:
    every worker rewrote all of them on every run (about 4 s of CPU each). The test process
    writes its own bytecode again (to `__pycache__`, as without the setting); the environment
    its children inherit is unchanged.
    """
    sys.dont_write_bytecode = False
    _let_ctrl_c_through()
    if hasattr(config, "workerinput"):  # an xdist worker: the controller did it
        return
    import compileall

    compileall.compile_dir(TESTS.parent / "src" / "oauthtok", quiet=1)
    _rewrite_test_modules_once(config)


def _rewrite_test_modules_once(config: pytest.Config) -> None:
    """Rewrite the test modules' assertions once, here, before the workers start: on a fresh
    clone (CI) each of the 4 workers rewrote all of them itself, at the same time (~1.6 s of
    CPU each, ~5 s of the suite's wall time on 2 cores). The cache is pytest's own, written
    as pytest writes it; this uses pytest's internal functions for it, so a pytest that moved
    them only costs that time again (nothing else changes)."""
    try:
        from _pytest.assertion import rewrite

        state = config.stash[rewrite.assertstate_key]
        todo = []
        for path in [*sorted(TESTS.glob("test_*.py")), TESTS / "conftest.py"]:
            pyc = rewrite.get_cache_dir(path) / (path.name[:-3] + rewrite.PYC_TAIL)
            if rewrite._read_pyc(path, pyc) is None:
                todo.append((path, pyc))
        if not todo:
            return
        todo[0][1].parent.mkdir(exist_ok=True)
        child = None  # half of them in a forked copy of this process: both cores work
        if hasattr(os, "fork") and len(todo) > 4:
            child = os.fork()
            todo = todo[::2] if child == 0 else todo[1::2]
        try:
            for path, pyc in todo:
                source_hash, code = rewrite._rewrite_test(path, config)
                rewrite._write_pyc(state, code, source_hash, pyc)
        finally:
            if child == 0:
                os._exit(0)  # the copy ends here, whatever happened
        if child:
            os.waitpid(child, 0)
    except Exception:  # pytest changed inside: every worker rewrites them, as it would anyway
        return


def _let_ctrl_c_through() -> None:
    """A shell that starts the suite as a background job (`pytest &`, a script's `&`) ignores
    SIGINT for it, and an ignored signal stays ignored across exec: the programs the tests
    start could not be interrupted, and the Ctrl-C tests would wait out their timeouts. A
    handled signal goes back to the default at exec, so handling it here restores Ctrl-C for
    every child (the tests press it themselves; no terminal reaches a background job)."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def isolated_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every user path of oauthtok (and of keyring's config) points into tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    for var in (
        "OAUTHTOK_SERVICES",
        "OAUTHTOK_CLIENT_SECRET",
        "OAUTHTOK_DATA_DIR",
        "OAUTHTOK_CONFIG_DIR",
        "OAUTHTOK_NO_FAST_PATH",
        "OAUTHTOK_STORE",
        "OAUTHTOK_DEBUG",
        "PYTHON_KEYRING_BACKEND",
        "BROWSER",
        "NO_COLOR",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OAUTHTOK_KEYRING_TIMEOUT", "20")
    return tmp_path


def _missing_secret_service(reason: str) -> None:
    if REQUIRE_SECRET_SERVICE:
        pytest.fail(f"OAUTHTOK_REQUIRE_SECRET_SERVICE=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def secret_service() -> Iterator[dict[str, str]]:
    """A private D-Bus session bus with an unlocked gnome-keyring, for the whole run."""
    from tests.secret_service_daemon import Unavailable, missing_daemon, private_secret_service

    if os.environ.get("WITH_SECRET_SERVICE") == "1":  # already under with-secret-service
        yield {
            "address": os.environ["DBUS_SESSION_BUS_ADDRESS"],
            "password": os.environ.get("WITH_SECRET_SERVICE_PASSWORD", ""),
        }
        return
    problem = missing_daemon()
    if problem:
        _missing_secret_service(problem)
    mp = pytest.MonkeyPatch()
    try:
        with private_secret_service() as service:
            mp.setenv("DBUS_SESSION_BUS_ADDRESS", service["address"])
            yield service
    except Unavailable as exc:
        pytest.fail(str(exc))
    finally:
        mp.undo()


@pytest.fixture
def keyring_env(secret_service: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The real Secret Service for this test (and its subprocesses)."""
    from tests.secret_service_daemon import ended_early

    died = ended_early()
    if died:  # seen once in many runs (gnome-keyring gone): say so, not "no usable keyring"
        pytest.fail(f"the private Secret Service is gone: {died}")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", secret_service["address"])
    return secret_service


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    return MemoryKeyring()


# -- the authorization server and the scripted browser ------------------------------------------


@pytest.fixture
def auth_server() -> Iterator[Any]:
    from tests.authserver import TestAuthServer

    server = TestAuthServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def test_catalog(auth_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `testidp` service pointing at the Authlib server, via OAUTHTOK_SERVICES."""
    path = tmp_path / "testidp.toml"
    path.write_text(
        f"""
[services.testidp]
title = "Test identity provider (Authlib)"
authorize_url = "{auth_server.base_url}/authorize"
token_url = "{auth_server.base_url}/token"
introspection_url = "{auth_server.base_url}/introspect"
redirect_uri = "http://127.0.0.1/callback"
refresh_scope = "offline_access"
token_auth = "client_secret_basic"
help = "Test server."
[services.testidp.scopes]
"mail.read" = "Read mail"
"mail.send" = "Send mail"
"offline_access" = "Refresh"
"profile" = "Profile"
"openid" = "Who you are"

[services.testfull]
title = "Test identity provider with device flow and revocation"
authorize_url = "{auth_server.base_url}/authorize"
token_url = "{auth_server.base_url}/token"
device_authorization_url = "{auth_server.base_url}/device_authorization"
revocation_url = "{auth_server.base_url}/revoke"
redirect_uri = "http://127.0.0.1/callback"
refresh_scope = "offline_access"
token_auth = "client_secret_post"
[services.testfull.scopes]
"mail.read" = "Read mail"
"offline_access" = "Refresh"
"openid" = "Who you are"
"""
    )
    monkeypatch.setenv("OAUTHTOK_SERVICES", str(path))
    return path


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$BROWSER is the scripted browser; returns the file it logs to."""
    script = tmp_path / "browser"
    # -I -S: the standard library only (no site-packages to set up), as a browser shares
    # nothing with oauthtok
    script.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -I -S "{TESTS / "fake_browser.py"}" "$@"\n'
    )
    script.chmod(0o755)
    log = tmp_path / "browser.log"
    monkeypatch.setenv("BROWSER", str(script))
    monkeypatch.setenv("FAKE_BROWSER_LOG", str(log))
    monkeypatch.setenv("FAKE_BROWSER_MODE", "follow")
    return log


# -- a real IMAP and submission server (Dovecot) and the authorization server it trusts ---------


@pytest.fixture(scope="session")
def mail_auth() -> Iterator[Any]:
    """The authorization server Dovecot trusts, for the whole session."""
    from tests.authserver import TestAuthServer
    from tests.dovecot import MAIL_CLIENT

    server = TestAuthServer().start()
    server.add_client(*MAIL_CLIENT, "client_secret_basic", scope="mail.read mail.send")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot(mail_auth: Any) -> Iterator[Any]:
    """Dovecot on loopback ports for the whole session, validating tokens at `mail_auth`."""
    from tests.dovecot import Unavailable, running_dovecot

    try:
        with running_dovecot(mail_auth) as server:
            yield server
    except Unavailable as exc:
        if REQUIRE_DOVECOT:
            pytest.fail(f"OAUTHTOK_REQUIRE_DOVECOT=1 but {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def trust(dovecot: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SSL_CERT_FILE names the throwaway CA that signed Dovecot's certificate."""
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.tls.ca_file))
    return Path(dovecot.tls.ca_file)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection made (modules, test items, fixtures' definitions) lives as long as the
    run: the cyclic garbage collector stops scanning it again at every full collection, and
    collects the young generation less often (measured: ~9 % of a worker's CPU went to it)."""
    import gc

    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
