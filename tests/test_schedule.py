"""The keep-alive schedule: what each writer writes (systemd verified by systemd-analyze),
and install/show/remove through a recording runner (no scheduler needed)."""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from oauthtok import schedule
from oauthtok.errors import UsageError
from oauthtok.schedule import (
    CRON_MARKER,
    Job,
    cron_schedule,
    crontab_line,
    detect_kind,
    install,
    iso_duration,
    launchd_plist,
    make_job,
    make_plan,
    remove,
    render,
    show,
    systemd_files,
    systemd_quote,
    task_xml,
)

TASK_NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


class Recorder:
    def __init__(self, answers: dict[str, tuple[int, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(argv))
        return self.answers.get(" ".join(argv), (0, ""))


@pytest.fixture
def exe(tmp_path: Path) -> str:
    """An installed-looking oauthtok in a folder whose name needs quoting."""
    folder = tmp_path / "my bin %h $HOME"
    folder.mkdir()
    path = folder / "oauthtok"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def job(exe: str, **changes: object) -> Job:
    values: dict[str, object] = {
        "every": 86400,
        "executable": [exe],
        "environ": {"OAUTHTOK_DATA_DIR": "/srv/oauthtok data", "OAUTHTOK_CLIENT_SECRET": "CS"},
    }
    values.update(changes)
    return make_job(**values)  # type: ignore[arg-type]


def test_the_job() -> None:
    made = make_job(86400, executable=["/usr/bin/oauthtok"], environ={})
    assert made.commands() == [
        ["/usr/bin/oauthtok", "refresh", "--all", "--idle-for", "1w"],
        ["/usr/bin/oauthtok", "status", "--quiet"],
    ]
    assert make_job(14 * 86400, executable=["x"], environ={}).idle_for == 14 * 86400
    assert make_job(3600, 7200, executable=["x"], environ={}).idle_for == 7200
    with pytest.raises(UsageError, match="--every must be between 15m and 4w3d"):
        make_job(60, executable=["x"], environ={})
    passed = make_job(
        executable=["x"],
        environ={"OAUTHTOK_STORE": "file", "OAUTHTOK_X": "1", "OAUTHTOK_CLIENT_SECRET": "CS"},
    )
    assert passed.environment == (("OAUTHTOK_STORE", "file"),)  # never the client secret


def test_find_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "oauthtok"
    script.write_text("")
    assert schedule.find_executable(str(script)) == (str(script),)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert schedule.find_executable("/usr/lib/python3/pytest") == (
        os.path.abspath(sys.executable),
        "-m",
        "oauthtok",
    )


def test_systemd_quoting() -> None:
    assert systemd_quote("/usr/bin/oauthtok") == "/usr/bin/oauthtok"
    assert systemd_quote("a b") == '"a b"'
    assert systemd_quote('%h "x" $Y \\') == '"%%h \\"x\\" $$Y \\\\"'
    with pytest.raises(UsageError):
        systemd_quote("a\nb")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize("every", [900, 3600, 86400, 129600, 604800])
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path, exe: str, every: int) -> None:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    files = systemd_files(job(exe, every=every), str(unit_dir))
    for path, content in files:
        Path(path).write_text(content)
    service, timer = (content for _, content in files)
    quoted = systemd_quote(exe)
    assert f"ExecStart=-{quoted} refresh --all --idle-for " in service
    assert f"ExecStart={quoted} status --quiet" in service
    assert 'Environment="OAUTHTOK_DATA_DIR=/srv/oauthtok data"' in service
    assert "CS" not in service.replace("Description", "")
    assert f"OnUnitActiveSec={schedule.format_duration(every)}\n" in timer
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--user", *(p for p, _ in files)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    # verify only warns ("Failed to parse …, ignoring") for a bad value: its output must be empty
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a timer value systemd cannot parse is reported."""
    path = tmp_path / "oauthtok-keepalive.timer"
    path.write_text("[Timer]\nOnUnitActiveSec=1day12hours7x\n[Install]\nWantedBy=timers.target\n")
    (tmp_path / "oauthtok-keepalive.service").write_text(
        "[Service]\nType=oneshot\nExecStart=/bin/true\n"
    )
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert "Failed to parse" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("every", "expected"),
    [
        (86400, ("17 4 * * *", True)),
        (604800, ("17 4 * * 0", True)),
        (3 * 86400, ("17 4 */3 * *", False)),
        (6 * 3600, ("17 */6 * * *", True)),
        (5 * 3600, ("17 */5 * * *", False)),
        (900, ("*/15 * * * *", True)),
        (129600, ("17 */23 * * *", False)),
    ],
)
def test_cron_schedule(every: int, expected: tuple[str, bool]) -> None:
    assert cron_schedule(every) == expected


def test_crontab_line(exe: str) -> None:
    line = crontab_line(job(exe))
    assert line.startswith("17 4 * * * OAUTHTOK_DATA_DIR='/srv/oauthtok data' '")
    assert line.endswith(f"status --quiet {CRON_MARKER}")
    assert "\\%h" in line and " %h" not in line  # cron would turn % into a newline
    assert "refresh --all --idle-for 1w >/dev/null; " in line
    assert "\n" not in line
    # the shell part runs as cron runs it (without the marker and the schedule)
    command = line[len("17 4 * * * ") : -len(CRON_MARKER)].replace("\\%", "%")
    done = subprocess.run(["/bin/sh", "-n", "-c", command], capture_output=True, timeout=10)
    assert done.returncode == 0


def test_launchd_plist_round_trip(exe: str, tmp_path: Path) -> None:
    path, content = launchd_plist(job(exe, every=43200), str(tmp_path / "Library/LaunchAgents"))
    assert path == str(tmp_path / "Library/LaunchAgents/oauthtok.keepalive.plist")
    data = plistlib.loads(content.encode())
    assert data["Label"] == "oauthtok.keepalive"
    assert data["StartInterval"] == 43200
    assert data["ProgramArguments"][:2] == ["/bin/sh", "-c"]
    script = data["ProgramArguments"][2]
    assert "refresh --all --idle-for 1w >/dev/null; " in script and "status --quiet" in script
    assert data["EnvironmentVariables"] == {"OAUTHTOK_DATA_DIR": "/srv/oauthtok data"}
    assert data["StandardErrorPath"].endswith("Library/Logs/oauthtok-keepalive.log")


def test_task_scheduler_xml(exe: str) -> None:
    assert iso_duration(86400) == "P1D"
    assert iso_duration(129600) == "P1DT12H"
    assert iso_duration(900) == "PT15M"
    content = task_xml(
        job(exe, every=129600, executable=[r"C:\Program Files\oauthtok\oauthtok.exe"])
    )
    root = ET.fromstring(content.replace('encoding="UTF-16"', 'encoding="UTF-8"').encode())
    assert root.tag == f"{TASK_NS}Task"
    interval = root.find(
        f"{TASK_NS}Triggers/{TASK_NS}TimeTrigger/{TASK_NS}Repetition/{TASK_NS}Interval"
    )
    assert interval is not None and interval.text == "P1DT12H"
    execs = root.findall(f"{TASK_NS}Actions/{TASK_NS}Exec")
    assert [e.findtext(f"{TASK_NS}Command") for e in execs] == [
        r"C:\Program Files\oauthtok\oauthtok.exe"
    ] * 2
    assert [e.findtext(f"{TASK_NS}Arguments") for e in execs] == [
        "refresh --all --idle-for 1w",
        "status --quiet",
    ]


def test_detect_kind(tmp_path: Path) -> None:
    assert detect_kind("darwin") == "launchd"
    assert detect_kind("win32") == "schtasks"
    none = Recorder({"systemctl --user show-environment": (1, "Failed to connect to bus")})
    assert detect_kind("linux", {"XDG_RUNTIME_DIR": str(tmp_path)}, none) == "cron"
    assert none.calls == [["systemctl", "--user", "show-environment"]]
    assert detect_kind("linux", {}, Recorder()) == "systemd"
    (tmp_path / "systemd").mkdir()
    assert detect_kind("linux", {"XDG_RUNTIME_DIR": str(tmp_path)}, none) == "systemd"
    assert detect_kind("freebsd14", {}, Recorder()) == "cron"


def test_systemd_install_show_remove(tmp_path: Path, exe: str) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    plan = make_plan(job(exe), "systemd", environ=env)
    text = render(plan)
    assert "# " + str(tmp_path / "config/systemd/user/oauthtok-keepalive.timer") in text
    assert "$ systemctl --user enable --now oauthtok-keepalive.timer" in text
    assert not (tmp_path / "config").exists()  # rendering (--dry-run) writes nothing
    runner = Recorder()
    lines = install(plan, runner)
    assert runner.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "oauthtok-keepalive.timer"],
    ]
    assert any(line.startswith("wrote ") for line in lines)
    for path, content in plan.files:
        assert Path(path).read_text() == content
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    assert [p for p, _ in show(plan, runner)] == [p for p, _ in plan.files]
    runner.calls.clear()
    remove(plan, runner)
    assert runner.calls == [
        ["systemctl", "--user", "disable", "--now", "oauthtok-keepalive.timer"],
        ["systemctl", "--user", "daemon-reload"],
    ]
    assert show(plan, runner) == []
    assert remove(plan, runner) == []  # nothing left: fine


def test_a_refusing_scheduler_is_one_line(tmp_path: Path, exe: str) -> None:
    plan = make_plan(job(exe), "systemd", environ={"XDG_CONFIG_HOME": str(tmp_path)})
    runner = Recorder(
        {"systemctl --user daemon-reload": (1, "Failed to connect to bus: No medium")}
    )
    with pytest.raises(UsageError, match=r"daemon-reload` failed \(exit 1: Failed to connect"):
        install(plan, runner)


def test_cron_plan_prints_the_line(exe: str) -> None:
    plan = make_plan(job(exe, every=3 * 86400), "cron")
    assert plan.files == () and plan.install_commands == ()
    assert plan.notes[0].startswith("add this line with `crontab -e`: 17 4 */3 * * ")
    assert "cannot run exactly every 3d" in plan.notes[1]
    installed = f"MAILTO=me\n{crontab_line(plan.job)}\n"
    assert show(plan, Recorder({"crontab -l": (0, installed)})) == [
        ("crontab", crontab_line(plan.job) + "\n")
    ]


def test_launchd_and_schtasks_plans(tmp_path: Path, exe: str) -> None:
    mac = make_plan(job(exe), "launchd", home=str(tmp_path))
    assert mac.install_commands[0][:2] == ("launchctl", "bootstrap")
    runner = Recorder()
    install(mac, runner)
    assert plistlib.loads(Path(mac.files[0][0]).read_bytes())["Label"] == "oauthtok.keepalive"
    win = make_plan(job(exe), "schtasks", data_dir=str(tmp_path / "data"))
    assert win.install_commands == (
        ("schtasks", "/Create", "/TN", "oauthtok-keepalive", "/XML", win.files[0][0], "/F"),
    )
    assert "OAUTHTOK_DATA_DIR" in win.notes[0]
    install(win, runner)
    raw = Path(win.files[0][0]).read_bytes()
    assert raw.startswith(b"\xff\xfe")  # UTF-16 with a BOM, as the XML declares
    assert show(win, runner)[0][1] == win.files[0][1]
    with pytest.raises(UsageError, match="unknown scheduler"):
        make_plan(job(exe), "at")
