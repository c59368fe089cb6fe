"""Notifications: a real command gets each event once, with a clean environment and no token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from oauthtok.config import CommandSpec
from oauthtok.kinds import DEVICE_CODE
from oauthtok.lifecycle import DAY, Grant, LapseRules, evaluate
from oauthtok.notify import Event, Notifier, Outcome, event_for

TOKEN_ID = "c" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "notified.jsonl"


@pytest.fixture
def recorder(tmp_path: Path, log: Path) -> CommandSpec:
    """A notify command (argv form) that appends its OAUTHTOK_* environment to `log`."""
    script = tmp_path / "notify.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os, sys
            env = {{k: v for k, v in os.environ.items()}}
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps(env) + "\\n")
            print("this goes to the captured stdout, not oauthtok's")
            """
        )
    )
    return CommandSpec((sys.executable, str(script)))


def runs(log: Path) -> list[dict[str, str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def event(kind: str = "reauthorization-needed", **changes: str) -> Event:
    values = {
        "kind": kind,
        "token_id": TOKEN_ID,
        "name": "work mail",
        "service": "microsoft",
        "account": "me@example.com",
        "reason": "invalid_grant: AADSTS700082: The refresh token has expired",
        "fix": "oauthtok reauthorize 'work mail'",
    }
    values.update(changes)
    return Event(**values)  # type: ignore[arg-type]


def test_each_event_once_within_every(
    tmp_path: Path, recorder: CommandSpec, log: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    notifier = Notifier(recorder, DAY, str(tmp_path / "data"), clock=clock)
    first = notifier.notify(event())
    assert first == Outcome(ran=True, returncode=0)
    assert notifier.notify(event()).skipped == "raised already within [notify] every"
    assert notifier.notify(event("lapses-soon")).ran  # another event: its own limit
    clock.now += DAY - 1
    assert not notifier.notify(event()).ran
    clock.now += 1
    assert notifier.notify(event()).ran  # `every` passed
    # another process sees the same state
    again = Notifier(recorder, DAY, str(tmp_path / "data"), clock=clock)
    assert not again.notify(event()).ran
    again.forget(TOKEN_ID)  # the token recovered: its next problem is raised at once
    assert again.notify(event()).ran
    assert [r["OAUTHTOK_EVENT"] for r in runs(log)] == [
        "reauthorization-needed",
        "lapses-soon",
        "reauthorization-needed",
        "reauthorization-needed",
    ]
    state = tmp_path / "data" / "notify-state.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    for folder in (tmp_path / "data", tmp_path / "data" / "locks"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "captured stdout" not in capfd.readouterr().out


def test_the_environment_has_the_event_and_no_secret(
    tmp_path: Path, recorder: CommandSpec, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHTOK_CLIENT_SECRET", "CS-secret-client")
    monkeypatch.setenv("OAUTHTOK_DATA_DIR", str(tmp_path / "data"))
    notifier = Notifier(recorder, DAY, str(tmp_path / "data"))
    nasty = event(reason="line one\nline two\x1b[31m red\x00", account=None)
    notifier.notify(nasty)
    (env,) = runs(log)
    ours = {k: v for k, v in env.items() if k.startswith("OAUTHTOK_")}
    assert ours == {
        "OAUTHTOK_EVENT": "reauthorization-needed",
        "OAUTHTOK_NAME": "work mail",
        "OAUTHTOK_SERVICE": "microsoft",
        "OAUTHTOK_ACCOUNT": "",
        "OAUTHTOK_REASON": "line one line two [31m red",
        "OAUTHTOK_FIX": "oauthtok reauthorize 'work mail'",
    }
    assert "CS-secret-client" not in json.dumps(env)
    assert env.get("PATH") == os.environ["PATH"]  # notify-send, mail and curl need the rest


def test_device_code_events(tmp_path: Path, recorder: CommandSpec, log: Path) -> None:
    notifier = Notifier(recorder, DAY, str(tmp_path / "data"), clock=Clock())
    code = event(
        DEVICE_CODE,
        reason="approve the sign-in",
        verification_uri="https://microsoft.com/devicelogin",
        user_code="ABCD-EFGH",
        verification_uri_complete="https://microsoft.com/devicelogin?code=ABCD-EFGH",
    )
    assert notifier.notify(code).ran
    assert not notifier.notify(code).ran  # the same code: once
    assert notifier.notify(event(DEVICE_CODE, verification_uri="https://x", user_code="NEW")).ran
    first, second = runs(log)
    assert first["OAUTHTOK_USER_CODE"] == "ABCD-EFGH"
    assert first["OAUTHTOK_VERIFICATION_URI"] == "https://microsoft.com/devicelogin"
    assert first["OAUTHTOK_VERIFICATION_URI_COMPLETE"].endswith("?code=ABCD-EFGH")
    assert second["OAUTHTOK_USER_CODE"] == "NEW"
    assert "OAUTHTOK_VERIFICATION_URI_COMPLETE" not in second


def test_failing_hanging_and_missing_commands_never_raise(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    failing = Notifier(CommandSpec(("echo 'smtp: refused' >&2; exit 3",), shell=True), DAY, data)
    outcome = failing.notify(event())
    assert outcome.ran and outcome.returncode == 3
    assert (
        outcome.problem
        == "the notify command `echo 'smtp: refused' >&2; exit 3` failed (exit 3: smtp: refused); "
        "the first oauthtok run after 1h tries again"
    )
    started = time.monotonic()
    hanging = Notifier(CommandSpec(("sleep 30",), shell=True), DAY, data, timeout=0.5)
    outcome = hanging.notify(event("lapses-soon"))
    assert outcome.problem is not None and "did not finish within 0.5 s" in outcome.problem
    assert time.monotonic() - started < 5
    missing = Notifier(CommandSpec((str(tmp_path / "nope"),)), DAY, data)
    outcome = missing.notify(event("refresh-failed"))
    assert (
        not outcome.ran and outcome.problem and "cannot run the notify command" in outcome.problem
    )
    unconfigured = Notifier(None, DAY, data).notify(event())
    assert unconfigured == Outcome(ran=False, skipped="no [notify] command in config.toml")


def test_a_failed_notification_is_tried_again_sooner(tmp_path: Path, log: Path) -> None:
    """A command that failed told nobody: the event comes again after an hour (or `every`, if
    shorter), not after `every`; once one succeeds, `every` holds again."""
    clock = Clock()
    broken = tmp_path / "broken"
    broken.touch()
    command = CommandSpec(
        (f"test -e {broken} && {{ echo 'smtp: refused' >&2; exit 3; }}; echo sent >> {log}",),
        shell=True,
    )
    notifier = Notifier(command, DAY, str(tmp_path / "data"), clock=clock)
    failed = notifier.notify(event())
    assert failed.returncode == 3 and failed.problem is not None
    assert failed.problem.endswith(
        "(exit 3: smtp: refused); the first oauthtok run after 1h tries again"
    )
    clock.now += 3599
    assert notifier.notify(event()).skipped == "raised already within [notify] every"
    assert notifier.notify(event("lapses-soon")).ran is True  # (and failed: its own record)
    broken.unlink()  # the outage is over
    clock.now += 1
    assert notifier.notify(event()) == Outcome(ran=True, returncode=0)
    clock.now += 3600
    assert notifier.notify(event()).skipped == "raised already within [notify] every"
    assert log.read_text() == "sent\n"
    # a shorter `every` stays the limit; a command that cannot run at all counts as failed
    short = Notifier(CommandSpec((str(tmp_path / "nope"),)), 600, str(tmp_path / "s"), clock=clock)
    outcome = short.notify(event())
    assert outcome.problem is not None and outcome.problem.endswith("run after 10m tries again")
    clock.now += 599
    assert not short.notify(event()).ran and short.notify(event()).problem is None
    clock.now += 1
    assert short.notify(event()).problem is not None  # ran (and failed) again


def test_the_retry_is_promised_only_when_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = CommandSpec(("exit 3",), shell=True)
    notifier = Notifier(command, DAY, str(tmp_path / "data"), clock=Clock())
    monkeypatch.setattr(Notifier, "_mark_failed", lambda self, event, at: False)
    outcome = notifier.notify(event())
    assert outcome.problem == "the notify command `exit 3` failed (exit 3)"


def test_a_failure_marks_only_its_own_claim(tmp_path: Path, recorder: CommandSpec) -> None:
    """The token recovered (`forget`) or another process claimed the event again while the
    command ran: the failure changes nothing of that."""
    clock = Clock()
    data = tmp_path / "data"
    notifier = Notifier(recorder, DAY, str(data), clock=clock)
    notifier._mark_failed(event(), clock.now)  # forgotten meanwhile: nothing is recorded
    assert not (data / "notify-state.json").exists()
    assert notifier.notify(event()).ran
    notifier._mark_failed(event(), clock.now - 5)  # another claim's time: not ours
    state = json.loads((data / "notify-state.json").read_text())
    assert state["sent"][TOKEN_ID]["reauthorization-needed"] == {"at": clock.now}


def test_a_command_that_backgrounds_a_child_returns_at_once(tmp_path: Path, log: Path) -> None:
    """`notify-send … &` style commands: oauthtok does not wait for what they leave behind."""
    command = CommandSpec((f"(sleep 20; echo late >> {log}) & echo sent",), shell=True)
    started = time.monotonic()
    outcome = Notifier(command, DAY, str(tmp_path / "data")).notify(event())
    assert outcome == Outcome(ran=True, returncode=0)
    assert time.monotonic() - started < 5


def test_corrupt_state_is_replaced(tmp_path: Path, recorder: CommandSpec, log: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "notify-state.json").write_text("{not json")
    assert Notifier(recorder, DAY, str(data)).notify(event()).ran
    assert json.loads((data / "notify-state.json").read_text())["version"] == 1


def test_concurrent_processes_notify_once(tmp_path: Path, recorder: CommandSpec, log: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(
        textwrap.dedent(
            f"""
            import sys
            from oauthtok.config import CommandSpec
            from oauthtok.notify import Event, Notifier
            n = Notifier(CommandSpec({recorder.argv!r}), 86400, sys.argv[1])
            e = Event("lapses-soon", {TOKEN_ID!r}, "work mail", "microsoft")
            print(n.notify(e).ran)
            """
        )
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(tmp_path / "data")], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(results) == ["False", "False", "False", "True"]
    assert len(runs(log)) == 1


def test_events_from_status() -> None:
    now = 1_800_000_000.0
    grant = Grant("d" * 32, "mail", "microsoft", obtained_at=now - 85 * DAY, has_refresh_token=True)
    evaluation = evaluate(grant, LapseRules(idle_days=90), now)
    made = event_for(evaluation, "microsoft", "me@example.com")
    assert (
        made is not None and made.kind == "lapses-soon" and made.fix == "oauthtok reauthorize mail"
    )
    fine = evaluate(grant, LapseRules(), now)
    assert event_for(fine, "microsoft", None) is None
    with pytest.raises(ValueError):
        Event("no-such-event", "x", "y", "z")
