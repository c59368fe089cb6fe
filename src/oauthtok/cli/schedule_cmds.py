"""`schedule install|show|remove`: run the keep-alive (`refresh --all --idle-for …`, then
`status --quiet`, which raises the notifications) on a schedule: a systemd user timer, a
crontab line, a launchd agent or a Task Scheduler task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from oauthtok.cli.app import commands
from oauthtok.cli.output import say

if TYPE_CHECKING:
    from oauthtok.schedule import Plan

schedule_app = typer.Typer(
    name="schedule",
    help="Keep grants alive and raise notifications on a schedule (systemd timer, cron, "
    "launchd, Task Scheduler).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
commands.add_typer(schedule_app)

Every = Annotated[
    str,
    typer.Option(
        "--every", metavar="DURATION",
        help="How often the keep-alive runs (15m to 31d, e.g. 12h, 1d).",
    ),
]  # fmt: skip
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be written and run; change nothing.")
]


def current_plan(every: str = "1d") -> Plan:
    from oauthtok.durations import parse_duration
    from oauthtok.schedule import detect_kind, make_job, make_plan

    job = make_job(parse_duration(every, what="--every"))
    return make_plan(job, detect_kind())


@schedule_app.command("install")
def install_command(every: Every = "1d", dry_run: DryRun = False) -> None:
    """Install the keep-alive: `refresh --all --idle-for …` then `status --quiet`, every
    DURATION, with the full path of this oauthtok."""
    from oauthtok.schedule import crontab_line, install, render

    plan = current_plan(every)
    if dry_run:
        print(render(plan), end="")
        return
    if plan.kind == "cron":  # nothing to install by itself: the line is the answer
        say("No systemd user instance here: add this line to your crontab (`crontab -e`):")
        print(crontab_line(plan.job))
        for note in plan.notes[1:]:
            say(note)
        return
    for line in install(plan):
        say(line)


@schedule_app.command("show")
def show_command() -> None:
    """Print what is installed (the unit files, the crontab line, the agent or the task)."""
    from oauthtok.schedule import show

    plan = current_plan()
    found = show(plan)
    if not found:
        say(f"No keep-alive is installed ({plan.kind}); `oauthtok schedule install` adds one.")
        return
    for where, content in found:
        print(f"# {where}\n{content}", end="" if content.endswith("\n") else "\n")


@schedule_app.command("remove")
def remove_command(dry_run: DryRun = False) -> None:
    """Stop and remove the keep-alive (what is not there is fine)."""
    import shlex

    from oauthtok.schedule import remove

    plan = current_plan()
    if dry_run:
        for argv in plan.remove_commands:
            print(f"$ {shlex.join(argv)}")
        for path, _ in plan.files:
            print(f"rm {shlex.quote(path)}")
        return
    done = remove(plan)
    for line in done or ["nothing was installed"]:
        say(line)
