"""Re-authorization without a terminal: `reauthorize NAME --flow device --notify`.

`start()` asks the provider for a device code (RFC 8628), hands the polling to a detached
process and raises the `device-code` notification (with the verification URI and the user
code), then returns at once: the person approves from any device (a phone), and the detached
process stores the new tokens exactly as an interactive `reauthorize` does. A denial, or a code
that expires unapproved, raises `reauthorization-needed` again.

The detached process is `python -m oauthtok device-wait` in a new session (no terminal, no
SIGHUP, its own process group), started with no arguments worth reading: the client secret and
the device code reach it over a pipe on its stdin, never through argv or its environment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oauthtok import alerts, collector, kinds, notify, oauth
from oauthtok.errors import (
    MetadataNotSaved,
    OauthtokError,
    ProviderError,
    TokenNotFound,
    UsageError,
    command,
)
from oauthtok.kinds import Flow, TokenAuth

if TYPE_CHECKING:
    import httpx

    from oauthtok.catalog import Service
    from oauthtok.client_cert import ClientCertificate
    from oauthtok.manager import TokenManager
    from oauthtok.models import TokenRecord

#: the hidden command the detached process runs
WAIT_COMMAND = "device-wait"
PAYLOAD_VERSION = 1
MAX_PAYLOAD = 64 * 1024
#: the secrets never go to the child through its environment
_DROPPED_ENV = ("OAUTHTOK_CLIENT_SECRET",)


@dataclass(frozen=True)
class Pending:
    """What the foreground says: the code to approve, until when, and who waits for it."""

    record: TokenRecord
    device: oauth.DeviceAuthorization
    expires_at: float
    pid: int
    #: one line when the notification could not be raised
    warning: str | None = None


def again(name: str) -> str:
    return command("reauthorize", name, "--flow", "device", "--notify")


def start(
    manager: TokenManager,
    name: str,
    client_secret: str | None = None,
    new_scopes: tuple[str, ...] | None = None,
) -> Pending:
    """Start the device flow for `name` and leave the waiting to a detached process."""
    from oauthtok.manager import sign_in_failure

    to = alerts.notifier()
    if to is None:
        raise UsageError(
            "--notify needs a [notify] command in config.toml (the code is sent through it)"
        )
    record = manager.store.get(name)
    if not record.endpoints.device_authorization_url:
        raise UsageError(f"{record.service} has no device authorization endpoint for --flow device")
    secret = manager.client_secret_for(record, client_secret)
    asked = record.scopes if new_scopes is None else new_scopes
    if not asked:
        raise UsageError("no scopes left to ask for")
    auth = oauth.ClientAuth(record.client_id, secret, record.token_auth, _key(manager, record))
    try:
        with manager.http_client() as client:
            device = oauth.start_device_authorization(client, record.endpoints, auth, scopes=asked)
    except oauth.OAuthError as exc:
        service = _service_of(record)
        raise sign_in_failure(
            exc, "the device authorization", service, auth.method, record.name
        ) from None
    except ProviderError as exc:
        raise ProviderError(f"{exc}; check the network and retry (nothing was changed)") from None
    expires_at = time.time() + device.expires_in
    payload = {
        "version": PAYLOAD_VERSION,
        "token_id": record.id,
        "name": record.name,
        "client_secret": secret,
        "scopes": list(asked),
        "started_at": time.time(),
        "expires_at": expires_at,
        "device": dataclasses.asdict(device),
    }
    pid = spawn(json.dumps(payload).encode())
    until = time.strftime("%H:%M", time.localtime(expires_at))
    event = notify.Event.about(
        record,
        kinds.DEVICE_CODE,
        f"approve the sign-in of {record.name!r}: open {device.verification_uri} and "
        f"enter {device.user_code} (until {until})",
        again(record.name),
        verification_uri=device.verification_uri,
        user_code=device.user_code,
        verification_uri_complete=device.verification_uri_complete,
    )
    warning = alerts.raise_event(event, to)
    return Pending(record, device, expires_at, pid, warning)


def spawn(payload: bytes) -> int:
    """Start the detached waiter and hand it `payload` over a pipe; its pid."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "oauthtok", WAIT_COMMAND],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=os.path.abspath(os.sep),
        close_fds=True,
        start_new_session=True,  # no controlling terminal: it outlives the shell that ran us
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(payload)
    finally:
        proc.stdin.close()
    proc.returncode = 0  # not ours to wait for: keep Popen from warning that it still runs
    return proc.pid


def _service_of(record: TokenRecord) -> Service | None:
    """The token's catalog entry, for wording and scope aliases (never required)."""
    from oauthtok.catalog import load_catalog

    try:
        return load_catalog().get(record.service)
    except OauthtokError:
        return None


# -- the detached process ----------------------------------------------------------------------


def _read_payload(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_PAYLOAD:
        raise ValueError("payload too large")
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("version") != PAYLOAD_VERSION:
        raise ValueError("not a device-wait payload")
    return data


def _poll(
    client: httpx.Client,
    record: TokenRecord,
    auth: oauth.ClientAuth,
    device: oauth.DeviceAuthorization,
    expires_at: float,
) -> oauth.Grant:
    """Poll until approved, denied or expired; network failures are retried until then."""
    collector.waiting()
    while True:
        left = expires_at - time.time()
        if left <= 0:
            raise oauth.DeviceCodeExpired()
        try:
            current = dataclasses.replace(device, expires_in=left)
            return oauth.poll_device_token(client, record.endpoints, auth, current, timeout=left)
        except ProviderError:
            time.sleep(min(device.interval, max(expires_at - time.time(), 0)))


def wait(raw: bytes, manager: TokenManager | None = None) -> int:
    """The detached process: poll, then store the tokens or raise reauthorization-needed.
    Its exit code is for nobody; what happened is in the store or in a notification."""
    from oauthtok.manager import ConsentSuperseded, TokenManager

    data = _read_payload(raw)
    manager = manager or TokenManager()
    try:
        record = manager.store.get_by_id(str(data["token_id"]), str(data["name"]))
    except TokenNotFound:
        return 0  # deleted meanwhile: nothing to renew
    secret = data.get("client_secret")
    asked = tuple(str(s) for s in data["scopes"])
    device = oauth.DeviceAuthorization(**data["device"])
    auth = oauth.ClientAuth(record.client_id, secret, record.token_auth, _key(manager, record))
    started_at = float(data["started_at"])
    try:
        with manager.http_client() as client:
            grant = _poll(client, record, auth, device, float(data["expires_at"]))
            saved = manager.save_consent(
                client, record, grant, secret, asked, _service_of(record), Flow.DEVICE, auth,
                renewed_after=started_at,
            )  # fmt: skip
    except ConsentSuperseded:
        return 0  # renewed meanwhile (another code, a reauthorize at a terminal): kept as is
    except MetadataNotSaved as exc:  # the new tokens were kept; the next refresh rewrites it
        return _metadata_not_saved(record, exc)
    except oauth.DeviceCodeExpired:
        return _failed(manager, record, started_at, "the code expired before it was approved")
    except oauth.OAuthError as exc:
        why = "the sign-in was denied" if exc.error == "access_denied" else "the sign-in failed"
        if exc.error == "expired_token":
            why = "the code expired before it was approved"
        return _failed(manager, record, started_at, f"{why} ({exc})")
    except OauthtokError as exc:
        return _failed(manager, record, started_at, f"the sign-in could not be kept ({exc})")
    except Exception as exc:  # the background must always say what became of it
        why = f"the background wait failed ({type(exc).__name__})"
        return _failed(manager, record, started_at, why)
    alerts.after_success(saved, kinds=None)  # a new grant: whatever was raised is over
    return 0


def _failed(manager: TokenManager, record: TokenRecord, started_at: float, why: str) -> int:
    """Raise reauthorization-needed again, unless the token was renewed meanwhile (another
    code approved, an interactive reauthorize)."""
    try:
        current = manager.store.get_by_id(record.id, record.name)
    except OauthtokError:
        return 1
    if (current.obtained_at or 0) > started_at:
        return 0
    event = notify.Event.about(
        current,
        kinds.REAUTHORIZATION_NEEDED,
        f"device sign-in of {current.name!r}: {why}",
        again(current.name),
    )
    to = alerts.notifier()
    if to is not None:
        to.forget(current.id, (kinds.REAUTHORIZATION_NEEDED,))  # "again": not rate-limited
        alerts.raise_event(event, to)
    return 1


def _metadata_not_saved(record: TokenRecord, exc: MetadataNotSaved) -> int:
    """The approved sign-in was stored but its metadata was not (a full disk): the token works,
    `list` and `status` still show it as it was until a refresh writes it. Say so."""
    reason = f"device sign-in of {record.name!r}: {exc}"
    fix = command("refresh", record.name, "--force")
    alerts.raise_event(notify.Event.about(record, kinds.REFRESH_FAILED, reason, fix))
    return 1


def _key(manager: TokenManager, record: TokenRecord) -> ClientCertificate | None:
    """A private_key_jwt client's key and certificate (kept with its secrets), else None."""
    if record.token_auth != TokenAuth.PRIVATE_KEY_JWT:
        return None
    return manager.stored_client_certificate(record)
