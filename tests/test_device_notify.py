"""Re-authorization without a terminal: `reauthorize NAME --flow device --notify` returns at once;
the notify command gets the code and (here) approves it at the Authlib server, as a person
would from a phone; a detached process stores the new tokens."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import create_in_process, run_in_process, run_oauthtok

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")

SECRET = "device-notify-secret"


def data_dir() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "oauthtok"


def record() -> dict[str, Any]:
    (path,) = (data_dir() / "tokens").glob("*.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def until(condition: Callable[[], bool], what: str, deadline: float = 30) -> None:
    """Wait for an event another process causes, up to a deadline."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"no {what} within {deadline} s")
        time.sleep(0.05)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "notified.jsonl"


def notify_script(tmp_path: Path, log: Path, approve: bool) -> None:
    """[notify] runs this: it records its environment and, for a device code, opens the link
    with the code in it (the verification page approves it)."""
    script = tmp_path / "phone.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os, urllib.request
            env = {{k: v for k, v in os.environ.items() if k.startswith("OAUTHTOK_")}}
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps(env) + "\\n")
            if {approve!r} and env["OAUTHTOK_EVENT"] == "device-code":
                urllib.request.urlopen(env["OAUTHTOK_VERIFICATION_URI_COMPLETE"], timeout=10)
            """
        )
    )
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "oauthtok"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(f'[notify]\ncommand = ["{sys.executable}", "{script}"]\n')


def events(log: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def needing_reauthorization(server: Any) -> None:
    """A token whose grant the provider has since revoked (made in the browser: the server
    is headless now)."""
    server.add_client("client-srv", SECRET, "client_secret_post")
    server.knobs.expires_in = 30  # every `token` is due
    created = create_in_process(  # `create`'s command in this process
        "srv", "--service", "testfull", "--client-id", "client-srv",
        "--scopes", "offline_access mail.read", env={"OAUTHTOK_CLIENT_SECRET": SECRET},
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    server.revoke_all()
    assert run_oauthtok("token", "srv").returncode == 4
    server.knobs.expires_in = 3600
    server.knobs.device_manual = True  # from now on only a visit to the page approves a code


def ended(pid: int) -> bool:
    """The detached waiter has exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def pid_of(stderr: str) -> int:
    found = re.search(r"background process \(pid (\d+)\)", stderr)
    assert found, stderr
    return int(found.group(1))


def test_a_phone_approves_and_the_background_stores_the_tokens(
    auth_server: Any, tmp_path: Path, log: Path
) -> None:
    notify_script(tmp_path, log, approve=True)
    needing_reauthorization(auth_server)
    before = record()
    started = time.monotonic()
    result = run_oauthtok("reauthorize", "srv", "--flow", "device", "--notify")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10  # returns at once, not after the approval
    assert "The notify command was given the code." in result.stderr
    until(lambda: record()["obtained_at"] != before["obtained_at"], "stored tokens")
    (sent,) = [e for e in events(log) if e["OAUTHTOK_EVENT"] == "device-code"]
    (device,) = auth_server.devices.values()
    user_code = device["user_code"]
    assert sent["OAUTHTOK_USER_CODE"] == user_code and user_code in result.stderr
    assert sent["OAUTHTOK_VERIFICATION_URI"] == f"{auth_server.base_url}/device"
    assert sent["OAUTHTOK_VERIFICATION_URI_COMPLETE"].endswith(f"user_code={user_code}")
    assert sent["OAUTHTOK_NAME"] == "srv" and "--flow device --notify" in sent["OAUTHTOK_FIX"]
    # stored exactly as an interactive reauthorize: new tokens, the flow, no reauth flag
    after = record()
    assert not after["needs_reauth"] and after["last_error"] is None
    assert after["flow"] == "device" and after["has_refresh_token"]
    token = run_oauthtok("token", "srv")
    assert token.returncode == 0 and token.stdout.startswith("at-")
    assert run_oauthtok("refresh", "srv", "--force").returncode == 0  # with the stored secret


def test_the_waiter_holds_no_secret_and_an_expired_code_is_notified(
    auth_server: Any, tmp_path: Path, log: Path
) -> None:
    notify_script(tmp_path, log, approve=False)  # nobody approves
    needing_reauthorization(auth_server)
    auth_server.knobs.device_expires_in = 2
    before = record()
    result = run_oauthtok("reauthorize", "srv", "--flow", "device", "--notify")
    assert result.returncode == 0, result.stderr
    pid = pid_of(result.stderr)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except FileNotFoundError:
        pytest.fail("the background process ended before the code expired")
    assert argv.split(b"\0")[-3:] == [b"oauthtok", b"device-wait", b""]
    (device_code,) = auth_server.devices
    for secret in (SECRET.encode(), device_code.encode()):
        assert secret not in argv and secret not in environ
    until(lambda: len(events(log)) == 3, "third notification")
    told, code, again = events(log)
    assert told["OAUTHTOK_EVENT"] == "reauthorization-needed"  # by `token`
    assert code["OAUTHTOK_EVENT"] == "device-code"
    assert again["OAUTHTOK_EVENT"] == "reauthorization-needed"  # again, despite `every`
    assert "the code expired before it was approved" in again["OAUTHTOK_REASON"]
    assert record()["needs_reauth"] and record()["obtained_at"] == before["obtained_at"]
    assert run_oauthtok("token", "srv").returncode == 4


def test_a_code_approved_after_a_renewal_at_a_terminal_is_not_kept(
    auth_server: Any, tmp_path: Path, log: Path
) -> None:
    """A reauthorize at a terminal while the phone's code is pending wins: the code approved
    later does not overwrite it (its grant is revoked, nobody is told anything)."""
    import urllib.request

    notify_script(tmp_path, log, approve=False)
    needing_reauthorization(auth_server)
    result = run_oauthtok("reauthorize", "srv", "--flow", "device", "--notify")
    assert result.returncode == 0, result.stderr
    pid = pid_of(result.stderr)
    (device,) = auth_server.devices.values()
    at_terminal = run_in_process("reauthorize", "srv", "--flow", "browser")
    assert at_terminal.returncode == 0, at_terminal.stderr
    renewed = record()
    revoked = len(auth_server.knobs.revoked)
    page = f"{auth_server.base_url}/device?user_code={device['user_code']}"
    urllib.request.urlopen(page, timeout=10).close()  # the phone, late
    until(lambda: ended(pid), "end of the background wait")
    assert record() == renewed
    assert len(auth_server.knobs.revoked) > revoked  # the late grant, revoked
    assert [e["OAUTHTOK_EVENT"] for e in events(log)] == ["reauthorization-needed", "device-code"]
    token = run_oauthtok("token", "srv")
    assert token.returncode == 0 and token.stdout.startswith("at-")


def waiter_payload(
    server: Any, tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch
) -> bytes:
    """`reauthorize srv --flow device --notify` in this process, its waiter not started: the
    payload the waiter would get, its code approved (as the phone would)."""
    import urllib.request

    from oauthtok import deviceauth

    notify_script(tmp_path, log, approve=False)
    needing_reauthorization(server)
    payloads: list[bytes] = []
    monkeypatch.setattr(deviceauth, "spawn", lambda payload: payloads.append(payload) or 4242)
    started = run_in_process("reauthorize", "srv", "--flow", "device", "--notify")
    assert started.returncode == 0, started.stderr
    (device,) = server.devices.values()
    page = f"{server.base_url}/device?user_code={device['user_code']}"
    urllib.request.urlopen(page, timeout=10).close()
    return payloads[0]


def test_a_waiter_whose_metadata_is_not_written_keeps_the_tokens_and_says_so(
    auth_server: Any, tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oauthtok import deviceauth
    from oauthtok.errors import StoreError
    from oauthtok.store import TokenStore

    payload = waiter_payload(auth_server, tmp_path, log, monkeypatch)
    before = record()
    write_record = TokenStore._write_record

    def full_disk(self: TokenStore, record: Any) -> None:
        raise StoreError("No space left on device")

    monkeypatch.setattr(TokenStore, "_write_record", full_disk)
    assert deviceauth.wait(payload) == 1
    monkeypatch.setattr(TokenStore, "_write_record", write_record)
    assert record() == before  # the metadata as it was
    told = events(log)[-1]
    assert told["OAUTHTOK_EVENT"] == "refresh-failed"
    assert "were saved, but its metadata was not" in told["OAUTHTOK_REASON"]
    assert told["OAUTHTOK_FIX"] == "oauthtok refresh srv --force"
    assert auth_server.knobs.revoked == []  # the new grant is the stored one
    assert run_oauthtok("refresh", "srv", "--force").returncode == 0  # as the fix says
    assert not record()["needs_reauth"]


def test_a_token_deleted_while_its_code_waits_leaves_no_live_grant(
    auth_server: Any, tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oauthtok import deviceauth, oauth

    payload = waiter_payload(auth_server, tmp_path, log, monkeypatch)
    poll = oauth.poll_device_token

    def approved_then_deleted(*args: Any, **kwargs: Any) -> Any:
        grant = poll(*args, **kwargs)
        assert run_in_process("delete", "srv", "--yes").returncode == 0
        return grant

    monkeypatch.setattr(oauth, "poll_device_token", approved_then_deleted)
    revoked = len(auth_server.knobs.revoked)
    assert deviceauth.wait(payload) == 1
    assert len(auth_server.knobs.revoked) > revoked  # the grant of the approved code
    assert all(token.revoked for token in auth_server.tokens.values())


def test_notify_needs_the_device_flow_and_a_notify_command(
    auth_server: Any, tmp_path: Path, log: Path
) -> None:
    needing_reauthorization(auth_server)
    no_command = run_oauthtok("reauthorize", "srv", "--flow", "device", "--notify")
    assert no_command.returncode == 2 and "[notify] command" in no_command.stderr
    notify_script(tmp_path, log, approve=True)
    browser = run_oauthtok("reauthorize", "srv", "--flow", "browser", "--notify")
    assert browser.returncode == 2 and "--flow device" in browser.stderr
    assert auth_server.devices == {} and events(log) == []  # no code was asked for


def test_the_waiter_is_a_hidden_command() -> None:
    import typer.main

    from oauthtok import deviceauth
    from oauthtok.cli.app import app
    from oauthtok.cli.background_cmds import WAIT_COMMAND

    group: Any = typer.main.get_command(app)
    assert WAIT_COMMAND == deviceauth.WAIT_COMMAND and group.commands[WAIT_COMMAND].hidden
    assert WAIT_COMMAND not in run_oauthtok("--help").stdout
