"""Telling the user in time: run the configured `[notify] command` for an event.

The command gets the event in its environment, never a token or a client secret:

    OAUTHTOK_EVENT     reauthorization-needed | lapses-soon | refresh-failed | device-code
    OAUTHTOK_NAME      the token's name           OAUTHTOK_SERVICE  its catalog service
    OAUTHTOK_ACCOUNT   the account (may be empty) OAUTHTOK_REASON   one line: why
    OAUTHTOK_FIX       the command that fixes it
    device-code only:  OAUTHTOK_VERIFICATION_URI, OAUTHTOK_USER_CODE,
                       OAUTHTOK_VERIFICATION_URI_COMPLETE (when the provider gave one)

Every other OAUTHTOK_* variable of oauthtok's own environment (OAUTHTOK_CLIENT_SECRET among
them) is removed. Values are one line of printable text (control characters become spaces).

Each (token, event) is raised at most once within `[notify] every`; a `device-code` event for a
new code is always raised. A command that could not run, failed or timed out told nobody: the
same event is raised again after `RETRY_FAILED` (or `every`, if shorter), not a day later.

The state is a 0600 JSON file in the data folder, changed atomically under a lock. The command
runs with a deadline, no stdin, and its output captured (it never reaches oauthtok's stdout).
Nothing here raises: a failing command gives an `Outcome` with a `problem` line that the caller
may print as a warning; oauthtok's exit code stays its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from oauthtok.config import CommandSpec
from oauthtok.kinds import DEVICE_CODE, EVENTS
from oauthtok.lifecycle import Evaluation

if TYPE_CHECKING:
    from oauthtok.models import TokenRecord

STATE_FILE = "notify-state.json"
STATE_VERSION = 1
LOCK_NAME = "notify.lock"
DEFAULT_TIMEOUT = 30.0
LOCK_TIMEOUT = 10.0
MAX_VALUE = 1000
#: how much of the command's output is kept (for the warning line)
OUTPUT_CAP = 16 * 1024
#: after a notification that failed, how soon the same event may be raised again (at most
#: `every`): soon enough that a passing outage still tells the user the same day, seldom
#: enough that a broken command does not run (and wait its timeout) at every `token` call
RETRY_FAILED = 3600


def clean(value: str | None, limit: int = MAX_VALUE) -> str:
    """One line of printable text: control characters (newlines too) become spaces."""
    if not value:
        return ""
    text = "".join(c if c.isprintable() else " " for c in value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Event:
    kind: str
    token_id: str
    name: str
    service: str
    account: str | None = None
    reason: str = ""
    fix: str = ""
    verification_uri: str | None = None
    user_code: str | None = None
    verification_uri_complete: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENTS:
            raise ValueError(f"unknown event {self.kind!r}")

    @classmethod
    def about(cls, record: TokenRecord, kind: str, reason: str, fix: str, **extra: Any) -> Event:
        """The event `kind` for a stored token (`extra`: a device code's fields)."""
        return cls(kind, record.id, record.name, record.service, record.account, reason, fix,
                   **extra)  # fmt: skip

    def environment(self) -> dict[str, str]:
        """The OAUTHTOK_* variables the command receives."""
        env = {
            "OAUTHTOK_EVENT": self.kind,
            "OAUTHTOK_NAME": clean(self.name),
            "OAUTHTOK_SERVICE": clean(self.service),
            "OAUTHTOK_ACCOUNT": clean(self.account),
            "OAUTHTOK_REASON": clean(self.reason),
            "OAUTHTOK_FIX": clean(self.fix),
        }
        if self.kind == DEVICE_CODE:
            env["OAUTHTOK_VERIFICATION_URI"] = clean(self.verification_uri)
            env["OAUTHTOK_USER_CODE"] = clean(self.user_code)
            if self.verification_uri_complete:
                env["OAUTHTOK_VERIFICATION_URI_COMPLETE"] = clean(self.verification_uri_complete)
        return env

    def fingerprint(self) -> str | None:
        """For device-code events: which code this is (a hash; a new code is always sent)."""
        if self.kind != DEVICE_CODE:
            return None
        material = f"{self.verification_uri}\0{self.user_code}".encode()
        return hashlib.sha256(material).hexdigest()[:16]


@dataclass(frozen=True)
class Outcome:
    """What happened: `ran` the command, or `skipped` (why), and any `problem` (one line)."""

    ran: bool
    skipped: str | None = None
    returncode: int | None = None
    problem: str | None = None


class Notifier:
    def __init__(
        self,
        command: CommandSpec | None,
        every: float,
        data_dir: str,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = DEFAULT_TIMEOUT,
        lock_timeout: float = LOCK_TIMEOUT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.command = command
        self.every = every
        self.data_dir = data_dir
        self.clock = clock
        self.timeout = timeout
        self.lock_timeout = lock_timeout
        self.environ = environ
        self.state_path = os.path.join(data_dir, STATE_FILE)

    # -- state --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        from oauthtok.lockfile import held

        lock_dir = os.path.join(self.data_dir, "locks")
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
        with held(os.path.join(lock_dir, LOCK_NAME), self.lock_timeout):
            yield

    def _read_state(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            with open(self.state_path, "rb") as f:
                data = json.loads(f.read(4 * 1024 * 1024))
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: at worst one notification too many
        sent = data.get("sent") if isinstance(data, dict) else None
        if not isinstance(sent, dict) or data.get("version") != STATE_VERSION:
            return {}
        return {
            k: {e: dict(r) for e, r in v.items() if isinstance(r, dict)}
            for k, v in sent.items()
            if isinstance(v, dict)
        }

    def _write_state(self, sent: Mapping[str, Mapping[str, Any]]) -> None:
        from oauthtok.filestore import write_atomic

        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        data = {"version": STATE_VERSION, "sent": sent}
        write_atomic(self.state_path, json.dumps(data, indent=1).encode())

    def _claim(self, event: Event, now: float) -> bool:
        """Under the lock: True (and recorded) when this event may be raised now."""
        with self._locked():
            sent = self._read_state()
            # forget what no longer limits anything
            for token_id in list(sent):
                for kind in list(sent[token_id]):
                    at = sent[token_id][kind].get("at")
                    if not isinstance(at, int | float) or now - at >= self._window(
                        sent[token_id][kind]
                    ):
                        del sent[token_id][kind]
                if not sent[token_id]:
                    del sent[token_id]
            previous = sent.get(event.token_id, {}).get(event.kind)
            if previous is not None and previous.get("code") == event.fingerprint():
                return False
            record: dict[str, Any] = {"at": now}
            if event.fingerprint() is not None:
                record["code"] = event.fingerprint()
            sent.setdefault(event.token_id, {})[event.kind] = record
            self._write_state(sent)
            return True

    def _window(self, record: Mapping[str, Any]) -> float:
        """How long a sent event holds back the next one: `every`, shorter after a failure."""
        return self._retry_window() if record.get("failed") is True else self.every

    def _retry_window(self) -> float:
        return min(self.every, RETRY_FAILED)

    def _mark_failed(self, event: Event, at: float) -> bool:
        """The claim made at `at` told nobody: let the event be raised again sooner. False
        when that could not be recorded (or the claim is gone: forgotten, claimed again)."""
        with contextlib.suppress(Exception), self._locked():
            sent = self._read_state()
            record = sent.get(event.token_id, {}).get(event.kind)
            if record is None or record.get("at") != at:
                return False  # forgotten (the token recovered) or claimed again meanwhile
            record["failed"] = True
            self._write_state(sent)
            return True
        return False

    def forget(self, token_id: str, kinds: Iterable[str] | None = None) -> None:
        """Drop what was sent for a token (it recovered, or was deleted): its next problem is
        raised at once. Never raises."""
        with contextlib.suppress(Exception), self._locked():
            sent = self._read_state()
            if token_id not in sent:
                return
            if kinds is None:
                del sent[token_id]
            else:
                for kind in kinds:
                    sent[token_id].pop(kind, None)
                if not sent[token_id]:
                    del sent[token_id]
            self._write_state(sent)

    # -- raising ------------------------------------------------------------------------------
    def notify(self, event: Event) -> Outcome:
        """Run the command for `event` unless it ran for this token and event within `every`."""
        if self.command is None:
            return Outcome(ran=False, skipped="no [notify] command in config.toml")
        now = self.clock()
        try:
            claimed = self._claim(event, now)
        except Exception as exc:
            return Outcome(
                ran=False,
                problem=f"cannot record notifications in {self.state_path} "
                f"({type(exc).__name__}); not notifying",
            )
        if not claimed:
            return Outcome(ran=False, skipped="raised already within [notify] every")
        outcome = self._run(event)
        if outcome.problem is not None:
            from oauthtok.durations import format_duration

            if self._mark_failed(event, now):
                again = format_duration(self._retry_window())
                outcome = replace(
                    outcome,
                    problem=f"{outcome.problem}; the first oauthtok run after {again} tries again",
                )
        return outcome

    def _run(self, event: Event) -> Outcome:
        from oauthtok.children import child_env, last_line, run_bounded

        assert self.command is not None
        shown = clean(self.command.display(), 80)
        env = child_env(event.environment(), base=self.environ)
        try:
            done = run_bounded(
                self.command.to_argv(), env=env, timeout=self.timeout, cap=OUTPUT_CAP
            )
        except OSError as exc:
            return Outcome(
                ran=False,
                problem=f"cannot run the notify command `{shown}` ({exc.strerror or exc}); "
                "fix [notify] command in config.toml",
            )
        except Exception as exc:  # never raise
            return Outcome(ran=False, problem=f"the notify command failed ({type(exc).__name__})")
        if done.timed_out:
            return Outcome(
                ran=True,
                problem=f"the notify command `{shown}` did not finish within "
                f"{self.timeout:g} s; it was stopped",
            )
        if done.returncode != 0:
            why = last_line(done.stderr) or last_line(done.stdout)
            return Outcome(
                ran=True,
                returncode=done.returncode,
                problem=f"the notify command `{shown}` failed (exit {done.returncode}"
                + (f": {why}" if why else "")
                + ")",
            )
        return Outcome(ran=True, returncode=0)


def event_for(evaluation: Evaluation, service: str, account: str | None) -> Event | None:
    """The event a `status` evaluation raises (None when it is ok)."""
    if evaluation.event is None:
        return None
    return Event(
        kind=evaluation.event,
        token_id=evaluation.token_id,
        name=evaluation.name,
        service=service,
        account=account,
        reason=evaluation.reason,
        fix=evaluation.fix or "",
    )
