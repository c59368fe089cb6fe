"""Cross-process locks: one lock file each, held with `flock` while a block runs.

On POSIX this is the standard library only (`fcntl`): filelock 4 costs ~30 ms to import
(logging, decimal, typing, inspect), paid by every process that refreshes or writes; the lock
itself is a dozen lines. Windows keeps filelock, which knows its locking.

The lock file is opened with O_NOFOLLOW (a symlink planted in its place is refused, as
filelock ≥ 3.20.1 does: CVE-2025-68146), must be a regular file, is made 0600 whatever the
umask, and is never deleted (deleting a lock file
while another process waits on it would let two processes hold "the" lock). A lock belongs to
the open file, not the process: two threads, or two processes, each opening the file exclude
each other, and the lock ends when the file is closed (when the process dies too). `flock`
on NFS needs the server's lock service; keep the data folder on a local file system.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

#: how often a waiter tries again (the first retries come sooner: most waits are short)
_POLL_MAX_S = 0.05


class LockTimeout(TimeoutError):
    """The lock was held by another process for longer than the caller would wait."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(f"the lock {path} was held for more than {timeout:g} s")
        self.path = path
        self.timeout = timeout


@contextlib.contextmanager
def held(path: str, timeout: float) -> Iterator[None]:
    """Hold the lock `path` (created 0600 when missing) for the block; LockTimeout when
    another holder keeps it `timeout` seconds, OSError when the file cannot be opened."""
    if sys.platform == "win32":  # pragma: no cover - not tested here
        from filelock import FileLock, Timeout

        try:
            with FileLock(path, mode=0o600).acquire(timeout=timeout):
                yield
        except Timeout:
            raise LockTimeout(path, timeout) from None
        return
    import fcntl

    fd = _open(path)
    try:
        ahead = _TAKEN_AHEAD.pop(_file_key(fd), None)
        if ahead is not None:  # this process holds it already: this block takes it over
            fd, duplicate = ahead, fd
            os.close(duplicate)
        else:
            _acquire(fd, path, timeout)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


#: locks this process took before the code that takes them loaded, by (device, inode): the
#: `token` fast path holds a due token's lock while the full path imports what a refresh
#: needs, so that other processes wait for that refresh cheaply, and the full path's `held`
#: takes the lock over (a second `flock` of the same file by this process would wait forever)
_TAKEN_AHEAD: dict[tuple[int, int], int] = {}


def _file_key(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def take_ahead(path: str, timeout: float) -> tuple[tuple[int, int], bool] | None:
    """Lock the existing lock file `path` (never created) until `held` of the same file takes
    it over or `release_ahead` lets it go: (its key, whether another process held it first).
    None when there is no such regular file of this user (the caller goes on without it);
    LockTimeout when another holder keeps it `timeout` seconds."""
    if sys.platform == "win32":  # pragma: no cover - not tested here
        return None
    import fcntl
    import stat

    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO never blocks
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            os.close(fd)
            return None
        key = st.st_dev, st.st_ino
        if key in _TAKEN_AHEAD:
            os.close(fd)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            contended = False
        except BlockingIOError:
            _acquire(fd, path, timeout)
            contended = True
    except BaseException:
        os.close(fd)
        raise
    _TAKEN_AHEAD[key] = fd
    return key, contended


def release_ahead(key: tuple[int, int]) -> None:
    """Let go of a lock `take_ahead` took, unless `held` took it over (it ends with its block)."""
    fd = _TAKEN_AHEAD.pop(key, None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor of the open file ends its flock


def create(path: str) -> None:
    """The lock file `path`, created 0600 when missing (nothing is locked; on Windows
    nothing: filelock makes its own)."""
    if sys.platform == "win32":  # pragma: no cover - not tested here
        return
    os.close(_open(path))


def _open(path: str) -> int:
    """The lock file `path` opened (created when missing), checked by `_check_file`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _check_file(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_file(fd: int, path: str) -> None:
    """A regular file (not a FIFO or device planted there), 0600 whatever the umask made it
    (a mode we cannot set on a file that is not ours is left: the caller checks owners)."""
    import errno
    import stat

    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", path)
    if stat.S_IMODE(st.st_mode) != 0o600:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, 0o600)


def _acquire(fd: int, path: str, timeout: float) -> None:
    import fcntl

    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(path, timeout) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX_S)
