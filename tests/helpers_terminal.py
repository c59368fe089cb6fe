"""For tests: assert that nothing from outside reached the terminal raw.

`assert_terminal_safe(output)` fails when a captured stdout/stderr holds a character a terminal
would obey rather than show: ESC and every other C0 control but LF and TAB, CR (it returns to
the start of the line, so later text overwrites earlier), DEL, C1 controls (U+0080-U+009F; an
8-bit terminal reads U+009B as CSI), Unicode format characters (bidi embeddings, overrides and
isolates, U+200E/U+200F, U+061C, zero-width characters, BOM), line/paragraph separators, and
undecodable bytes (seen as lone surrogates). Use it on the output of any command that printed
provider or catalog text.
"""

from __future__ import annotations

import unicodedata

#: categories a terminal does not simply draw
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Cn"})


def unsafe_characters(output: str | bytes, *, newlines: bool = True) -> list[tuple[int, str]]:
    """(index, character) of each character a terminal would obey; LF and TAB are allowed
    when `newlines` (set it False for text that must stay one line)."""
    if isinstance(output, bytes):
        output = output.decode("utf-8", "surrogateescape")
    allowed = {"\n", "\t"} if newlines else set()
    return [
        (i, c)
        for i, c in enumerate(output)
        if c not in allowed and unicodedata.category(c) in _HIDDEN
    ]


def assert_terminal_safe(output: str | bytes, *, newlines: bool = True) -> None:
    """Fail, showing where, when `output` holds a character a terminal would obey."""
    found = unsafe_characters(output, newlines=newlines)
    if not found:
        return
    text = output.decode("utf-8", "surrogateescape") if isinstance(output, bytes) else output
    i, char = found[0]
    context = ascii(text[max(0, i - 30) : i + 30])
    raise AssertionError(
        f"{len(found)} raw control/format character(s) reached the terminal; the first is "
        f"U+{ord(char):04X} at index {i}: {context}"
    )
