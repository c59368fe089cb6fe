"""`status`, the notifications and the keep-alive, end to end: the real program, the real Secret
Service, the Authlib server, and a real notify command that records what it was given. The
JSON reports whose fields are checked come from `status`'s command run in the test process
(`status()`); its text, --quiet, exit codes and the keep-alive run as the program."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import create_in_process, run_in_process, run_oauthtok

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")

SECRET = "status-secret"
DAY = 86400


def create(server: Any, name: str, *extra: str, env: dict[str, str] | None = None) -> None:
    """A token to watch: `create`'s command in this process (tests.helpers.create_in_process)."""
    server.add_client(f"client-{name}", SECRET, "client_secret_basic")
    result = create_in_process(
        name, "--service", "testidp", "--client-id", f"client-{name}",
        "--scopes", "openid offline_access mail.read", *extra,
        env={"OAUTHTOK_CLIENT_SECRET": SECRET, **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def config_dir() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "oauthtok"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "notified.jsonl"


@pytest.fixture
def notify_config(tmp_path: Path, log: Path) -> Path:
    """[notify] runs a script that appends its OAUTHTOK_* environment to `log`."""
    script = tmp_path / "notify.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os
            env = {{k: v for k, v in os.environ.items() if k.startswith("OAUTHTOK_")}}
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps(env) + "\\n")
            """
        )
    )
    config_dir().mkdir(parents=True, exist_ok=True)
    path = config_dir() / "config.toml"
    path.write_text(f'[notify]\ncommand = ["{sys.executable}", "{script}"]\nevery = "1d"\n')
    return path


def events(log: Path) -> list[dict[str, str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def rules(text: str) -> None:
    """One more catalog layer for the whole test."""
    path = Path(os.environ["HOME"]) / "rules.toml"
    path.write_text(text)
    os.environ["OAUTHTOK_SERVICES"] += os.pathsep + str(path)


def age_grant(name: str, days: float) -> None:
    """Pretend the grant was made (and its refresh token last used) `days` ago: the record as
    an older oauthtok would have kept it, without waiting."""
    data = Path(os.environ["XDG_DATA_HOME"]) / "oauthtok"
    token_id = json.loads((data / "names.json").read_text())["names"][name]
    path = data / "tokens" / f"{token_id}.json"
    record = json.loads(path.read_text())
    then = time.time() - days * DAY
    record.update(obtained_at=then, refresh_rotated_at=then, refresh_used_at=None,
                  created_at=then, refreshed_at=then)  # fmt: skip
    path.write_text(json.dumps(record))


def status(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """`status --json`'s exit code and report: its command in this process (`run_in_process`);
    the tests run the real program's `status` (text, --quiet, exit codes) besides."""
    result = run_in_process("status", "--json", *args, env=env)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def states(report: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["status"] for t in report["tokens"]}


@pytest.fixture(autouse=True)
def restore_services() -> Any:
    saved = os.environ.get("OAUTHTOK_SERVICES")
    yield
    if saved is not None:
        os.environ["OAUTHTOK_SERVICES"] = saved


def test_status_predicts_lapses_and_exits_0_9_4(
    auth_server: Any, notify_config: Path, log: Path
) -> None:
    rules("[services.testidp]\nrefresh_token_idle_days = 30\n")
    auth_server.knobs.id_token_claims = {"sub": "1", "email": "me@example.com"}
    create(auth_server, "fine")
    create(auth_server, "idle")
    code, report = status()
    assert code == 0, report
    env = report["environment"]
    assert env["secret_store"]["ok"] and env["secret_store"]["backend"] == "keyring"
    assert env["data_folder"]["mode"] == "0700" and env["catalog"]["ok"]
    assert states(report) == {"fine": "ok", "idle": "ok"}
    assert report["tokens"][0]["account"] == "me@example.com"
    assert events(log) == []

    age_grant("idle", 24.5)  # lapses in 5 days and a half: within the 14-day window
    code, report = status()
    assert code == 9 and states(report) == {"fine": "ok", "idle": "attention"}
    idle = report["tokens"][1]
    assert "lapses in 5 days" in idle["reason"] and idle["fix"] == "oauthtok reauthorize idle"
    assert abs(idle["lapses_at"] - (time.time() + 5.5 * DAY)) < 60
    assert run_oauthtok("status", "--warn-days", "3").returncode == 0  # outside a 3-day window
    quiet = run_oauthtok("status", "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (9, "", "")
    (sent,) = events(log)  # once within `every`, however often status runs
    assert sent["OAUTHTOK_EVENT"] == "lapses-soon" and sent["OAUTHTOK_NAME"] == "idle"
    assert sent["OAUTHTOK_ACCOUNT"] == "me@example.com"
    assert sent["OAUTHTOK_FIX"] == "oauthtok reauthorize idle"

    age_grant("idle", 31)  # lapsed a day ago
    code, report = status()
    assert code == 4 and states(report)["idle"] == "needs-reauthorization"
    assert "lapsed 24 hours ago" in report["tokens"][1]["reason"]
    plain = run_oauthtok("status")
    assert plain.returncode == 4
    assert "idle: needs-reauthorization: lapsed" in plain.stdout
    assert "fix: oauthtok reauthorize idle" in plain.stdout
    assert [e["OAUTHTOK_EVENT"] for e in events(log)] == ["lapses-soon", "reauthorization-needed"]

    # a refresh keeps it alive again; status is fine, and forgets what it raised
    assert run_oauthtok("refresh", "idle", "--force").returncode == 0
    code, report = status("idle")
    assert code == 0 and [t["name"] for t in report["tokens"]] == ["idle"]
    assert run_oauthtok("status", "nope").returncode == 3


def test_status_check_proves_each_grant(auth_server: Any, notify_config: Path, log: Path) -> None:
    create(auth_server, "a")
    create(auth_server, "b")
    code, report = status("--check")
    assert code == 0 and [t["check"]["ok"] for t in report["tokens"]] == [True, True]
    assert auth_server.knobs.refresh_requests == 2
    # b's grant is revoked at the provider: only a check finds out
    for token in auth_server.tokens.values():
        if token.client_id == "client-b":
            token.revoked = True
    assert status()[0] == 0
    code, report = status("--check")
    assert code == 4 and states(report) == {"a": "ok", "b": "needs-reauthorization"}
    assert "invalid_grant" in report["tokens"][1]["check"]["detail"]
    assert [(e["OAUTHTOK_EVENT"], e["OAUTHTOK_NAME"]) for e in events(log)] == [
        ("reauthorization-needed", "b")
    ]
    # the provider is down: a failed check is exit 6 and a refresh-failed event
    auth_server.knobs.token_endpoint_status = 503
    code, report = status("--check", "a")
    assert code == 6 and "HTTP 503" in report["tokens"][0]["check"]["detail"]
    assert events(log)[-1]["OAUTHTOK_EVENT"] == "refresh-failed"


def test_status_exit_8_when_the_store_is_unusable(auth_server: Any, tmp_path: Path) -> None:
    create(auth_server, "a")
    key = tmp_path / "key.sh"
    key.write_text("#!/bin/sh\necho 'locked' >&2\nexit 1\n")
    key.chmod(0o700)
    config_dir().mkdir(parents=True, exist_ok=True)
    (config_dir() / "config.toml").write_text(
        f'[store]\nbackend = "file"\nkey_command = ["{key}"]\n'
    )
    code, report = status()
    assert code == 8
    store = report["environment"]["secret_store"]
    assert store["backend"] == "file" and "key command" in store["problem"]
    text = run_oauthtok("status")
    assert text.returncode == 8 and "problem: the key command" in text.stdout


def test_status_exit_7_for_an_invalid_config_or_catalog(auth_server: Any) -> None:
    create(auth_server, "a")
    config_dir().mkdir(parents=True, exist_ok=True)
    (config_dir() / "config.toml").write_text("[notify]\nevery = 3\n")
    code, report = status()
    assert code == 7 and not report["environment"]["config"]["ok"]
    assert states(report) == {"a": "ok"}  # the tokens are still shown
    (config_dir() / "config.toml").unlink()
    rules("[services.testidp]\nrefresh_token_idle_days = -1\n")
    code, report = status()
    assert code == 7 and "refresh_token_idle_days" in report["environment"]["catalog"]["problem"]


def test_token_and_refresh_raise_each_event_once(
    auth_server: Any, notify_config: Path, log: Path
) -> None:
    auth_server.knobs.expires_in = 30  # every `token` is due
    create(auth_server, "mail")
    auth_server.knobs.token_endpoint_status = 503
    for _ in range(2):
        result = run_oauthtok("token", "mail")
        assert result.returncode == 6 and result.stdout == ""
    assert [e["OAUTHTOK_EVENT"] for e in events(log)] == ["refresh-failed"]
    assert "HTTP 503" in events(log)[0]["OAUTHTOK_REASON"]
    assert events(log)[0]["OAUTHTOK_FIX"] == "oauthtok refresh mail"
    auth_server.knobs.token_endpoint_status = None
    auth_server.revoke_all()
    for args in (["token", "mail"], ["refresh", "mail"], ["token", "mail"]):
        assert run_oauthtok(*args).returncode == 4
    assert [e["OAUTHTOK_EVENT"] for e in events(log)] == [
        "refresh-failed",
        "reauthorization-needed",
    ]
    assert "invalid_grant" in events(log)[1]["OAUTHTOK_REASON"]
    for sent in events(log):
        assert not any(v.startswith(("at-", "rt-")) or SECRET in v for v in sent.values())


def test_a_failing_notify_command_never_changes_the_exit_code(auth_server: Any) -> None:
    config_dir().mkdir(parents=True, exist_ok=True)
    (config_dir() / "config.toml").write_text(
        "[notify]\ncommand = \"echo 'no route to the mail server' >&2; exit 3\"\n"
    )
    auth_server.knobs.expires_in = 30
    create(auth_server, "mail")
    auth_server.revoke_all()
    result = run_oauthtok("token", "mail")
    assert result.returncode == 4 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(
        "oauthtok: warning: the reauthorization-needed notification for 'mail' was not sent: "
    )
    assert "no route to the mail server" in lines[0]
    assert lines[0].endswith("; the first oauthtok run after 1h tries again")
    assert lines[1].startswith("oauthtok: error: the provider rejected the renewal")
    quiet = run_oauthtok("status", "--quiet")
    assert quiet.returncode == 4 and quiet.stdout == "" and quiet.stderr == ""  # held back
    state = Path(os.environ["XDG_DATA_HOME"]) / "oauthtok" / "notify-state.json"
    state.unlink()  # as if the hour had passed: `status` (cron) raises it and says it failed
    quiet = run_oauthtok("status", "--quiet")
    assert quiet.returncode == 4 and quiet.stdout == ""
    assert quiet.stderr.startswith(
        "oauthtok: warning: the reauthorization-needed notification for 'mail' was not sent: "
    )


def test_keep_alive_refreshes_only_idle_grants(auth_server: Any) -> None:
    create(auth_server, "busy")
    create(auth_server, "idle")
    create(auth_server, "dead")
    age_grant("idle", 8)
    age_grant("dead", 8)
    auth_server.revoke_all()
    assert run_oauthtok("refresh", "dead", "--force").returncode == 4  # known to need consent
    before = auth_server.knobs.refresh_requests
    for token in auth_server.tokens.values():
        token.revoked = False
    result = run_oauthtok("refresh", "--all", "--idle-for", "7d")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "dead: needs re-authorization; not refreshed" in lines
    assert "busy: used within 1w; nothing to do" in lines
    assert any(line.startswith("idle: refreshed, valid for") for line in lines)
    assert auth_server.knobs.refresh_requests - before == 1
    again = run_oauthtok("refresh", "--all", "--idle-for", "7d")
    assert "2 tokens: used within 1w; nothing to do" in again.stdout
    assert auth_server.knobs.refresh_requests - before == 1
    bad = run_oauthtok("refresh", "--all", "--idle-for", "7")
    assert bad.returncode == 2 and "--idle-for: '7' has no unit" in bad.stderr
