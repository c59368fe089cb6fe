"""The life of a grant: when it was obtained and last used, when it will lapse, what to say.

Pure functions over small dataclasses; the caller maps its stored metadata onto `Grant` (see
`Grant.from_json`, which reads a TokenRecord's JSON with the fields proposed for issue 11) and
the catalog's rules onto `LapseRules`. Nothing here reads a clock: `now` is always passed in.

Where a grant's end comes from:
- the provider's own answer: `refresh_token_expires_in` (GitHub Apps) or `refresh_expires_in`
  (Keycloak; 0 there means "no limit") in a token response → `refresh_expires_at`;
- the catalog's `refresh_token_idle_days` (Microsoft: 90): the refresh token lapses when unused
  for that long, counted from its last use (or rotation, or the grant);
- the catalog's `refresh_token_max_days` (Google apps in "Testing": 7): the grant ends that long
  after consent, however often it is used. When the service declares a `testing` parameter,
  this rule applies only to tokens whose `testing` parameter says yes;
- no refresh token at all (and not client credentials): the grant ends with the access token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from oauthtok.durations import format_human
from oauthtok.errors import command
from oauthtok.frozen import build

TYPE_CHECKING = False  # typing costs ~4 ms to import: `list` and `show` answer without it
if TYPE_CHECKING:
    from typing import Any

DAY = 86400.0
DEFAULT_WARN_DAYS = 14
#: the `--param` that says a Google app is in "Testing"
TESTING_PARAM = "testing"
_YES = frozenset({"1", "true", "yes", "y", "on", "testing"})
#: a provider's lifetime longer than this is nonsense, not a lifetime (10 years)
_MAX_LIFETIME = 10 * 365 * DAY

OK = "ok"
NEEDS_REAUTHORIZATION = "needs-reauthorization"
ATTENTION = "attention"

EXIT_OK = 0
EXIT_NEEDS_REAUTHORIZATION = 4
EXIT_STORE = 8
EXIT_ATTENTION = 9

EVENT_REAUTHORIZATION_NEEDED = "reauthorization-needed"
EVENT_LAPSES_SOON = "lapses-soon"


@dataclass(frozen=True)
class Grant:
    """What the lifecycle needs to know about one stored token (never a secret)."""

    token_id: str
    name: str
    service: str
    flow: str = "browser"
    account: str | None = None
    #: when the user last consented (create or reauthorize)
    obtained_at: float | None = None
    #: when the refresh token was last used successfully
    refresh_used_at: float | None = None
    #: when the provider last issued a new refresh token
    refresh_rotated_at: float | None = None
    #: the provider's own end of the refresh token, when it said
    refresh_expires_at: float | None = None
    #: the access token's expiry
    expires_at: float | None = None
    has_refresh_token: bool = False
    needs_reauth: bool = False
    #: one line: the last failed refresh (e.g. "invalid_grant: AADSTS700082 …")
    last_error: str | None = None
    last_error_at: float | None = None
    #: when the client secret or certificate expires, when known
    secret_expires_at: float | None = None

    @property
    def last_use(self) -> float | None:
        """The latest of: grant, last refresh, last rotation."""
        known = [
            t
            for t in (self.obtained_at, self.refresh_used_at, self.refresh_rotated_at)
            if t is not None
        ]
        return max(known) if known else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Grant:
        """From a TokenRecord's JSON (`to_json()` plus a "name"); records made before these
        fields existed count from `created_at`/`refreshed_at`."""
        get = data.get
        obtained = _number(get("obtained_at"))
        if obtained is None:
            obtained = _number(get("created_at")) or None
        used = _number(get("refresh_used_at"))
        if used is None:
            used = _number(get("refreshed_at"))
        return build(  # as cls(...), without the frozen __init__ (`list` does 1,000)
            cls,
            dict(
                token_id=str(get("id", "")),
                name=str(get("name", "")),
                service=str(get("service", "")),
                flow=str(get("flow") or "browser"),
                account=_text(get("account")),
                obtained_at=obtained,
                refresh_used_at=used,
                refresh_rotated_at=_number(get("refresh_rotated_at")),
                refresh_expires_at=_number(get("refresh_expires_at")),
                expires_at=_number(get("expires_at")),
                has_refresh_token=bool(get("has_refresh_token")),
                needs_reauth=bool(get("needs_reauth")),
                last_error=_text(get("last_error")),
                last_error_at=_number(get("last_error_at")),
                secret_expires_at=_number(get("secret_expires_at")),
            ),
        )


def _number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (booleans too)."""
    if value is None:  # (most fields, most of the time: `list` calls this ~9,000 times)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class LapseRules:
    """A service's refresh-token rules from the catalog, as they apply to one token."""

    idle_days: float | None = None
    max_days: float | None = None

    @classmethod
    def for_token(
        cls,
        idle_days: float | None,
        max_days: float | None,
        service_params: Mapping[str, str] | Iterable[str] = (),
        token_params: Mapping[str, str] | None = None,
    ) -> LapseRules:
        """The catalog's `refresh_token_idle_days` / `refresh_token_max_days` for a token.

        When the service declares a `testing` parameter, `max_days` applies only when the
        token's `testing` parameter says yes (Google: only apps in "Testing" lose their grants
        after 7 days); a service without that parameter has the limit for every token.
        """
        if max_days is not None and TESTING_PARAM in service_params:
            value = (token_params or {}).get(TESTING_PARAM, "")
            if value.strip().lower() not in _YES:
                max_days = None
        return cls(idle_days=idle_days, max_days=max_days)


@dataclass(frozen=True)
class Lapse:
    """When a grant is predicted to lapse (None: not predicted) and why, in a few words."""

    at: float | None
    reason: str
    rule: str | None = None  # provider | idle | max | access-token | None


def provider_refresh_expiry(response: Mapping[str, Any], now: float) -> float | None:
    """`refresh_token_expires_in` (GitHub Apps) or `refresh_expires_in` (Keycloak) of a token
    response as a Unix time; None when absent, zero (Keycloak: no limit) or nonsense."""
    for key in ("refresh_token_expires_in", "refresh_expires_in"):
        value = response.get(key)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if 0 < value <= _MAX_LIFETIME:
            return now + float(value)
        return None
    return None


def grant_changes(response: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Metadata to store after a grant (create, reauthorize, import is not a grant)."""
    return {
        "obtained_at": now,
        "refresh_used_at": None,
        "refresh_rotated_at": now if response.get("refresh_token") else None,
        "refresh_expires_at": provider_refresh_expiry(response, now),
        "needs_reauth": False,
        "last_error": None,
        "last_error_at": None,
    }


def refresh_changes(
    response: Mapping[str, Any], now: float, previous_expiry: float | None
) -> dict[str, Any]:
    """Metadata to store after a successful refresh: used now; rotated now when the provider
    sent a new refresh token (whose own lifetime replaces the old one)."""
    changes: dict[str, Any] = {
        "refresh_used_at": now,
        "needs_reauth": False,
        "last_error": None,
        "last_error_at": None,
    }
    expiry = provider_refresh_expiry(response, now)
    if response.get("refresh_token"):
        changes["refresh_rotated_at"] = now
        changes["refresh_expires_at"] = expiry
    else:
        changes["refresh_expires_at"] = expiry if expiry is not None else previous_expiry
    return changes


def failure_changes(message: str, now: float, permanent: bool) -> dict[str, Any]:
    """Metadata to store after a failed refresh: the reason (one line), and whether the grant
    is gone (`permanent`, e.g. invalid_grant) or may work again (network, 5xx)."""
    line = " ".join(message.split())[:300]
    changes: dict[str, Any] = {"last_error": line, "last_error_at": now}
    if permanent:
        changes["needs_reauth"] = True
    return changes


def predict_lapse(grant: Grant, rules: LapseRules) -> Lapse:
    """The earliest predicted end of the grant, with its reason."""
    if grant.flow == "client-credentials":
        return Lapse(None, "client credentials: no user grant to lapse")
    if not grant.has_refresh_token:
        if grant.expires_at is None:
            return Lapse(None, "no refresh token, and the access token does not expire")
        return Lapse(
            grant.expires_at, "no refresh token: ends with the access token", "access-token"
        )
    candidates: list[Lapse] = []
    if grant.refresh_expires_at is not None:
        candidates.append(
            Lapse(grant.refresh_expires_at, "the provider's refresh token lifetime", "provider")
        )
    last = grant.last_use
    if rules.idle_days is not None and last is not None:
        candidates.append(
            Lapse(
                last + rules.idle_days * DAY,
                f"refresh token unused for {rules.idle_days:g} days (the service's limit)",
                "idle",
            )
        )
    if rules.max_days is not None and grant.obtained_at is not None:
        candidates.append(
            Lapse(
                grant.obtained_at + rules.max_days * DAY,
                f"grants end {rules.max_days:g} days after consent (app in Testing)",
                "max",
            )
        )
    if not candidates:
        return Lapse(None, "no lapse predicted")
    return min(candidates, key=lambda lapse: lapse.at or 0.0)


def lapses_at(grant: Grant, rules: LapseRules) -> float | None:
    """For `list`/`show` and `"lapses_at"` in the JSON: a Unix time or None. The time of
    `predict_lapse` without building its reasons (`list` asks for 1,000); a property test
    holds the two equal."""
    if grant.flow == "client-credentials":
        return None
    if not grant.has_refresh_token:
        return grant.expires_at
    times = []
    if grant.refresh_expires_at is not None:
        times.append(grant.refresh_expires_at)
    last = grant.last_use
    if rules.idle_days is not None and last is not None:
        times.append(last + rules.idle_days * DAY)
    if rules.max_days is not None and grant.obtained_at is not None:
        times.append(grant.obtained_at + rules.max_days * DAY)
    return min(times) if times else None


def is_idle(grant: Grant, idle_for: float, now: float) -> bool:
    """`refresh --all --idle-for`: True when the refresh token has not been used for at least
    `idle_for` seconds. Grants without a refresh token, client credentials and grants already
    known to need re-authorization are never idle (a refresh cannot help them). A grant with
    no recorded use at all counts as idle."""
    if not grant.has_refresh_token or grant.needs_reauth or grant.flow == "client-credentials":
        return False
    last = grant.last_use
    return last is None or now - last >= idle_for


@dataclass(frozen=True)
class Evaluation:
    """One token's line in `status`."""

    token_id: str
    name: str
    state: str  # ok | needs-reauthorization | attention
    reason: str
    exit_code: int
    lapses_at: float | None
    #: the notification this state raises (None for ok)
    event: str | None = None
    #: the command that fixes it (None for ok)
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.state,
            "reason": self.reason,
            "lapses_at": None if self.lapses_at is None else int(self.lapses_at),
            "fix": self.fix,
        }


def _when(at: float, now: float) -> str:
    delta = at - now
    return f"in {format_human(delta)}" if delta >= 0 else f"{format_human(delta)} ago"


def evaluate(
    grant: Grant, rules: LapseRules, now: float, warn_seconds: float = DEFAULT_WARN_DAYS * DAY
) -> Evaluation:
    """ok, needs-reauthorization (exit 4) or attention (exit 9), with one line saying why."""
    lapse = predict_lapse(grant, rules)
    fix = command("reauthorize", grant.name)

    def result(state: str, reason: str, event: str | None) -> Evaluation:
        code = {OK: EXIT_OK, ATTENTION: EXIT_ATTENTION}.get(state, EXIT_NEEDS_REAUTHORIZATION)
        return Evaluation(
            grant.token_id,
            grant.name,
            state,
            reason,
            code,
            lapse.at,
            event,
            None if state == OK else fix,
        )

    def needs(reason: str) -> Evaluation:
        return result(NEEDS_REAUTHORIZATION, reason, EVENT_REAUTHORIZATION_NEEDED)

    def soon(reason: str) -> Evaluation:
        return result(ATTENTION, reason, EVENT_LAPSES_SOON)

    if grant.needs_reauth:
        return needs(
            f"the provider refused the grant: {grant.last_error}"
            if grant.last_error
            else "the provider refused the grant"
        )
    if lapse.rule == "access-token" and lapse.at is not None and lapse.at <= now:
        return needs("the access token expired and there is no refresh token")
    if lapse.at is not None and lapse.at <= now:
        return needs(f"lapsed {_when(lapse.at, now)} (predicted: {lapse.reason})")
    secret = grant.secret_expires_at
    if secret is not None and secret <= now:
        return needs(f"the client secret or certificate expired {_when(secret, now)}")
    if lapse.at is not None and lapse.rule != "access-token" and lapse.at - now <= warn_seconds:
        return soon(f"lapses {_when(lapse.at, now)} ({lapse.reason})")
    if secret is not None and secret - now <= warn_seconds:
        return soon(f"the client secret or certificate expires {_when(secret, now)}")
    if lapse.at is None:
        reason = lapse.reason
    elif lapse.rule == "idle":
        reason = f"lapses {_when(lapse.at, now)} unless used ({lapse.reason})"
    else:
        reason = f"ends {_when(lapse.at, now)} ({lapse.reason})"
    if grant.last_error:
        reason += f"; the last refresh failed: {grant.last_error}"
    return result(OK, reason, None)


def overall_exit(evaluations: Iterable[Evaluation], *, store_usable: bool = True) -> int:
    """`status`'s exit code: 8 when the secret store is unusable, else 4 beats 9 beats 0."""
    if not store_usable:
        return EXIT_STORE
    codes = {e.exit_code for e in evaluations}
    for code in (EXIT_NEEDS_REAUTHORIZATION, EXIT_ATTENTION):
        if code in codes:
            return code
    return EXIT_OK
