"""A cron-style environment (`env -i`: no DBUS_SESSION_BUS_ADDRESS) finds the user's session bus
at $XDG_RUNTIME_DIR/bus: the real `oauthtok token` on the fast path, the full path and a
refresh, against the real Secret Service and the Authlib server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import create_in_process, run_oauthtok

pytestmark = pytest.mark.usefixtures("test_catalog", "browser")


def cron_run(runtime: Path | None, *args: str, extra: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`oauthtok ARGS` as cron runs it: a bare environment, HOME, PATH and the runtime folder."""
    env = {
        "HOME": os.environ["HOME"],
        "PATH": "/usr/bin:/bin",
        "XDG_DATA_HOME": os.environ["XDG_DATA_HOME"],
        "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"],
        **({"XDG_RUNTIME_DIR": str(runtime)} if runtime else {}),
        **(extra or {}),
    }
    return subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "oauthtok",
         *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_cron_finds_the_session_bus(
    keyring_env: dict[str, str], auth_server: Any, tmp_path: Path
) -> None:
    auth_server.add_client("client-cron", "cron-secret", "client_secret_basic")
    created = create_in_process(  # `create`'s command in this process
        "cron", "--service", "testidp", "--client-id", "client-cron",
        "--scopes", "offline_access mail.read", "--client-secret-stdin", input="cron-secret\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    expected = run_oauthtok("token", "cron").stdout
    real = keyring_env["address"].split("path=", 1)[1].split(",", 1)[0]
    runtime = tmp_path / "xdg-run"
    runtime.mkdir(mode=0o700)
    try:
        os.link(real, runtime / "bus")  # the same socket, where logind would put it
    except OSError as exc:
        pytest.skip(f"cannot hard-link the bus socket here: {exc}")

    fast = cron_run(runtime, "token", "cron")
    assert (fast.returncode, fast.stdout, fast.stderr) == (0, expected, "")
    full = cron_run(runtime, "token", "cron", extra={"OAUTHTOK_NO_FAST_PATH": "1"})
    assert (full.returncode, full.stdout, full.stderr) == (0, expected, "")
    refreshed = cron_run(runtime, "token", "cron", "--min-valid", "999999")
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout != expected and auth_server.knobs.refresh_requests == 1
    assert run_oauthtok("token", "cron").stdout == refreshed.stdout  # saved in the keyring

    if not os.path.exists(f"/run/user/{os.getuid()}/bus"):  # no bus anywhere: exit 8, and why
        empty = tmp_path / "empty-run"
        empty.mkdir(mode=0o700)
        lost = cron_run(empty, "token", "cron")
        assert lost.returncode == 8 and "no D-Bus session bus" in lost.stderr
