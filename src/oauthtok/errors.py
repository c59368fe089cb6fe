"""The one exception family of the core; each class carries the exit code scripts rely on.

Stdlib only: this module is on the `oauthtok token` fast path.
"""

from __future__ import annotations


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


class Cancelled(OauthtokError):
    exit_code = 130

    def __init__(self, message: str = "cancelled; nothing was saved") -> None:
        super().__init__(message)
