"""Start a private D-Bus session bus with an unlocked gnome-keyring (the Secret Service).

Used by the test suite's session fixture and by the benchmark. Nothing is written outside a
temporary folder, nothing is D-Bus-activated behind our back (the bus config has no service
directories), and both daemons are stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={dir}</listen><auth>EXTERNAL</auth>
  <policy context="default"><allow send_destination="*" eavesdrop="true"/>
  <allow eavesdrop="true"/><allow own="*"/></policy></busconfig>
"""
PASSWORD = "oauthtok-tests"
DAEMONS = ("dbus-daemon", "gnome-keyring-daemon")


#: the daemons of the running private Secret Services (for `ended_early`)
RUNNING: list[subprocess.Popen[bytes]] = []
#: where each running gnome-keyring-daemon writes its messages, by process id
LOGS: dict[int, Path] = {}


def ended_early() -> str | None:
    """Which daemon of a running private Secret Service has ended, and how (None: all run),
    with gnome-keyring's last messages. Every later keyring test would fail with "no usable
    keyring": this says why instead."""
    for proc in RUNNING:
        if proc.poll() is not None:
            said = f"{proc.args[0]} ended with status {proc.returncode}"  # type: ignore[index]
            log = LOGS.get(proc.pid)
            if log is not None and log.exists():
                lines = log.read_text(errors="replace").splitlines()
                said_lines = [x for x in lines if x.strip() and "already registered" not in x]
                last = said_lines[-8:]  # an abort's cause comes a few lines before its last
                if last:
                    said += "; its last messages: " + " | ".join(last)
            return said
    return None


class Unavailable(RuntimeError):
    pass


def missing_daemon() -> str | None:
    for exe in DAEMONS:
        if not shutil.which(exe):
            return f"{exe} not installed (apt-get install dbus-x11 gnome-keyring)"
    return None


def default_collection_unlocked(address: str) -> bool:
    from jeepney import DBusAddress, Properties, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg

    try:
        with open_dbus_connection(address) as conn:
            svc = DBusAddress(
                "/org/freedesktop/secrets",
                "org.freedesktop.secrets",
                "org.freedesktop.Secret.Service",
            )
            msg = new_method_call(svc, "ReadAlias", "s", ("default",))
            (path,) = unwrap_msg(conn.send_and_get_reply(msg, timeout=2))
            if path == "/":
                return False
            coll = DBusAddress(path, "org.freedesktop.secrets", "org.freedesktop.Secret.Collection")
            reply = conn.send_and_get_reply(Properties(coll).get("Locked"), timeout=2)
            ((_, locked),) = unwrap_msg(reply)
            return not locked
    except Exception:
        return False


def start_bus(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A bare session bus (no Secret Service on it yet)."""
    (folder / "run").mkdir(mode=0o700, exist_ok=True)
    conf = folder / "bus.conf"
    conf.write_text(BUS_CONF.format(dir=folder / "run"))
    bus = subprocess.Popen(
        [
            "dbus-daemon",
            f"--config-file={conf}",
            "--nofork",
            "--nosyslog",
            "--nopidfile",
            "--print-address=1",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert bus.stdout is not None
    address = bus.stdout.readline().decode().strip()
    if not address:
        bus.kill()
        raise Unavailable("dbus-daemon did not start")
    return bus, address


@contextlib.contextmanager
def private_secret_service() -> Iterator[dict[str, str]]:
    """Yields {"address": DBUS_SESSION_BUS_ADDRESS, "password": the keyring's password}."""
    problem = missing_daemon()
    if problem:
        raise Unavailable(problem)
    folder = Path(tempfile.mkdtemp(prefix="oauthtok-secret-service-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bus, address = start_bus(folder)
        procs.append(bus)
        (folder / "data").mkdir(mode=0o700)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DISPLAY", "WAYLAND_DISPLAY", "GNOME_KEYRING_CONTROL")
        }
        env.update(
            DBUS_SESSION_BUS_ADDRESS=address,
            XDG_DATA_HOME=str(folder / "data"),
            XDG_RUNTIME_DIR=str(folder / "run"),
        )
        log = folder / "gnome-keyring.log"  # what it says before an abort names the cause
        with open(log, "wb") as messages:
            keyring_daemon = subprocess.Popen(
                ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=messages,
                env=env,
            )
        procs.append(keyring_daemon)
        LOGS[keyring_daemon.pid] = log
        assert keyring_daemon.stdin is not None
        keyring_daemon.stdin.write(PASSWORD.encode())  # read verbatim: no newline
        keyring_daemon.stdin.close()
        deadline = time.monotonic() + 15
        while not default_collection_unlocked(address):
            if keyring_daemon.poll() is not None or time.monotonic() > deadline:
                raise Unavailable("gnome-keyring-daemon did not offer an unlocked collection")
            time.sleep(0.02)
        RUNNING.extend(procs)
        yield {"address": address, "password": PASSWORD}
    finally:
        for proc in procs:
            LOGS.pop(proc.pid, None)
            if proc in RUNNING:
                RUNNING.remove(proc)
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
