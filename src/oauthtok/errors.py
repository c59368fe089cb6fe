"""The one exception family of the core; each class carries the exit code scripts rely on.

Stdlib only: this module is on the `oauthtok token` fast path.
"""

from __future__ import annotations

import os
import sys


def command(*words: str) -> str:
    """A command line to suggest, with each word quoted for the shell (names may have spaces)."""
    import shlex

    return " ".join(["oauthtok", *(shlex.quote(w) for w in words)])


class OauthtokError(Exception):
    """An expected failure: one line for the user, and an exit code."""

    exit_code = 1

    def __init__(self, message: str, *, oauth_error: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: the RFC 6749 error code ("invalid_grant", "access_denied", ...) when a provider sent one
        self.oauth_error = oauth_error

    def __str__(self) -> str:
        return self.message


class UsageError(OauthtokError):
    """Bad option, unknown service or scope, invalid or duplicate name, secrets do not match."""

    exit_code = 2


class TokenNotFound(OauthtokError):
    exit_code = 3


class ReauthorizationRequired(OauthtokError):
    """The refresh was rejected (e.g. invalid_grant) or there is nothing to refresh with."""

    exit_code = 4


class AuthorizationFailed(OauthtokError):
    """Consent denied, state mismatch, timed out, listener could not start."""

    exit_code = 5


class ProviderError(OauthtokError):
    """The provider or the network failed; nothing was changed, retry later."""

    exit_code = 6


class CatalogError(OauthtokError):
    exit_code = 7


class StoreError(OauthtokError):
    """The keyring or the index is unavailable, locked, timed out, or corrupt."""

    exit_code = 8


class MetadataNotSaved(StoreError):
    """New tokens were saved in the secret store, but the token's metadata was not: the new
    grant is kept (and must not be revoked)."""


class AttentionSoon(OauthtokError):
    """Nothing is broken yet, but a grant lapses or a client credential expires soon."""

    exit_code = 9


class Cancelled(OauthtokError):
    exit_code = 130

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


#: the status of a process whose output pipe was closed (128 + SIGPIPE), as a shell reports it
BROKEN_PIPE = 141


def say(message: str) -> None:
    """A line for the person, on stderr; a closed stderr is not an error (one closed before
    the program started is /dev/null: `launcher.main`)."""
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def cannot_write_output(exc: BaseException) -> None:
    """Say that the output could not be written (a full disk, a quota, a closed file)."""
    say(f"oauthtok: error: cannot write the output ({getattr(exc, 'strerror', None) or exc})")


def report(exc: BaseException) -> int:
    """The one error boundary: say what went wrong in one line, and return the exit code.

    Expected failures print their message; Ctrl-C says "cancelled" on a fresh line; a closed
    output pipe ends quietly; anything else is a bug: one line, exit 1, and a traceback only
    with OAUTHTOK_DEBUG (it may contain secrets).
    """
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return BROKEN_PIPE
    if isinstance(exc, KeyboardInterrupt):
        exc = Cancelled()
    if isinstance(exc, Cancelled):
        say(("\n" if _stderr_is_tty() else "") + f"oauthtok: {exc}")  # after the echoed ^C
        return exc.exit_code
    if isinstance(exc, OauthtokError):
        from oauthtok.sanitize import terminal_text

        # messages quote names, paths and provider text: one line, safe for a terminal
        say(f"oauthtok: error: {terminal_text(str(exc), cap=1000)}")
        return exc.exit_code
    if os.environ.get("OAUTHTOK_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, OSError) and _no_room(exc):
        # not a bug: the output (or a file named) cannot take more; the store's own writes say
        # which file they are (StoreError), so a write without a name is the output
        if exc.filename is None:
            cannot_write_output(exc)
            _silence_stdout()  # what is still buffered goes nowhere: said once
        else:
            say(f"oauthtok: error: cannot write {exc.filename} ({exc.strerror or exc})")
        return 1
    say(
        f"oauthtok: internal error ({type(exc).__name__}); this is a bug, please report it "
        "(OAUTHTOK_DEBUG=1 shows the traceback, which may contain secrets)"
    )
    return 1


def _no_room(exc: OSError) -> bool:
    """A write that found no room: a full disk, a quota, a file too large."""
    import errno

    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except ValueError:
        return False


def _silence_stdout() -> None:
    """After EPIPE or a full output, point stdout at /dev/null so that the final flush is
    quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
