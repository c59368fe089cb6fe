"""Python's cyclic garbage collector in a command's process: off while it starts and works,
on while it waits for a person.

The launcher turns the collector off first thing. Starting a command (Typer, httpx, the
store…) allocates hundreds of thousands of objects that live until the process ends, and
the collections they trigger free nothing while scanning them all again: ~5-10 % of the CPU
of a command that refreshes a token. Reference counting still frees every object outside a
cycle. A command that waits for minutes — a browser's redirect, a device code's approval —
turns it back on with `waiting()`, after freezing what exists (never scanned again).
"""

from __future__ import annotations

import gc


def waiting() -> None:
    """Before a wait for a person (minutes of polls or requests): collect as usual again."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
