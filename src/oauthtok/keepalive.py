"""The keep-alive: `refresh --all --idle-for DURATION` refreshes only the grants whose refresh
token has not been used for that long, so that grants in daily use cost nothing, while an idle
Microsoft grant (which lapses after 90 days unused) is used before it lapses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from oauthtok import grants, lifecycle

if TYPE_CHECKING:
    from oauthtok.models import TokenRecord


@dataclass(frozen=True)
class Plan:
    #: refresh these (their refresh token has been idle for at least the duration)
    idle: list[TokenRecord] = field(default_factory=list)
    #: used recently: nothing to do
    recent: list[TokenRecord] = field(default_factory=list)
    #: a refresh cannot keep these alive: (record, why)
    skipped: list[tuple[TokenRecord, str]] = field(default_factory=list)


def plan(records: Iterable[TokenRecord], idle_for: float, now: float) -> Plan:
    result = Plan()
    for record in records:
        grant = grants.to_grant(record)
        if lifecycle.is_idle(grant, idle_for, now):
            result.idle.append(record)
        elif grant.needs_reauth:
            result.skipped.append((record, "needs re-authorization"))
        elif grant.flow == "client-credentials":
            result.skipped.append((record, "client credentials: nothing to keep alive"))
        elif not grant.has_refresh_token:
            result.skipped.append((record, "no refresh token: nothing to keep alive"))
        else:
            result.recent.append(record)
    return result
