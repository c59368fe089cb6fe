"""Raising the notifications of `[notify]` from the use cases: `token`, `refresh`, `status` and
the background device wait of `reauthorize --notify` (`notify` runs the command and keeps the
rate limit; this module decides which event a failure is, and for which token).

Nothing here raises: a notification that cannot be raised (no command, an invalid config, a
failing command) never changes what the command itself answers. The functions return the one
line to print as a warning, or None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oauthtok.errors import OauthtokError, ReauthorizationRequired, command
from oauthtok.kinds import REAUTHORIZATION_NEEDED, REFRESH_FAILED

if TYPE_CHECKING:
    from oauthtok import notify
    from oauthtok.config import Config
    from oauthtok.lifecycle import Evaluation
    from oauthtok.models import TokenRecord


def notifier(data_dir: str | None = None, cfg: Config | None = None) -> notify.Notifier | None:
    """The configured notifier, or None (no `[notify] command`, or a config that cannot be read:
    the command that loads it for its own needs reports that)."""
    from oauthtok import paths
    from oauthtok.config import load_config

    try:
        cfg = cfg or load_config()
    except OauthtokError:
        return None
    if cfg.notify.command is None:
        return None
    from oauthtok import notify  # (only then: hashlib and its dataclasses cost ~7 ms)

    return notify.Notifier(cfg.notify.command, cfg.notify.every, data_dir or paths.data_dir())


def raise_event(event: notify.Event, to: notify.Notifier | None = None) -> str | None:
    """Raise one event (at most once per token and event within `every`); a warning line
    (which event, for which token, and why) when it could not be told."""
    to = to or notifier()
    if to is None:
        return None
    what = f"the {event.kind} notification for {event.name!r} was not sent"
    try:
        outcome = to.notify(event)
    except Exception as exc:  # never let telling fail the command
        return f"{what} ({type(exc).__name__})"
    return None if outcome.problem is None else f"{what}: {outcome.problem}"


def failure_event(record: TokenRecord, exc: OauthtokError) -> notify.Event:
    """The event a failed renewal raises: the grant is gone, or the renewal failed for now."""
    if isinstance(exc, ReauthorizationRequired):
        kind, fix = REAUTHORIZATION_NEEDED, command("reauthorize", record.name)
    else:
        kind, fix = REFRESH_FAILED, command("refresh", record.name)
    from oauthtok import notify

    return notify.Event.about(record, kind, str(exc), fix)


def after_failure(record: TokenRecord | None, exc: BaseException) -> str | None:
    """After `token` or `refresh` failed for `record`: raise reauthorization-needed or
    refresh-failed (other failures, such as a locked keyring, are no renewal failures)."""
    from oauthtok.errors import ProviderError

    if record is None or not isinstance(exc, ReauthorizationRequired | ProviderError):
        return None
    return raise_event(failure_event(record, exc))


#: what a successful renewal proves wrong (a lapse ahead stays ahead)
RENEWAL_EVENTS = (REAUTHORIZATION_NEEDED, REFRESH_FAILED)


def after_success(
    record: TokenRecord,
    to: notify.Notifier | None = None,
    kinds: tuple[str, ...] | None = RENEWAL_EVENTS,
) -> None:
    """The grant works again: its next problem of these `kinds` (None: any) is raised at once,
    not only after `every`."""
    to = to or notifier()
    if to is not None:
        to.forget(record.id, kinds)


def for_evaluation(
    evaluation: Evaluation, record: TokenRecord, to: notify.Notifier | None
) -> str | None:
    """`status`: raise what a token's state calls for; forget what an ok token raised."""
    if to is None:
        return None
    from oauthtok import notify

    event = notify.event_for(evaluation, record.service, record.account)
    if event is None:  # (a lapse ahead may still be ahead: another window may warn of it)
        after_success(record, to)
        return None
    return raise_event(event, to)
