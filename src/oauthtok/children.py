"""Running the user's own commands (a key command, a notify command): bounded and quiet.

Every child gets a deadline (its whole process group is killed when it passes), a cap on what
it may print, no standard input, and an environment without oauthtok's secrets. Its output is
captured, never mixed into oauthtok's own stdout.

Stdlib only.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

#: variables never handed to a child: oauthtok's own (the client secret among them)
SECRET_ENV_PREFIX = "OAUTHTOK_"
#: how long to read on after the child exited (its background children may hold the pipes)
_GRACE = 0.5


class Finished(NamedTuple):
    returncode: int | None  # None: killed at the deadline
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool


def child_env(
    extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The parent's environment without any OAUTHTOK_* variable, plus `extra`."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    for key in list(env):
        if key.upper().startswith(SECRET_ENV_PREFIX):
            del env[key]
    env.update(extra or {})
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def run_bounded(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    cap: int = 64 * 1024,
    cwd: str | None = None,
) -> Finished:
    """Run `argv` to completion or to the deadline; read at most `cap` bytes of each stream.

    OSError when it cannot be started (no such program, not executable).
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        close_fds=True,
        start_new_session=os.name == "posix",  # its own group: a deadline kills all of it
    )
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    out_buf, err_buf = bytearray(), bytearray()
    buffers = {proc.stdout.fileno(): out_buf, proc.stderr.fileno(): err_buf}
    truncated = False
    timed_out = False
    if sys.platform == "win32":  # no select() on pipes: communicate, then cut
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            timed_out = True
        truncated = len(out) > cap or len(err) > cap
        return Finished(
            None if timed_out else proc.returncode, out[:cap], err[:cap], timed_out, truncated
        )
    with selectors.DefaultSelector() as sel:
        for stream in (proc.stdout, proc.stderr):
            sel.register(stream, selectors.EVENT_READ)
        open_streams = 2
        exited_at: float | None = None
        while open_streams:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _GRACE:
                break  # it exited; something it started in the background holds the pipes
            for key, _ in sel.select(min(deadline - now, _GRACE / 2)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                buf = buffers[key.fd]
                room = cap - len(buf)
                if len(chunk) > room:
                    truncated = True
                buf.extend(chunk[: max(room, 0)])
    if timed_out:
        _kill_group(proc)
    try:
        returncode: int | None = proc.wait(timeout=max(deadline - time.monotonic(), 0.05))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        returncode = None
        timed_out = True
    finally:
        proc.stdout.close()
        proc.stderr.close()
    if timed_out:
        returncode = None
    return Finished(returncode, bytes(out_buf), bytes(err_buf), timed_out, truncated)


def last_line(data: bytes, limit: int = 200) -> str:
    """The last non-empty line of a child's output, printable and short, for a message."""
    text = data.decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = "".join(c if c.isprintable() else " " for c in lines[-1])
    return line if len(line) <= limit else line[: limit - 1] + "…"
