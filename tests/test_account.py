"""Whose token is it: the claims, in order, from an id_token read without verifying it."""

from __future__ import annotations

import base64
import json

import pytest

from oauthtok.account import from_claims, from_id_token, id_token_claims, openid_granted


def jwt(payload: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(payload)}.c2ln"


@pytest.mark.parametrize(
    ("claims", "account"),
    [
        ({"sub": "s", "email": "e@x", "upn": "u@x", "preferred_username": "p@x"}, "p@x"),
        ({"sub": "s", "email": "e@x", "upn": "u@x"}, "u@x"),
        ({"sub": "s", "email": "e@x"}, "e@x"),
        ({"sub": "s"}, "s"),
        ({"preferred_username": "", "email": 5, "sub": "s"}, "s"),  # empty or not text: next
        ({"email": "a\nb\x1b[2J c"}, "a b [2J c"),  # one line of printable text
        ({"email": "x" * 1000}, "x" * 256),
        ({}, None),
    ],
)
def test_the_first_claim_that_names_an_account(claims: dict[str, object], account: str) -> None:
    assert from_claims(claims) == account
    assert from_id_token(jwt(claims)) == account


@pytest.mark.parametrize(
    "token",
    [None, "", "not-a-jwt", "a.b", "a.b.c.d", "a.!!!.c", jwt(["a", "list"]), jwt("text"),
     "a." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".c", "a." + "x" * 70000 + ".c"],
)  # fmt: skip
def test_anything_else_names_no_account(token: str | None) -> None:
    assert id_token_claims(token) == {} and from_id_token(token) is None


def test_openid_granted_or_asked() -> None:
    assert openid_granted(("openid", "email"), ())
    assert not openid_granted(("email",), ("openid",))  # granted says what was granted
    assert openid_granted(None, ("openid",))  # not reported: what was asked
