"""The life of a grant: predicted lapses, idle grants, status states and exit codes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oauthtok.lifecycle import (
    ATTENTION,
    DAY,
    NEEDS_REAUTHORIZATION,
    OK,
    Grant,
    LapseRules,
    evaluate,
    failure_changes,
    grant_changes,
    is_idle,
    lapses_at,
    overall_exit,
    predict_lapse,
    provider_refresh_expiry,
    refresh_changes,
)

NOW = 1_800_000_000.0
MICROSOFT = LapseRules(idle_days=90)


def grant(**changes: object) -> Grant:
    values: dict[str, object] = {
        "token_id": "a" * 32,
        "name": "work mail",
        "service": "microsoft",
        "obtained_at": NOW - 100 * DAY,
        "has_refresh_token": True,
        "expires_at": NOW + 3600,
    }
    values.update(changes)
    return Grant(**values)  # type: ignore[arg-type]


# -- the provider's own answer ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ({"refresh_token_expires_in": 15897600}, NOW + 15897600),  # GitHub Apps: 6 months
        ({"refresh_expires_in": 1800}, NOW + 1800),  # Keycloak
        ({"refresh_expires_in": "1800"}, NOW + 1800),
        ({"refresh_expires_in": 0}, None),  # Keycloak offline tokens: no limit
        ({"refresh_expires_in": -5}, None),
        ({"refresh_expires_in": True}, None),
        ({"refresh_expires_in": "soon"}, None),
        ({"refresh_expires_in": 10**12}, None),
        ({}, None),
    ],
)
def test_provider_refresh_expiry(response: dict[str, object], expected: float | None) -> None:
    assert provider_refresh_expiry(response, NOW) == expected


def test_changes_after_grant_refresh_and_failure() -> None:
    changes = grant_changes({"refresh_token": "RT", "refresh_token_expires_in": 100}, NOW)
    assert changes["obtained_at"] == NOW
    assert changes["refresh_rotated_at"] == NOW
    assert changes["refresh_expires_at"] == NOW + 100
    assert changes["needs_reauth"] is False and changes["last_error"] is None
    # rotated: the new refresh token's own lifetime replaces the old one (here: none)
    rotated = refresh_changes({"refresh_token": "RT2"}, NOW + 10, previous_expiry=NOW + 100)
    assert rotated["refresh_used_at"] == rotated["refresh_rotated_at"] == NOW + 10
    assert rotated["refresh_expires_at"] is None
    # not rotated: the old lifetime stays, unless the provider said a new one
    same = refresh_changes({}, NOW + 10, previous_expiry=NOW + 100)
    assert "refresh_rotated_at" not in same and same["refresh_expires_at"] == NOW + 100
    keycloak = refresh_changes({"refresh_expires_in": 1800}, NOW + 10, previous_expiry=NOW)
    assert keycloak["refresh_expires_at"] == NOW + 10 + 1800
    failed = failure_changes("invalid_grant:\nAADSTS700082 expired", NOW, permanent=True)
    assert failed == {
        "last_error": "invalid_grant: AADSTS700082 expired",
        "last_error_at": NOW,
        "needs_reauth": True,
    }
    assert "needs_reauth" not in failure_changes("network down", NOW, permanent=False)


# -- predicted lapses ---------------------------------------------------------------------------


def test_microsoft_idle_counts_from_the_last_use() -> None:
    g = grant(refresh_used_at=NOW - 10 * DAY, refresh_rotated_at=NOW - 20 * DAY)
    lapse = predict_lapse(g, MICROSOFT)
    assert lapse.at == NOW + 80 * DAY and lapse.rule == "idle"
    assert "90 days" in lapse.reason
    assert lapses_at(grant(), MICROSOFT) == NOW - 10 * DAY  # unused since the grant


def test_google_testing_only_when_the_token_says_so() -> None:
    service_params = {"testing": "no"}
    testing = LapseRules.for_token(None, 7, service_params, {"testing": "yes"})
    production = LapseRules.for_token(None, 7, service_params, {"testing": "no"})
    unset = LapseRules.for_token(None, 7, service_params, {})
    assert testing.max_days == 7 and production.max_days is None and unset.max_days is None
    # a service without a `testing` parameter has the limit for every token
    assert LapseRules.for_token(90, 30, {}, {}).max_days == 30
    g = grant(obtained_at=NOW - 2 * DAY, refresh_used_at=NOW - 60)
    lapse = predict_lapse(g, testing)
    assert lapse.at == NOW + 5 * DAY and lapse.rule == "max"
    assert predict_lapse(g, production).at is None  # however often it is used


def test_the_earliest_end_wins() -> None:
    g = grant(
        obtained_at=NOW - DAY,
        refresh_used_at=NOW - 3600,
        refresh_expires_at=NOW + 2 * DAY,  # the provider's answer
    )
    assert predict_lapse(g, LapseRules(idle_days=90, max_days=7)).rule == "provider"
    assert predict_lapse(g, LapseRules(idle_days=90, max_days=1)).at == NOW  # 1 day after consent
    assert predict_lapse(g, LapseRules()).at == NOW + 2 * DAY


def test_no_refresh_token_and_client_credentials() -> None:
    bare = grant(has_refresh_token=False, expires_at=NOW + 600)
    assert predict_lapse(bare, MICROSOFT).at == NOW + 600
    assert predict_lapse(grant(has_refresh_token=False, expires_at=None), MICROSOFT).at is None
    cc = grant(flow="client-credentials", has_refresh_token=False, expires_at=NOW - 1)
    assert predict_lapse(cc, MICROSOFT).at is None
    assert predict_lapse(grant(), LapseRules()).at is None


def test_old_records_map_onto_grants() -> None:
    old = {
        "id": "b" * 32,
        "name": "old",
        "service": "google",
        "created_at": NOW - DAY,
        "refreshed_at": NOW - 3600,
        "expires_at": NOW,
        "has_refresh_token": True,
        "flow": "browser",
        "needs_reauth": False,
    }
    g = Grant.from_json(old)
    assert g.obtained_at == NOW - DAY and g.refresh_used_at == NOW - 3600
    assert g.account is None and g.refresh_expires_at is None
    new = Grant.from_json(
        {
            **old,
            "obtained_at": NOW - 5,
            "refresh_used_at": None,
            "account": "me@example.com",
            "secret_expires_at": NOW + DAY,
            "last_error": "",
            "refresh_expires_at": "junk",
        }
    )
    assert new.obtained_at == NOW - 5 and new.refresh_used_at == NOW - 3600
    assert new.account == "me@example.com" and new.secret_expires_at == NOW + DAY
    assert new.last_error is None and new.refresh_expires_at is None


# -- keep-alive ---------------------------------------------------------------------------------


times = st.one_of(st.none(), st.floats(NOW - 400 * DAY, NOW + 400 * DAY))
days = st.one_of(st.none(), st.floats(0.5, 400))


@settings(max_examples=300, deadline=None)
@given(
    flow=st.sampled_from(["browser", "device", "client-credentials"]),
    has_refresh_token=st.booleans(),
    obtained=times, used=times, rotated=times, provider_end=times, expires=times,
    idle=days, max_days=days,
)  # fmt: skip
def test_lapses_at_is_the_time_predict_lapse_gives(
    flow: str, has_refresh_token: bool, obtained: float | None, used: float | None,
    rotated: float | None, provider_end: float | None, expires: float | None,
    idle: float | None, max_days: float | None,
) -> None:  # fmt: skip
    """`list` asks `lapses_at` (no reasons built) for 1,000 tokens; `show` and `status` ask
    `predict_lapse`: the two never disagree on when."""
    g = grant(flow=flow, has_refresh_token=has_refresh_token, obtained_at=obtained,
              refresh_used_at=used, refresh_rotated_at=rotated,
              refresh_expires_at=provider_end, expires_at=expires)  # fmt: skip
    rules = LapseRules(idle_days=idle, max_days=max_days)
    assert lapses_at(g, rules) == predict_lapse(g, rules).at


def test_is_idle() -> None:
    week = 7 * DAY
    assert is_idle(grant(refresh_used_at=NOW - 8 * DAY, obtained_at=NOW - 30 * DAY), week, NOW)
    assert not is_idle(grant(refresh_used_at=NOW - 6 * DAY), week, NOW)
    assert not is_idle(grant(refresh_rotated_at=NOW - DAY), week, NOW)  # a rotation is a use
    assert is_idle(grant(refresh_used_at=NOW - week), week, NOW)  # exactly: idle
    assert is_idle(grant(obtained_at=None), week, NOW)  # nothing known: refresh to learn
    assert not is_idle(grant(has_refresh_token=False), week, NOW)
    assert not is_idle(grant(needs_reauth=True), week, NOW)
    assert not is_idle(grant(flow="client-credentials"), week, NOW)
    assert is_idle(grant(refresh_used_at=NOW - 1), 0, NOW)


# -- status ---------------------------------------------------------------------------------------


def test_status_states_and_exit_codes() -> None:
    fine = evaluate(grant(refresh_used_at=NOW - DAY), MICROSOFT, NOW)
    assert (fine.state, fine.exit_code, fine.event, fine.fix) == (OK, 0, None, None)
    assert fine.reason.startswith("lapses in 89 days unless used")

    soon = evaluate(grant(refresh_used_at=NOW - 80 * DAY), MICROSOFT, NOW)
    assert (soon.state, soon.exit_code, soon.event) == (ATTENTION, 9, "lapses-soon")
    assert soon.reason.startswith("lapses in 10 days")
    assert soon.fix == "oauthtok reauthorize 'work mail'"
    assert evaluate(grant(refresh_used_at=NOW - 80 * DAY), MICROSOFT, NOW, 5 * DAY).state == OK

    lapsed = evaluate(grant(refresh_used_at=NOW - 91 * DAY), MICROSOFT, NOW)
    assert (lapsed.state, lapsed.exit_code) == (NEEDS_REAUTHORIZATION, 4)
    assert lapsed.event == "reauthorization-needed"
    assert lapsed.reason.startswith("lapsed 24 hours ago (predicted: refresh token unused")

    refused = evaluate(
        grant(needs_reauth=True, last_error="invalid_grant: AADSTS70008 expired"), MICROSOFT, NOW
    )
    assert refused.exit_code == 4 and "AADSTS70008" in refused.reason

    bare = evaluate(grant(has_refresh_token=False, expires_at=NOW - 1), MICROSOFT, NOW)
    assert bare.exit_code == 4 and "no refresh token" in bare.reason
    valid_bare = evaluate(grant(has_refresh_token=False, expires_at=NOW + 60), MICROSOFT, NOW)
    assert valid_bare.exit_code == 0  # an hour-long token is not "attention" every hour

    secret = evaluate(grant(refresh_used_at=NOW, secret_expires_at=NOW + 3 * DAY), MICROSOFT, NOW)
    assert (secret.exit_code, secret.event) == (9, "lapses-soon")
    assert "client secret" in secret.reason
    gone = evaluate(grant(refresh_used_at=NOW, secret_expires_at=NOW - DAY), MICROSOFT, NOW)
    assert gone.exit_code == 4

    flaky = evaluate(grant(refresh_used_at=NOW, last_error="HTTP 503"), MICROSOFT, NOW)
    assert flaky.exit_code == 0 and flaky.reason.endswith("the last refresh failed: HTTP 503")

    cc = evaluate(grant(flow="client-credentials", has_refresh_token=False), MICROSOFT, NOW)
    assert cc.exit_code == 0 and cc.lapses_at is None
    assert soon.to_json()["lapses_at"] == int(NOW + 10 * DAY)
    assert soon.to_json()["status"] == "attention"


def test_overall_exit_code() -> None:
    ok = evaluate(grant(refresh_used_at=NOW), MICROSOFT, NOW)
    soon = evaluate(grant(refresh_used_at=NOW - 80 * DAY), MICROSOFT, NOW)
    dead = evaluate(grant(needs_reauth=True), MICROSOFT, NOW)
    assert overall_exit([]) == 0
    assert overall_exit([ok]) == 0
    assert overall_exit([ok, soon]) == 9
    assert overall_exit([soon, dead, ok]) == 4
    assert overall_exit([ok], store_usable=False) == 8
    assert overall_exit([dead], store_usable=False) == 8
