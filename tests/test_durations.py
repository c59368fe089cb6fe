"""Durations: what people write, read back exactly; junk refused with the option's name."""

from __future__ import annotations

import pytest

from oauthtok.durations import MAX_SECONDS, format_duration, format_human, parse_duration
from oauthtok.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("30d", 2592000),
        ("1w", 604800),
        ("1d12h", 129600),
        ("1w2d3h4m5s", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        (" 2H ", 7200),
        ("0s", 0),
    ],
)
def test_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "30",
        "d",
        "1x",
        "1.5h",
        "-1d",
        "+1d",
        "1d 12h",
        "12h1d",
        "1d1d",
        "1h30",
        "1e3s",
        "1d\n1h",
        "٣d",
        "99999999999s",
        "3651d",
    ],
)
def test_junk_is_a_usage_error_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(text, what="--idle-for")
    assert str(info.value).startswith("--idle-for: ")
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_not_a_string() -> None:
    with pytest.raises(UsageError):
        parse_duration(30, what="every")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "seconds", [0, 1, 59, 60, 61, 3600, 86399, 86400, 129600, 604800, 694861, MAX_SECONDS]
)
def test_format_reads_back(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds


def test_format_is_shortest() -> None:
    assert format_duration(129600) == "1d12h"
    assert format_duration(604800) == "1w"
    assert format_duration(90) == "1m30s"
    assert format_duration(0) == "0s"
    with pytest.raises(ValueError):
        format_duration(-1)


def test_human() -> None:
    assert format_human(3 * 86400 + 5) == "3 days"
    assert format_human(36 * 3600) == "36 hours"
    assert format_human(3600) == "60 minutes"
    assert format_human(61) == "1 minute"
    assert format_human(1) == "1 second"
