"""The cyclic garbage collector: off from the launcher's first step, on again (what exists
frozen) before a command waits for a person."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from oauthtok import collector
from tests.helpers import seed_token

#: the real program, saying at its exit whether the collector was on
PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("collector on:", gc.isenabled(), file=sys.stderr))
sys.argv = ["oauthtok", *sys.argv[1:]]
from oauthtok.launcher import main
sys.exit(main())
"""


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The collector as the launcher leaves it; this process's own state back afterwards."""
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.enable()


def test_the_program_runs_its_commands_with_the_collector_off() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "schedule", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "collector on: False" in result.stderr


@pytest.mark.usefixtures("collector_off")
def test_waiting_turns_it_on_with_what_exists_frozen() -> None:
    collector.waiting()
    assert gc.isenabled() and gc.get_freeze_count() > 0
    gc.unfreeze()
    collector.waiting()  # already on: nothing frozen again
    assert gc.isenabled() and gc.get_freeze_count() == 0


@pytest.mark.usefixtures("keyring_env", "test_catalog", "browser", "collector_off")
@pytest.mark.parametrize("flow", ["browser", "device"])
def test_a_sign_in_waits_with_the_collector_on(auth_server: Any, flow: str) -> None:
    auth_server.knobs.device_pending_polls = 0
    seed_token(auth_server, "--flow", flow)
    assert gc.isenabled() and gc.get_freeze_count() > 0


@pytest.mark.usefixtures("collector_off")
def test_the_detached_device_waiter_polls_with_the_collector_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from oauthtok import deviceauth, oauth

    def approved(*args: Any, **kwargs: Any) -> Any:
        assert gc.isenabled(), "polled with the collector off"
        return "grant"

    monkeypatch.setattr(oauth, "poll_device_token", approved)
    device = oauth.DeviceAuthorization("d", "u", "https://example.test/device", None, 60, 1)
    record: Any = type("Record", (), {"endpoints": None})()
    client: Any = None
    assert deviceauth._poll(client, record, client, device, expires_at=1e12) == "grant"
