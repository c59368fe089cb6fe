"""How the CLI speaks: data on stdout, messages on stderr; tables and colour only on a
terminal (rich, imported only then; NO_COLOR is honoured), tab-separated lines when piped."""

from __future__ import annotations

import sys
import time

from oauthtok.errors import say

TYPE_CHECKING = False  # typing costs ~4 ms to import: `list` and `show` answer without it
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from rich.console import Console

    from oauthtok.models import TokenRecord

__all__ = ["say"]


def is_tty() -> bool:
    return sys.stdout.isatty()


def can_prompt() -> bool:
    return sys.stdin.isatty()


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def emit_json(data: Any) -> None:
    """Indented JSON; a list one element per line (json's fast C encoder: `list --json` of
    1,000 tokens)."""
    import json

    if isinstance(data, list) and data:
        print("[\n" + ",\n".join(json.dumps(item) for item in data) + "\n]")
    else:
        print(json.dumps(data, indent=2))


def humanize_seconds(seconds: float) -> str:
    seconds = int(seconds)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds}s"
    if seconds < 7200:
        return f"{sign}{seconds // 60}m"
    if seconds < 172800:
        return f"{sign}{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{sign}{seconds // 86400}d"


def expires_in(record: TokenRecord, now: float) -> str:
    if record.expires_at is None:
        return "never"
    left = record.expires_at - now
    return humanize_seconds(left) if left > 0 else "expired"


def lapses_in(at: float | None, now: float) -> str:
    """A predicted lapse for a table: "-" (none predicted), "lapsed", or the time left."""
    if at is None:
        return "-"
    return humanize_seconds(at - now) if at > now else "lapsed"


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def describe_validity(record: TokenRecord) -> str:
    if record.expires_at is None:
        return "does not expire"
    left = humanize_seconds(record.expires_at - time.time())
    refresh = "refreshes by itself" if record.renews_itself else "no refresh token"
    return f"valid for {left}, {refresh}"


#: a word longer than this may be folded inside a table cell (a long URL scope)
MAX_WORD = 40


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, keep: Sequence[str] = ()
) -> None:
    """A rich table on a terminal (columns named in `keep` are never folded or cut: a person
    types them next; the others fold), tab-separated lines with a header when piped."""
    if not is_tty():
        sys.stdout.write("".join(["\t".join(line) + "\n" for line in (columns, *rows)]))
        return
    from rich.markup import escape
    from rich.table import Table

    out = console()
    kept = max((len(row[i]) for row in rows for i, c in enumerate(columns) if c in keep),
               default=0)  # fmt: skip

    def longest_word(i: int) -> int:
        words = [len(w) for row in rows for w in row[i].split()] + [len(columns[i])]
        return min(max(words), MAX_WORD)

    words = {i: longest_word(i) for i, c in enumerate(columns) if c not in keep}
    if kept + sum(words.values()) + 3 * (len(columns) - 1) > out.width:
        # too narrow for a table that keeps names whole and words unbroken: a block per row
        from rich.table import Table as Grid

        for row in rows:
            out.print(escape(" ".join(row[i] for i, c in enumerate(columns) if c in keep)))
            grid = Grid.grid(padding=(0, 2), pad_edge=False)
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="fold")
            for i in words:
                grid.add_row("  " + columns[i].lower(), escape(row[i]))
            out.print(grid)
        return
    table = Table(show_edge=False, pad_edge=False)
    for i, column in enumerate(columns):
        if column in keep:
            table.add_column(column, no_wrap=True, min_width=kept)
        else:
            table.add_column(column, overflow="fold", min_width=words[i])
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    out.print(table)
