"""The hidden command the detached waiter of `reauthorize --flow device --notify` runs."""

from __future__ import annotations

import sys

import typer

from oauthtok.cli.app import commands

#: `deviceauth.WAIT_COMMAND` (a test holds them equal; importing deviceauth here would cost
#: every command its imports)
WAIT_COMMAND = "device-wait"


@commands.command(WAIT_COMMAND, hidden=True)
def device_wait_command() -> None:
    """Internal: wait for a device code's approval (the task and its secrets come on stdin)."""
    from oauthtok.deviceauth import MAX_PAYLOAD, wait

    raise typer.Exit(wait(sys.stdin.buffer.read(MAX_PAYLOAD + 1)))
