"""`oauthtok exec NAME -- COMMAND [ARGS…]`: run a program with a fresh access token in its
environment, never in its argv (`ps` shows argv to every user; the environment only to the
same user and root).

oauthtok gets the token first (refreshing it when it expires within `--min-valid`), then
*replaces itself* with the program (`execve`): no oauthtok process stays in between. So the
program receives signals (Ctrl-C, a service manager's SIGTERM) and the terminal exactly as if
it had been started directly, its stdin is untouched, and its exit status is the status the
caller sees, a death by signal included (a shell reports 128+n). A supervising process would
have to forward every signal and re-create that status, and would hold oauthtok's memory for
the program's whole run. The price: the token is not renewed while the program runs (ask for
enough with `--min-valid`), and nothing of oauthtok runs after it.

oauthtok's own failures keep their codes (3, 4, 6, 8, …) and happen before the program
starts; a command that cannot be found exits 127, one that cannot be run 126 (the shell's
codes). Windows has no exec that keeps the process: there the program runs as a child and
its exit code is passed on.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence

from oauthtok import contract
from oauthtok.errors import OauthtokError, UsageError

DEFAULT_VARIABLE = "OAUTHTOK_TOKEN"
#: what the program's environment never gets from oauthtok's
WITHHELD = frozenset({"OAUTHTOK_CLIENT_SECRET"})
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CommandNotFound(OauthtokError):
    exit_code = 127


class CommandNotRunnable(OauthtokError):
    exit_code = 126


def check_variable(name: str) -> str:
    """`--env VAR`: a portable variable name, and not one oauthtok withholds."""
    if not _VARIABLE.match(name):
        raise UsageError(f"--env {name!r} is not a variable name (letters, digits and _)")
    if name in WITHHELD or name == "PATH":
        raise UsageError(f"--env {name} would hand the token out as {name}; choose another name")
    return name


def child_environment(environ: Mapping[str, str], variable: str, token: str) -> dict[str, str]:
    """The program's environment: ours, without the client secret, plus VARIABLE=token."""
    env = {k: v for k, v in environ.items() if k not in WITHHELD}
    env[variable] = token
    return env


def find_command(command: str, environ: Mapping[str, str]) -> str:
    """The program's path, looked up on PATH as a shell would (before any token is read)."""
    if not command:
        raise UsageError("no command to run: give it after --, e.g. `-- python3 script.py`")
    found = shutil.which(command, path=environ.get("PATH", os.defpath))
    if found is None:
        if os.sep in command and os.path.exists(command):
            raise CommandNotRunnable(f"{command}: not executable (chmod +x?)")
        raise CommandNotFound(f"{command}: command not found")
    return found


def run_with_token(
    name: str,
    argv: Sequence[str],
    *,
    variable: str = DEFAULT_VARIABLE,
    min_valid: float = contract.DEFAULT_MIN_VALID,
) -> int:
    """Replace this process with `argv`, the token of `name` in `variable`. Returns only on
    Windows (the program's exit code); raises oauthtok's errors before the program starts."""
    from oauthtok.manager import TokenManager

    check_variable(variable)
    if not argv:
        raise UsageError("no command to run: give it after --, e.g. `-- python3 script.py`")
    path = find_command(argv[0], os.environ)
    token = TokenManager().valid_token(name, min_valid=min_valid).tokens.access_token
    env = child_environment(os.environ, variable, token)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name != "posix":
        import subprocess

        return subprocess.run([path, *argv[1:]], env=env, check=False).returncode
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec, and
    # programs expect the defaults (`subprocess` restores them the same way)
    for signame in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, signame):
            signal.signal(getattr(signal, signame), signal.SIG_DFL)
    try:
        os.execve(path, list(argv), env)
    except OSError as exc:  # removed meanwhile, no interpreter for a script, no permission
        raise CommandNotRunnable(f"{argv[0]}: cannot run it ({exc.strerror or exc})") from None
