"""`lockfile.held`: the cross-process lock under the store's index, each token's refresh, the
file store and the notifier. Real processes and threads, real lock files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oauthtok import store as store_module
from oauthtok.errors import StoreError
from oauthtok.lockfile import LockTimeout, held
from oauthtok.secretstore import SecretStore
from oauthtok.store import TokenStore
from tests.helpers import MemoryKeyring, make_record, make_secrets

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock")

HOLDER = """
import sys, time
from oauthtok.lockfile import held
with held(sys.argv[1], 5):
    print("held", flush=True)
    sys.stdin.readline()  # until the test says so (or the process is killed)
"""


def holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout and proc.stdout.readline() == "held\n"
    return proc


def test_another_process_waits_then_gives_up_with_lock_timeout(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    proc = holder(path)
    try:
        started = time.monotonic()
        with pytest.raises(LockTimeout) as raised, held(str(path), 0.3):
            pytest.fail("acquired a lock another process holds")
        waited = time.monotonic() - started
        assert 0.3 <= waited < 2, waited
        assert isinstance(raised.value, TimeoutError) and str(path) in str(raised.value)
    finally:
        assert proc.stdin
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(10) == 0
    with held(str(path), 0.3):  # released with the block
        pass


def test_a_waiter_gets_the_lock_as_soon_as_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    proc = holder(path)
    assert proc.stdin
    threading.Timer(0.3, lambda: (proc.stdin.write("\n"), proc.stdin.flush())).start()  # type: ignore[union-attr]
    started = time.monotonic()
    with held(str(path), 10):
        waited = time.monotonic() - started
    assert 0.25 <= waited < 1.5, waited
    assert proc.wait(10) == 0


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    proc = holder(path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    started = time.monotonic()
    with held(str(path), 5):
        assert time.monotonic() - started < 0.5


def test_threads_exclude_each_other_and_an_exception_releases(tmp_path: Path) -> None:
    path = str(tmp_path / "x.lock")
    inside: list[int] = []
    overlaps: list[int] = []

    def work() -> None:
        for _ in range(20):
            with held(path, 10):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                time.sleep(0.001)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not overlaps
    with pytest.raises(RuntimeError), held(path, 1):
        raise RuntimeError("boom")
    with held(path, 0.1):  # the exception released it
        pass


@pytest.mark.parametrize("umask", [0, 0o277])  # 0o277: the file is made 0400; fchmod fixes it
def test_the_lock_file_is_0600_whatever_the_umask_and_kept(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "x.lock"
    old = os.umask(umask)
    try:
        with held(str(path), 1):
            pass
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.exists()  # never deleted: a waiter on the old file would hold "the" lock too


def test_a_symlink_in_the_lock_files_place_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep me")
    link = tmp_path / "x.lock"
    link.symlink_to(target)
    with pytest.raises(OSError) as raised, held(str(link), 1):
        pytest.fail("followed a symlink")
    assert not isinstance(raised.value, LockTimeout)
    assert target.read_text() == "keep me"
    dangling = tmp_path / "y.lock"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError), held(str(dangling), 1):
        pytest.fail("followed a symlink")
    assert not (tmp_path / "nowhere").exists()  # nothing created through the link


def test_a_store_lock_held_too_long_is_exit_8_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    """The index lock held by another process for longer than the store waits: StoreError
    (exit 8) naming what was locked, and nothing was changed."""
    store = TokenStore(SecretStore(memory_keyring), data_dir=str(tmp_path / "d"))
    store.add(make_record("a"), make_secrets())
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.3)
    proc = holder(tmp_path / "d" / "locks" / "index.lock")
    try:
        with pytest.raises(StoreError) as raised:
            store.rename("a", "b")
    finally:
        assert proc.stdin
        proc.stdin.close()
        proc.wait(10)
    assert str(raised.value) == (
        "another oauthtok process held the lock on the token index for 0.3 s; retry, or look "
        "for a stuck oauthtok process"
    )
    assert raised.value.exit_code == 8
    assert [r.name for r in store.records()] == ["a"]


def test_a_fifo_or_a_folder_in_the_lock_files_place_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "x.lock"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"), held(str(fifo), 1):
        pytest.fail("locked a FIFO")
    folder = tmp_path / "y.lock"
    folder.mkdir()
    with pytest.raises(OSError), held(str(folder), 1):
        pytest.fail("locked a folder")


def test_the_file_stores_lock_failures_are_exit_8(tmp_path: Path) -> None:
    """A symlink where the file store's lock goes: one StoreError line, not an OSError."""
    from oauthtok.filestore import LOCK_NAME, FileStore

    data = tmp_path / "d"
    (data / "locks").mkdir(parents=True)
    (data / "locks" / LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreError) as raised:
        FileStore(str(data)).set("0123456789abcdef0123456789abcdef", "s3cr3t-v4lue")
    assert raised.value.exit_code == 8 and "cannot lock the file store" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)
    assert not (tmp_path / "elsewhere").exists()


# -- a lock taken ahead (the `token` fast path, for a due token) ------------------------------


@pytest.fixture(autouse=True)
def _nothing_taken_ahead_stays() -> Iterator[None]:
    """A failed test leaves no lock taken ahead behind (a later file on the same inode would
    be taken over)."""
    from oauthtok import lockfile

    yield
    for key in list(lockfile._TAKEN_AHEAD):
        lockfile.release_ahead(key)


TRY = """
import sys
from oauthtok.lockfile import LockTimeout, held
try:
    with held(sys.argv[1], float(sys.argv[2])):
        print("got")
except LockTimeout:
    print("timeout")
"""


def other_process_gets(path: Path, timeout: float) -> bool:
    """Whether another process gets the lock within `timeout` seconds."""
    out = subprocess.run(
        [sys.executable, "-c", TRY, str(path), str(timeout)],
        capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    assert out in ("got\n", "timeout\n"), out
    return out == "got\n"


def test_a_lock_taken_ahead_is_taken_over_by_held_and_ends_with_its_block(tmp_path: Path) -> None:
    """`held` of a file this process took ahead does not wait on itself: it takes the lock
    over, and the lock ends with its block (another process gets it then, not sooner)."""
    from oauthtok.lockfile import create, release_ahead, take_ahead

    path = tmp_path / "token-x.lock"
    create(str(path))
    ahead = take_ahead(str(path), 5)
    assert ahead is not None and ahead[1] is False  # nobody held it
    assert not other_process_gets(path, 0.2)
    started = time.monotonic()
    with held(str(path), 5):  # would wait 5 s (on itself) without the takeover
        assert time.monotonic() - started < 1
        assert not other_process_gets(path, 0.2)
    assert other_process_gets(path, 2)  # the block ended: released
    release_ahead(ahead[0])  # taken over already: nothing left to release


def test_a_lock_taken_ahead_and_never_taken_over_is_released_by_release_ahead(
    tmp_path: Path,
) -> None:
    from oauthtok.lockfile import create, release_ahead, take_ahead

    path = tmp_path / "token-y.lock"
    create(str(path))
    ahead = take_ahead(str(path), 5)
    assert ahead is not None
    assert take_ahead(str(path), 5) is None  # taken ahead once per process
    assert not other_process_gets(path, 0.2)
    release_ahead(ahead[0])
    assert other_process_gets(path, 2)


def test_take_ahead_waits_for_a_holder_and_says_so(tmp_path: Path) -> None:
    from oauthtok.lockfile import release_ahead, take_ahead

    path = tmp_path / "token-z.lock"
    proc = holder(path)
    try:
        threading.Timer(0.3, lambda: proc.communicate("go\n")).start()
        started = time.monotonic()
        ahead = take_ahead(str(path), 5)
        assert ahead is not None and ahead[1] is True  # another process held it first
        assert time.monotonic() - started >= 0.25
        release_ahead(ahead[0])
    finally:
        proc.kill()
        proc.wait()
    proc = holder(path)
    try:
        with pytest.raises(LockTimeout):
            take_ahead(str(path), 0.2)
    finally:
        proc.kill()
        proc.wait()


def test_take_ahead_creates_nothing_and_skips_what_is_not_our_regular_file(tmp_path: Path) -> None:
    """The fast path never creates a lock file (nor the folder): without one it goes on
    without the lock (the full path creates it). A FIFO does not block it; a file of another
    user is not waited on."""
    from oauthtok.lockfile import take_ahead

    missing = tmp_path / "locks" / "token-m.lock"
    assert take_ahead(str(missing), 1) is None
    assert not missing.parent.exists()
    fifo = tmp_path / "fifo.lock"
    os.mkfifo(fifo)
    assert take_ahead(str(fifo), 1) is None
    link = tmp_path / "link.lock"
    (tmp_path / "target").write_text("")
    link.symlink_to(tmp_path / "target")
    assert take_ahead(str(link), 1) is None
    theirs = tmp_path / "theirs.lock"
    theirs.write_text("")
    real_uid = os.geteuid()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "geteuid", lambda: real_uid + 1)  # the file is another user's
        assert take_ahead(str(theirs), 1) is None
