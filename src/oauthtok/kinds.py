"""The closed sets of the product (enums) and the defaults the CLI declares: imported by the
CLI's option declarations, so no heavier than `enum`."""

from __future__ import annotations

from enum import StrEnum

#: seconds a sign-in may take (the browser, the paste, the device code)
DEFAULT_AUTH_TIMEOUT = 300.0


class Flow(StrEnum):
    """How a token is signed in (`--flow`)."""

    BROWSER = "browser"
    PASTE = "paste"
    DEVICE = "device"
    CLIENT_CREDENTIALS = "client-credentials"


class TokenAuth(StrEnum):
    """How the client authenticates at the token endpoint (RFC 6749 §2.3)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    NONE = "none"
    #: a signed assertion from the client's certificate key (RFC 7523 §2.2)
    PRIVATE_KEY_JWT = "private_key_jwt"


class Status(StrEnum):
    VALID = "valid"
    EXPIRED_WILL_REFRESH = "expired-will-refresh"
    NEEDS_REAUTHORIZATION = "needs-reauthorization"


# -- the events `[notify]` is told of (`notify`; README, "Notifications") -----------------------
REAUTHORIZATION_NEEDED = "reauthorization-needed"
LAPSES_SOON = "lapses-soon"
REFRESH_FAILED = "refresh-failed"
DEVICE_CODE = "device-code"
EVENTS = (REAUTHORIZATION_NEEDED, LAPSES_SOON, REFRESH_FAILED, DEVICE_CODE)
