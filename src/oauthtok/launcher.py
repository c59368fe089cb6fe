"""The `oauthtok` entry point: the commands scripts call most are answered before Typer loads.

`--version` is printed from here; `token` goes through `fastpath` (a cached read, or the
refresh use case without the CLI), and so do the read-only `list`, `show`, `services` and
`show-help`. Everything else, and anything `fastpath` declines (help, usage errors,
`OAUTHTOK_NO_FAST_PATH=1`), is the Typer application in `oauthtok.cli`. Every path ends the
process itself once its output is flushed (`_leave`), without the interpreter's teardown.

First of all, where DBUS_SESSION_BUS_ADDRESS is unset (cron, systemd services, SSH), the user's
session bus is looked for at $XDG_RUNTIME_DIR/bus and /run/user/UID/bus (`sessionbus`).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def main() -> None:
    import gc

    gc.disable()  # no cyclic garbage collection while the command starts and works: `collector`
    try:
        if sys.platform.startswith("linux"):
            from oauthtok.sessionbus import ensure_session_bus

            ensure_session_bus()  # cron, systemd, SSH: find the user's bus, for both paths
        code = _early(sys.argv[1:])
        if code is not None:
            sys.stdout.flush()
            os._exit(code)  # skip interpreter shutdown (10-50 ms); stdout is flushed
        from oauthtok.cli import main as cli_main
    except BaseException as exc:  # Ctrl-C while starting, a closed pipe: the usual boundary
        if isinstance(exc, SystemExit):
            raise
        from oauthtok.errors import report

        sys.exit(report(exc))
    # Typer ends every command by raising SystemExit. The interpreter's own exit after that
    # tears down every module and object Typer, httpx and the rest imported (~50 ms of CPU
    # after a command that talked to a provider); `_leave` does what of it matters instead.
    try:
        cli_main()
        ended = SystemExit(0)
    except SystemExit as exc:
        ended = exc
    _leave(ended)


def _leave(ended: SystemExit) -> NoReturn:
    """End the process as the interpreter's exit would, without its teardown: exit handlers
    run, output is flushed, the status is the same. Whatever the fast end cannot do as the
    interpreter would (a status that is a message, a thread still to wait for, a closed pipe
    to report) is left to the interpreter."""
    import atexit
    import threading

    status = ended.code
    if status is not None and not isinstance(status, int):
        raise ended  # printed by the interpreter, exit status 1
    main = threading.main_thread()
    if any(not (t.daemon or t is main) for t in threading.enumerate()):
        raise ended  # the interpreter waits for these
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        raise ended from None  # the interpreter's exit answers a closed pipe, as before
    os._exit(0 if status is None else status)


def _early(args: list[str]) -> int | None:
    if args == ["--version"]:
        from oauthtok import __version__

        sys.stdout.write(f"oauthtok {__version__}\n")
        return 0
    if args[:1] == ["token"]:
        from oauthtok.fastpath import run

        return run(args[1:])
    if args and args[0] in ("list", "show", "services", "show-help"):
        from oauthtok.fastpath import quick

        return quick(args[0], args[1:])
    return None
