"""Fixtures: private user paths for every test, a private Secret Service for the session,
an in-memory keyring for unit tests, and the Authlib server plus a scripted browser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keyring.backend import KeyringBackend

TESTS = Path(__file__).parent
REQUIRE_SECRET_SERVICE = os.environ.get("OAUTHTOK_REQUIRE_SECRET_SERVICE") == "1"

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={dir}</listen><auth>EXTERNAL</auth>
  <policy context="default"><allow send_destination="*" eavesdrop="true"/>
  <allow eavesdrop="true"/><allow own="*"/></policy></busconfig>
"""
KEYRING_PASSWORD = "oauthtok-tests"


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
        "OAUTHTOK_DEBUG",
        "PYTHON_KEYRING_BACKEND",
        "BROWSER",
        "NO_COLOR",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OAUTHTOK_KEYRING_TIMEOUT", "20")
    return tmp_path


def _default_collection_unlocked() -> bool:
    from jeepney import DBusAddress, Properties, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg

    try:
        with open_dbus_connection("SESSION") as conn:
            svc = DBusAddress(
                "/org/freedesktop/secrets",
                "org.freedesktop.secrets",
                "org.freedesktop.Secret.Service",
            )
            msg = new_method_call(svc, "ReadAlias", "s", ("default",))
            (path,) = unwrap_msg(conn.send_and_get_reply(msg, timeout=2))
            if path == "/":
                return False
            coll = DBusAddress(path, "org.freedesktop.secrets", "org.freedesktop.Secret.Collection")
            ((_, locked),) = unwrap_msg(conn.send_and_get_reply(Properties(coll).get("Locked")))
            return not locked
    except Exception:
        return False


def _missing_secret_service(reason: str) -> None:
    if REQUIRE_SECRET_SERVICE:
        pytest.fail(f"OAUTHTOK_REQUIRE_SECRET_SERVICE=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def secret_service() -> Iterator[dict[str, str]]:
    """A private D-Bus session bus with an unlocked gnome-keyring, for the whole run."""
    if os.environ.get("WITH_SECRET_SERVICE") == "1":  # already under with-secret-service
        yield {
            "address": os.environ["DBUS_SESSION_BUS_ADDRESS"],
            "password": os.environ.get("WITH_SECRET_SERVICE_PASSWORD", ""),
        }
        return
    for exe in ("dbus-daemon", "gnome-keyring-daemon"):
        if not shutil.which(exe):
            _missing_secret_service(f"{exe} not installed (apt-get install dbus-x11 gnome-keyring)")
    tmp = tempfile.mkdtemp(prefix="oauthtok-secret-service-")
    os.makedirs(f"{tmp}/run", mode=0o700)
    os.makedirs(f"{tmp}/data", mode=0o700)
    Path(f"{tmp}/bus.conf").write_text(BUS_CONF.format(dir=f"{tmp}/run"))
    procs: list[subprocess.Popen[bytes]] = []
    mp = pytest.MonkeyPatch()
    try:
        bus = subprocess.Popen(
            [
                "dbus-daemon",
                f"--config-file={tmp}/bus.conf",
                "--nofork",
                "--nosyslog",
                "--nopidfile",
                "--print-address=1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        procs.append(bus)
        assert bus.stdout is not None
        address = bus.stdout.readline().decode().strip()
        if not address:
            pytest.fail("dbus-daemon did not start")
        mp.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DISPLAY", "WAYLAND_DISPLAY", "GNOME_KEYRING_CONTROL")
        }
        env.update(XDG_DATA_HOME=f"{tmp}/data", XDG_RUNTIME_DIR=f"{tmp}/run")
        gk = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        procs.append(gk)
        assert gk.stdin is not None
        gk.stdin.write(KEYRING_PASSWORD.encode())  # no newline: read verbatim
        gk.stdin.close()
        deadline = time.monotonic() + 15
        while not _default_collection_unlocked():
            if gk.poll() is not None or time.monotonic() > deadline:
                pytest.fail("gnome-keyring-daemon did not offer an unlocked default collection")
            time.sleep(0.02)
        yield {"address": address, "password": KEYRING_PASSWORD}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        mp.undo()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def keyring_env(secret_service: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The real Secret Service for this test (and its subprocesses)."""
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", secret_service["address"])
    return secret_service


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
redirect_uri = "http://127.0.0.1/callback"
refresh_scope = "offline_access"
token_auth = "client_secret_basic"
help = "Test server."
[services.testidp.scopes]
"mail.read" = "Read mail"
"mail.send" = "Send mail"
"offline_access" = "Refresh"
"profile" = "Profile"
"""
    )
    monkeypatch.setenv("OAUTHTOK_SERVICES", str(path))
    return path


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$BROWSER is the scripted browser; returns the file it logs to."""
    script = tmp_path / "browser"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{TESTS / "fake_browser.py"}" "$@"\n')
    script.chmod(0o755)
    log = tmp_path / "browser.log"
    monkeypatch.setenv("BROWSER", str(script))
    monkeypatch.setenv("FAKE_BROWSER_LOG", str(log))
    monkeypatch.setenv("FAKE_BROWSER_MODE", "follow")
    return log


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
