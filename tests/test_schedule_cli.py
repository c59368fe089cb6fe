"""`oauthtok schedule`: the real program writes and enables a systemd user timer (through a
recording `systemctl` on PATH), or prints the crontab line; show and remove."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_oauthtok


def fake(bin_dir: Path, name: str, log: Path, output: str = "") -> None:
    """A stand-in for a scheduler tool: it records its arguments and answers `output`."""
    answer = bin_dir / f"{name}.out"
    answer.write_text(output)
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\ncat "{answer}"\n')
    script.chmod(0o755)


@pytest.fixture
def tools(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    return bin_dir, tmp_path / "calls.log"


def env_for(bin_dir: Path, runtime: Path | None) -> dict[str, str]:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    if runtime is not None:
        env["XDG_RUNTIME_DIR"] = str(runtime)
    return env


def test_systemd_timer_install_show_remove(tmp_path: Path, tools: tuple[Path, Path]) -> None:
    bin_dir, log = tools
    fake(bin_dir, "systemctl", log)
    runtime = tmp_path / "run"
    (runtime / "systemd").mkdir(parents=True)  # a systemd user instance runs
    env = {**env_for(bin_dir, runtime), "OAUTHTOK_DATA_DIR": str(tmp_path / "my data")}
    units = Path(os.environ["XDG_CONFIG_HOME"]) / "systemd" / "user"

    dry = run_oauthtok("schedule", "install", "--every", "12h", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"# {units / 'oauthtok-keepalive.timer'}" in dry.stdout
    assert "OnUnitActiveSec=12h" in dry.stdout
    assert "$ systemctl --user enable --now oauthtok-keepalive.timer" in dry.stdout
    assert not units.exists() and not log.exists()  # a dry run changes nothing

    done = run_oauthtok("schedule", "install", "--every", "12h", env=env)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now oauthtok-keepalive.timer",
    ]
    service = (units / "oauthtok-keepalive.service").read_text()
    assert " refresh --all --idle-for 1w\n" in service and " status --quiet\n" in service
    assert f'Environment="OAUTHTOK_DATA_DIR={tmp_path}/my data"' in service
    exe = service.split("ExecStart=-", 1)[1].split(" refresh")[0].strip('"')
    assert os.path.isabs(exe.split()[0])  # the full path of the installed oauthtok
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--user", *map(str, sorted(units.iterdir()))],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        )  # fmt: skip
        assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")

    shown = run_oauthtok("schedule", "show", env=env)
    assert shown.returncode == 0 and "OnUnitActiveSec=12h" in shown.stdout

    removed = run_oauthtok("schedule", "remove", env=env)
    assert removed.returncode == 0, removed.stderr
    assert "systemctl --user disable --now oauthtok-keepalive.timer" in log.read_text()
    assert list(units.iterdir()) == []
    assert "No keep-alive is installed" in run_oauthtok("schedule", "show", env=env).stderr


def test_cron_prints_the_line(tmp_path: Path, tools: tuple[Path, Path]) -> None:
    bin_dir, log = tools
    env = env_for(bin_dir, tmp_path / "no-systemd")  # no systemctl on PATH either
    done = run_oauthtok("schedule", "install", env=env)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("17 4 * * * ") and line.endswith("status --quiet # oauthtok keep-alive")
    assert "refresh --all --idle-for 1w >/dev/null;" in line
    assert "crontab -e" in done.stderr
    fake(bin_dir, "crontab", log, output=f"MAILTO=me\n{line}\n")
    shown = run_oauthtok("schedule", "show", env=env)
    assert shown.returncode == 0 and shown.stdout == f"# crontab\n{line}\n"


def test_every_is_bounded(tmp_path: Path, tools: tuple[Path, Path]) -> None:
    env = env_for(tools[0], None)
    short = run_oauthtok("schedule", "install", "--every", "5m", "--dry-run", env=env)
    assert short.returncode == 2 and "--every must be between 15m and 4w3d, not 5m" in short.stderr
    bad = run_oauthtok("schedule", "install", "--every", "daily", env=env)
    assert bad.returncode == 2 and "--every: 'daily' is not a duration" in bad.stderr
