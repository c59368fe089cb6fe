"""The keep-alive schedule: `refresh --all --idle-for D` and `status --quiet`, every so often.

One writer per scheduler, each a pure function returning what it would write:
- Linux with a systemd user instance: a user service + timer (`oauthtok-keepalive.*`);
- other POSIX systems: a crontab line (printed, for the user to add with `crontab -e`);
- macOS: a launchd agent (`~/Library/LaunchAgents/oauthtok.keepalive.plist`);
- Windows: a Task Scheduler task (XML, registered with `schtasks /Create /XML`).

`make_plan()` puts together the files and the commands to run; `install()`, `remove()` and
`show()` do the side effects through an injected runner, so that tests need no running
scheduler. The commands always name the full path of the installed `oauthtok`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape as xml_escape

from oauthtok.durations import format_duration
from oauthtok.errors import UsageError

NAME = "oauthtok-keepalive"
LAUNCHD_LABEL = "oauthtok.keepalive"
CRON_MARKER = "# oauthtok keep-alive"
DEFAULT_EVERY = 86400
DEFAULT_IDLE_FOR = 7 * 86400
MIN_EVERY = 15 * 60
MAX_EVERY = 31 * 86400
#: variables that change where oauthtok looks; the scheduled job gets the values of install time
PASSED_ENV = ("OAUTHTOK_DATA_DIR", "OAUTHTOK_CONFIG_DIR", "OAUTHTOK_STORE", "OAUTHTOK_SERVICES")
KINDS = ("systemd", "cron", "launchd", "schtasks")

#: runs a command; returns (exit code, output). Raises OSError when it cannot start.
Runner = Callable[[Sequence[str]], tuple[int, str]]


def run_command(argv: Sequence[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]} did not finish within 30 s"
    return done.returncode, (done.stdout + done.stderr).strip()


@dataclass(frozen=True)
class Job:
    """What the schedule runs."""

    executable: tuple[str, ...]  # the full path of oauthtok (or python -m oauthtok)
    every: int = DEFAULT_EVERY
    idle_for: int = DEFAULT_IDLE_FOR
    environment: tuple[tuple[str, str], ...] = ()

    def commands(self) -> list[list[str]]:
        exe = list(self.executable)
        return [
            [*exe, "refresh", "--all", "--idle-for", format_duration(self.idle_for)],
            [*exe, "status", "--quiet"],
        ]


def find_executable(argv0: str | None = None) -> tuple[str, ...]:
    """The installed oauthtok, as a full path: the program being run when it is `oauthtok`,
    else the one on PATH, else this Python with `-m oauthtok`."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if argv0 and os.path.basename(argv0).split(".")[0] == "oauthtok" and os.path.isfile(argv0):
        return (os.path.abspath(argv0),)
    found = shutil.which("oauthtok")
    if found:
        return (os.path.abspath(found),)
    return (os.path.abspath(sys.executable), "-m", "oauthtok")


def make_job(
    every: int = DEFAULT_EVERY,
    idle_for: int | None = None,
    executable: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Job:
    """A job; `idle_for` defaults to 7 days (and never less than `every`). UsageError when
    `every` is under 15 minutes or over 31 days."""
    if not MIN_EVERY <= every <= MAX_EVERY:
        raise UsageError(
            f"--every must be between {format_duration(MIN_EVERY)} and "
            f"{format_duration(MAX_EVERY)}, not {format_duration(every)}"
        )
    if idle_for is None:
        idle_for = max(DEFAULT_IDLE_FOR, every)
    environ = os.environ if environ is None else environ
    env = tuple((k, environ[k]) for k in PASSED_ENV if environ.get(k))
    exe = tuple(executable) if executable else find_executable()
    return Job(executable=exe, every=every, idle_for=idle_for, environment=env)


# -- systemd ----------------------------------------------------------------------------------

_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9/_.:=@+,-]+")


def systemd_quote(word: str) -> str:
    """One word of a systemd command line: specifiers (%) and variables ($) kept literal."""
    if any(c in word for c in "\n\r\0"):
        raise UsageError("a path with a line break cannot go into a systemd unit")
    word = word.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit_dir(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user")


def systemd_files(job: Job, unit_dir: str) -> list[tuple[str, str]]:
    """The user service and timer."""
    every = format_duration(job.every)
    refresh, status = (" ".join(systemd_quote(w) for w in c) for c in job.commands())
    env = "".join(f"Environment={systemd_quote(f'{k}={v}')}\n" for k, v in job.environment)
    service = (
        "[Unit]\n"
        "Description=oauthtok keep-alive: refresh idle grants, raise notifications\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"{env}"
        "# a failed refresh is reported by the status run that follows\n"
        f"ExecStart=-{refresh}\n"
        f"ExecStart={status}\n"
    )
    timer = (
        "[Unit]\n"
        f"Description=Run the oauthtok keep-alive every {every}\n"
        "\n"
        "[Timer]\n"
        "OnStartupSec=5min\n"
        f"OnUnitActiveSec={every}\n"
        f"RandomizedDelaySec={format_duration(min(job.every // 10, 3600))}\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return [
        (os.path.join(unit_dir, f"{NAME}.service"), service),
        (os.path.join(unit_dir, f"{NAME}.timer"), timer),
    ]


def has_systemd_user(
    environ: Mapping[str, str] | None = None, runner: Runner | None = None
) -> bool:
    """A systemd user instance runs for this user: its runtime folder exists, or
    `systemctl --user show-environment` answers."""
    environ = os.environ if environ is None else environ
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(os.path.join(runtime, "systemd")):
        return True
    if shutil.which("systemctl") is None and runner is None:
        return False
    try:
        code, _ = (runner or run_command)(["systemctl", "--user", "show-environment"])
    except OSError:
        return False
    return code == 0


# -- cron -------------------------------------------------------------------------------------


def cron_schedule(every: int) -> tuple[str, bool]:
    """(the five time fields, exact?) for running every `every` seconds, at minute 17."""
    minutes, hours, days = every // 60, every // 3600, every // 86400
    if every % 604800 == 0 and every // 604800 == 1:
        return "17 4 * * 0", True
    if every % 86400 == 0:
        return ("17 4 * * *", True) if days == 1 else (f"17 4 */{days} * *", False)
    if every % 3600 == 0 and hours < 24:
        return f"17 */{hours} * * *", 24 % hours == 0
    if every < 3600 and every % 60 == 0:
        return f"*/{minutes} * * * *", 60 % minutes == 0
    hours = max(1, min(23, round(every / 3600)))
    return f"17 */{hours} * * *", False


def crontab_line(job: Job) -> str:
    """One crontab line, marked so that `schedule show` finds it."""
    prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in job.environment)
    refresh, status = (prefix + shlex.join(c) for c in job.commands())
    when, _ = cron_schedule(job.every)
    line = f"{when} {refresh} >/dev/null; {status} {CRON_MARKER}"
    return line.replace("%", "\\%")  # cron turns a bare % into a newline


# -- launchd ----------------------------------------------------------------------------------


def launchd_plist(job: Job, agents_dir: str) -> tuple[str, str]:
    import plistlib

    refresh, status = (shlex.join(c) for c in job.commands())
    logs = os.path.join(os.path.dirname(agents_dir), "Logs", f"{NAME}.log")
    data: dict[str, object] = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": ["/bin/sh", "-c", f"{refresh} >/dev/null; {status}"],
        "StartInterval": job.every,
        "RunAtLoad": False,
        "ProcessType": "Background",
        "StandardErrorPath": logs,
    }
    if job.environment:
        data["EnvironmentVariables"] = dict(job.environment)
    content = plistlib.dumps(data, fmt=plistlib.FMT_XML).decode("utf-8")
    return os.path.join(agents_dir, f"{LAUNCHD_LABEL}.plist"), content


# -- Windows Task Scheduler -------------------------------------------------------------------


def iso_duration(seconds: int) -> str:
    """ISO 8601 duration as Task Scheduler wants it: P1D, PT12H, P1DT12H, PT15M."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time_part = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time_part}" if time_part else "")


def task_xml(job: Job) -> str:
    """A Task Scheduler task: a repeating time trigger and the two commands as actions."""
    actions = []
    for argv in job.commands():
        command = xml_escape(argv[0])
        arguments = xml_escape(subprocess.list2cmdline(argv[1:]))
        actions.append(
            f"    <Exec>\n      <Command>{command}</Command>\n"
            f"      <Arguments>{arguments}</Arguments>\n    </Exec>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">\n'
        "  <RegistrationInfo>\n"
        "    <Description>oauthtok keep-alive: refresh idle grants, raise notifications"
        "</Description>\n"
        "  </RegistrationInfo>\n"
        "  <Triggers>\n"
        "    <TimeTrigger>\n"
        "      <StartBoundary>2000-01-01T04:17:00</StartBoundary>\n"
        "      <Enabled>true</Enabled>\n"
        f"      <Repetition><Interval>{iso_duration(job.every)}</Interval></Repetition>\n"
        "    </TimeTrigger>\n"
        "  </Triggers>\n"
        "  <Principals>\n"
        '    <Principal id="Author">\n'
        "      <LogonType>InteractiveToken</LogonType>\n"
        "      <RunLevel>LeastPrivilege</RunLevel>\n"
        "    </Principal>\n"
        "  </Principals>\n"
        "  <Settings>\n"
        "    <StartWhenAvailable>true</StartWhenAvailable>\n"
        "    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n"
        "    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n"
        "    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n"
        "    <ExecutionTimeLimit>PT1H</ExecutionTimeLimit>\n"
        "  </Settings>\n"
        '  <Actions Context="Author">\n'
        f"{''.join(actions)}"
        "  </Actions>\n"
        "</Task>\n"
    )


# -- plans ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    kind: str
    job: Job
    #: (path, content) to write, 0600 in folders made 0700 when missing
    files: tuple[tuple[str, str], ...] = ()
    #: commands to run after writing (install) and before deleting (remove)
    install_commands: tuple[tuple[str, ...], ...] = ()
    remove_commands: tuple[tuple[str, ...], ...] = ()
    #: what the user must do by hand (cron), one line each
    notes: tuple[str, ...] = field(default_factory=tuple)


def detect_kind(
    platform: str | None = None,
    environ: Mapping[str, str] | None = None,
    runner: Runner | None = None,
) -> str:
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return "launchd"
    if platform == "win32":
        return "schtasks"
    if platform.startswith("linux") and has_systemd_user(environ, runner):
        return "systemd"
    return "cron"


def make_plan(
    job: Job,
    kind: str,
    environ: Mapping[str, str] | None = None,
    home: str | None = None,
    data_dir: str | None = None,
) -> Plan:
    environ = os.environ if environ is None else environ
    home = os.path.expanduser("~") if home is None else home
    if kind == "systemd":
        timer = f"{NAME}.timer"
        return Plan(
            kind,
            job,
            files=tuple(systemd_files(job, systemd_unit_dir(environ))),
            install_commands=(
                ("systemctl", "--user", "daemon-reload"),
                ("systemctl", "--user", "enable", "--now", timer),
            ),
            remove_commands=(("systemctl", "--user", "disable", "--now", timer),),
            notes=("without `loginctl enable-linger` the timer runs only while you are logged in",),
        )
    if kind == "cron":
        line = crontab_line(job)
        exact = cron_schedule(job.every)[1]
        notes = [f"add this line with `crontab -e`: {line}"]
        if not exact:
            notes.append(f"cron cannot run exactly every {format_duration(job.every)}: close")
        return Plan(kind, job, notes=tuple(notes))
    if kind == "launchd":
        path, content = launchd_plist(job, os.path.join(home, "Library", "LaunchAgents"))
        uid = os.getuid() if hasattr(os, "getuid") else 0
        return Plan(
            kind,
            job,
            files=((path, content),),
            install_commands=(("launchctl", "bootstrap", f"gui/{uid}", path),),
            remove_commands=(("launchctl", "bootout", f"gui/{uid}/{LAUNCHD_LABEL}"),),
        )
    if kind == "schtasks":
        if data_dir is None:
            from oauthtok import paths

            data_dir = paths.data_dir()
        path = os.path.join(data_dir, f"{NAME}.xml")
        notes = []
        if job.environment:
            names = ", ".join(k for k, _ in job.environment)
            notes.append(f"set {names} for your account: a task does not carry them")
        return Plan(
            kind,
            job,
            files=((path, task_xml(job)),),
            install_commands=(("schtasks", "/Create", "/TN", NAME, "/XML", path, "/F"),),
            remove_commands=(("schtasks", "/Delete", "/TN", NAME, "/F"),),
            notes=tuple(notes),
        )
    raise UsageError(f"unknown scheduler {kind!r}; one of {', '.join(KINDS)}")


def render(plan: Plan) -> str:
    """`--dry-run`: what would be written and run."""
    out = []
    for path, content in plan.files:
        out.append(f"# {path}\n{content}")
    for argv in plan.install_commands:
        out.append("$ " + shlex.join(argv))
    out.extend(plan.notes)
    return "\n".join(out) + "\n"


def _write(path: str, content: str, kind: str) -> None:
    from oauthtok.filestore import write_atomic

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # Task Scheduler reads the encoding the XML declares
    data = content.encode("utf-16") if kind == "schtasks" else content.encode("utf-8")
    write_atomic(path, data)


def install(plan: Plan, runner: Runner = run_command) -> list[str]:
    """Write the files, run the install commands. Returns lines for the user; raises
    UsageError (the scheduler refused) with the command and its answer."""
    for path, content in plan.files:
        try:
            _write(path, content, plan.kind)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    for argv in plan.install_commands:
        code, output = runner(argv)
        if code != 0:
            last = output.strip().splitlines()[-1] if output.strip() else ""
            raise UsageError(
                f"`{shlex.join(argv)}` failed (exit {code}{': ' + last if last else ''}); "
                "the files were written: `oauthtok schedule remove` takes them away"
            )
    done = [f"wrote {path}" for path, _ in plan.files]
    done += [f"ran {shlex.join(argv)}" for argv in plan.install_commands]
    return done + list(plan.notes)


def show(plan: Plan, runner: Runner = run_command) -> list[tuple[str, str]]:
    """What is installed now: (path or "crontab", content) of each piece that exists."""
    found = []
    for path, _ in plan.files:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        text = raw.decode("utf-16") if plan.kind == "schtasks" else raw.decode("utf-8", "replace")
        found.append((path, text))
    if plan.kind == "cron":
        try:
            code, output = runner(["crontab", "-l"])
        except OSError:
            code, output = 1, ""
        lines = [line for line in output.splitlines() if line.endswith(CRON_MARKER)]
        if code == 0 and lines:
            found.append(("crontab", "\n".join(lines) + "\n"))
    return found


def remove(plan: Plan, runner: Runner = run_command) -> list[str]:
    """Stop and delete what install made; what is not there is fine."""
    done = []
    present = [path for path, _ in plan.files if os.path.exists(path)]
    if present:
        for argv in plan.remove_commands:
            code, _ = runner(argv)
            if code == 0:
                done.append(f"ran {shlex.join(argv)}")
    for path in present:
        try:
            os.unlink(path)
            done.append(f"removed {path}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise UsageError(f"cannot remove {path}: {exc.strerror or exc}") from None
    if plan.kind == "systemd" and present:
        runner(["systemctl", "--user", "daemon-reload"])
    if plan.kind == "cron":
        done.append(f"remove the line ending in {CRON_MARKER!r} with `crontab -e`")
    return done
