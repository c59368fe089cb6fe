"""Text from outside, made safe: for the terminal on the way out, for the store on the way in.

Two jobs, both about text oauthtok did not write (a provider's answers, a catalog layer):

* `terminal_text` / `terminal_block` are the one sanitizer at the output boundary. Whatever a
  provider or a catalog says goes through one of them before it reaches a terminal or a log, so
  an escape sequence (an OSC 52 clipboard write, an OSC 8 link, a cursor move), a carriage return
  that overwrites what came before, or a bidi override that reorders it, is shown, not obeyed.
* `check_*` and `parse_*` validate a token response before anything is stored (RFC 6749 §5.1,
  Appendix A; RFC 6750 §2.1). A value that breaks the grammar is a provider error: the caller
  raises it as is during a renewal (exit 6) or turns it into AuthorizationFailed while signing
  in (exit 5); either way nothing is saved, so `oauthtok token --format header` can never print
  a second header line.

Stdlib only and light: the `token` fast path may import it. `unicodedata` is imported lazily,
the first time a text holds a non-ASCII character.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from oauthtok.errors import ProviderError

#: how much provider text one message shows (an error_description can be pages long)
TEXT_CAP = 300
#: how much catalog help text `terminal_block` shows
BLOCK_CAP = 4000
#: appended to text that was cut at its cap (ASCII, so any terminal encoding can print it)
ELLIPSIS = "..."
#: a token longer than this is refused: no provider issues one (Microsoft's JWTs stay under
#: 16 KiB), and it bounds what a hostile answer can make us store
MAX_TOKEN_LENGTH = 65536
#: `expires_in` beyond this is clamped: no access token lives ten years, and it keeps
#: `expires_at` a sane float for every consumer (JSON, int(), datetime)
MAX_LIFETIME = 10 * 365 * 24 * 3600.0

# Line breaks and tabs: a one-line message stays one line (terminal_text), a block keeps its
# line feeds (terminal_block). Either way the text on both sides stays visible.
_BREAKS = r"[\t\n\r\v\f]+"
# ASCII that can do harm: C0 controls (ESC starts every escape sequence) and DEL.
_ASCII_CONTROL = r"[\x00-\x1f\x7f]"
# Unicode categories shown as escapes: controls (C0, C1), format characters (bidi embeddings,
# overrides and isolates, the marks U+200E/F and U+061C, zero-width space/joiners, word joiner,
# BOM, tags), surrogates (unprintable), line/paragraph separators (some terminals break the
# line), and unassigned code points (a format character newer than this Python's Unicode).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Cn"})


def _escape(char: str) -> str:
    """`\\x1b`, `\\u202e`, `\\U000e0001`: Python's spelling, so it reads as what it is."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:  # an int of more than 4300 digits (CPython's int_max_str_digits)
        return f"<{type(value).__name__} too long to show>"


_AN_ESCAPE = r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})"


def _render(text: str) -> str:
    """Every hidden character as a visible escape."""
    if text.isascii():
        if text.isprintable():  # for ASCII: no C0 control, no DEL
            return text
        return re.sub(_ASCII_CONTROL, lambda m: _escape(m.group()), text)
    import unicodedata  # lazily: most provider text is ASCII, and the fast path stays light

    category = unicodedata.category
    return "".join(_escape(c) if category(c) in _HIDDEN_CATEGORIES else c for c in text)


def _cut(out: str, cap: int | None) -> str:
    """At most `cap` characters of rendered text, then the marker; never half an escape."""
    if cap is None or len(out) <= cap:
        return out
    cut = out[: max(cap, 0)]
    start = cut.rfind("\\", max(0, len(cut) - 9))
    if start != -1:
        whole = re.compile(_AN_ESCAPE).match(out, start)
        if whole and whole.end() > len(cut):
            cut = cut[:start]
    return cut + ELLIPSIS


def _quoted(value: object, cap: int) -> str:
    """A short outside value inside a message, sanitized and quoted."""
    return '"' + terminal_text(value, cap) + '"'


def terminal_text(value: object, cap: int | None = TEXT_CAP) -> str:
    """One line of outside text, safe to print.

    Runs of tabs and line breaks (CR, LF, VT, FF) become one space, so the text stays one line
    and nothing can overwrite what came before it; every other control character (C0 such as
    ESC, DEL, C1 such as U+009B CSI), Unicode format character (bidi overrides and isolates,
    zero-width characters), surrogate, line/paragraph separator or unassigned code point becomes
    a visible escape (`\\x1b`, `\\u202e`). At most `cap` characters are kept, then `...`.
    `None` is the empty string; other non-strings are shown with `str()`.
    """
    text = _as_text(value)
    if "\t" in text or "\n" in text or "\r" in text or "\v" in text or "\f" in text:
        text = re.sub(_BREAKS, " ", text)
    if cap is not None:
        text = text[: cap + 1]  # each character renders to one or more: enough to know the cut
    return _cut(_render(text), cap)


def terminal_block(value: object, cap: int | None = BLOCK_CAP) -> str:
    """Several lines of outside text (a catalog's help), safe to print.

    Like `terminal_text`, but line feeds are kept (CR LF and a lone CR become LF, so a CR cannot
    return to the start of a line and overwrite it); a tab becomes one space; VT and FF
    become escapes like every other control character.
    """
    text = _as_text(value).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    if cap is not None:
        text = text[: cap + 1]
    return _cut("\n".join(_render(line) for line in text.split("\n")), cap)


# -- token responses ------------------------------------------------------------------------
# RFC 6749 Appendix A: VSCHAR = %x20-7E, NQCHAR = %x21 / %x23-5B / %x5D-7E,
# type-name = 1*name-char, name-char = "-" / "." / "_" / DIGIT / ALPHA.
# Plain str predicates, not regular expressions: the fast path checks a stored token cheaply.
def _vschar(text: str) -> bool:
    return text.isascii() and text.isprintable()  # %x20-7E


def _vchar(text: str) -> bool:
    return _vschar(text) and " " not in text  # %x21-7E


def _nqchar(text: str) -> bool:
    return _vchar(text) and '"' not in text and "\\" not in text


def _type_name(text: str) -> bool:
    bare = text.replace("-", "").replace(".", "").replace("_", "")
    return 0 < len(text) <= 64 and text.isascii() and (bare == "" or bare.isalnum())


def _where(value: str, allowed: Callable[[str], bool]) -> str:
    """Where a value breaks its grammar, without showing the value (it may be a secret)."""
    for i, char in enumerate(value):
        if not allowed(char):
            return f"U+{ord(char):04X} at position {i + 1}"
    return "an empty value"


def _check_token(value: object, field: str, allowed: Callable[[str], bool]) -> str:
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise ProviderError(f"the provider's {field} is {kind}; nothing was saved")
    if not value or not value.strip():
        raise ProviderError(f"the provider's {field} is empty; nothing was saved")
    if len(value) > MAX_TOKEN_LENGTH:
        raise ProviderError(
            f"the provider's {field} is {len(value)} characters long (at most "
            f"{MAX_TOKEN_LENGTH} accepted); nothing was saved"
        )
    if not allowed(value):
        raise ProviderError(
            f"the provider's {field} holds a character no token may hold "
            f"({_where(value, allowed)}); nothing was saved"
        )
    return value


def check_access_token(value: object) -> str:
    """The access token, if it is 1 to 65536 visible ASCII characters (%x21-7E).

    RFC 6749 §A.12 allows VSCHAR (%x20-7E); RFC 6750 §2.1 sends it as `Bearer <b64token>`, where a
    space cannot appear. b64token itself (ALPHA DIGIT - . _ ~ + / then =) would be stricter, but
    real tokens break it: Login with Amazon's begin `Atza|`. JWTs (Microsoft, most OIDC
    providers), Google's `ya29.` and GitHub's `gho_` tokens all pass. What matters for safety is
    that no control character, space or non-ASCII character gets through. Raises ProviderError.
    """
    return _check_token(value, "access_token", _vchar)


def check_refresh_token(value: object) -> str:
    """The refresh token, if it is 1*VSCHAR (RFC 6749 §A.17: %x20-7E) and not only spaces.

    It is only ever sent in a form body, so the space the RFC allows is harmless. Amazon's
    begin `Atzr|`. Raises ProviderError.
    """
    return _check_token(value, "refresh_token", _vschar)


def check_id_token(value: object) -> str:
    """An OpenID Connect ID token: a JWT, so visible ASCII like an access token."""
    return _check_token(value, "id_token", _vchar)


def check_token_type(value: object) -> str:
    """A single token type (RFC 6749 §7.1, §A.13 type-name); `Bearer` in any case → "Bearer".

    A missing or empty token_type is taken as Bearer, as oauthtok always did (RFC 6749 makes it
    required, some providers omit it); GitHub sends `bearer`. Raises ProviderError.
    """
    if value is None or value == "":
        return "Bearer"
    if not isinstance(value, str) or not _type_name(value):
        raise ProviderError(
            f"the provider's token_type {_quoted(value, 40)} is not a single token "
            "type; nothing was saved"
        )
    return "Bearer" if value.lower() == "bearer" else value


def check_scope_token(value: object) -> str:
    """One scope-token (RFC 6749 §3.3: 1*NQCHAR, i.e. visible ASCII but `"` and `\\`)."""
    if not isinstance(value, str) or not value or not _nqchar(value):
        raise ProviderError(
            f"the provider granted a scope {_quoted(value, 60)} that is not a "
            "scope-token (RFC 6749 §3.3); nothing was saved"
        )
    return value


def split_scope(value: object) -> tuple[str, ...] | None:
    """A token response's `scope`: None when absent, else its scope-tokens in order.

    Separated by spaces (RFC 6749 §3.3) or commas (GitHub); each part is checked with
    `check_scope_token`, so a tab, line break or control character is refused, not split on.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProviderError(
            f"the provider's scope is a {type(value).__name__}, not a string; nothing was saved"
        )
    return tuple(check_scope_token(part) for part in value.replace(",", " ").split(" ") if part)


# -- lifetimes ------------------------------------------------------------------------------
_DECIMAL = r" *[+-]?[0-9]{1,30}(\.[0-9]{0,30})? *"


class Lifetime(NamedTuple):
    """What a provider's `expires_in` means: seconds (None: unknown) and a note for `show`."""

    seconds: float | None
    note: str | None


def _number(value: object) -> float | None:
    """The value as a float when it is a JSON number or a decimal string; else None."""
    if isinstance(value, bool):  # True is an int in Python, not a lifetime
        return None
    if isinstance(value, int):
        return float(value) if abs(value) < 10**308 else (math.inf if value > 0 else -math.inf)
    if isinstance(value, float):
        return value
    if isinstance(value, str) and re.fullmatch(_DECIMAL, value):
        return float(value)
    return None


def parse_expires_in(value: object, field: str = "expires_in") -> Lifetime:
    """RFC 6749 §5.1 `expires_in`, never an exception and never a non-finite number.

    * absent (None or "") → unknown, no note: the provider did not say
    * a number or a decimal string (Microsoft's v1 endpoint sends "3599") → those seconds
    * beyond ten years, or +inf (JSON `1e400`) → clamped to ten years, with a note
    * negative → 0 (expired at once: the next use renews it), with a note
    * anything else (NaN, a bool, text, a list) → unknown, with a note
    """
    if value is None or value == "":
        return Lifetime(None, None)
    number = _number(value)
    shown = _quoted(value if isinstance(value, str | int | float) else repr(value), 40)
    if number is None or math.isnan(number):
        return Lifetime(None, f"the provider's {field} {shown} is not a number; expiry unknown")
    if number > MAX_LIFETIME:
        return Lifetime(
            MAX_LIFETIME,
            f"the provider's {field} {shown} is beyond ten years; clamped to ten years",
        )
    if number < 0:
        return Lifetime(0.0, f"the provider's {field} {shown} is negative; taken as expired")
    return Lifetime(number, None)


def parse_seconds(value: object, *, default: float, low: float, high: float) -> float:
    """A number of seconds from a provider (a device flow's `interval`, `expires_in`), made
    usable: `default` when absent or not a finite number, else clamped into [low, high]."""
    number = _number(value) if value not in (None, "") else None
    if number is None or not math.isfinite(number):
        return default
    return min(max(number, low), high)


# -- a whole token response -----------------------------------------------------------------
class CheckedTokens(NamedTuple):
    """The parts of a successful token response (RFC 6749 §5.1), each checked."""

    access_token: str
    token_type: str
    refresh_token: str | None
    id_token: str | None
    scopes: tuple[str, ...] | None
    lifetime: Lifetime

    def __repr__(self) -> str:  # never the tokens
        return f"CheckedTokens(token_type={self.token_type!r}, scopes={self.scopes!r})"


def check_token_response(body: Mapping[str, Any]) -> CheckedTokens:
    """Validate every field oauthtok stores or prints; raise ProviderError on the first bad one.

    An empty `refresh_token` or `id_token` counts as absent (some providers send "").
    """
    refresh = body.get("refresh_token")
    id_token = body.get("id_token")
    return CheckedTokens(
        access_token=check_access_token(body.get("access_token")),
        token_type=check_token_type(body.get("token_type")),
        refresh_token=None if refresh in (None, "") else check_refresh_token(refresh),
        id_token=None if id_token in (None, "") else check_id_token(id_token),
        scopes=split_scope(body.get("scope")),
        lifetime=parse_expires_in(body.get("expires_in")),
    )
