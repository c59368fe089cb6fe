"""Trust under attack and odd answers (issue 9), end to end: the real program, the real Secret
Service and the Authlib server playing a hostile or odd provider."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from tests.fake_browser import get
from tests.helpers import (
    PROGRAM,
    create_token,
    keyring_items,
    listed,
    read_only,
    run_in_process,
    run_oauthtok,
    seed_token,
    shown,
)
from tests.helpers_terminal import assert_terminal_safe

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")

EVIL = "https://evil.example"


def oidc(
    server: Any, *args: str, name: str = "t", in_process: bool = True
) -> subprocess.CompletedProcess[str]:
    """A token of the `oidc` service: its issuer is the server's, from discovery. In this
    process unless the test looks at the browser's side."""
    return create_token(
        server, "--param", f"issuer={server.base_url}", *args, name=name, service="oidc",
        in_process=in_process,
    )  # fmt: skip


# -- mix-up (RFC 9207, RFC 9700 §4.4) -----------------------------------------------------------


def test_an_answer_from_another_issuer_is_refused(auth_server: Any, browser: Path) -> None:
    auth_server.knobs.iss_param = EVIL
    result = oidc(auth_server, in_process=False)  # what the browser is shown, too
    assert result.returncode == 5, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert EVIL in error and auth_server.base_url in error and "mix-up" in error
    assert auth_server.knobs.code_requests == 0  # the code went nowhere
    assert listed() == []
    assert "Sign-in failed" in browser.read_text()


def test_a_missing_iss_is_refused_when_the_server_promised_it(auth_server: Any) -> None:
    auth_server.knobs.iss_supported = True
    result = oidc(auth_server)
    assert result.returncode == 5 and "names no issuer" in result.stderr
    assert auth_server.knobs.code_requests == 0


def test_the_right_iss_is_accepted_and_the_issuer_is_kept(auth_server: Any) -> None:
    auth_server.knobs.iss_supported = True
    auth_server.knobs.iss_param = auth_server.base_url
    assert oidc(auth_server).returncode == 0
    endpoints = shown()["endpoints"]
    assert endpoints["issuer"] == auth_server.base_url and endpoints["iss_required"] is True


def test_a_pasted_answer_from_another_issuer_is_refused(auth_server: Any) -> None:
    auth_server.knobs.iss_param = EVIL
    auth_server.add_client("client-p", "s", "client_secret_basic")
    proc = subprocess.Popen(
        [sys.executable, "-m", "oauthtok", "create", "p", "--service", "oidc",
         "--param", f"issuer={auth_server.base_url}", "--client-id", "client-p",
         "--scopes", "offline_access mail.read", "--flow", "paste", "--timeout", "30"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OAUTHTOK_CLIENT_SECRET": "s"},
    )  # fmt: skip
    assert proc.stdin and proc.stderr
    seen = ""
    while "press Enter" not in seen:
        seen += proc.stderr.readline()
    url = next(w for w in seen.split() if "/authorize?" in w)
    _, headers, _ = get(url)
    proc.stdin.write(headers["location"] + "\n")
    proc.stdin.close()
    assert proc.wait(30) == 5
    assert EVIL in proc.stderr.read() and auth_server.knobs.code_requests == 0


# -- nothing from outside reaches the terminal raw ----------------------------------------------

HOSTILE = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\r\u202egnp.exe\u200b"


def test_hostile_device_codes_are_shown_safely(auth_server: Any) -> None:
    auth_server.knobs.device_overrides = {
        "user_code": "AB" + HOSTILE,
        "verification_uri_complete": f"{auth_server.base_url}/device?x={HOSTILE}",
    }
    auth_server.knobs.device_pending_polls = 0
    result = create_token(auth_server, "--flow", "device")
    assert_terminal_safe(result.stdout + result.stderr)
    assert "AB\\x1b]52;c;" in result.stderr  # shown, as visible escapes


def test_hostile_error_text_is_shown_safely(auth_server: Any) -> None:
    seed_token(auth_server)
    auth_server.knobs.refresh_error_200 = "invalid_grant" + HOSTILE
    result = run_oauthtok("token", "t", "--min-valid", "99999")
    assert result.returncode in (4, 6)
    assert_terminal_safe(result.stdout + result.stderr)
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "override",
    [
        {"access_token": "at-1\r\nX-Injected: yes"},
        {"access_token": ""},
        {"access_token": 42},
        {"token_type": "Bearer\r\nX-Injected: yes"},
        {"token_type": "Bearer MAC"},
        {"refresh_token": "rt\x1b[2J"},
        {"scope": "mail.read \x1b[31mred"},
    ],
)
def test_a_malformed_token_answer_saves_nothing(auth_server: Any, override: dict[str, Any]) -> None:
    auth_server.knobs.token_overrides = override
    result = create_token(auth_server, in_process=True)
    assert result.returncode in (5, 6), result.stderr
    assert_terminal_safe(result.stderr)
    assert listed() == []


def test_a_malformed_refresh_answer_changes_nothing(auth_server: Any) -> None:
    seed_token(auth_server)
    before = run_oauthtok("token", "t").stdout
    auth_server.knobs.token_overrides = {"access_token": "x\ny"}
    result = run_oauthtok("token", "t", "--min-valid", "99999")
    assert result.returncode == 6 and "nothing was changed" in result.stderr
    auth_server.knobs.token_overrides = {}
    assert run_oauthtok("token", "t").stdout == before
    header = run_oauthtok("token", "t", "--format", "header").stdout
    assert header.count("\n") == 1  # never a second header line


@pytest.mark.parametrize(
    ("expires_in", "note"),
    [(float("inf"), "clamped"), (10**20, "clamped"), ("NaN", "not a number"),
     ("1e400", "not a number"), (-5, "expired"), ("3600", None)],
)  # fmt: skip
def test_an_odd_lifetime_never_crashes(auth_server: Any, expires_in: Any, note: str | None) -> None:
    auth_server.knobs.token_overrides = {"expires_in": expires_in}
    seed_token(auth_server)  # `create`'s command (in this process) keeps the odd answer's note
    data = shown()
    if note is None:
        assert data["expiry_note"] is None
    else:
        assert note in (data["expiry_note"] or "")
    # `list` and `show` by the code the program answers them with, `token` as the program
    # (its fast path, then the full path), `refresh`'s command in this process
    for run, command in (
        (read_only, ["list"]), (read_only, ["show", "t"]), (run_oauthtok, ["token", "t"]),
        (run_in_process, ["refresh", "t"]),
    ):  # fmt: skip
        result = run(*command)
        assert result.returncode in (0, 4, 6), (command, result.stderr)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr


# -- secrets and files --------------------------------------------------------------------------


def test_the_browser_never_inherits_the_client_secret(auth_server: Any, browser: Path) -> None:
    assert create_token(auth_server).returncode == 0  # the secret came from the environment
    assert "secret in environment: False" in browser.read_text()


def test_the_data_folder_must_be_ours(auth_server: Any, tmp_path: Path) -> None:
    seed_token(auth_server)
    data = Path(os.environ["XDG_DATA_HOME"]) / "oauthtok"
    data.chmod(0o770 | 0o002)
    try:
        result = run_oauthtok("list")
        assert result.returncode == 8 and "chmod go-w" in result.stderr
        assert result.stderr.count("\n") == 1
    finally:
        data.chmod(0o700)
    names = data / "names.json"
    os.chown(names, 65534, 65534)  # nobody: as root, another user's file
    try:
        result = run_oauthtok("token", "t")
        assert result.returncode == 8 and "belongs to another user" in result.stderr
    finally:
        os.chown(names, os.getuid(), os.getgid())
    assert run_oauthtok("token", "t").returncode == 0


def test_a_symlinked_lock_file_is_refused(auth_server: Any, tmp_path: Path) -> None:
    seed_token(auth_server)
    locks = Path(os.environ["XDG_DATA_HOME"]) / "oauthtok" / "locks"
    target = tmp_path / "elsewhere"
    target.write_text("")
    lock = locks / f"token-{shown()['id']}.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    result = run_oauthtok("token", "t", "--min-valid", "99999")
    assert result.returncode == 8 and "symbolic link" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_parents_of_the_data_folder_are_made_private(
    auth_server: Any, tmp_path: Path
) -> None:
    deep = tmp_path / "a" / "b" / "data"
    result = create_token(auth_server, env={"OAUTHTOK_DATA_DIR": str(deep)}, in_process=True)
    assert result.returncode == 0, result.stderr
    for folder in (tmp_path / "a", tmp_path / "a" / "b", deep):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_delete_during_a_refresh_leaves_no_keyring_item(auth_server: Any) -> None:
    seed_token(auth_server)
    token_id = shown()["id"]
    auth_server.knobs.refresh_delay = 1.5
    refreshing = subprocess.Popen(
        [sys.executable, "-m", "oauthtok", "token", "t", "--min-valid", "99999"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while auth_server.knobs.refresh_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.02)  # the refresh is at the provider now, holding the token's lock
    deleted = run_oauthtok("delete", "t", "--yes", "--no-revoke")
    refreshing.wait(30)
    assert deleted.returncode == 0, deleted.stderr
    assert token_id not in keyring_items()
    assert listed() == []


def test_two_creates_of_one_name_leave_one_live_grant(auth_server: Any) -> None:
    auth_server.add_client("client-twin", "flow-secret", "client_secret_post")
    args = [sys.executable, "-m", "oauthtok", "create", "twin", "--service", "testfull",
            "--client-id", "client-twin", "--scopes", "offline_access mail.read"]  # fmt: skip
    env = {**os.environ, "OAUTHTOK_CLIENT_SECRET": "flow-secret"}
    auth_server.knobs.refresh_delay = 0  # both consents complete before either saves
    procs = [subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(p.wait(60) for p in procs)
    assert codes == [0, 2], [p.stderr.read() if p.stderr else "" for p in procs]
    live = [t for t in auth_server.tokens.values() if not t.revoked]
    assert len(live) == 1  # the loser revoked the grant it obtained
    stored = run_oauthtok("token", "twin").stdout.strip()
    assert live[0].access_token == stored


# -- names that look alike are one name ---------------------------------------------------------


def test_lookalike_names_are_one_name(auth_server: Any) -> None:
    nfc = unicodedata.normalize("NFC", "café")
    seed_token(auth_server, name=nfc)
    nfd = unicodedata.normalize("NFD", "café")
    assert run_oauthtok("token", nfd).returncode == 0
    again = create_token(auth_server, name=nfd, in_process=True)
    assert again.returncode == 2 and "exists already" in again.stderr
    seed_token(auth_server, name="mail")
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "mail")
    assert run_oauthtok("show", fullwidth).returncode == 0


@pytest.mark.parametrize("name", ["mail\u200b", "liam\u202e", "a\u2066b", "\ufeffmail", "x\x1by"])
def test_invisible_characters_are_refused_in_names(auth_server: Any, name: str) -> None:
    result = create_token(auth_server, name=name, in_process=True)
    assert result.returncode == 2 and "name may not contain" in result.stderr


# -- a catalog layer that moves a bundled service -----------------------------------------------


def test_a_layer_moving_a_bundled_service_is_said_aloud(
    auth_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = tmp_path / "redirect.toml"
    layer.write_text(
        f'[services.github]\nauthorize_url = "{auth_server.base_url}/authorize"\n'
        f'token_url = "{auth_server.base_url}/token"\nissuer = "{auth_server.base_url}"\n'
        'redirect_uri = "http://127.0.0.1/callback"\n'
    )
    monkeypatch.setenv("OAUTHTOK_SERVICES", os.environ["OAUTHTOK_SERVICES"] + ":" + str(layer))
    result = create_token(auth_server, service="github", scopes="mail.read", in_process=True)
    assert result.returncode == 0, result.stderr
    notice = next(line for line in result.stderr.splitlines() if line.startswith("note:"))
    assert "'github'" in notice and str(layer) in notice
    host = auth_server.base_url.split("//")[1]
    assert f"token_url → {host}" in notice
    assert result.stderr.index("note:") < result.stderr.index("/authorize?")
    plain = create_token(
        auth_server, name="u", service="testidp", scopes="mail.read", in_process=True
    )
    assert "note:" not in plain.stderr


def test_records_keep_json_shapes(auth_server: Any) -> None:
    seed_token(auth_server)
    data = listed()[0]
    assert "min_valid_warned" not in data and "expiry_note" in data


def test_a_read_only_data_folder_still_answers_reads(auth_server: Any, tmp_path: Path) -> None:
    """Reads need no write: `list`, `show` and a valid `token` work; a refresh is exit 8."""
    mount_point = tmp_path / "ro"
    mount_point.mkdir(mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", str(mount_point)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("mounting a file system needs root")
    try:
        data = mount_point / "data"
        env = {"OAUTHTOK_DATA_DIR": str(data)}
        seed_token(auth_server, env=env)
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
        for command in (["list"], ["show", "t"], ["token", "t"], ["list", "--json"]):
            assert run_oauthtok(*command, env=env).returncode == 0, command
        full = run_oauthtok("token", "t", env={**env, "OAUTHTOK_NO_FAST_PATH": "1"})
        assert full.returncode == 0, full.stderr
        refresh = run_oauthtok("refresh", "t", "--force", env=env)
        assert refresh.returncode == 8 and "Traceback" not in refresh.stderr, refresh.stderr
        assert "read-only" in refresh.stderr.lower()
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_a_secret_typed_for_client_secret_stdin_is_hidden_and_asked_twice() -> None:
    """`--client-secret-stdin` at a terminal (typed, not piped) asks as the prompt does: the
    terminal does not echo it, and it must be typed twice. In a real pseudo-terminal."""
    import select
    import termios

    fd, terminal = os.openpty()
    args = ["create", "t", "--service", "testidp", "--client-id", "c", "--scopes",
            "offline_access mail.read", "--client-secret-stdin"]  # fmt: skip
    proc = subprocess.Popen([*PROGRAM, *args], stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = b""

    def read_until(wanted: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 20
        while wanted not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {wanted!r} in {seen!r}"
            if select.select([fd], [], [], left)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:  # the child ended
                    break
        assert wanted in seen, seen

    def type_when_asked(prompt: bytes, text: bytes) -> None:
        """Type as a person would: once the prompt shows and the terminal stopped echoing
        (typing earlier would be echoed, then flushed by the prompt's own TCSAFLUSH)."""
        nonlocal seen
        read_until(prompt)
        seen = seen.replace(prompt, b"", 1)
        deadline = time.monotonic() + 20
        while termios.tcgetattr(fd)[3] & termios.ECHO:
            assert time.monotonic() < deadline, "the terminal kept echoing"
            time.sleep(0.01)
        os.write(fd, text)

    try:
        for _ in range(3):
            type_when_asked(b"Client secret (hidden):", b"typed-secret-one\n")
            type_when_asked(b"Client secret (again):", b"typed-secret-two\n")
        read_until(b"did not match")
    finally:
        code = proc.wait(20)
        os.close(fd)
    assert code == 2
    assert b"typed-secret" not in seen  # never echoed
    assert b"nothing was saved" in seen
