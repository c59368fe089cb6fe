"""Prove that an access token works where it will be used: a real IMAP or SMTP login
(OAUTHBEARER or XOAUTH2) or an HTTP GET with the bearer token.

Each function reports one line per step through `report(line)` and either returns (the
login worked) or raises:

- AuthorizationFailed (exit 5): the server refused the token; the message ends with the
  server's own answer (sanitized), after the decoded error challenge and, for known answers
  such as Microsoft's `535 5.7.139`, what to change.
- ProviderError (exit 6): the server could not be reached, did not answer in time, or TLS
  failed (the message names the certificate problem and SSL_CERT_FILE).
- UsageError (exit 2): a bad host/port/TLS choice, e.g. `plain` to a non-loopback host.

`deadline` is a `time.monotonic()` value: every socket timeout is what is left of it, so
the whole test never takes longer. The token never appears in a message or a report line;
server text that echoes it is masked.

Stdlib only besides httpx (imported lazily, for `test_http`).
"""

from __future__ import annotations

import base64
import imaplib
import ipaddress
import json
import os
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import urlsplit

from oauthtok import sasl
from oauthtok.errors import AuthorizationFailed, ProviderError, UsageError

Report = Callable[[str], None]

TLS_MODES = ("implicit", "starttls", "plain")
MECHANISMS = ("OAUTHBEARER", "XOAUTH2")
#: implicit TLS (RFC 8314) and STARTTLS ports; other ports need an explicit choice
DEFAULT_TLS = {993: "implicit", 465: "implicit", 143: "starttls", 587: "starttls", 25: "starttls"}
DEFAULT_PORTS = {"imap": 993, "smtp": 587}
ANSWER_CAP = 300
HTTP_CAP = 64 * 1024

#: what to change for server answers that name a known cause (regex on the answer text)
SERVER_HINTS: tuple[tuple[str, str, str], ...] = (
    (
        "smtp",
        r"\b5\.7\.139\b",
        "SMTP AUTH is disabled for this mailbox or the whole tenant: an Exchange admin runs "
        "`Set-CASMailbox -Identity ADDRESS -SmtpClientAuthenticationDisabled $false` (or "
        "`Set-TransportConfig -SmtpClientAuthenticationDisabled $false` for the tenant)",
    ),
    (
        "smtp",
        r"\b5\.7\.3\b",
        "Microsoft 365 refused the token: the audience must be Outlook's and the token needs "
        "SMTP.Send (delegated) or SMTP.SendAsApp (app-only, with the Exchange service "
        "principal); check it with `oauthtok inspect NAME`",
    ),
    (
        "imap",
        r"AUTHENTICATE failed",
        "if this is Microsoft 365: the audience must be Outlook's, the token needs "
        "IMAP.AccessAsUser.All (or IMAP.AccessAsApp with the Exchange service principal and "
        "mailbox permission), and IMAP must be enabled for the mailbox; check the token "
        "with `oauthtok inspect NAME`",
    ),
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")

T = TypeVar("T")


def _not_a_pytest(func: T) -> T:
    """These functions are named test_*; keep pytest from collecting them."""
    setattr(func, "__test__", False)  # noqa: B010
    return func


# -- small helpers ------------------------------------------------------------------------------


def sanitize(text: str, cap: int = ANSWER_CAP, secrets: tuple[str, ...] = ()) -> str:
    """Server text fit for one line: secrets masked, control characters gone, capped."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[token]")
    text = _CONTROL.sub(" ", text).strip()
    if len(text) > cap:
        text = text[: cap - 1] + "…"
    return text


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_target(value: str, protocol: str) -> tuple[str, int]:
    """`HOST[:PORT]` (IPv6 as `[::1]:993`) → (host, port); the port defaults per protocol."""
    value = value.strip()
    if not value:
        raise UsageError(f"--{protocol} needs HOST[:PORT]")
    default = DEFAULT_PORTS[protocol]
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":") if sep else ""
        if sep and rest and not rest.startswith(":"):
            raise UsageError(f"--{protocol} {value!r}: expected [IPv6]:PORT")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    if not host:
        raise UsageError(f"--{protocol} {value!r}: the host is missing")
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--{protocol} {value!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def resolve_tls_mode(host: str, port: int, tls_mode: str | None) -> str:
    """The TLS mode to use: the given one, else the port's default. `plain` only to loopback."""
    if tls_mode is None:
        tls_mode = DEFAULT_TLS.get(port)
        if tls_mode is None:
            raise UsageError(
                f"port {port} has no usual TLS mode; choose --tls (implicit TLS), --starttls "
                "or --plain (loopback only)"
            )
    if tls_mode not in TLS_MODES:
        raise UsageError(f"unknown TLS mode {tls_mode!r}; use one of: {', '.join(TLS_MODES)}")
    if tls_mode == "plain" and not is_loopback(host):
        raise UsageError(
            f"--plain would send the token unencrypted to {host}; it is allowed only to a "
            "loopback host (localhost, 127.0.0.1, ::1)"
        )
    return tls_mode


def ssl_context() -> ssl.SSLContext:
    """Certificate and host name verification on; SSL_CERT_FILE (and SSL_CERT_DIR) honoured."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    if cafile and not os.path.isfile(cafile):
        raise UsageError(f"SSL_CERT_FILE={cafile} is not a file; fix or unset the variable")
    try:
        return ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:
        raise UsageError(
            f"SSL_CERT_FILE={cafile} holds no usable certificate ({exc.reason}); fix or unset it"
        ) from None


def remaining(deadline: float, host: str, port: int, step: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProviderError(
            f"{host}:{port} did not finish in time ({step}); check the network or raise --timeout"
        )
    return left


def describe_challenge(raw: bytes) -> str:
    """The error a server sends as a SASL challenge after a refused token: Dovecot, Gmail and
    Microsoft send base64 JSON such as {"status":"401","schemes":"bearer","scope":"mail"}
    (RFC 7628 §3.2.2). Empty when there is nothing to say."""
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        return sanitize(text, 200)
    if not isinstance(data, dict):
        return sanitize(text, 200)
    parts = [
        f"{key}={sanitize(str(data[key]), 120)}"
        for key in ("status", "schemes", "scope", "openid-configuration")
        if key in data
    ]
    return ", ".join(parts) or sanitize(text, 200)


def hint_for(protocol: str, answer: str) -> str | None:
    for proto, pattern, hint in SERVER_HINTS:
        if proto == protocol and re.search(pattern, answer):
            return hint
    return None


def refused(
    protocol: str, host: str, step: str, answer: str, challenge: str, secrets: tuple[str, ...]
) -> AuthorizationFailed:
    """AuthorizationFailed whose message ends with the server's own (sanitized) answer."""
    answer = sanitize(answer, ANSWER_CAP, secrets)
    parts = [f"{host} refused the token ({step})"]
    if challenge:
        parts.append(f"server error: {challenge}")
    hint = hint_for(protocol, answer)
    if hint:
        parts.append(hint)
    return AuthorizationFailed("; ".join(parts) + f"; the server said: {answer or '(nothing)'}")


def _tls_failure(host: str, port: int, exc: ssl.SSLError) -> ProviderError:
    cafile = os.environ.get("SSL_CERT_FILE")
    using = f" (SSL_CERT_FILE={cafile} is in use)" if cafile else ""
    if isinstance(exc, ssl.SSLCertVerificationError):
        problem = exc.verify_message or exc.reason or "not trusted"
        return ProviderError(
            f"TLS to {host}:{port} failed: the certificate is not valid for {host} or not "
            f"trusted ({problem}){using}; if the server uses a private CA, point SSL_CERT_FILE "
            "to that CA's certificate"
        )
    reason = exc.reason or type(exc).__name__
    extra = ""
    if reason in ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE"):
        extra = "; is this a STARTTLS port? try --starttls (or --tls for implicit TLS)"
    return ProviderError(f"TLS to {host}:{port} failed ({reason}){using}{extra}")


@contextmanager
def _network_errors(host: str, port: int, step: str) -> Iterator[None]:
    """Translate socket and TLS errors into ProviderError (exit 6), naming the step."""
    try:
        yield
    except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError):
        raise  # the server's verdict (SMTPException is an OSError): the caller words it
    except smtplib.SMTPResponseException as exc:
        said = sanitize(f"{exc.smtp_code} {_text(exc.smtp_error)}")
        raise ProviderError(f"{host}:{port} failed {step}: {said}") from None
    except ssl.SSLError as exc:
        raise _tls_failure(host, port, exc) from None
    except TimeoutError:
        raise ProviderError(
            f"{host}:{port} did not answer in time ({step}); check the network or raise --timeout"
        ) from None
    except socket.gaierror as exc:
        raise ProviderError(
            f"cannot resolve {host} ({exc.strerror}); check the host name"
        ) from None
    except smtplib.SMTPServerDisconnected as exc:
        if "timed out" in str(exc):  # smtplib turns a read timeout into a disconnect
            raise ProviderError(
                f"{host}:{port} did not answer in time ({step}); check the network or raise "
                "--timeout"
            ) from None
        raise ProviderError(
            f"{host}:{port} closed the connection ({step}: {sanitize(str(exc), 120)})"
        ) from None
    except (imaplib.IMAP4.abort, EOFError) as exc:
        raise ProviderError(
            f"{host}:{port} closed the connection ({step}: {sanitize(str(exc), 120)})"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ProviderError(f"cannot connect to {host}:{port} ({reason}) during {step}") from None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _settimeout(sock: socket.socket | None, seconds: float) -> None:
    if sock is None:
        raise ProviderError("the connection closed unexpectedly")
    sock.settimeout(seconds)


def _report_tls(report: Report, sock: Any, host: str) -> None:
    version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
    report(f"TLS: {version or 'on'}, certificate verified for {host}")


def choose_mechanism(offered: set[str], forced: str | None, host: str) -> str:
    """OAUTHBEARER (the standard) when offered, else XOAUTH2; `forced` wins."""
    if forced is not None:
        name = forced.upper()
        if name not in MECHANISMS:
            raise UsageError(
                f"unknown mechanism {forced!r}; use one of: {', '.join(MECHANISMS).lower()}"
            )
        return name
    for name in MECHANISMS:
        if name in offered:
            return name
    shown = " ".join(sorted(offered)) or "none"
    raise AuthorizationFailed(
        f"{host} offers no OAuth mechanism (AUTH: {shown}), so it does not accept tokens "
        "there; check the host and port, or force one with --mechanism"
    )


class _Sasl:
    """The client side of one SASL exchange: the initial response, then (after a refusal)
    the one answer RFC 7628 §3.2.3 asks for, remembering the server's error challenge."""

    def __init__(self, mechanism: str, user: str, token: str, host: str, port: int) -> None:
        self.mechanism = mechanism
        if mechanism == "OAUTHBEARER":
            ir = sasl.oauthbearer(user, token, host, port)
        else:
            ir = sasl.xoauth2(user, token)
        self.initial = base64.b64decode(ir)
        self.secrets = (token, ir)
        self.sent_initial = False
        self.challenge = ""

    def respond(self, challenge: bytes) -> bytes:
        if not self.sent_initial:
            self.sent_initial = True
            return self.initial
        self.challenge = describe_challenge(challenge)
        # OAUTHBEARER: a lone ^A ends the failed exchange; XOAUTH2: an empty response
        return b"\x01" if self.mechanism == "OAUTHBEARER" else b""


def _check_user(user: str) -> None:
    if not user:
        raise UsageError("a login needs the mailbox address: give --user ADDRESS")


# -- IMAP ---------------------------------------------------------------------------------------


@_not_a_pytest
def test_imap(
    host: str,
    port: int,
    user: str,
    token: str,
    *,
    tls_mode: str | None = None,
    mechanism: str | None = None,
    report: Report,
    deadline: float,
) -> None:
    """Log in to an IMAP server with the token (RFC 3501 AUTHENTICATE), then LOGOUT."""
    _check_user(user)
    mode = resolve_tls_mode(host, port, tls_mode)
    context = ssl_context() if mode != "plain" else None
    client: imaplib.IMAP4
    with _network_errors(host, port, "connect"):
        timeout = remaining(deadline, host, port, "connect")
        if mode == "implicit":
            assert context is not None
            client = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
        else:
            client = imaplib.IMAP4(host, port, timeout=timeout)
    try:
        report(f"connected to {host}:{port}")
        welcome = client.welcome.decode("utf-8", "replace")
        report(f"server: {sanitize(welcome, 120)}")
        if mode == "implicit":
            _report_tls(report, client.sock, host)
        elif mode == "starttls":
            if "STARTTLS" not in client.capabilities:
                raise ProviderError(
                    f"{host}:{port} does not offer STARTTLS; use --tls if it is an implicit TLS "
                    "port (usually 993)"
                )
            with _network_errors(host, port, "STARTTLS"):
                client.sock.settimeout(remaining(deadline, host, port, "STARTTLS"))
                client.starttls(ssl_context=context)
            _report_tls(report, client.sock, host)
        else:
            report("TLS: none (--plain, loopback only)")
        with _network_errors(host, port, "CAPABILITY"):
            client.sock.settimeout(remaining(deadline, host, port, "CAPABILITY"))
            typ, data = client.capability()
        caps = (
            set(data[0].decode("ascii", "replace").upper().split()) if data and data[0] else set()
        )
        caps |= set(client.capabilities)
        offered = {c.removeprefix("AUTH=") for c in caps if c.startswith("AUTH=")}
        report("server offers: " + (" ".join(sorted(f"AUTH={m}" for m in offered)) or "no AUTH="))
        chosen = choose_mechanism(offered, mechanism, host)
        exchange = _Sasl(chosen, user, token, host, port)
        step = f"AUTHENTICATE {chosen} as {user}"
        try:
            with _network_errors(host, port, "AUTHENTICATE"):
                client.sock.settimeout(remaining(deadline, host, port, "AUTHENTICATE"))
                typ, done = client.authenticate(chosen, exchange.respond)
        except imaplib.IMAP4.error as exc:  # NO or BAD: the server's answer
            report(f"{step}: refused")
            raise refused(
                "imap", host, step, str(exc), exchange.challenge, exchange.secrets
            ) from None
        answer = " ".join(_text(d) for d in done if isinstance(d, bytes | str))
        report(f"{step}: {typ} {sanitize(answer, 120, exchange.secrets)}".rstrip())
    finally:
        _imap_logout(client, deadline)


def _imap_logout(client: imaplib.IMAP4, deadline: float) -> None:
    try:
        client.sock.settimeout(max(0.1, min(2.0, deadline - time.monotonic())))
        client.logout()
    except (OSError, imaplib.IMAP4.error, EOFError):
        with suppress(OSError):
            client.shutdown()


# -- SMTP ---------------------------------------------------------------------------------------


@_not_a_pytest
def test_smtp(
    host: str,
    port: int,
    user: str,
    token: str,
    *,
    tls_mode: str | None = None,
    mechanism: str | None = None,
    report: Report,
    deadline: float,
) -> None:
    """Log in to an SMTP submission server with the token (RFC 4954 AUTH), then QUIT."""
    _check_user(user)
    mode = resolve_tls_mode(host, port, tls_mode)
    context = ssl_context() if mode != "plain" else None
    client: smtplib.SMTP
    with _network_errors(host, port, "connect"):
        timeout = remaining(deadline, host, port, "connect")
        # local_hostname: a fixed EHLO name, no reverse lookup of our own name
        if mode == "implicit":
            client = smtplib.SMTP_SSL(
                host, port, local_hostname="localhost", timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(host, port, local_hostname="localhost", timeout=timeout)
    try:
        report(f"connected to {host}:{port}")
        if mode == "implicit":
            _report_tls(report, client.sock, host)
        with _network_errors(host, port, "EHLO"):
            _settimeout(client.sock, remaining(deadline, host, port, "EHLO"))
            code, text = client.ehlo()
        if code != 250:
            said = sanitize(f"{code} {text.decode('utf-8', 'replace')}")
            raise ProviderError(f"{host}:{port} refused EHLO: {said}")
        if mode == "starttls":
            if not client.has_extn("starttls"):
                raise ProviderError(
                    f"{host}:{port} does not offer STARTTLS; use --tls if it is an implicit TLS "
                    "port (usually 465)"
                )
            with _network_errors(host, port, "STARTTLS"):
                _settimeout(client.sock, remaining(deadline, host, port, "STARTTLS"))
                client.starttls(context=context)
                _settimeout(client.sock, remaining(deadline, host, port, "EHLO"))
                client.ehlo()
            _report_tls(report, client.sock, host)
        elif mode == "plain":
            report("TLS: none (--plain, loopback only)")
        offered = set(client.esmtp_features.get("auth", "").upper().split())
        report("server offers: " + (f"AUTH {' '.join(sorted(offered))}" if offered else "no AUTH"))
        chosen = choose_mechanism(offered, mechanism, host)
        exchange = _Sasl(chosen, user, token, host, port)
        step = f"AUTH {chosen} as {user}"

        def authobject(challenge: bytes | None = None) -> str:
            return exchange.respond(challenge or b"").decode("utf-8")

        try:
            with _network_errors(host, port, "AUTH"):
                _settimeout(client.sock, remaining(deadline, host, port, "AUTH"))
                code, text = client.auth(chosen, authobject, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as exc:
            report(f"{step}: refused")
            answer = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            raise refused(
                "smtp", host, step, answer, exchange.challenge, exchange.secrets
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise AuthorizationFailed(
                f"{host} does not support AUTH here; check the port (submission is 587 or 465)"
            ) from None
        except smtplib.SMTPException as exc:
            raise refused(
                "smtp", host, step, str(exc), exchange.challenge, exchange.secrets
            ) from None
        answer = text.decode("utf-8", "replace")
        report(f"{step}: {code} {sanitize(answer, 120, exchange.secrets)}")
    finally:
        _smtp_quit(client, deadline)


def _smtp_quit(client: smtplib.SMTP, deadline: float) -> None:
    try:
        if client.sock is not None:
            _settimeout(client.sock, max(0.1, min(2.0, deadline - time.monotonic())))
        client.quit()
    except (OSError, smtplib.SMTPException, ProviderError):
        client.close()


# -- HTTP ---------------------------------------------------------------------------------------


@_not_a_pytest
def test_http(
    url: str,
    token: str,
    *,
    report: Report,
    deadline: float,
    cap: int = HTTP_CAP,
) -> None:
    """GET `url` with `Authorization: Bearer TOKEN`. 2xx passes; 401/403 is a refusal (its
    WWW-Authenticate error and the start of the body end the message); others are exit 6."""
    import httpx

    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--url needs an absolute http(s) URL, not {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(
            f"{url} is plain http: the token would travel unencrypted; use https (plain http "
            "only to a loopback host)"
        )
    host = parts.netloc
    context = ssl_context()
    left = remaining(deadline, host, parts.port or 443, "connect")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, */*;q=0.5"}
    secrets = (token,)
    body = b""
    try:
        with (
            httpx.Client(verify=context, timeout=left, follow_redirects=False) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            report(f"connected to {host}")
            ssl_object = response.extensions.get("network_stream")
            info = ssl_object.get_extra_info("ssl_object") if ssl_object is not None else None
            if info is not None:
                report(f"TLS: {info.version()}, certificate verified for {parts.hostname}")
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= cap:
                    body = body[:cap]
                    break
                remaining(deadline, host, parts.port or 443, "reading the answer")
    except httpx.TimeoutException:
        raise ProviderError(f"{host} did not answer in time; check the network") from None
    except httpx.TransportError as exc:
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ssl.SSLError):
            raise _tls_failure(parts.hostname, parts.port or 443, cause) from None
        raise ProviderError(
            f"cannot reach {host} ({sanitize(str(exc) or type(exc).__name__, 120)})"
        ) from None
    status = response.status_code
    summary = f"HTTP {status} {response.reason_phrase}".rstrip()
    text = body.decode("utf-8", "replace")
    if 200 <= status < 300:
        report(f"GET {sanitize(url, 200)}: {summary} ({len(body)} bytes)")
        return
    report(f"GET {sanitize(url, 200)}: {summary}")
    if status in (401, 403):
        challenge = response.headers.get("www-authenticate", "")
        detail = _bearer_error(challenge)
        answer = f"{summary}" + (f" {text}" if text.strip() else "")
        raise refused("http", host, f"GET {sanitize(url, 200)}", answer, detail, secrets)
    raise ProviderError(
        f"{host} answered {summary} (not a verdict on the token: check the URL); the server "
        f"said: {sanitize(text, ANSWER_CAP, secrets) or '(nothing)'}"
    )


def _bearer_error(header: str) -> str:
    """RFC 6750 §3: error="invalid_token", error_description="..." → one short text."""
    found = dict(re.findall(r'(\w+)="([^"]*)"', header))
    parts = [
        f"{key}={sanitize(found[key], 120)}"
        for key in ("error", "error_description", "scope")
        if key in found
    ]
    return ", ".join(parts)
