"""Finding the session bus without DBUS_SESSION_BUS_ADDRESS: real sockets, a cron-like process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oauthtok import sessionbus
from oauthtok.sessionbus import ensure_session_bus, escape_address_value, find_session_bus

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    return folder


@pytest.fixture
def bound(runtime: Path) -> Iterator[Path]:
    path = runtime / "bus"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    try:
        yield path
    finally:
        sock.close()


def test_finds_a_socket_owned_by_this_user(bound: Path, runtime: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    assert find_session_bus(env) == f"unix:path={bound}"
    target: dict[str, str] = dict(env)
    assert ensure_session_bus(target) == f"unix:path={bound}"
    assert target["DBUS_SESSION_BUS_ADDRESS"] == f"unix:path={bound}"


def test_a_set_address_is_never_changed(bound: Path, runtime: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(runtime), "DBUS_SESSION_BUS_ADDRESS": "unix:path=/elsewhere"}
    assert ensure_session_bus(env) == "unix:path=/elsewhere"
    assert env["DBUS_SESSION_BUS_ADDRESS"] == "unix:path=/elsewhere"
    env["DBUS_SESSION_BUS_ADDRESS"] = ""  # empty counts as unset
    assert ensure_session_bus(env) == f"unix:path={bound}"


def test_a_regular_file_a_folder_or_a_symlink_is_not_a_bus(
    runtime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessionbus, "RUN_USER", str(tmp_path / "no-run-user"))
    env: dict[str, str] = {"XDG_RUNTIME_DIR": str(runtime)}
    (runtime / "bus").write_text("")
    assert find_session_bus(env) is None
    assert ensure_session_bus(env) is None
    assert "DBUS_SESSION_BUS_ADDRESS" not in env
    (runtime / "bus").unlink()
    (runtime / "bus").mkdir()
    assert not sessionbus.is_own_socket(str(runtime / "bus"))
    (runtime / "bus").rmdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "real-bus"))
    try:
        (runtime / "bus").symlink_to(tmp_path / "real-bus")
        assert sessionbus.is_own_socket(str(tmp_path / "real-bus"))
        assert not sessionbus.is_own_socket(str(runtime / "bus"))  # a link to one is not taken
    finally:
        sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a socket to another user")
def test_a_socket_of_another_user_is_refused(bound: Path, runtime: Path) -> None:
    os.chown(bound, 65534, 65534)  # nobody
    assert find_session_bus({"XDG_RUNTIME_DIR": str(runtime)}, uid=0) is None
    assert find_session_bus({"XDG_RUNTIME_DIR": str(runtime)}, uid=65534) == f"unix:path={bound}"


def test_run_user_uid_is_the_second_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessionbus, "RUN_USER", str(tmp_path / "run-user"))
    assert sessionbus.candidates({}, uid=1234) == [str(tmp_path / "run-user" / "1234" / "bus")]
    assert sessionbus.candidates({"XDG_RUNTIME_DIR": "relative"}, uid=1) == [
        str(tmp_path / "run-user" / "1" / "bus")
    ]
    folder = tmp_path / "run-user" / str(os.getuid())
    folder.mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "bus"))
    try:
        assert find_session_bus({}) == f"unix:path={folder / 'bus'}"
        # $XDG_RUNTIME_DIR without a bus: the standard place is still tried
        assert find_session_bus({"XDG_RUNTIME_DIR": str(tmp_path)}) == f"unix:path={folder / 'bus'}"
    finally:
        sock.close()


def test_escaping() -> None:
    assert escape_address_value("/run/user/1000/bus") == "/run/user/1000/bus"
    assert escape_address_value("/tmp/a b;c=d,é") == "/tmp/a%20b%3bc%3dd%2c%c3%a9"


def test_cron_like_process_reads_the_secret_service(
    keyring_env: dict[str, str], tmp_path: Path
) -> None:
    """`env -i` (no DBUS_SESSION_BUS_ADDRESS) finds the user's bus and reads a real secret."""
    import keyring.backends.SecretService  # noqa: F401  (the backend keyring would use)

    from oauthtok.secretstore import SecretStore

    SecretStore().set("cron-test-id", "cron-secret-value")
    address = keyring_env["address"]
    assert address.startswith("unix:path=") or address.startswith("unix:")
    real = address.split("path=", 1)[1].split(",", 1)[0]
    runtime = tmp_path / "xdg-run"
    runtime.mkdir(mode=0o700)
    try:
        os.link(real, runtime / "bus")  # the same socket, at the place logind would give it
    except OSError as exc:
        pytest.skip(f"cannot hard-link the bus socket here: {exc}")
    code = (
        "import os\n"
        "from oauthtok.sessionbus import ensure_session_bus\n"
        "assert 'DBUS_SESSION_BUS_ADDRESS' not in os.environ\n"
        "print(ensure_session_bus())\n"
        "from oauthtok.freedesktop import read_secret\n"
        "print(read_secret('oauthtok', 'cron-test-id'))\n"
    )
    done = subprocess.run(
        [
            "env",
            "-i",
            f"HOME={tmp_path}",
            "PATH=/usr/bin:/bin",
            f"XDG_RUNTIME_DIR={runtime}",
            f"PYTHONPATH={SRC}",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"unix:path={runtime}/bus", "cron-secret-value"]
    without = subprocess.run(
        [
            "env",
            "-i",
            f"HOME={tmp_path}",
            f"PYTHONPATH={SRC}",
            sys.executable,
            "-c",
            "from oauthtok.sessionbus import ensure_session_bus\nprint(ensure_session_bus())",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert without.stdout.strip() in ("None", f"unix:path=/run/user/{os.getuid()}/bus")
    SecretStore().delete("cron-test-id")
