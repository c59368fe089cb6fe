"""End to end: the real `oauthtok` program, the real Secret Service, a real Authlib server,
and a scripted browser set through $BROWSER."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    HEAVY,
    PROGRAM,
    expire_token,
    imported_modules,
    imported_names,
    keyring_items,
    listed,
    run_oauthtok,
    shown,
)
from tests.workmail import SECRET, create, seed, stored_metadata, token

pytestmark = pytest.mark.usefixtures("keyring_env", "test_catalog", "browser")


def only_record() -> dict[str, Any]:
    (path,) = (Path(os.environ["XDG_DATA_HOME"]) / "oauthtok" / "tokens").glob("*.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("auth", ["client_secret_basic", "client_secret_post"])
def test_create_confidential_then_token(auth_server: Any, auth: str) -> None:
    result = create(auth_server, auth=auth)
    assert result.returncode == 0, result.stderr
    assert "Saved token 'work-mail'" in result.stderr
    assert "/authorize?" in result.stderr  # the URL is always printed
    sent = auth_server.knobs.token_requests[-1]
    assert (sent["auth"] or "").startswith("Basic ") == (auth == "client_secret_basic")

    out = token()
    assert out.returncode == 0, out.stderr
    access = out.stdout
    assert access.startswith("at-") and access.endswith("\n") and access.count("\n") == 1
    assert out.stderr == ""
    # the secret and the tokens are in the keyring, not in the index
    text = stored_metadata()
    assert "work-mail" in text and "granted_scopes" in text
    assert SECRET not in text and access.strip() not in text
    assert only_record()["granted_scopes"] == ["offline_access", "mail.read"]


def test_create_public_client_with_pkce_only(auth_server: Any) -> None:
    result = create(auth_server, name="pub", public=True)
    assert result.returncode == 0, result.stderr
    assert auth_server.knobs.token_requests[-1]["auth"] is None
    assert token("pub").returncode == 0
    record = shown("pub")
    assert record["token_auth"] == "none" and record["status"] == "valid"


def test_formats(auth_server: Any) -> None:
    seed(auth_server)
    raw = token().stdout.strip()
    assert token("work-mail", "--format", "header").stdout == f"Authorization: Bearer {raw}\n"
    data = json.loads(token("work-mail", "--format=json").stdout)
    assert data["access_token"] == raw and data["token_type"] == "Bearer"
    assert data["scopes"] == ["offline_access", "mail.read"]
    assert data["expires_at"] > time.time() + 3000


def test_expiry_refresh_and_rotation(auth_server: Any) -> None:
    auth_server.knobs.expires_in = 30  # below the default --min-valid of 60 s
    seed(auth_server)
    first = token()
    assert first.returncode == 0, first.stderr
    assert auth_server.knobs.refresh_requests == 1  # due at once: refreshed before printing
    old_refresh = [t for t in auth_server.tokens.values() if t.revoked]
    assert old_refresh, "the server rotated the refresh token"
    second = token()
    assert auth_server.knobs.refresh_requests == 2
    assert second.stdout != first.stdout
    # the rotated refresh token was saved: a third refresh with it succeeds
    auth_server.knobs.expires_in = 3600
    third = run_oauthtok("refresh", "work-mail", "--force")
    assert third.returncode == 0, third.stderr
    assert "work-mail: refreshed" in third.stdout
    assert token().stdout.strip() == token().stdout.strip()
    assert auth_server.knobs.refresh_requests == 3


def test_reply_without_refresh_token_keeps_the_old_one(auth_server: Any) -> None:
    auth_server.knobs.rotate_refresh_tokens = False
    seed(auth_server)
    for _ in range(2):
        result = run_oauthtok("refresh", "work-mail", "--force")
        assert result.returncode == 0, result.stderr
    assert auth_server.knobs.refresh_requests == 2


@pytest.mark.slow
def test_twenty_concurrent_processes_on_expired_token(auth_server: Any) -> None:
    seed(auth_server)
    expire_token("work-mail")
    auth_server.knobs.expires_in = 3600
    auth_server.knobs.refresh_delay = 0.3
    start = auth_server.knobs.refresh_requests
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: token(), range(20)))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.stderr]
    assert auth_server.knobs.refresh_requests - start == 1
    assert len({r.stdout for r in results}) == 1


def _waiting_on(proc: subprocess.Popen[str], path: str) -> None:
    """Until `proc` has the lock file `path` open and sleeps between its tries to lock it (a
    kernel that hides where processes sleep: 0.5 s after it opened the file)."""
    target = os.path.realpath(path)
    deadline = time.monotonic() + 30
    opened_at = None
    while True:
        assert proc.poll() is None and time.monotonic() < deadline
        try:
            folder = f"/proc/{proc.pid}/fd"
            opened = any(os.readlink(f"{folder}/{fd}") == target for fd in os.listdir(folder))
            with open(f"/proc/{proc.pid}/wchan") as wchan:
                where = wchan.read().strip()
        except OSError:
            opened, where = False, ""
        if opened:
            opened_at = opened_at or time.monotonic()
            if "nanosleep" in where or (where in ("", "0") and time.monotonic() - opened_at > 0.5):
                return
        time.sleep(0.005)


def _due_token_waiting_for_its_lock(lock: str) -> subprocess.Popen[str]:
    waiting = subprocess.Popen(
        [*PROGRAM, "token", "work-mail"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )  # fmt: skip
    _waiting_on(waiting, lock)
    return waiting


def _refresh_lock(name: str) -> str:
    from oauthtok import layout
    from oauthtok.store import TokenStore

    store = TokenStore()
    return layout.lock_path(store.data_dir, layout.token_lock(store.get(name).id))


def test_a_call_that_waits_for_another_refresh_reads_its_token_without_the_full_path(
    auth_server: Any,
) -> None:
    """`token` on a due token while another process refreshes it (holds its refresh lock):
    the fast path waits for that lock, then reads the new token. It never loads the full
    path (no httpx, no manager: ~100 ms of CPU for each waiting call) and sends no request."""
    from oauthtok.lockfile import held
    from oauthtok.store import TokenStore

    seed(auth_server)
    expire_token("work-mail")
    lock = _refresh_lock("work-mail")
    assert os.path.exists(lock)  # made by `create` (store.add), for the first refresh
    requests = auth_server.knobs.refresh_requests
    with held(lock, 5):
        waiting = _due_token_waiting_for_its_lock(lock)
        store = TokenStore()
        record = store.get("work-mail")
        fresh = store.read_tokens(record).evolve(
            access_token="AT-refreshed-meanwhile", expires_at=time.time() + 3600
        )
        store.save_tokens(record, fresh, expires_at=fresh.expires_at)
    out, err = waiting.communicate(timeout=30)
    assert (waiting.returncode, out) == (0, "AT-refreshed-meanwhile\n"), err[-2000:]
    assert auth_server.knobs.refresh_requests == requests
    imported = imported_names(err)
    assert "oauthtok.fastpath" in imported
    assert not imported & {"httpx", "oauthtok.manager", "oauthtok.handout", "typer"}


def test_a_call_whose_wait_ends_without_a_refresh_refreshes_once_itself(
    auth_server: Any,
) -> None:
    """The process it waited for ended without refreshing (it failed, or was killed): the
    waiter renews the token itself, once, through the full path (which takes the lock
    anew)."""
    from oauthtok.lockfile import held

    seed(auth_server)
    expire_token("work-mail")
    lock = _refresh_lock("work-mail")
    requests = auth_server.knobs.refresh_requests
    with held(lock, 5):
        waiting = _due_token_waiting_for_its_lock(lock)
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and out.startswith("at-"), err[-2000:]
    assert auth_server.knobs.refresh_requests == requests + 1
    assert "oauthtok.manager" in imported_names(err)


def test_a_due_token_whose_refresh_lock_stays_held_is_exit_8_with_one_line(
    auth_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fast path waits for a due token's refresh lock as long as the full path would
    (contract.LOCK_TIMEOUT), then says what the full path says."""
    from oauthtok import contract, fastpath, handout
    from oauthtok.lockfile import held

    seed(auth_server)
    expire_token("work-mail")
    lock = _refresh_lock("work-mail")
    monkeypatch.setattr(contract, "LOCK_TIMEOUT", 0.2)

    def full_path(*args: Any) -> int:
        raise AssertionError("the fast path went to the full path")

    monkeypatch.setattr(handout, "main", full_path)
    capsys.readouterr()
    with held(lock, 5):
        assert fastpath.run(["WORK-MAIL"]) == 8
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "oauthtok: error: another oauthtok process held the lock on token 'work-mail' for "
        "0.2 s; retry, or look for a stuck oauthtok process\n"
    )


def test_invalid_grant_needs_reauthorization_then_reauthorize(auth_server: Any) -> None:
    seed(auth_server)
    expire_token("work-mail")
    auth_server.revoke_all()
    result = token()
    assert result.returncode == 4
    assert "invalid_grant" in result.stderr
    assert "oauthtok reauthorize work-mail" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    rows = listed()
    assert rows[0]["status"] == "needs-reauthorization"

    auth_server.knobs.expires_in = 3600
    again = run_oauthtok("reauthorize", "work-mail")
    assert again.returncode == 0, again.stderr
    assert token().returncode == 0
    rows = listed()
    assert rows[0]["status"] == "valid"


def _stored_secret(name: str) -> str | None:
    from oauthtok.store import TokenStore

    store = TokenStore()
    return store.secrets.get(store.get(name).id)


def test_provider_outage_leaves_tokens_untouched(auth_server: Any) -> None:
    seed(auth_server)
    expire_token("work-mail")
    before = _stored_secret("work-mail")
    auth_server.knobs.token_endpoint_status = 503
    result = token()
    assert result.returncode == 6, result.stderr
    assert "HTTP 503" in result.stderr and "nothing was changed" in result.stderr
    assert _stored_secret("work-mail") == before


def test_server_down_is_a_network_error(auth_server: Any) -> None:
    seed(auth_server)
    expire_token("work-mail")
    before = _stored_secret("work-mail")
    auth_server.stop()
    result = token()
    assert result.returncode == 6, result.stderr
    assert "cannot reach 127.0.0.1" in result.stderr
    assert _stored_secret("work-mail") == before


def test_denied_consent_saves_nothing(auth_server: Any) -> None:
    auth_server.knobs.consent = "deny"
    result = create(auth_server)
    assert result.returncode == 5
    assert "access_denied" in result.stderr
    assert listed() == []


def test_timeout_when_the_browser_never_comes_back(
    auth_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BROWSER_MODE", "nothing")
    result = create(auth_server, extra=("--timeout", "2"))
    assert result.returncode == 5
    assert "within 2 s" in result.stderr
    assert listed() == []


def test_wrong_state_is_ignored_and_the_wait_goes_on(
    auth_server: Any, browser: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BROWSER_MODE", "wrong-state")
    result = create(auth_server, extra=("--timeout", "3"))
    assert result.returncode == 5
    assert "wrong-state: 400" in browser.read_text()
    assert auth_server.knobs.code_requests == 0


def test_favicon_and_idle_preconnection_do_not_block(
    auth_server: Any, browser: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BROWSER_MODE", "noise")
    result = create(auth_server, extra=("--timeout", "20"))
    assert result.returncode == 0, result.stderr
    log = browser.read_text()
    assert "favicon: 404" in log and "callback: 200" in log
    assert "Signed in" in log and "at-" not in log  # the page never shows a token


def test_ctrl_c_while_waiting_saves_nothing(
    auth_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BROWSER_MODE", "nothing")
    auth_server.add_client("client-x", SECRET, "client_secret_basic")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "oauthtok", "create", "x", "--service", "testidp"),
            *("--client-id", "client-x", "--scopes", "offline_access", "--client-secret-stdin"),
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin and proc.stderr
    proc.stdin.write(SECRET + "\n")
    proc.stdin.close()
    seen = ""
    deadline = time.monotonic() + 30
    while "/authorize?" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    assert "/authorize?" in seen
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 130
    assert "cancelled; nothing was saved" in proc.stderr.read()
    assert listed() == []


def test_duplicate_name_is_refused_before_the_browser(auth_server: Any, browser: Path) -> None:
    seed(auth_server)
    browser.write_text("")
    result = create(auth_server, name="WORK-MAIL")
    assert result.returncode == 2
    assert "exists already" in result.stderr
    assert browser.read_text() == "" and "/authorize?" not in result.stderr


def test_cached_token_path_imports_nothing_heavy(auth_server: Any) -> None:
    seed(auth_server)
    result, modules = imported_modules("token", "work-mail", "--format", "json")
    assert result.returncode == 0 and json.loads(result.stdout)["access_token"].startswith("at-")
    assert "oauthtok.minibus" in modules and "oauthtok.fastpath" in modules
    assert "jeepney" not in modules  # the fast reader speaks D-Bus itself
    assert not [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY]


def test_due_token_takes_the_full_path_with_the_same_answer(auth_server: Any) -> None:
    seed(auth_server)
    result, modules = imported_modules("token", "work-mail", "--min-valid", "99999")
    assert result.returncode == 0 and "httpx" in modules and "oauthtok.handout" in modules
    assert "typer" not in modules and "rich" not in modules  # a refresh needs no CLI
    assert "oauthtok.freedesktop" in modules and "keyring" not in modules  # no discovery
    # the writer speaks D-Bus itself too: secretstorage only for a prompt (a locked keyring)
    assert not {"secretstorage", "jeepney"} & modules
    assert "oauthtok.notify" not in modules  # no [notify] command: nothing to tell
    assert auth_server.knobs.refresh_requests == 1


def test_refresh_all_reports_each_token(auth_server: Any) -> None:
    seed(auth_server, name="a")
    seed(auth_server, name="b")
    still = run_oauthtok("refresh", "--all")
    assert still.returncode == 0
    assert still.stdout == "2 tokens: still valid for more than 60 s (use --force to refresh)\n"
    forced = run_oauthtok("refresh", "--all", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines()[0].startswith("a: refreshed, valid for")
    assert auth_server.knobs.refresh_requests == 2
    # one token's grant revoked at the provider: the other still refreshes, exit 4 at the end
    revoked = next(
        t for t in auth_server.tokens.values() if not t.revoked and t.client_id == "client-a"
    )
    revoked.revoked = True
    mixed = run_oauthtok("refresh", "a", "b", "--force")
    assert mixed.returncode == 4
    assert "a: error:" in mixed.stderr and "b: refreshed" in mixed.stdout
    assert run_oauthtok("refresh").returncode == 2  # neither names nor --all


# -- the fast path and the full path give the same answers -------------------------------------

SAME_ANSWER = [
    ["work-mail"],
    ["work-mail", "--format", "raw"],
    ["work-mail", "-f", "header"],
    ["work-mail", "--format=JSON"],
    ["WORK-MAIL", "-fjson"],
    ["work-mail", "-f=json"],
    ["work-mail", "--format", "xml"],
    ["nope"],
    ["work-mail", "extra"],
    # the SASL formats: with --user, without it (no account is known: exit 2), misused
    ["work-mail", "--format", "xoauth2", "--user", "alice@example.test"],
    ["work-mail", "-foauthbearer", "--user=Bob,Smith@Example.test"],
    ["work-mail", "--format", "xoauth2"],
    ["work-mail", "-f", "oauthbearer", "--user", ""],
    ["work-mail", "-f", "xoauth2", "--user", "a\x01b"],
    ["work-mail", "--user", "alice@example.test"],
    ["nope", "-f", "xoauth2"],
    ["nope", "--user", "x"],
]


def test_same_answer_with_and_without_the_fast_path(auth_server: Any) -> None:
    seed(auth_server)
    for args in SAME_ANSWER:
        fast = token(*args)
        full = token(*args, env={"OAUTHTOK_NO_FAST_PATH": "1"})
        assert (fast.returncode, fast.stdout, fast.stderr) == (
            full.returncode,
            full.stdout,
            full.stderr,
        ), args
    assert auth_server.knobs.refresh_requests == 0


@pytest.mark.parametrize("fmt", ["raw", "header", "json"])
def test_every_format_is_answered_by_the_fast_path(auth_server: Any, fmt: str) -> None:
    seed(auth_server)
    result, modules = imported_modules("token", "work-mail", "--format", fmt)
    assert result.returncode == 0 and "oauthtok.fastpath" in modules
    assert "oauthtok.handout" not in modules  # answered from the cache, not handed over


def test_debug_says_why_the_fast_path_declined(auth_server: Any) -> None:
    seed(auth_server)
    quiet = token("nope")
    assert "debug" not in quiet.stderr and quiet.returncode == 3
    loud = token("nope", env={"OAUTHTOK_DEBUG": "1"})
    assert "oauthtok: debug: fast path declined (LookupError" in loud.stderr
    assert loud.returncode == 3


def test_a_create_that_fails_late_leaves_nothing_behind(auth_server: Any, tmp_path: Path) -> None:
    """The metadata cannot be written after the consent: no keyring item, no metadata file,
    no name, and the grant the provider issued is revoked."""
    data = Path(os.environ["XDG_DATA_HOME"]) / "oauthtok"
    data.mkdir(parents=True, mode=0o700)
    (data / "tokens").write_text("")  # a file where the folder of records goes (root can
    (data / "tokens").chmod(0o600)  # write anywhere, so no permission trick would do)
    before = keyring_items()  # the worker's Secret Service holds earlier tests' items too
    result = create(auth_server, auth="client_secret_post", service="testfull")
    assert result.returncode == 8, result.stderr
    assert "Traceback" not in result.stderr and "cannot write" in result.stderr
    assert not (data / "names.json").exists()
    assert keyring_items() == before, "an item was added or removed"
    issued = list(auth_server.tokens.values())
    assert issued and all(t.revoked for t in issued)


def test_an_internal_error_is_one_line_and_exit_1(auth_server: Any, tmp_path: Path) -> None:
    seed(auth_server)
    record_dir = Path(os.environ["XDG_DATA_HOME"]) / "oauthtok" / "tokens"
    (record_path,) = record_dir.glob("*.json")
    record = json.loads(record_path.read_text())
    record["expires_at"] = "soon"  # a type the code does not expect: a bug, not a user error
    record_path.write_text(json.dumps(record))
    result = run_oauthtok("list")
    assert result.returncode == 1
    assert result.stderr.startswith("oauthtok: internal error (TypeError)")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    debug = run_oauthtok("list", env={"OAUTHTOK_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


QUICK_SAME = [
    ["list"],
    ["list", "--json"],
    ["show", "WORK-MAIL"],
    ["show", "work-mail", "--json"],
    ["show", "nope"],
    ["services"],
    ["services", "--json"],
    ["show-help"],
    ["show-help", "testidp"],
    ["show-help", "nope"],
]


def test_read_only_commands_answer_the_same_before_and_after_typer(auth_server: Any) -> None:
    seed(auth_server)
    for args in QUICK_SAME:
        fast = run_oauthtok(*args)
        full = run_oauthtok(*args, env={"OAUTHTOK_NO_FAST_PATH": "1"})
        if "--json" in args and args[0] in ("list", "show"):  # expires_in counts down
            fast_data, full_data = json.loads(fast.stdout), json.loads(full.stdout)
            for data in (fast_data if isinstance(fast_data, list) else [fast_data],
                         full_data if isinstance(full_data, list) else [full_data]):  # fmt: skip
                for item in data:
                    item.pop("expires_in")
            assert fast_data == full_data, args
        else:
            assert fast.stdout == full.stdout, args
        assert (fast.returncode, fast.stderr) == (full.returncode, full.stderr), args
    _, modules = imported_modules("list")
    assert "typer" not in modules
    # the metadata only: nothing of the secret stores or of rich when piped (1,000 tokens: issue 8)
    unused = {"oauthtok.stores", "oauthtok.config", "oauthtok.filestore", "oauthtok.secretstore"}
    assert not modules & {*unused, "keyring", "rich"}
    _, modules = imported_modules("list", "--json")
    assert "typing" not in modules  # ~4 ms of `list` (annotations are strings: TYPE_CHECKING)
