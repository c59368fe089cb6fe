"""A real IMAP and submission server for the login tests: Debian's Dovecot 2.3.

Started once per test session in a private folder, listening on free loopback ports:
IMAP with STARTTLS and with implicit TLS, submission with STARTTLS and with implicit TLS.
TLS uses a throwaway CA made by the test (`tests/certs.py`). Dovecot's `oauth2` passdb
validates each XOAUTH2/OAUTHBEARER login by RFC 7662 introspection at the Authlib test
server (`tests/authserver.py`), exactly as a production Dovecot would at its provider.

Runs as root (CI) with Dovecot's own unprivileged users, or as any other user with
everything owned by that user. Skips when Dovecot is not installed, unless
OAUTHTOK_REQUIRE_DOVECOT=1 (CI) turns that into a failure.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.authserver import TestAuthServer
from tests.certs import ServerTLS, make_server_tls

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
#: the client Dovecot authenticates as at the introspection endpoint
INTROSPECTION_CLIENT = ("dovecot", "dovecot-introspection-secret")
#: the client the tests get their tokens with (client credentials grant)
MAIL_CLIENT = ("mail-client", "mail-client-secret")
START_TIMEOUT = 15.0


class Unavailable(Exception):
    """Dovecot is not installed or could not start here."""


def missing() -> str | None:
    """Why Dovecot cannot run here, or None."""
    if not Path(DOVECOT).exists():
        return "dovecot is not installed (apt-get install dovecot-imapd dovecot-submissiond)"
    libexec = Path("/usr/lib/dovecot")
    for binary in ("imap", "imap-login", "submission", "submission-login"):
        if not (libexec / binary).exists():
            return (
                f"dovecot's {binary} is missing (apt-get install dovecot-imapd dovecot-submissiond)"
            )
    return None


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Dovecot:
    folder: Path
    tls: ServerTLS
    introspection_url: str
    imap_port: int = 0  # STARTTLS
    imaps_port: int = 0  # implicit TLS
    submission_port: int = 0  # STARTTLS
    submissions_port: int = 0  # implicit TLS
    process: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.folder / "dovecot.conf"

    @property
    def log_file(self) -> Path:
        return self.folder / "dovecot.log"

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def _accounts(self) -> tuple[str, str, int, int]:
        """(internal user, login user, mail uid, mail gid) for the running identity."""
        if os.geteuid() == 0:
            for name in ("dovecot", "dovenull"):
                try:
                    pwd.getpwnam(name)
                except KeyError:
                    raise Unavailable(
                        f"user {name!r} is missing (Debian's dovecot-core makes it)"
                    ) from None
            mail = pwd.getpwnam("dovecot")  # mail processes never run as root
            return "dovecot", "dovenull", mail.pw_uid, mail.pw_gid
        me = pwd.getpwuid(os.geteuid()).pw_name
        return me, me, os.geteuid(), os.getegid()

    def write_config(self) -> None:
        self.imap_port, self.imaps_port, self.submission_port, self.submissions_port = free_ports(4)
        internal, login, uid, gid = self._accounts()
        (self.folder / "run").mkdir(mode=0o755)
        (self.folder / "state").mkdir(mode=0o700)
        (self.folder / "home").mkdir(mode=0o700)
        os.chown(self.folder / "home", uid, gid)
        oauth2 = self.folder / "oauth2.conf.ext"
        oauth2.write_text(
            f"""introspection_mode = post
introspection_url = {self.introspection_url}
username_attribute = username
active_attribute = active
active_value = true
force_introspection = yes
timeout_msecs = 5000
"""
        )
        oauth2.chmod(0o600)
        self.config_file.write_text(
            f"""# written by tests/dovecot.py for one test session
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.log_file}
info_log_path = {self.log_file}
protocols = imap submission
listen = 127.0.0.1
default_internal_user = {internal}
default_login_user = {login}
{"" if os.geteuid() == 0 else f"default_internal_group = {grp.getgrgid(gid).gr_name}"}
first_valid_uid = {uid}
first_valid_gid = {gid}
hostname = mail.example.test
postmaster_address = postmaster@example.test
submission_relay_host = 127.0.0.1
submission_relay_port = 9
ssl = yes
ssl_cert = <{self.tls.cert_file}
ssl_key = <{self.tls.key_file}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = xoauth2 oauthbearer
auth_cache_size = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.folder}/home/%u
}}
# no chroot: an unprivileged Dovecot cannot chroot (and tests need none)
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service submission-login {{
  chroot =
  inet_listener submission {{
    port = {self.submission_port}
  }}
  inet_listener submissions {{
    port = {self.submissions_port}
    ssl = yes
  }}
}}
# tests fail logins on purpose: no failure delay, no per-IP penalty (the penalty is off
# when its anvil socket cannot be opened)
auth_failure_delay = 0
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
        )

    def start(self) -> None:
        self.write_config()
        log = open(self.folder / "dovecot.stderr", "wb")  # noqa: SIM115 - kept for the process
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until the login processes greet on the plaintext ports (the TLS ports are the
        same processes); a listener alone is not enough, the master opens those."""
        deadline = time.monotonic() + START_TIMEOUT
        pending = [(self.imap_port, b"* OK"), (self.submission_port, b"220 ")]
        while pending:
            assert self.process is not None
            if self.process.poll() is not None:
                raise Unavailable(f"dovecot exited with {self.process.returncode}: {self.why()}")
            if time.monotonic() > deadline:
                self.stop()
                raise Unavailable(f"dovecot did not listen within {START_TIMEOUT} s: {self.why()}")
            port, greeting = pending[0]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    if sock.recv(100).startswith(greeting):
                        pending.pop(0)
                        continue
            except OSError:
                pass
            time.sleep(0.05)

    def why(self) -> str:
        stderr = (self.folder / "dovecot.stderr").read_text(errors="replace")
        return (stderr + self.log())[-2000:]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextlib.contextmanager
def running_dovecot(auth: TestAuthServer) -> Iterator[Dovecot]:
    """Dovecot in a private folder, validating tokens at `auth`'s introspection endpoint."""
    reason = missing()
    if reason:
        raise Unavailable(reason)
    client_id, secret = INTROSPECTION_CLIENT
    auth.add_client(client_id, secret, "client_secret_basic", scope="")
    host = auth.base_url.removeprefix("http://")
    folder = Path(tempfile.mkdtemp(prefix="oauthtok-dovecot-"))
    folder.chmod(0o755)  # Dovecot's unprivileged processes must reach run/
    server = Dovecot(
        folder=folder,
        tls=make_server_tls(folder / "tls"),
        introspection_url=f"http://{client_id}:{secret}@{host}/introspect",
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
