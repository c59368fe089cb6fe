"""The `oauthtok` entry point: the commands scripts call most are answered before Typer loads.

`--version` is printed from here; `token` goes through `fastpath` (a cached read, or the
refresh use case without the CLI), and so do the read-only `list`, `show`, `services` and
`show-help`. Everything else, and anything `fastpath` declines (help, usage errors,
`OAUTHTOK_NO_FAST_PATH=1`), is the Typer application in `oauthtok.cli`. Every command ends
the process itself once its output is flushed (`_leave`), without the interpreter's teardown;
only an error while starting is left to the interpreter's exit.

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
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:  # closed when started (`>&-`): as a closed pipe, the
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (output goes nowhere)
    try:
        if sys.platform.startswith("linux"):
            from oauthtok.sessionbus import ensure_session_bus

            ensure_session_bus()  # cron, systemd, SSH: find the user's bus, for both paths
        code = _early(sys.argv[1:])
        if code is not None:
            _leave(SystemExit(code))
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
    except BaseException as exc:  # Ctrl-C while Typer loads, before the app's own boundary
        from oauthtok.errors import report

        ended = SystemExit(report(exc))
    _leave(ended)


def _leave(ended: SystemExit) -> NoReturn:
    """End the process as the interpreter's exit would, without its teardown: exit handlers
    run, output is flushed, the status is the same, and a closed output pipe ends quietly with
    141 (as the error boundary answers one). Whatever the fast end cannot do as the interpreter
    would — a status that is a message or beyond 0-255, a thread still to wait for, output that
    cannot be flushed for another reason — is left to the interpreter."""
    import atexit

    status = 0 if ended.code is None else ended.code
    if not isinstance(status, int) or not 0 <= status <= 255:
        raise ended  # a message (printed, status 1), or a status the interpreter truncates
    threading = sys.modules.get("threading")  # not imported: no thread was started
    if threading is not None:
        main = threading.main_thread()
        if any(not (t.daemon or t is main) for t in threading.enumerate()):
            raise ended  # the interpreter waits for these
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()  # neither is None: `main` put /dev/null in place of a closed one
        sys.stderr.flush()
    except BrokenPipeError:
        from oauthtok.errors import BROKEN_PIPE

        os._exit(BROKEN_PIPE)  # what is left unwritten goes nowhere, quietly
    except (OSError, ValueError) as exc:  # a full disk, a closed file: one line, not a traceback
        from oauthtok.errors import cannot_write_output

        cannot_write_output(exc)
        os._exit(status or 1)
    os._exit(status)


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
