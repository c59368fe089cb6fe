"""Durations as people write them: `90s`, `15m`, `12h`, `30d`, `1w`, `1d12h`.

Units: s (seconds), m (minutes), h (hours), d (days), w (weeks). Parts are written largest
unit first, each unit at most once, with no spaces and no signs; a bare number is refused
(is `30` seconds or days?). Stdlib only.
"""

from __future__ import annotations

import re

from oauthtok.errors import UsageError

UNITS: dict[str, int] = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
#: no duration oauthtok uses is longer than this (10 years); it also bounds the arithmetic
MAX_SECONDS = 10 * 365 * 86400
_PART = re.compile(r"([0-9]{1,10})([wdhms])")
EXAMPLES = "e.g. 90s, 15m, 12h, 30d, 1w or 1d12h"


def parse_duration(text: str, *, what: str = "a duration") -> int:
    """Seconds in `text`. UsageError naming `what` (e.g. "--idle-for") when it is not one."""

    def bad(why: str) -> UsageError:
        shown = text if len(text) <= 40 else text[:39] + "…"
        shown = "".join(c if c.isprintable() else "?" for c in shown)
        return UsageError(f"{what}: {shown!r} {why} ({EXAMPLES})")

    if not isinstance(text, str):
        raise UsageError(f"{what}: must be a duration written as a string ({EXAMPLES})")
    value = text.strip().lower()
    if not value:
        raise bad("is empty")
    if value.isascii() and value.isdigit():
        raise bad("has no unit")
    total = 0
    pos = 0
    last_rank = -1
    order = list(UNITS)
    while pos < len(value):
        match = _PART.match(value, pos)
        if match is None:
            raise bad("is not a duration")
        number, unit = match.groups()
        rank = order.index(unit)
        if rank <= last_rank:
            raise bad("must name each unit once, largest first")
        last_rank = rank
        total += int(number) * UNITS[unit]
        pos = match.end()
    if total > MAX_SECONDS:
        raise bad("is longer than 10 years")
    return total


def format_duration(seconds: float) -> str:
    """The shortest form `parse_duration` reads back: 129600 → "1d12h", 0 → "0s".

    Fractions of a second are dropped; negative values are refused (ValueError).
    """
    if seconds < 0:
        raise ValueError("a duration is never negative")
    rest = int(seconds)
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in UNITS.items():
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_human(seconds: float) -> str:
    """Roughly, for people: "3 days", "5 hours", "40 minutes", "20 seconds"."""
    value = abs(int(seconds))
    for unit, size, least in (
        ("day", 86400, 2 * 86400),
        ("hour", 3600, 2 * 3600),
        ("minute", 60, 60),
    ):
        if value >= least:
            count = value // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{value} second{'s' if value != 1 else ''}"
